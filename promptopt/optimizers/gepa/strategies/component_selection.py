"""Which components of the parent a GEPA iteration changes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from promptopt.optimizers.gepa.state import GEPAState
from promptopt.optimizers.gepa.strategies._resolve import resolve
from promptopt.optimizers.result import Candidate


@dataclass(frozen=True)
class ComponentChoice:
    """The components to try, in order of preference, and whether to change every one of them
    that yields a proposal (``all_of_them``) or only the first."""

    components: list[str]
    all_of_them: bool


class ComponentSelector(Protocol):
    def select(
        self, parent: Candidate, components: Sequence[str], texts: Collection[str], state: GEPAState
    ) -> ComponentChoice:
        """The choice for ``parent`` among the run's ``components`` (``texts``: the free-text ones
        beside instructions); what must be remembered goes in ``state.next_component``."""
        ...


class RoundRobinComponents:
    """One component per iteration, each parent cycling through its components in turn; when the
    preferred one yields nothing (no new demos), the next is tried."""

    def select(
        self, parent: Candidate, components: Sequence[str], texts: Collection[str], state: GEPAState
    ) -> ComponentChoice:
        key = str(parent.id)
        idx = state.next_component.get(key, 0)
        order = [components[(idx + k) % len(components)] for k in range(len(components))]
        state.next_component[key] = (idx + 1) % len(components)
        return ComponentChoice(order, all_of_them=False)


class AllComponents:
    """Every instruction and free text at once (demos are left to round-robin runs)."""

    def select(
        self, parent: Candidate, components: Sequence[str], texts: Collection[str], state: GEPAState
    ) -> ComponentChoice:
        return ComponentChoice([c for c in components if c.endswith(".instruction") or c in texts], True)


COMPONENT_SELECTORS = {"round_robin": RoundRobinComponents, "all": AllComponents}


def component_selector(option: str | ComponentSelector) -> ComponentSelector:
    return resolve(option, COMPONENT_SELECTORS, "component_selector", "select")
