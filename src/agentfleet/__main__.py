"""``python -m agentfleet``: the command line."""

from .cli import main

main()
