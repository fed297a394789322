"""SIGTERM and SIGHUP handled like Ctrl-C: the signal becomes an `Interrupted` exception in the main thread.

Slurm and Kubernetes send SIGTERM on preemption, a closed terminal sends SIGHUP. Python's default for
both is to die on the spot, leaving `run.json` at `running` and the epoch's checkpoint unwritten; raising
an exception instead lets the same clean-up path as Ctrl-C mark the run folder and exit 128 + signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.notes: list[str] = []  # what clean-up could not do (e.g. run.json unwritable), for the CLI to print

    @property
    def name(self) -> str:
        """SIGINT, SIGTERM or SIGHUP."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143, 129)."""
        return 128 + self.signum


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A plain KeyboardInterrupt (raised by Python's own SIGINT handler) as an Interrupted."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


@contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP raise `Interrupted` once; repeats are ignored during clean-up.

    A second Ctrl-C while the run folder is being marked would otherwise abort the marking itself;
    `kill -9` still stops a process that hangs. Outside the main thread (signals can't be caught
    there) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
