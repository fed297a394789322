"""Errors raised by the library; only cli/ turns them into messages and exit codes."""

from __future__ import annotations

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


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message (Keras and TensorFlow messages can be long)."""
    text = str(exc).strip()
    return next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
