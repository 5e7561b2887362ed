"""DSPy's own keyword names for its GEPA and MIPROv2, taken by promptopt's teleprompters: each is
renamed to promptopt's option, accepted as a no-op where promptopt always does what it asks, or
refused with the promptopt way to get the same."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Renamed:
    """DSPy's keyword is promptopt's ``option``, its value mapped through ``values`` when given."""

    option: str
    values: Mapping[Any, Any] | None = None

    def apply(self, name: str, value: Any) -> tuple[str, Any]:
        if self.values is None:
            return self.option, value
        if value not in self.values:
            raise ValueError(f"{name}={value!r} is not supported; use one of {sorted(self.values)}.")
        return self.option, self.values[value]


@dataclass(frozen=True)
class Ignored:
    """Accepted and ignored: ``why`` says what promptopt does instead."""

    why: str


@dataclass(frozen=True)
class Refused:
    """Not taken: ``instead`` names the promptopt way to get the same."""

    instead: str


Rule = Renamed | Ignored | Refused

GEPA_KEYWORDS: dict[str, Rule] = {
    "reflection_minibatch_size": Renamed("minibatch_size"),
    "candidate_selection_strategy": Renamed("parent_selector", {"pareto": "pareto", "current_best": "best"}),
    "log_dir": Renamed("run_dir"),
    "track_stats": Ignored("the run's OptimizationResult is always attached as compiled.promptopt_result"),
    "track_best_outputs": Ignored("every candidate's per-example scores are in compiled.promptopt_result"),
    "warn_on_score_mismatch": Ignored("promptopt scores each (candidate, example) pair once"),
    "max_full_evals": Refused(
        "max_metric_calls=N, about N // (len(trainset) + len(valset)) full evaluations"
    ),
    "instruction_proposer": Refused("proposer=..., a callable (ProposalRequest, lm) -> Proposal"),
    "code_proposer": Refused("proposer=..., a callable (ProposalRequest, lm) -> Proposal"),
    "add_format_failure_as_feedback": Refused(
        "nothing: a reply that cannot be parsed is shown to the reflection with the parse error"
    ),
    "use_wandb": Refused("callbacks=[...], promptopt's Callback receives every event of the run"),
    "wandb_api_key": Refused("callbacks=[...]"),
    "wandb_init_kwargs": Refused("callbacks=[...]"),
    "use_mlflow": Refused(
        "mlflow.dspy.autolog(), which sees this teleprompter's compile, or callbacks=[...]"
    ),
    "gepa_kwargs": Refused("promptopt's GEPA options as keywords (see promptopt.optimizers.GEPA)"),
}

MIPRO_KEYWORDS: dict[str, Rule] = {
    "init_temperature": Renamed("proposer_temperature"),
    "log_dir": Renamed("run_dir"),
    "program_aware_proposer": Renamed("program_aware"),
    "data_aware_proposer": Renamed("data_aware"),
    "tip_aware_proposer": Renamed("tip_aware"),
    "fewshot_aware_proposer": Renamed("fewshot_aware"),
    "view_data_batch_size": Renamed("summary_batch_size"),
    "track_stats": Ignored("the run's OptimizationResult is always attached as compiled.promptopt_result"),
    "verbose": Renamed("progress"),
    "requires_permission_to_run": Ignored("promptopt prints its estimate of the LM calls and goes on"),
    "provide_traceback": Ignored("a failing example is recorded with its error in the result"),
    "teacher_settings": Refused("teacher=... to compile, a module with the student's predictors"),
    "max_errors": Refused("max_consecutive_failures=N, which stops after N unscored examples in a row"),
    "minibatch": Refused("minibatch_size=len(valset) to score every trial on the whole validation set"),
}


def translate(options: Mapping[str, Any], rules: Mapping[str, Rule], who: str) -> dict[str, Any]:
    """``options`` with DSPy's keywords renamed; an ignored one is dropped, a refused one is a
    ``TypeError`` naming the promptopt equivalent."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        rule = rules.get(name)
        if rule is None:
            out[name] = value
        elif isinstance(rule, Renamed):
            key, mapped = rule.apply(name, value)
            if key in options:
                raise TypeError(f"{who}: give {key}=... or DSPy's {name}=..., not both.")
            out[key] = mapped
        elif isinstance(rule, Refused):
            raise TypeError(f"{who} does not take DSPy's {name}=...; use {rule.instead}.")
    return out
