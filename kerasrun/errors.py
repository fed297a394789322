"""Errors raised by the library; only cli/ turns them into messages and exit codes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Problem:
    """One thing wrong with a config: where it is, what is wrong, and a hint."""

    key: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def format_location(self) -> str:
        """Return `file:line:column` (as much of it as is known)."""
        parts = [p for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)


class KerasrunError(Exception):
    """Base class for errors kerasrun reports without a traceback."""

    exit_code = 1


class ConfigError(KerasrunError):
    """The config (or a command-line usage) is wrong; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, *, file: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(key="", message=problems, file=file)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__(self.describe())

    def describe(self) -> str:
        """Return all problems as plain text, one block each."""
        return "\n".join(format_problem(p) for p in self.problems)


class DataUnavailableError(ConfigError):
    """A dataset the config names cannot be found (offline machine, missing file)."""


class DivergedError(KerasrunError):
    """Training produced a NaN or infinite loss."""

    exit_code = 3


class RunFailedError(KerasrunError):
    """Training failed at run time; the run folder is marked failed."""

    exit_code = 1


@dataclass
class Collector:
    """Collects problems so that every one of them is reported at once."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        """Record one problem."""
        self.problems.append(problem)

    def raise_if_any(self) -> None:
        """Raise a ConfigError holding everything collected, if anything was."""
        if self.problems:
            raise ConfigError(list(self.problems))


def format_problem(problem: Problem) -> str:
    """Return one problem as `file:line:col: key: message (hint)`."""
    head = problem.format_location()
    text = f"{head}: " if head else ""
    if problem.key:
        text += f"{problem.key}: "
    text += problem.message
    if problem.hint:
        text += f"\n    {problem.hint}"
    return text


def joined(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`: names in a message."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message (Keras and TensorFlow messages can be long); a TensorFlow graph error's own line."""
    graph = graph_error(exc)
    if graph is not None:
        return graph.line
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]  # Keras bolds the cause
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return lines[1].strip()  # Keras's wrapper around a layer's error: the cause is the next line ("list index out of range")
    return lines[0].strip() if lines else type(exc).__name__


@dataclass
class GraphError:
    """A TensorFlow graph execution error taken apart: the op, its own message, and the part of training that ran it."""

    op: str | None
    message: str
    stage: str | None  # "metrics", "loss", "optimizer", "model" or None: where in a training step the op ran

    @property
    def line(self) -> str:
        """One line: the op and what it said."""
        return f"TensorFlow op `{self.op}` failed: {self.message}" if self.op else f"TensorFlow failed: {self.message}"


LOOP_SCOPES = re.compile(r"^(?:(?:while|cond|body)(?:_\d+)?/)+")  # the steps_per_execution loop's scopes, not the model's
GRAPH_NODE = re.compile(r"Detected at node '?([^\s']+?)'? defined at|\{\{node ([^}]+)\}\}")
# Lines of a graph error that are not what failed: a stack TensorFlow didn't keep, the count of root errors.
GRAPH_FILLER = re.compile(r"<stack traces unavailable>|\d+ root error\(s\) found\.")
GRAPH_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)')
# Where an op ran, from the functions of Keras's training step in its stack, outermost first.
GRAPH_STAGES = (("compute_metrics", "metrics"), ("compute_loss", "loss"), ("apply_gradients", "optimizer"), ("apply", "optimizer"))


def graph_error(exc: BaseException) -> GraphError | None:
    """A TensorFlow "Graph execution error ... Detected at node ... File ..." message taken apart; None for any other error.

    TensorFlow prints the Python stack that defined the failing op inside its message: kerasrun shows
    one line of it (the stack stays in the exception for --debug).
    """
    text = str(getattr(exc, "message", None) or exc)
    if "Graph execution error" not in text and "Detected at node" not in text:
        return None
    node = GRAPH_NODE.search(text)
    op = next((group for group in node.groups() if group), None) if node else None
    op = LOOP_SCOPES.sub("", op) if op else op  # `while/cond/UnsortedSegmentSum` in the custom loop: the op fit names
    frames = [match.groups() for match in map(GRAPH_FRAME.match, text.splitlines()) if match]
    said = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not GRAPH_FRAME.match(line)
        and not line.startswith(("Graph execution error", "Detected at node"))
        and not line.strip().startswith("[[")
        and not GRAPH_FILLER.match(line.strip())
    ]
    # With several root errors each says `(0) ABORTED:  what`; the number says nothing on one line.
    first = re.sub(r"^\(\d+\)\s+", "", said[0]) if said else None
    message = re.sub(r"\s+", " ", re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", first)) if first else type(exc).__name__
    stage = next((name for _, function in frames for key, name in GRAPH_STAGES if function == key), None)
    if stage is None and any("/keras/src/layers/" in path for path, _ in frames):
        stage = "model"
    return GraphError(op, message, stage)
