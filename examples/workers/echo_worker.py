"""A minimal worker for the ``command`` provider's worker mode.

Run as one long-lived process per pool member, it answers every task without paying a
process start per task. Use it from a workflow like this:

    agents:
      echo:
        provider: command
        options:
          command: python examples/workers/echo_worker.py
          mode: worker            # keep the process; send tasks as JSON lines
          startup_timeout: 10     # seconds for a new worker to answer its first ping
          timeout: 30             # seconds per task; a worker that misses it is killed

``serve`` does the protocol (docs/command-workers.md): it reads one request per line on
stdin, answers pings, calls ``handle`` for each task and writes one reply per line on
stdout. Log with ``print()`` or ``logging`` freely: while ``serve`` runs, stdout is
redirected to stderr so nothing can corrupt a reply.
"""

from __future__ import annotations

import os
from typing import Any

from agentfleet.worker import Reply, TaskError, serve

STARTED = os.getpid()  # load models, open clients, read files here: it happens once per worker


def handle(task: dict[str, Any]) -> str | Reply:
    """Echo the prompt back; ``task`` has prompt, system, task_id, agent, model, options..."""
    prompt = task["prompt"]
    if not prompt:
        raise TaskError("empty prompt", retryable=False)  # fails the task; no retry would help
    words = len(prompt.split())
    print(f"task {task['task_id']}: {words} words")  # goes to stderr: the worker's log
    return Reply(text=prompt, input_tokens=words, output_tokens=words)


if __name__ == "__main__":
    serve(handle)
