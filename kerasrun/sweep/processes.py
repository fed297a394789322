"""`--jobs J`: J local processes (`python -m kerasrun.sweep.worker SWEEP_DIR`), each working on the sweep's study.

They share the work exactly as processes on several machines do — each takes waiting trials from the
storage — so there is no assignment of trials here: this process starts them, passes a signal on, and
waits (as `launch` does for its workers).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kerasrun.train.signals import FORCE_EXIT_SECONDS, as_interrupted

if TYPE_CHECKING:
    from kerasrun.sweep.work import Sweep

STORAGE_ENV = "KERASRUN_SWEEP_STORAGE"  # the storage URL goes by environment, not argv: `ps` shows argv, and a URL may hold a password


def run_processes(sweep: Sweep, made: bool, module: str) -> None:
    """Start `sweep.jobs` worker processes on the sweep and wait for them; a signal here is passed on to them."""
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for job in range(sweep.jobs):
            seed = sweep.plan.seed + job if made else None  # joining another's sweep: each worker draws its own seed
            args = [sys.executable, "-m", module, str(sweep.path), "--job", str(job)]
            if seed is not None:
                args += ["--seed", str(seed)]
            # Whatever they print goes to this process's stderr: its stdout is for the summary (or --json's JSON only).
            workers.append(subprocess.Popen(args, env=worker_env(sweep.storage), stdout=2))
        for worker in workers:
            worker.wait()
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        for worker in workers:  # a terminal's Ctrl-C reached them already; `kill` of this process did not
            if worker.poll() is None:
                worker.send_signal(interrupted.signum)
        deadline = time.monotonic() + FORCE_EXIT_SECONDS + 10
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        raise interrupted from None
    failed = [w.returncode for w in workers if w.returncode]
    if failed:  # the others finished its trials (a dead process's trial goes back to the queue); say so, don't fail the sweep
        sweep.notes.append(f"{len(failed)} of {len(workers)} worker processes ended with exit codes {', '.join(map(str, failed))}")


def worker_env(storage: str) -> dict[str, str]:
    """The workers import the same kerasrun as this process, whatever the current directory, and get the storage."""
    here = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, path) if p), STORAGE_ENV: storage}
