"""A sweep's worker process: `python -m kerasrun.sweep.worker` reads its trials as JSON on stdin and trains them in-process.

It reports each trial as a JSON line on its stdout (anything else the process prints goes to stderr);
a signal marks the current trial's run folder interrupted and ends the worker with 128 + the signal.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO


def emit(stream: TextIO, message: dict[str, Any]) -> None:
    """One report line."""
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def main() -> int:
    """Train the trials given on stdin; the exit code."""
    from kerasrun.startup import configure_command_process

    configure_command_process()
    reports = os.fdopen(os.dup(1), "w")  # the reports keep stdout; everything printed goes to stderr
    os.dup2(2, 1)
    spec = json.load(sys.stdin)
    from kerasrun.train.signals import as_interrupted, signals_raise_interrupted

    with signals_raise_interrupted():
        try:
            from kerasrun.sweep.trial import run_trial

            runs_dir = Path(spec["runs_dir"]) if spec.get("runs_dir") else None
            for trial in spec["trials"]:
                emit(reports, {"index": trial["index"], "status": "running", "run_dir": trial["run_dir"]})
                outcome, stop = run_trial(
                    Path(spec["config"]), trial["overrides"], Path(trial["run_dir"]), runs_dir, "none", trial["command"]
                )
                emit(reports, {"index": trial["index"], "outcome": outcome.to_json()})
                if stop is not None:
                    raise stop
        except KeyboardInterrupt as exc:
            # End here, inside the block whose handlers ignore repeated signals: the parent passes the
            # signal on, and a terminal or a scheduler may have sent it to this process as well.
            os._exit(as_interrupted(exc).exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
