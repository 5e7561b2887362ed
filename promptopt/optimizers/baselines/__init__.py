"""Few-shot baselines: labeled demos, bootstrapped demos, and a random search over demo sets.

All three keep the optimizer contract (:mod:`promptopt.optimizers.base`) with the seed program as
candidate 0 and the chosen one in ``result.best_program``. Demos are set on every predictor;
instructions are left alone.

* :class:`LabeledFewShot` — ``k`` random training examples as demos (no LM calls).
* :class:`BootstrapFewShot` — demos from the teacher's successful training runs, filled up
  with labeled examples (see :mod:`promptopt.optimizers.bootstrap`).
* :class:`BootstrapFewShotWithRandomSearch` — zero-shot, labeled-only, in-order bootstrap and
  shuffled bootstraps, each scored on the validation set; the best one wins.

The first two score nothing unless given a validation set *and* ``score=True`` (labeled
few-shot then also needs a ``metric``); their result then carries validation scores too.

Examples the LM or the metric failed on are not scores (see :mod:`promptopt.evaluate`): a
candidate's ``val_scores`` leave them out, candidates are compared on the examples both were
scored on, and a resumed run scores them. After ``max_consecutive_failures`` failures in a row
(default 10) a run stops, saying why, with what it has; ``resume=True`` then continues it.
"""

from promptopt.optimizers.baselines.bootstrap_fewshot import BootstrapFewShot
from promptopt.optimizers.baselines.labeled import LabeledFewShot
from promptopt.optimizers.baselines.random_search import BootstrapFewShotWithRandomSearch

__all__ = ["BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "LabeledFewShot"]
