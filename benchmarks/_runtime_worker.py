"""A command worker that speaks the protocol directly (standard library only).

The runtime suite starts it to time a worker's cold start without ``import agentfleet``
(which ``agentfleet.worker``, and so ``examples/workers/echo_worker.py``, pays): this is
the floor of a Python worker's start, an interpreter plus a ping. It echoes each prompt.
Run as a script: ``python benchmarks/_runtime_worker.py``.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("type") == "ping":
            reply = {"type": "pong", "id": request["id"]}
        else:
            prompt = request.get("prompt") or ""
            words = len(prompt.split())
            reply = {"id": request["id"], "text": prompt,
                     "usage": {"input_tokens": words, "output_tokens": words}}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
