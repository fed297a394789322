"""The search space (grid values, random distributions) and the planned trials: pure Python, no TensorFlow.

A trial is a list of `dotted.key=text` overrides, applied exactly as `kerasrun train --set` applies
them; its values are formatted so that the same text on a command line gives the same config.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from kerasrun.config.load import dotted_parts, load_config
from kerasrun.config.schema import Config
from kerasrun.config.yamlsource import load_yaml_value
from kerasrun.errors import ConfigError, Problem

DISTRIBUTION = re.compile(r"^\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*$", re.DOTALL)
DISTRIBUTIONS = "loguniform(low,high), uniform(low,high), int(low,high) or choice(a,b,…)"
SIGNIFICANT_DIGITS = 6  # sampled floats are rounded so that the printed command is readable and runs the same value
MAX_TRIALS = 100_000


@dataclass
class Dimension:
    """One searched key: a list of grid values, or a distribution to draw from."""

    key: str
    kind: str  # grid | loguniform | uniform | int | choice
    values: list[str] = field(default_factory=list)  # grid and choice: the values as typed (YAML text)
    low: float = 0.0
    high: float = 0.0

    def describe(self) -> dict[str, Any]:
        """What sweep.json records about this dimension."""
        if self.kind in ("grid", "choice"):
            return {"key": self.key, "kind": self.kind, "values": [parse_value(v) for v in self.values]}
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high}

    def corners(self) -> list[str]:
        """The values to validate up front: every listed value, or both ends of a range."""
        if self.kind in ("grid", "choice"):
            return list(self.values)
        if self.kind == "int":
            return [format_value(int(self.low)), format_value(int(self.high))]
        return [format_value(self.low), format_value(self.high)]


@dataclass
class TrialPlan:
    """One trial: its number and the overrides it trains with."""

    index: int
    overrides: list[str]  # `dotted.key=text`, as --set takes them

    @property
    def params(self) -> dict[str, Any]:
        """The overridden values, parsed as YAML."""
        return {item.partition("=")[0]: parse_value(item.partition("=")[2]) for item in self.overrides}


def parse_value(text: str) -> Any:
    """A value as `--set` reads it (YAML); raises ConfigError."""
    return load_yaml_value(text, "--grid")[0]


def format_value(value: Any) -> str:
    """YAML text that reads back as `value` (`1e-05` is text to YAML 1.1; `1.0e-05` is a float)."""
    if isinstance(value, float):
        value = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets, braces or quotes: `[1,2],{a: 1}` is two values."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def split_assignment(item: str, option: str) -> tuple[str, str]:
    """`key=rest` from a --grid or --space option; ConfigError when there is no key."""
    key, sep, rest = item.partition("=")
    key = key.strip()
    if not sep or not key.strip(".[] ") or not rest.strip():
        raise ConfigError(
            Problem(key=item, message=f"expected {option} dotted.key=" + ("v1,v2,…" if option == "--grid" else "DIST"), file=option)
        )
    return key, rest


def parse_grid(items: list[str]) -> list[Dimension]:
    """`--grid key=v1,v2,…` options as dimensions; every problem at once."""
    dims, problems = [], []
    for item in items:
        try:
            key, rest = split_assignment(item, "--grid")
            values = split_top_level(rest)
            for value in values:
                check_value(key, value, "--grid")
            check_distinct(key, values, "--grid")
            dims.append(Dimension(key, "grid", values))
        except ConfigError as exc:
            problems += exc.problems
    return check_dimensions(dims, problems)


def parse_space(items: list[str]) -> list[Dimension]:
    """`--space key=DIST` options as dimensions; every problem at once."""
    dims, problems = [], []
    for item in items:
        try:
            key, rest = split_assignment(item, "--space")
            dims.append(parse_distribution(key, rest))
        except ConfigError as exc:
            problems += exc.problems
    return check_dimensions(dims, problems)


def parse_distribution(key: str, text: str) -> Dimension:
    """`loguniform(1e-4,1e-1)`, `uniform(a,b)`, `int(a,b)` or `choice(a,b,c)`."""
    match = DISTRIBUTION.match(text)
    if match is None:
        raise ConfigError(Problem(key=key, message=f"`{text}` is not a distribution: expected {DISTRIBUTIONS}", file="--space"))
    kind, args = match.group(1), split_top_level(match.group(2))
    if kind == "choice":
        for value in args:
            check_value(key, value, "--space")
        if len(args) == 1:
            raise ConfigError(not_a_search(key, text, args[0]))
        check_distinct(key, args, "--space")
        return Dimension(key, kind, args)
    try:
        low, high = (float(a) for a in args)
    except ValueError:
        raise ConfigError(Problem(key=key, message=f"`{text}`: {kind} takes two numbers, low and high", file="--space")) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(Problem(key=key, message=f"`{text}`: expected finite numbers with low < high", file="--space"))
    if low == high:  # int(16,16) includes both ends, but they are one value
        raise ConfigError(not_a_search(key, text, format_value(int(low) if kind == "int" and low == int(low) else low)))
    if kind == "loguniform" and low <= 0:
        raise ConfigError(Problem(key=key, message=f"`{text}`: loguniform needs low > 0", file="--space"))
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(Problem(key=key, message=f"`{text}`: int takes two whole numbers", file="--space"))
    return Dimension(key, kind, low=low, high=high)


def not_a_search(key: str, text: str, value: str) -> Problem:
    """The refusal of a distribution that can only give one value: every trial would train the same."""
    return Problem(
        key=key,
        message=f"`{text}` has one value only: a single value is not a search (every trial would be the same)",
        file="--space",
        hint=f"use --set {key}={value} for a fixed value",
    )


def check_distinct(key: str, values: list[str], option: str) -> None:
    """No value listed twice (`3,3`, or `0.001,1.0e-3`): its trials would train the same twice."""
    seen: dict[str, str] = {}
    for value in values:
        parsed = parse_value(value)
        same = f"{type(parsed).__name__}:{parsed!r}"  # 3 and 3.0 are different values to a config; 0.001 and 1.0e-3 the same
        if same in seen:
            twice = f"`{value}` is listed twice" if value == seen[same] else f"`{seen[same]}` and `{value}` are the same value"
            raise ConfigError(
                Problem(key=key, message=f"{twice}: its trials would train the same twice", file=option, hint="list each value once")
            )
        seen[same] = value


def check_value(key: str, value: str, option: str) -> None:
    """A value must be non-empty YAML, as --set would read it."""
    if not value:
        raise ConfigError(Problem(key=key, message="an empty value (two commas in a row, or a trailing comma?)", file=option))
    try:
        parse_value(value)
    except ConfigError as exc:
        raise ConfigError(
            [Problem(key=key, message=f"`{value}` is not valid YAML: {p.message}", file=option) for p in exc.problems]
        ) from None


def check_dimensions(dims: list[Dimension], problems: list[Problem]) -> list[Dimension]:
    """No key searched twice; raise everything found."""
    seen: set[str] = set()
    for dim in dims:
        if dim.key in seen:
            problems.append(Problem(key=dim.key, message="this key is searched twice", file="--grid" if dim.kind == "grid" else "--space"))
        seen.add(dim.key)
    if problems:
        raise ConfigError(problems)
    return dims


def plan_grid(dims: list[Dimension]) -> list[TrialPlan]:
    """Every combination of the grid values, the last key varying fastest."""
    count = math.prod(len(d.values) for d in dims)
    if count > MAX_TRIALS:
        raise ConfigError(Problem(key="", message=f"the grid has {count} trials, more than {MAX_TRIALS}", file="--grid"))
    combos = itertools.product(*[[f"{d.key}={v}" for v in d.values] for d in dims])
    return [TrialPlan(i, list(combo)) for i, combo in enumerate(combos)]


def draw(dim: Dimension, rng: random.Random) -> str:
    """One value of a distribution, as YAML text."""
    if dim.kind == "choice":
        return rng.choice(dim.values)
    if dim.kind == "int":
        return format_value(rng.randint(int(dim.low), int(dim.high)))
    if dim.kind == "loguniform":
        return format_value(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))))
    return format_value(rng.uniform(dim.low, dim.high))


def plan_random(dims: list[Dimension], count: int, seed: int) -> list[TrialPlan]:
    """`count` trials drawn from the distributions with a seeded generator: the same seed, the same trials."""
    if not 1 <= count <= MAX_TRIALS:
        raise ConfigError(Problem(key="", message=f"--random takes 1 to {MAX_TRIALS} trials, got {count}", file="--random"))
    rng = random.Random(seed)
    return [TrialPlan(i, [f"{d.key}={draw(d, rng)}" for d in dims]) for i in range(count)]


def corner_plans(dims: list[Dimension]) -> list[TrialPlan]:
    """Configs that together try every listed value and both ends of every range (for checking before an adaptive search)."""
    base = [d.corners()[0] for d in dims]
    plans = [TrialPlan(0, [f"{d.key}={v}" for d, v in zip(dims, base, strict=True)])]
    for i, dim in enumerate(dims):
        for value in dim.corners()[1:]:
            values = [*base[:i], value, *base[i + 1 :]]
            plans.append(TrialPlan(len(plans), [f"{d.key}={v}" for d, v in zip(dims, values, strict=True)]))
    return plans


# Process-wide TensorFlow settings that a second trial in the same process can't change (devices are
# initialised once, op determinism can't be switched off): they must be the same in every trial.
PROCESS_WIDE = ("device", "strategy", "logical_cpus", "deterministic")


def leads_to(prefix: str, key: str) -> bool:
    """Whether dotted key `prefix` is `key` or a mapping or list on the way to it (`compile.optimizer.Adam` to its learning_rate)."""
    return key == prefix or key.startswith((f"{prefix}.", f"{prefix}["))


def check_trials(config_path: Path, dims: list[Dimension], plans: list[TrialPlan]) -> Config:
    """Load every trial's config (all problems at once, each once) and check what one process can sweep; the first trial's config."""
    base = load_config(config_path)
    first: Config | None = None
    problems: list[Problem] = []
    option = "--grid" if dims and dims[0].kind == "grid" else "--space"
    searched = {dim.key for dim in dims}
    runtimes: dict[str, Any] = {}
    for plan in plans:
        try:
            config = load_config(config_path, plan.overrides)
        except ConfigError as exc:
            for problem in exc.problems:
                if problem.file == "--set" and any(leads_to(problem.key, key) for key in searched):  # the search's value, not --set's
                    problem = replace(problem, file=option)
                problems += [problem] if problem not in problems else []
            continue
        first = first or config
        runtime = {k: v for k, v in config.runtime.model_dump(mode="json").items() if k in PROCESS_WIDE}
        runtimes.setdefault(repr(runtime), runtime)
        if config.runtime.strategy == "multi_worker":
            problem = Problem(
                key="runtime.strategy",
                message="a sweep can't run multi-worker trials",
                file=option,
                hint="use `kerasrun launch` per trial",
            )
            problems += [problem] if problem not in problems else []
    resolved = base.model_dump(mode="json")
    for dim in dims:
        if not key_exists(resolved, dim.key) and not any(leads_to(p.key, dim.key) for p in problems):
            problems.append(
                Problem(
                    key=dim.key,
                    message=f"this key is not in {config_path} (nor a default of the schema)",
                    file=option,
                    hint="a sweep only varies keys the config has: write the key in the config first, so that a typo can't cost every trial",
                )
            )
    if len(runtimes) > 1:
        problems.append(
            Problem(
                key="runtime",
                message=f"trials differ in process-wide settings ({', '.join('runtime.' + k for k in PROCESS_WIDE)}), which TensorFlow fixes once per process",
                file=option,
                hint="sweep them with --print-commands (one process per trial)",
            )
        )
    if problems or first is None:
        raise ConfigError(problems or "no trial to run")
    return first


def key_exists(data: Any, dotted: str) -> bool:
    """Whether `a.b[2].c` names something in the resolved config."""
    target = data
    try:
        parts = dotted_parts(dotted)
    except ValueError:  # `a..b`: names nothing
        return False
    for part in parts:
        found = part in target if isinstance(target, dict) else isinstance(part, int) and isinstance(target, list) and part < len(target)
        if not found:
            return False
        target = target[part]
    return True
