"""``python -m benchmarks``: run the suite, print the table, store the JSON."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
