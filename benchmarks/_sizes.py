"""The workloads' sizes: the full suite, and the smaller ``--quick`` smoke run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """Every size and latency the workloads use (seconds for latencies)."""

    fanout: int  # (a) no-op tasks fanned out, then one join
    fanout_steps: int  # (a, steps) the same as that many separate steps
    chain: int  # (b) no-op steps in a chain
    layers: int  # (c) layers, each waiting for the whole previous one
    width: int  # (c) tasks per layer
    layer_latency: float  # (c) fixed latency of each task
    branch_steps: int  # (d) tasks in branch A's chain
    branch_step_latency: float  # (d) latency of each of them
    branch_long: float  # (d) branch B's single task
    admission_chain: int  # (e) tasks in the long chain
    admission_short: int  # (e) short independent tasks
    admission_latency: float  # (e) latency of every task
    admission_slots: int  # (e) max_parallel

    @property
    def layers_critical_path(self) -> float:
        return self.layers * self.layer_latency

    @property
    def branch_critical_path(self) -> float:
        return max(self.branch_long, self.branch_steps * self.branch_step_latency)

    def admission_optimum(self) -> float:
        """The best makespan for (e): the chain on one slot from t=0, shorts around it."""
        lat, slots = self.admission_latency, self.admission_slots
        chain_time = self.admission_chain * lat
        # While the chain runs, slots-1 slots take short tasks; the rest share all slots.
        during = (slots - 1) * self.admission_chain
        left = max(0, self.admission_short - during)
        rounds_after = -(-left // slots)
        return chain_time + rounds_after * lat if left else max(
            chain_time, -(-self.admission_short // (slots - 1)) * lat)

    def admission_fifo(self) -> float:
        """The makespan of FIFO when every short task is ready before the chain's head."""
        lat, slots = self.admission_latency, self.admission_slots
        # The shorts fill the slots in whole rounds; the chain's head takes the first slot
        # left over, after short // slots rounds.
        first_free = (self.admission_short // slots) * lat
        return first_free + self.admission_chain * lat


FULL = Sizes(
    fanout=10_000, fanout_steps=10_000, chain=1_000,
    layers=4, width=50, layer_latency=0.05,
    branch_steps=10, branch_step_latency=0.01, branch_long=0.5,
    admission_chain=10, admission_short=40, admission_latency=0.1, admission_slots=4,
)

QUICK = Sizes(
    fanout=1_000, fanout_steps=1_000, chain=200,
    layers=4, width=20, layer_latency=0.05,
    branch_steps=10, branch_step_latency=0.01, branch_long=0.2,
    admission_chain=10, admission_short=40, admission_latency=0.02, admission_slots=4,
)
