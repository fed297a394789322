"""`kerasrun launch`: start N local worker processes with TF_CONFIG for multi-worker training on one machine."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kerasrun.errors import ConfigError, DivergedError, KerasrunError
from kerasrun.rundir.io import read_json, write_text_atomic
from kerasrun.rundir.layout import RUN_FILE, WORKER_LOGS
from kerasrun.rundir.liveness import resume_blocker, resume_command
from kerasrun.rundir.record import now_iso
from kerasrun.rundir.scratch import LAUNCH_PREFIX, make_scratch, remove_scratch
from kerasrun.train.signals import as_interrupted, signals_raise_interrupted

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SECONDS = 30.0  # how long stopped workers get to mark their runs interrupted before they are killed
LAUNCH_ENV = "KERASRUN_LAUNCH_DIR"  # each worker's environment: the launch folder (its logs; where the chief names its run folder)
LAUNCHER = "kerasrun launch"  # run.json's cluster.launcher: `kerasrun resume` starts as many local workers again
RUN_DIR_FILE = "run_dir"  # in the launch folder: the chief's run folder, once it exists
# A worker's exit codes the launch exits with too: a config error a worker found (exit 2; e.g. a
# train.step that doesn't import, which only building the loop finds) or a diverged run (3).
PASSED_ON = (ConfigError.exit_code, DivergedError.exit_code)


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


def launch_workers(command: list[str], workers: int, timeout: float, run_dir: Path | None = None) -> int:
    """Run `kerasrun COMMAND` (`train ...` or `resume RUN_DIR ...`) in `workers` processes; the chief (worker 0) prints and writes the run folder.

    Returns the chief's exit code. If any worker fails, the others are stopped at once (a collective
    all-reduce would otherwise wait forever for the dead one) and LaunchError says which and why.
    Each worker's log goes to `workers/N.log` in the chief's run folder: `run_dir` when it is known
    (a resume), else the folder the chief announces (see announce_run_dir).
    """
    ports = free_ports(workers)
    folder = make_scratch(LAUNCH_PREFIX)  # a killed launcher's folder is removed by the next launch
    logs = WorkerLogs(folder, workers, run_dir, command)
    processes = []
    try:
        for index in range(workers):
            env = {**os.environ, "TF_CONFIG": tf_config(ports, index), LAUNCH_ENV: str(folder)}
            line = [sys.executable, "-m", "kerasrun", *command]
            if index > 0:
                line += ["--progress", "none"]
            out = None if index == 0 else logs.files[index]
            processes.append(subprocess.Popen(line, env=env, stdout=out, stderr=logs.files[index], preexec_fn=terminate_with_parent))
        deadline = time.monotonic() + timeout
        with signals_raise_interrupted(force_exit=False):  # it waits for the workers, who have watchdogs of their own
            return wait_for(processes, logs, deadline, timeout)
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM or SIGHUP: pass it on, so each worker marks its run and stops
        interrupted = as_interrupted(exc)
        stop(processes, interrupted.signum)
        if hint := logs.resume_hint():
            interrupted.notes.append(hint)
        raise interrupted from None
    finally:
        logs.close()
        remove_scratch(folder)


def announce_run_dir(run_dir: Path) -> None:
    """In a chief that `kerasrun launch` started: tell the launcher the run folder, where it then puts the workers' logs."""
    folder = os.environ.get(LAUNCH_ENV)
    if folder and Path(folder).is_dir():
        write_text_atomic(Path(folder) / RUN_DIR_FILE, str(Path(run_dir).resolve()))


