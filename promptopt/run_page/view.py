"""What a run page shows, read from a run directory."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.optimizers.result import OptimizationResult, ResultFormatError


class RunViewError(ValueError):
    """A run directory that has no readable result; the message names the file and what to do."""


@dataclass(frozen=True)
class ProposalView:
    """One proposal a reflective optimizer made, accepted as a candidate to score or not."""

    iteration: int
    component: str
    accepted: bool
    reason: str
    text: str | None


@dataclass(frozen=True)
class RunView:
    run_dir: Path
    result: OptimizationResult
    proposals: Sequence[ProposalView]
    unreadable_events: int  # lines of events.jsonl that are not JSON (a run killed mid-write)

    @property
    def val_example_ids(self) -> list[str]:
        """Every validation example any candidate was scored on, in first-seen order."""
        seen: dict[str, None] = {}
        for cand in self.result.candidates:
            for example_id in cand.val_scores:
                seen.setdefault(str(example_id), None)
        return list(seen)


def component_text(value: Any) -> str:
    """A component as the page shows it: a text as is, demos and other values as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False, default=str)


def _proposals(events: Sequence[Mapping[str, Any]]) -> list[ProposalView]:
    return [
        ProposalView(
            iteration=int(e.get("iteration", 0)),
            component=str(e.get("component", "")),
            accepted=bool(e.get("accepted")),
            reason=str(e.get("reason") or ""),
            text=e.get("text") if isinstance(e.get("text"), str) else None,
        )
        for e in events
        if e.get("event") == "proposal"
    ]


def load_run_view(run_dir: str | Path) -> RunView:
    """The run in ``run_dir``: its ``result.json`` (required) and ``events.jsonl`` (if any)."""
    folder = Path(run_dir)
    path = folder / "result.json"
    if not path.exists():
        raise RunViewError(
            f"{path} does not exist: give the run directory of a finished run (the folder passed as "
            "run_dir=, where result.json is written when the run ends)."
        )
    try:
        result = OptimizationResult.load(path)
    except (ResultFormatError, ValueError, KeyError, TypeError) as exc:
        raise RunViewError(f"{path} is not a readable optimization result: {exc}") from exc
    events: list[dict[str, Any]] = []
    unreadable = 0
    log = folder / "events.jsonl"
    if log.exists():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                unreadable += 1
                continue
            if isinstance(row, dict):
                events.append(row)
    return RunView(folder, result, _proposals(events), unreadable)
