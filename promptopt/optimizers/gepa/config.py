"""What a GEPA run searches, as one frozen record (how it runs is
:class:`~promptopt.optimizers.base.RunOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from promptopt.optimizers.gepa.limits import ReflectionLimits, context_window, reflection_limits
from promptopt.optimizers.gepa.reflection import PredictorFeedback, Proposer
from promptopt.optimizers.gepa.strategies import (
    AcceptanceRule,
    ComponentSelector,
    MinibatchSampler,
    ParentSelector,
    acceptance_rule,
    component_selector,
    minibatch_sampler,
    parent_selector,
)
from promptopt.optimizers.gepa.strategies._resolve import name_of
from promptopt.optimizers.gepa.validation import VALIDATION_MODES

AUTO_CANDIDATES = {"light": 6, "medium": 12, "heavy": 18}


def auto_budget(level: str, n_val: int, minibatch_size: int) -> int:
    """Metric calls for ``auto``: the seed and ~N accepted candidates on the validation set,
    plus ~3 proposals per accepted one, each costing two minibatch runs."""
    if level not in AUTO_CANDIDATES:
        raise ValueError(f"auto must be one of {sorted(AUTO_CANDIDATES)}, not {level!r}.")
    n = AUTO_CANDIDATES[level]
    return n_val * (n + 1) + 3 * n * 2 * minibatch_size


@dataclass(frozen=True)
class GEPAConfig:
    """GEPA's search options; see :class:`~promptopt.optimizers.gepa.GEPA` for each one.

    The strategy options hold a name or an object; :meth:`strategies` resolves them.
    """

    auto: str | None = None
    max_metric_calls: int | None = None
    proposer: str | Proposer = "auto"
    parent_selector: str | ParentSelector = "pareto"
    minibatch_sampler: str | MinibatchSampler = "epoch_shuffled"
    component_selector: str | ComponentSelector = "round_robin"
    acceptance: str | AcceptanceRule = "improvement"
    evolve_demos: bool = True
    max_demos: int = 8
    max_demo_chars: int | None = 12000
    demo_threshold: float = 1.0
    labeled_demos: bool = True
    use_merge: bool = True
    max_merge_invocations: int = 5
    merge_subsample: int = 5
    minibatch_size: int = 3
    parallel_proposals: int = 1
    reflection_samples: int = 1
    tie_extensions: int = 1
    validation: str = "full"
    seed_demos: int = 16
    seed_traces: int = 4
    screened_reflections: bool = True
    staged_seed: bool = False
    perfect_score: float = 1.0
    skip_perfect_score: bool = True
    # None: sized to the reflection LM's context window (see limits.py) when the run starts;
    # max_instruction_chars=0: no cap.
    max_reflection_examples: int | None = None
    max_reflection_chars: int | None = None
    max_instruction_chars: int | None = None
    reflection_max_tokens: int | None = None
    seed: int = 0
    max_stalled_iterations: int = 12
    predictor_feedback: PredictorFeedback | None = None

    def __post_init__(self) -> None:
        if (self.auto is None) == (self.max_metric_calls is None):
            raise ValueError("Give exactly one of auto='light'|'medium'|'heavy' or max_metric_calls=N.")
        if self.auto is not None and self.auto not in AUTO_CANDIDATES:
            raise ValueError(f"auto must be one of {sorted(AUTO_CANDIDATES)}, not {self.auto!r}.")
        if self.minibatch_size < 1:
            raise ValueError(f"minibatch_size must be at least 1, not {self.minibatch_size}.")
        if self.parallel_proposals < 1:
            raise ValueError(f"parallel_proposals must be at least 1, not {self.parallel_proposals}.")
        if self.reflection_samples < 1:
            raise ValueError(f"reflection_samples must be at least 1, not {self.reflection_samples}.")
        if self.seed_demos < 0:
            raise ValueError(f"seed_demos must be 0 (none) or more, not {self.seed_demos}.")
        if self.seed_traces < 0:
            raise ValueError(f"seed_traces must be 0 (labeled demos only) or more, not {self.seed_traces}.")
        if self.validation not in VALIDATION_MODES:
            raise ValueError(
                f"validation must be one of {', '.join(VALIDATION_MODES)}, not {self.validation!r}."
            )
        self.strategies()  # a bad name or object is an error now, not at compile time

    def fitted_to(self, reflection_lm: Any) -> GEPAConfig:
        """This config with every reflection limit left as None sized to ``reflection_lm``.

        The reply length is the reflection LM's own setting when it has one (a promptopt LM's
        ``max_tokens``): the window bounds what is shown to the LM, the user decides how long it may
        answer. Only an LM without a setting of its own gets the length fitted to its window."""
        limits = reflection_limits(context_window(reflection_lm))
        own = (getattr(reflection_lm, "defaults", None) or {}).get("max_tokens")
        fitted = {
            f.name: getattr(limits, f.name) for f in fields(ReflectionLimits) if getattr(self, f.name) is None
        }
        if own is not None:
            fitted.pop("reflection_max_tokens", None)
        return replace(self, **fitted)

    def strategies(self) -> tuple[ParentSelector, MinibatchSampler, ComponentSelector, AcceptanceRule]:
        return (
            parent_selector(self.parent_selector),
            minibatch_sampler(self.minibatch_sampler),
            component_selector(self.component_selector),
            acceptance_rule(self.acceptance, self.tie_extensions),
        )

    def budget(self, n_val: int) -> int:
        """The run's metric-call budget for a validation set of ``n_val`` examples."""
        return self.max_metric_calls or auto_budget(self.auto or "light", n_val, self.minibatch_size)

    def to_dict(self) -> dict[str, Any]:
        """Every option, objects recorded by their class name."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value if isinstance(value, (str, int, float, bool, type(None))) else name_of(value)
        return out