class WorkerLogs:
    """Each worker's stderr (a non-chief's stdout too) in a file of the launch folder, copied as it grows to the run folder's workers/N.log."""

    def __init__(self, folder: Path, count: int, run_dir: Path | None, command: list[str]) -> None:
        self.folder = folder
        # Append mode: a worker writes at the end of the file, whatever the launcher reads meanwhile.
        self.files = [(folder / f"{index}.log").open("a") for index in range(count)]
        self.copied = [0] * count  # bytes of each file already in the run folder
        self.started: set[int] = set()  # the workers whose log in the run folder has this launch's header
        self.run_dir = run_dir
        self.header = f"kerasrun {' '.join(command)}"

    def source(self, index: int) -> Path:
        """The launch folder's log file of worker `index`."""
        return self.folder / f"{index}.log"

    def run_folder(self) -> Path | None:
        """The chief's run folder: given, or once the chief has announced it."""
        if self.run_dir is None:
            with contextlib.suppress(OSError):
                self.run_dir = Path((self.folder / RUN_DIR_FILE).read_text())
        return self.run_dir

    def copy(self) -> None:
        """Append what each worker wrote since the last call to its log in the run folder (a log that can't be written waits)."""
        run_dir = self.run_folder()
        if run_dir is None or not run_dir.is_dir():
            return
        with contextlib.suppress(OSError):  # the logs are a record: a full disk must not stop the training
            (run_dir / WORKER_LOGS).mkdir(exist_ok=True)
            for index, done in enumerate(self.copied):
                with self.source(index).open("rb") as f:
                    f.seek(done)
                    data = f.read()
                if not data and index in self.started:
                    continue
                with (run_dir / WORKER_LOGS / f"{index}.log").open("ab") as out:
                    if index not in self.started:  # a resumed run's log goes on after the earlier launches'
                        out.write(f"--- {now_iso()} {self.header} (worker {index} of {len(self.copied)})\n".encode())
                        self.started.add(index)
                    out.write(data)
                self.copied[index] = done + len(data)

    def tail(self, index: int, lines: int = 15) -> str:
        """The last lines worker `index` wrote to stderr."""
        self.files[index].flush()
        text = self.source(index).read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:]) + ("\n" if text else "")

    def resume_hint(self) -> str | None:
        """How to continue the run the workers were training, when its folder has a checkpoint."""
        run_dir = self.run_folder()
        if run_dir is None or not (run_dir / RUN_FILE).is_file():
            return None
        try:
            info = read_json(run_dir / RUN_FILE)
        except (OSError, KerasrunError):
            return None
        if not isinstance(info, dict) or resume_blocker(run_dir, info) is not None:
            return None
        return f"{resume_command(run_dir, info)} continues the run from its last checkpoint (worker logs: {run_dir / WORKER_LOGS})"

    def close(self) -> None:
        """Copy what is left and close the files."""
        for log in self.files:
            log.flush()
        self.copy()
        for log in self.files:
            log.close()


def wait_for(processes: list[subprocess.Popen], logs: WorkerLogs, deadline: float, timeout: float) -> int:
    """Poll the workers until all succeed (0), one fails or the deadline passes (LaunchError)."""
    while True:
        logs.copy()
        codes = [p.poll() for p in processes]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index = failed[0]
            stop(processes)
            hint = logs.resume_hint()
            error = LaunchError(
                f"worker {index} {how_it_ended(codes[index])}; stopped the others.\n{logs.tail(index)}" + (f"{hint}\n" if hint else "")
            )
            if (code := codes[index]) in PASSED_ON:  # what the worker found (a bad config, a diverged run) is what the launch found
                error.exit_code = int(code)
            raise error
        if all(code == 0 for code in codes):
            sys.stderr.write(logs.tail(0))
            return 0
        if time.monotonic() > deadline:
            stop(processes)
            hint = logs.resume_hint()
            raise LaunchError(f"the workers did not finish within {timeout:.0f} s; stopped them" + (f"; {hint}" if hint else ""))
        time.sleep(POLL_SECONDS)


def how_it_ended(code: int | None) -> str:
    """`exited with code 1`, `was stopped by SIGTERM (exit 143)` or `was killed by SIGKILL`: a worker's end, as the launch reports it."""
    if code is not None and code < 0:  # Popen's way of saying a signal ended the process
        with contextlib.suppress(ValueError):  # a real-time signal has no name
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    if code is not None and code - 128 in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # kerasrun's own exit after one
        return f"was stopped by {signal.Signals(code - 128).name} (exit {code})"
    return f"exited with code {code}"


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
