"""Tests for agentfleet.resilience."""
