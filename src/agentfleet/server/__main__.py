"""``python -m agentfleet.server --db PATH``: a runner process of ``agentfleet serve``."""

import sys

from ._executor import main

sys.exit(main())
