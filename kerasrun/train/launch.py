"""`kerasrun launch`: start N local worker processes with TF_CONFIG for multi-worker training on one machine."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from kerasrun.errors import KerasrunError
from kerasrun.train.signals import as_interrupted, signals_raise_interrupted

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SECONDS = 30.0  # how long stopped workers get to mark their runs interrupted before they are killed


class LaunchError(KerasrunError):
    """A worker failed (or the launch timed out); the others were stopped."""

    exit_code = 1


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that are free right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def terminate_with_parent() -> None:
    """In a worker, before it starts: SIGTERM when the launcher dies, even by `kill -9` (Linux's PR_SET_PDEATHSIG).

    The worker then marks its run interrupted and stops, instead of training on with no launcher.
    Elsewhere this does nothing: the launcher still stops its workers on every signal it can catch.
    """
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tf_config(ports: list[int], index: int) -> str:
    """TF_CONFIG for worker `index` of a local cluster."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def launch_workers(train_args: list[str], workers: int, timeout: float) -> int:
    """Run `kerasrun train ARGS` in `workers` processes; the chief (worker 0) prints and writes the run folder.

    Returns the chief's exit code. If any worker fails, the others are stopped at once (a collective
    all-reduce would otherwise wait forever for the dead one) and LaunchError says which and why.
    """
    ports = free_ports(workers)
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(workers)]  # noqa: SIM115 (closed in the finally below)
    processes = []
    for index in range(workers):
        env = {**os.environ, "TF_CONFIG": tf_config(ports, index)}
        command = [sys.executable, "-m", "kerasrun", "train", *train_args, "--set", "runtime.strategy=multi_worker"]
        if index > 0:
            command += ["--progress", "none"]
        out = None if index == 0 else logs[index]
        processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=logs[index], preexec_fn=terminate_with_parent))
    deadline = time.monotonic() + timeout
    try:
        with signals_raise_interrupted(force_exit=False):  # it waits for the workers, who have watchdogs of their own
            return wait_for(processes, logs, deadline, timeout)
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM or SIGHUP: pass it on, so each worker marks its run and stops
        interrupted = as_interrupted(exc)
        stop(processes, interrupted.signum)
        raise interrupted from None
    finally:
        for log in logs:
            log.close()


def wait_for(processes: list[subprocess.Popen], logs: list[Any], deadline: float, timeout: float) -> int:
    """Poll the workers until all succeed (0), one fails or the deadline passes (LaunchError)."""
    while True:
        codes = [p.poll() for p in processes]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index = failed[0]
            stop(processes)
            raise LaunchError(f"worker {index} exited with code {codes[index]}; stopped the others.\n{tail(logs[index])}")
        if all(code == 0 for code in codes):
            sys.stderr.write(tail(logs[0]))
            return 0
        if time.monotonic() > deadline:
            stop(processes)
            raise LaunchError(f"the workers did not finish within {timeout:.0f} s; stopped them")
        time.sleep(POLL_SECONDS)


def stop(processes: list[subprocess.Popen], signum: int = signal.SIGTERM) -> None:
    """Send `signum` to every worker still running and wait for them; kill what hasn't stopped after STOP_SECONDS."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(log, lines: int = 15) -> str:
    """The last lines a worker wrote to stderr."""
    log.flush()
    log.seek(0)
    text = log.read().strip().splitlines()
    return "\n".join(text[-lines:]) + ("\n" if text else "")
