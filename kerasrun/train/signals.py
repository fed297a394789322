"""SIGTERM and SIGHUP handled like Ctrl-C: the signal becomes an `Interrupted` exception in the main thread.

Slurm and Kubernetes send SIGTERM on preemption, a closed terminal sends SIGHUP. Python's default for
both is to die on the spot, leaving `run.json` at `running` and the epoch's checkpoint unwritten; raising
an exception instead lets the same clean-up path as Ctrl-C mark the run folder and exit 128 + signal.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a run: HANDLED, and inside a Slurm job SIGUSR1 too (`sbatch --signal=USR1@90`: time is nearly up).

    Outside Slurm SIGUSR1 stays the user's (a callback may use it).
    """
    return (*HANDLED, signal.SIGUSR1) if os.environ.get("SLURM_JOB_ID") else HANDLED


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGINT, SIGTERM or SIGHUP; SIGUSR1 in a Slurm job)."""

    status = "interrupted"  # what run.json records; a sweep's pruned trial stops the same way with its own status

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.notes: list[str] = []  # what clean-up could not do (e.g. run.json unwritable), for the CLI to print
        self.not_resumable: str | None = None  # why `kerasrun resume` couldn't continue the run, when it can't

    @property
    def name(self) -> str:
        """SIGINT, SIGTERM or SIGHUP."""
        return signal.Signals(self.signum).name

    def outcome(self) -> dict[str, object]:
        """The fields run.json records about the stop."""
        return {"signal": self.name}

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143, 129)."""
        return 128 + self.signum


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A plain KeyboardInterrupt (raised by Python's own SIGINT handler) as an Interrupted."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


# If the main thread has not finished within this many seconds of a signal (it can be blocked inside
# TensorFlow, e.g. in a collective all-reduce whose peer has died, where Python's handler can't run),
# a watchdog thread marks the run and ends the process: preemption grace periods are ~30 s.
FORCE_EXIT_SECONDS = float(os.environ.get("KERASRUN_STOP_GRACE_SECONDS", "15"))  # shorter where the scheduler's grace is
HOOK_SECONDS = 5.0  # how long the forced-exit hooks (marking run.json) may take
forced_exit_hooks: list[Callable[[int], object]] = []
active_handlers: list[Callable[[int, FrameType | None], None]] = []  # the handlers of the enclosing blocks, innermost last
deferrals: list[Callable[[int], None]] = []  # while training steps run: who takes a stop signal instead of an exception
deferred: list[int] = []  # the stop signal a deferral took, until its block ends


def stop_requested() -> bool:
    """True once a stop signal waits for training to reach a step it can checkpoint.

    For a callback that works for long inside training (a pause, an upload): return early when this
    is true, so the run checkpoints and stops within the platform's grace period.
    """
    return bool(deferred)


@contextmanager
def on_forced_exit(hook: Callable[[int], object]) -> Iterator[None]:
    """Within the block, `hook(signum)` runs from the watchdog before it ends a process that did not stop."""
    forced_exit_hooks.append(hook)
    try:
        yield
    finally:
        forced_exit_hooks.remove(hook)


def watch(read_fd: int, stopped: threading.Event) -> None:
    """Wait for SIGINT/SIGTERM/SIGHUP on CPython's wakeup fd; if the process still lives FORCE_EXIT_SECONDS later, end it.

    The fd carries a byte for every signal with a Python handler (a callback's own SIGUSR1 handler
    too): only the three that stop a run count.
    """
    while True:
        try:
            data = os.read(read_fd, 1)
        except OSError:
            data = b""
        if not data:  # the block ended without a signal
            os.close(read_fd)
            return
        if data[0] in stop_signals():
            break
    if stopped.wait(FORCE_EXIT_SECONDS):
        return
    signum = data[0]
    hooks = threading.Thread(target=run_hooks, args=(signum,), daemon=True)
    hooks.start()
    hooks.join(HOOK_SECONDS)  # a hook blocked on a hung file system must not keep the process alive
    os._exit(128 + signum)


def run_hooks(signum: int) -> None:
    """Call every forced-exit hook, innermost block's first (the run folder is marked before what encloses it acts), whatever each raises."""
    for hook in reversed(list(forced_exit_hooks)):
        with suppress(Exception):
            hook(signum)


@contextmanager
def signals_raise_interrupted(force_exit: bool = True) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise `Interrupted` once; repeats are ignored during clean-up.

    A second Ctrl-C while the run folder is being marked would otherwise abort the marking itself.
    CPython runs signal handlers in the main thread between bytecodes; when that thread is stuck in a
    TensorFlow op, a watchdog thread (woken through signal.set_wakeup_fd) marks the run and exits after
    FORCE_EXIT_SECONDS (unless `force_exit` is false: a launcher waiting for its workers is never stuck).
    Outside the main thread (signals can't be caught there) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not force_exit:
        with raising_handlers():
            yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    stopped = threading.Event()
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=watch, args=(read_fd, stopped), name="kerasrun-signal-watchdog", daemon=True).start()
    try:
        with raising_handlers() as raised:
            yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        if not raised:  # no signal: release the watchdog; after one, it stays armed until the process exits
            stopped.set()
            os.close(write_fd)  # the watchdog's read returns empty and it ends


@contextmanager
def raising_handlers() -> Iterator[list[int]]:
    """Install the handlers that raise Interrupted once; yields the list of signals received (at most one)."""
    raised: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if raised:
            return
        raised.append(signum)
        if deferrals:  # training stops at the next step it can checkpoint (kerasrun.train.preemption) and raises then
            deferred.append(signum)
            deferrals[-1](signum)
            return
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in stop_signals()}
    active_handlers.append(handler)
    try:
        yield raised
    finally:
        active_handlers.remove(handler)
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def deferred_to(notice: Callable[[int], None]) -> Iterator[None]:
    """Within the block, a stop signal calls `notice(signum)` instead of raising Interrupted: the caller raises it later.

    The watchdog stays armed: a main thread that never gets to raise is still ended FORCE_EXIT_SECONDS later.
    """
    deferrals.append(notice)
    try:
        yield
    finally:
        deferrals.remove(notice)
        deferred.clear()


def reclaim_signals() -> None:
    """Install the active block's handlers again, after a library replaced them at the C level."""
    if active_handlers and threading.current_thread() is threading.main_thread():
        for signum in stop_signals():
            signal.signal(signum, active_handlers[-1])
