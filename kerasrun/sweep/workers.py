"""`--jobs J`: J worker processes (`python -m kerasrun.sweep.worker`), each training its share of the trials in-process.

Trial i goes to worker i mod J. Each worker reads its share as JSON on stdin and reports every trial
as one JSON line on stdout; this process records them in sweep.json. A signal here is passed on to the
workers, which mark their current trial's run folder interrupted, as `train` does.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kerasrun.sweep.record import RUNNING, SweepRecord
from kerasrun.sweep.search import Report, SweepPlan, apply_outcome, trial_dir
from kerasrun.sweep.trial import TrialOutcome
from kerasrun.train.signals import FORCE_EXIT_SECONDS, as_interrupted


def run_in_workers(plan: SweepPlan, record: SweepRecord, report: Report) -> None:
    """Start the workers, record their trials as they report them, wait for all of them."""
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    workers: list[subprocess.Popen[str]] = []
    open_streams: set[int] = set()
    stopped_by: str | None = None
    try:
        for k in range(plan.jobs):
            share = plan.trials[k :: plan.jobs]
            if share:
                workers.append(start_worker(plan, record, share))
                open_streams.add(len(workers) - 1)
                threading.Thread(target=forward_lines, args=(len(workers) - 1, workers[-1].stdout, lines), daemon=True).start()
        collect(record, lines, open_streams, report)
    except KeyboardInterrupt as exc:
        interrupted = as_interrupted(exc)
        stopped_by = interrupted.name
        for worker in workers:  # a terminal's Ctrl-C reached them already; `kill` of this process did not
            if worker.poll() is None:
                worker.send_signal(interrupted.signum)
        deadline = time.monotonic() + FORCE_EXIT_SECONDS + 10
        try:
            collect(record, lines, open_streams, report, deadline)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        raise interrupted from None
    finally:
        for worker in workers:
            worker.wait()
        for trial in record.trials:  # a worker that died (killed, out of memory) never reported these
            if trial.status == RUNNING:
                codes = ", ".join(str(w.returncode) for w in workers if w.returncode)
                why = f"its worker process ended before reporting it (exit code {codes or '?'})"
                record.update(
                    trial.index, status="interrupted" if stopped_by else "failed", error=f"{stopped_by}: {why}" if stopped_by else why
                )


def start_worker(plan: SweepPlan, record: SweepRecord, share: list[Any]) -> subprocess.Popen[str]:
    """A worker process with its share of the trials written to its stdin."""
    spec = {
        "config": str(plan.config_path),
        "runs_dir": str(plan.runs_dir) if plan.runs_dir else None,
        "trials": [
            {"index": t.index, "overrides": plan.overrides(t), "run_dir": str(trial_dir(record, t.index)), "command": plan.train_command(t)}
            for t in share
        ],
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "kerasrun.sweep.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=worker_env()
    )
    assert worker.stdin is not None  # a pipe
    worker.stdin.write(json.dumps(spec))
    worker.stdin.close()
    return worker


def worker_env() -> dict[str, str]:
    """The workers import the same kerasrun as this process, whatever the current directory."""
    here = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, path) if p)}


def forward_lines(worker: int, stream: Any, lines: queue.Queue[tuple[int, str | None]]) -> None:
    """Pass a worker's report lines on; None when it closes its output."""
    for line in stream:
        lines.put((worker, line))
    lines.put((worker, None))


def collect(
    record: SweepRecord, lines: queue.Queue[tuple[int, str | None]], open_streams: set[int], report: Report, deadline: float | None = None
) -> None:
    """Record reports until every worker has closed its output (or the deadline passes)."""
    while open_streams:
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        if deadline is not None and timeout == 0.0:
            return
        try:
            worker, line = lines.get(timeout=timeout)
        except queue.Empty:
            continue
        if line is None:
            open_streams.discard(worker)
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue  # not a report (a library printed to the worker's stdout)
        index = int(message["index"])
        if message.get("status") == RUNNING:
            report(record, record.update(index, status=RUNNING, run_dir=Path(message["run_dir"]).name))
        else:
            report(record, apply_outcome(record, index, TrialOutcome(**message["outcome"])))
