"""How dspy.MIPROv2 is configured so that its metric calls approximate a budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIPRO_MAX_CANDIDATES = 18  # DSPy's auto="heavy" uses 18
ASSUMED_BOOTSTRAP_SUCCESS = 0.5


@dataclass(frozen=True)
class MiproPlan:
    num_candidates: int
    num_trials: int
    minibatch: bool
    minibatch_size: int
    minibatch_full_eval_steps: int
    estimated_metric_calls: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _mipro_full_evals(num_trials: int, steps: int) -> int:
    """Full evaluations MIPROv2 makes among ``num_trials`` minibatch trials (it numbers optuna trials,
    and each full evaluation is itself added to the study as a trial)."""
    adjusted = num_trials + num_trials // steps + 1 + (1 if num_trials % steps else 0)
    number, fulls = 1, 0  # optuna trial 0 is the default program
    for _ in range(num_trials):
        trial_num = number + 1
        number += 1
        if trial_num % (steps + 1) == 0 or trial_num == adjusted - 1:
            fulls += 1
            number += 1
    return fulls


def mipro_settings(
    max_metric_calls: int,
    n_train: int,
    n_val: int,
    n_predictors: int,
    *,
    max_bootstrapped_demos: int = 4,
    max_labeled_demos: int = 4,
    minibatch_size: int = 35,
    minibatch_full_eval_steps: int = 5,
    max_candidates: int = MIPRO_MAX_CANDIDATES,
) -> MiproPlan:
    """Plan dspy.MIPROv2 (``auto=None``) so its metric calls approximate ``max_metric_calls``.

    MIPROv2 spends metric calls on (1) bootstrapping: ``num_candidates - 2`` demo sets are
    bootstrapped, each running the teacher on training examples until it has enough successful
    traces, estimated here at ``min(n_train, max_bootstrapped_demos / 0.5)`` calls per set (half
    the runs succeed); (2) one full validation evaluation of the seed; (3) ``num_trials`` trials,
    each a minibatch of ``min(35, n_val)`` examples, or the whole validation set when it has no more
    than 35 examples (then ``minibatch=False``), plus with minibatching a full evaluation of the
    best-averaging configuration every ``minibatch_full_eval_steps`` trials and at the end.

    The plan takes the most candidates (up to 18) whose trials still reach DSPy's own rule of thumb,
    ``max(2 * V * log2(N), 1.5 * N)`` trials for ``V`` variables (instruction and demos per
    predictor) and ``N`` candidates, and gives the rest of the budget to more trials.
    """
    if max_metric_calls <= 0 or n_val <= 0 or n_train <= 0 or n_predictors <= 0:
        raise ValueError("mipro_settings needs a positive budget, data sizes and predictor count.")
    minibatch = n_val > minibatch_size
    batch = minibatch_size if minibatch else n_val
    steps = minibatch_full_eval_steps
    zeroshot = max_bootstrapped_demos == 0 and max_labeled_demos == 0
    boot_demos = max_bootstrapped_demos or 3  # DSPy bootstraps 3 demos for its proposer when zero-shot
    per_set = min(n_train, math.ceil(boot_demos / ASSUMED_BOOTSTRAP_SUCCESS))
    num_vars = n_predictors * (1 if zeroshot else 2)

    def cost(n: int, trials: int) -> int:
        spent = max(0, n - 2) * per_set + n_val
        if minibatch:
            return spent + trials * batch + _mipro_full_evals(trials, steps) * n_val
        return spent + trials * n_val

    def fit(n: int) -> int:
        trials = 0
        combos = n ** (n_predictors * (1 if zeroshot else 2))
        while cost(n, trials + 1) <= max_metric_calls:
            if minibatch and _mipro_full_evals(trials + 1, steps) >= combos:
                break  # MIPROv2 fails once every configuration has been fully evaluated
            trials += 1
        return trials

    for n in range(max_candidates, 1, -1):
        trials = fit(n)
        wanted = int(max(2 * num_vars * math.log2(n), 1.5 * n))
        if trials >= wanted:
            return MiproPlan(n, trials, minibatch, batch, steps, cost(n, trials))
    trials = max(1, fit(2))
    return MiproPlan(2, trials, minibatch, batch, steps, cost(2, trials))
