"""Few-shot demos as evolvable components.

Every successful training run leaves its predictors' inputs and outputs in the
trace; those become candidate demos. Training examples that carry every field
of a predictor's signature (a single-stage program) are labeled demos too, used
after the traces. A demo mutation replaces part of a predictor's demo list with
demos drawn from this pool, so GEPA can win where examples matter more than
wording. New demos are spread over the output values (for a classifier: over the
classes), because a small model shown only its favourite class learns nothing
new. Validation examples never enter the pool.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

from promptopt.core.example import Example
from promptopt.core.signature import Signature
from promptopt.optimizers.evaluation import Record

OPTIONAL_OUTPUTS = ("reasoning",)


def _key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


class DemoPool:
    """Successful (inputs, outputs) pairs per predictor, in the order they were found."""

    def __init__(self, data: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in (data or {}).items()}
        # Derived from the training set on every start, so not part of the saved state.
        self.labeled: dict[str, list[dict[str, Any]]] = {}
        self.outputs: dict[str, list[str]] = {}

    def add_labeled(self, predictor: str, signature: Signature, examples: Sequence[Example]) -> None:
        """Training examples that hold all of the predictor's inputs and required outputs."""
        required = [n for n in signature.output_names if n not in OPTIONAL_OUTPUTS]
        self.outputs[predictor] = required
        names = [*signature.input_names, *[n for n in signature.output_names if n]]
        bucket = self.labeled.setdefault(predictor, [])
        for ex in examples:
            if all(n in ex for n in signature.input_names) and all(n in ex for n in required):
                demo = {n: ex[n] for n in names if n in ex}
                if all(_key(d) != _key(demo) for d in bucket):
                    bucket.append(demo)

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
        self,
        predictor: str,
        current: Sequence[dict[str, Any]],
        k: int,
        rng: random.Random,
        *,
        max_chars: int | None = None,
    ) -> list[dict[str, Any]] | None:
        """A new demo list of up to ``k`` demos (and ``max_chars`` characters of field values).

        An empty list is filled up to ``k``. A non-empty one either grows (every demo kept, new ones
        added up to ``k``) or has about half of its demos swapped for new ones, with even odds while
        it can still grow: small models often gain more from a few more examples than from better
        ones, and the search should be able to find out which. New demos come from successful traces
        first, then labeled examples, spread over the output values the kept demos lack.
        """
        current_keys = {_key(_fields(d)) for d in current}
        traces = [d for d in self.data.get(predictor, []) if _key(d) not in current_keys]
        labeled = [d for d in self.labeled.get(predictor, []) if _key(d) not in current_keys]
        available = len(traces) + len(labeled)
        if not available:
            return None
        kept = [_fields(d) for d in current][:k]
        rng.shuffle(kept)
        if not kept:
            n_new = min(available, k)
        elif len(kept) < k and rng.random() < 0.5:
            n_new = min(available, k - len(kept))
        else:
            n_new = min(available, max(1, len(kept) // 2))
            kept = kept[: max(0, len(kept) - n_new)]
        chosen = self._spread(predictor, traces, labeled, kept, n_new, rng)
        demos = kept + chosen
        if max_chars is not None:
            demos = within_chars(demos, max_chars)
        if not demos or {_key(d) for d in demos} == current_keys:
            return None
        return [Example(**d).to_dict() for d in demos]

    def _spread(
        self,
        predictor: str,
        traces: list[dict[str, Any]],
        labeled: list[dict[str, Any]],
        kept: list[dict[str, Any]],
        n: int,
        rng: random.Random,
    ) -> list[dict[str, Any]]:
        outputs = self.outputs.get(predictor)

        def label(d: dict[str, Any]) -> str:
            names = outputs or [k for k in d if k not in OPTIONAL_OUTPUTS]
            return json.dumps([str(d.get(k, "")).strip().lower() for k in names])

        # Candidates in preference order: shuffled traces, then shuffled labeled examples.
        order = rng.sample(traces, len(traces)) + rng.sample(labeled, len(labeled))
        counts: dict[str, int] = {}
        for d in kept:
            counts[label(d)] = counts.get(label(d), 0) + 1
        chosen: list[dict[str, Any]] = []
        while len(chosen) < n and order:
            # The least shown output value first; ties keep the preference order.
            pick = min(range(len(order)), key=lambda i: (counts.get(label(order[i]), 0), i))
            demo = order.pop(pick)
            counts[label(demo)] = counts.get(label(demo), 0) + 1
            chosen.append(demo)
        return chosen

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return self.data


def within_chars(demos: list[dict[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """The longest prefix whose field values fit in ``max_chars`` (long demos would overflow the context)."""
    out: list[dict[str, Any]] = []
    total = 0
    for d in demos:
        size = sum(len(str(v)) for v in _fields(d).values())
        if total + size > max_chars:
            continue  # a shorter one further on may still fit
        out.append(d)
        total += size
    return out


def _fields(demo: dict[str, Any]) -> dict[str, Any]:
    return demo.get("fields", demo)
