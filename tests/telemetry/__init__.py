"""Tests for agentfleet.telemetry."""
