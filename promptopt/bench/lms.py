"""The LMs of a LangProBe run: built from the spec's model strings (once per role and model), or
injected objects (tests, custom clients), with their identities for the cells' records."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.bench.spec import Cell, ExperimentSpec
from promptopt.lm.identity import lm_identity


@dataclass
class LMs:
    """The LMs of a run: built from the spec's strings, or injected objects (tests, custom clients)."""

    task: Any = None  # one object for every task-LM string, or None to build LM(string)
    reflection: Any = None
    proposer: Any = None
    cache: Path | None = None  # the LM response cache of built LMs; None: the user's shared cache
    _built: dict[tuple[str, str], Any] = field(default_factory=dict)
    _identities: dict[Any, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _build(self, role: str, model: str, **kwargs: Any) -> Any:
        from promptopt.lm.client import LM

        with self._lock:
            if (role, model) not in self._built:
                cache = self.cache if self.cache is not None else True
                self._built[(role, model)] = LM(model, cache=cache, **kwargs)
            return self._built[(role, model)]

    def task_lm(self, model: str, spec: ExperimentSpec) -> Any:
        return self.task if self.task is not None else self._build("task", model, max_tokens=spec.max_tokens)

    def reflection_lm(self, spec: ExperimentSpec) -> Any:
        if self.reflection is not None:
            return self.reflection
        return self._build("reflection", spec.reflection_lm, temperature=0.7, max_tokens=700)

    def proposer_lm(self, spec: ExperimentSpec) -> Any:
        if self.proposer is not None:
            return self.proposer
        if spec.proposer_lm is None:
            return self.reflection_lm(spec)
        return self._build("proposer", spec.proposer_lm, temperature=0.7, max_tokens=700)

    def with_cache(self, path: Path) -> LMs:
        """The same LMs, but built ones answer from (and fill) the response cache at ``path``;
        injected objects are used as they are."""
        return LMs(task=self.task, reflection=self.reflection, proposer=self.proposer, cache=path)

    def for_cell(self, spec: ExperimentSpec, cache_path: Path) -> LMs:
        """The LMs a cell runs with: under ``lm_cache="per_cell"`` its own cache at ``cache_path``,
        unless a cache was set already (a replay of a stored cell's cache)."""
        if spec.lm_cache != "per_cell" or self.cache is not None:
            return self
        return self.with_cache(cache_path)

    def identities(self, cell: Cell, spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
        """Role -> identity of each LM the cell calls (the seed program and the few-shot baselines
        call the task LM only).

        Identities come from the spec's strings, or from the injected objects, without building an
        LM or starting a server."""
        reflection = self.reflection if self.reflection is not None else spec.reflection_lm
        out = {"task": self._identity(self.task if self.task is not None else cell.lm)}
        if spec.reads_helper_lms(cell):
            proposer = self.proposer if self.proposer is not None else (spec.proposer_lm or reflection)
            out["reflection"] = self._identity(reflection)
            out["proposer"] = self._identity(proposer)
        return out

    def _identity(self, lm: Any) -> dict[str, Any]:
        with self._lock:
            key = lm if isinstance(lm, str) else id(lm)
            if key not in self._identities:
                self._identities[key] = lm_identity(lm)
            return dict(self._identities[key])
