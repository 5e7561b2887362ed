"""GEPA's decisions, each a one-method protocol with its default in a module of its own:

* :mod:`.parent_selection` — which candidate an iteration improves (``"pareto"``, ``"best"``);
* :mod:`.minibatch` — which training examples it runs on (``"epoch_shuffled"``);
* :mod:`.component_selection` — which components it changes (``"round_robin"``, ``"all"``);
* :mod:`.acceptance` — whether the child is kept (``"improvement"``, with tie extensions).

:class:`~promptopt.optimizers.gepa.GEPA` takes a name or an object for each and resolves a name
once, when it is constructed.
"""

from promptopt.optimizers.gepa.strategies.acceptance import (
    AcceptanceRule,
    ImprovementOnMinibatch,
    Judgement,
    acceptance_rule,
)
from promptopt.optimizers.gepa.strategies.component_selection import (
    AllComponents,
    ComponentChoice,
    ComponentSelector,
    RoundRobinComponents,
    component_selector,
)
from promptopt.optimizers.gepa.strategies.minibatch import (
    EpochShuffledSampler,
    MinibatchSampler,
    minibatch_sampler,
)
from promptopt.optimizers.gepa.strategies.parent_selection import (
    BestParentSelector,
    ParentSelector,
    ParetoParentSelector,
    parent_selector,
)

__all__ = [
    "AcceptanceRule",
    "AllComponents",
    "BestParentSelector",
    "ComponentChoice",
    "ComponentSelector",
    "EpochShuffledSampler",
    "ImprovementOnMinibatch",
    "Judgement",
    "MinibatchSampler",
    "ParentSelector",
    "ParetoParentSelector",
    "RoundRobinComponents",
    "acceptance_rule",
    "component_selector",
    "minibatch_sampler",
    "parent_selector",
]
