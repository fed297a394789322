"""A sweep's local worker process (`--jobs J`): `python -m kerasrun.sweep.worker SWEEP_DIR --job K [--seed N]`.

It opens the sweep's study (its sweep.json names it; the storage URL comes in the environment) and
works on it as any process of the sweep does, printing one line per trial. A signal marks its current
trial's run folder interrupted, puts the trial back in the queue and ends the worker with 128 + the signal.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Work on the sweep; the exit code."""
    from kerasrun.startup import configure_command_process

    configure_command_process()
    parser = argparse.ArgumentParser(prog="python -m kerasrun.sweep.worker")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--job", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    from kerasrun.errors import KerasrunError
    from kerasrun.sweep.processes import STORAGE_ENV
    from kerasrun.sweep.summary import trial_line
    from kerasrun.sweep.work import open_sweep, sampler_seed, with_sampler, work_on
    from kerasrun.train.signals import as_interrupted, signals_raise_interrupted

    with signals_raise_interrupted():
        try:
            sweep = open_sweep(args.sweep_dir, os.environ.get(STORAGE_ENV))
            seed = args.seed if args.seed is not None else sampler_seed(sweep, False, args.job)
            work_on(with_sampler(sweep, seed), lambda record, trial: print(trial_line(record, trial), flush=True))
        except KeyboardInterrupt as exc:
            # End here, inside the block whose handlers ignore repeated signals: the parent passes the
            # signal on, and a terminal or a scheduler may have sent it to this process as well.
            os._exit(as_interrupted(exc).exit_code)
        except KerasrunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # the storage went away, a bug: one line, and the parent says a worker failed
            print(f"error: sweep worker {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
