"""Every searched model and compile value, built before any trial trains: a layer or optimizer argument Keras refuses is exit 2.

`space.check_trials` loads each trial's config (the schema's keys); the arguments of layers,
optimizers, losses and metrics are Keras's to judge, so a searched `units=uniform(16,64)` (a float)
or an activation `bogus` in a grid failed only when its trial trained. Here the configs that together
try every listed value and both ends of every range (`space.corner_plans`, or a grid's own trials)
are built as `validate --build` builds them — model, compile, callbacks — once
per distinct model and compile section.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from kerasrun.config.load import load_config
from kerasrun.errors import ConfigError, Problem
from kerasrun.sweep import space
from kerasrun.sweep.search import SweepPlan

MAX_BUILDS = 32  # a larger grid is checked on its first 32 distinct models: the rest of its values were tried in them


def check_builds(plan: SweepPlan) -> None:
    """Build each distinct searched model/compile of the plan's trials; every refusal at once, at the search option (ConfigError)."""
    searched = {dim.key for dim in plan.dims}
    if not any(key.startswith(("model.", "compile.", "train.callbacks")) for key in searched):
        return  # every trial builds the same model: the metric check builds it
    from kerasrun.sweep.trial import reset_process_state
    from kerasrun.train.experiment import build_checked_model

    option = "--grid" if plan.method == "grid" else "--space"
    trials = plan.trials if plan.method == "grid" else space.corner_plans(plan.dims)  # a random draw may miss a listed value
    seen: set[str] = set()
    problems: list[Problem] = []
    try:
        for trial in trials:
            config = load_config(plan.config_path, plan.overrides(trial))  # space.check_trials loaded each already
            built = {"model": config.model.model_dump(mode="json"), "compile": config.compile.model_dump(mode="json")}
            sections = json.dumps({**built, "callbacks": config.train.model_dump(mode="json")["callbacks"]}, sort_keys=True)
            if sections in seen or len(seen) >= MAX_BUILDS:
                continue
            seen.add(sections)
            reset_process_state()
            try:
                build_checked_model(config)
            except ConfigError as exc:
                values = ", ".join(f"{key}={value}" for key, value in trial.params.items() if key in searched)
                for problem in exc.problems:
                    if any(space.leads_to(problem.key, key) or space.leads_to(key, problem.key) for key in searched):
                        # A searched value's problem: at the option, with the trial's values (not the --set note its config carries).
                        message = re.sub(r" \(with --set [^)]*\)", "", problem.message)
                        drawn = [d for d in plan.dims if d.kind in ("uniform", "loguniform") and space.leads_to(problem.key, d.key)]
                        hint = f"int({drawn[0].low:g},{drawn[0].high:g}) draws integers" if drawn and "integer" in message else problem.hint
                        problem = replace(
                            problem, file=option, line=None, column=None, message=f"{message} (trial values {values})", hint=hint
                        )
                    if not any((p.key, p.file) == (problem.key, problem.file) for p in problems):
                        problems.append(problem)  # one problem per key, with the first trial that has it
    finally:
        reset_process_state()  # the first trial starts from a fresh process's state, as every trial does
    if problems:
        raise ConfigError(problems)
