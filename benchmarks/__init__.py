"""agentfleet's performance suite: our engine against bare asyncio and its peers.

Run it with ``python -m benchmarks`` (see ``benchmarks/README.md``). Not part of the
tests: it measures wall time on the machine it runs on, and stores what it saw in
``benchmarks/results/`` together with that machine's description.
"""
