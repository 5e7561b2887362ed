"""Few-shot demos as evolvable components.

Every successful training run leaves its predictors' inputs and outputs in the
trace; those become candidate demos. A demo mutation replaces part of a
predictor's demo list with demos drawn from this pool, so GEPA can win where
examples matter more than wording. Validation examples never enter the pool.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

from promptopt.core.example import Example
from promptopt.optimizers.evaluation import Record


def _key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DemoPool:
    """Successful (inputs, outputs) pairs per predictor, in the order they were found."""

    def __init__(self, data: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in (data or {}).items()}

    def add(self, records: Sequence[Record], threshold: float) -> None:
        for rec in records:
            if rec.error or rec.score < threshold:
                continue
            for entry in rec.trace:
                if entry.get("error") or not entry.get("outputs"):
                    continue
                demo = {**entry["inputs"], **entry["outputs"]}
                bucket = self.data.setdefault(entry["predictor"], [])
                if all(_key(d) != _key(demo) for d in bucket):
                    bucket.append(demo)

    def size(self, predictor: str) -> int:
        return len(self.data.get(predictor, []))

    def propose(
        self, predictor: str, current: Sequence[dict[str, Any]], k: int, rng: random.Random
    ) -> list[dict[str, Any]] | None:
        """A new demo list of up to ``k``: keep some current demos, bring in new ones."""
        pool = self.data.get(predictor, [])
        current_keys = {_key(_fields(d)) for d in current}
        fresh = [d for d in pool if _key(d) not in current_keys]
        if not fresh:
            return None
        kept = [_fields(d) for d in current]
        rng.shuffle(kept)
        n_new = min(len(fresh), max(1, k // 2), k)
        chosen = kept[: k - n_new] + rng.sample(fresh, n_new)
        return [Example(**d).to_dict() for d in chosen]

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return self.data


def _fields(demo: dict[str, Any]) -> dict[str, Any]:
    return demo.get("fields", demo)
