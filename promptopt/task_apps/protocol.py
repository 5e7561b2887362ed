"""The task-app protocol: how promptopt talks to a program it does not host.

A task app is a small HTTP service around a program written in any language. It owns its dataset
and its prompts; promptopt owns the search. Version ``promptopt.task-app/1``:

``GET /health``   200 when the app can take rollouts.
``GET /info``     :class:`AppInfo`: the app's name, the ids of its train/validation/test examples,
                  and its named prompt components with their seed values.
``POST /rollout`` :class:`RolloutRequest` -> :class:`RolloutResult`: run the app's own code on one
                  example with the LM reached only through ``inference_url`` (an OpenAI-compatible
                  endpoint promptopt serves for this rollout, whose API key is ``inference_token``),
                  score the result, and answer with the score, optional feedback, the outputs, or
                  the error that stopped it.

Both directions carry ``Authorization: Bearer <token>``: promptopt's token to the app, the rollout's
own token to the inference proxy. Every message is JSON and is checked against the schemas below
(:data:`SCHEMAS`, also what the README documents); a message that does not fit raises
:class:`ProtocolError` naming the message and the field, so an app author sees what to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = "promptopt.task-app/1"
SPLITS = ("train", "validation", "test")

_ID_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "info": {
        "type": "object",
        "required": ["protocol", "name", "splits", "components"],
        "properties": {
            "protocol": {"const": PROTOCOL},
            "name": {"type": "string", "minLength": 1},
            "splits": {
                "type": "object",
                "required": list(SPLITS),
                "properties": {s: _ID_LIST for s in SPLITS},
                "additionalProperties": False,
            },
            "components": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "rollout_request": {
        "type": "object",
        "required": ["protocol", "rollout_id", "split", "inference_url"],
        "properties": {
            "protocol": {"const": PROTOCOL},
            "rollout_id": {"type": "string", "minLength": 1},
            "example_id": {"type": "string", "minLength": 1},
            "inputs": {"type": "object"},
            "split": {"enum": list(SPLITS)},
            "inference_url": {"type": "string", "pattern": "^https?://"},
            "inference_token": {"type": "string"},
            "components": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "oneOf": [{"required": ["example_id"]}, {"required": ["inputs"]}],
    },
    "rollout_result": {
        "type": "object",
        "required": ["rollout_id"],
        "properties": {
            "rollout_id": {"type": "string"},
            "score": {"type": ["number", "null"]},
            "feedback": {"type": "string"},
            "outputs": {"type": "object"},
            "error": {"type": ["string", "null"]},
        },
    },
}


class ProtocolError(ValueError):
    """A task-app message that does not follow the protocol; the text names the message and field."""


def check(kind: str, data: Any) -> Mapping[str, Any]:
    """``data`` if it is a valid ``kind`` message (a key of :data:`SCHEMAS`), else :class:`ProtocolError`."""
    import jsonschema

    try:
        jsonschema.validate(data, SCHEMAS[kind])
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(the message)"
        raise ProtocolError(
            f"The {kind.replace('_', ' ')} does not follow {PROTOCOL}: at {where}: {exc.message}"
        ) from None
    return data


@dataclass(frozen=True)
class AppInfo:
    """What ``GET /info`` answers."""

    name: str
    splits: Mapping[str, tuple[str, ...]]
    components: Mapping[str, str]  # component name -> seed text

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "name": self.name,
            "splits": {s: list(self.splits[s]) for s in SPLITS},
            "components": dict(self.components),
        }

    @classmethod
    def from_json(cls, data: Any) -> AppInfo:
        check("info", data)
        splits = {s: tuple(data["splits"][s]) for s in SPLITS}
        for s, ids in splits.items():
            if len(set(ids)) != len(ids):
                raise ProtocolError(f"The info's {s} split lists an example id twice.")
        return cls(str(data["name"]), splits, dict(data["components"]))


@dataclass(frozen=True)
class RolloutRequest:
    """What ``POST /rollout`` receives: one example (by id, or its inputs) to run with a candidate."""

    rollout_id: str
    split: str
    inference_url: str
    example_id: str | None = None
    inputs: Mapping[str, Any] | None = None
    components: Mapping[str, str] | None = None  # None: the app's seed prompts
    inference_token: str | None = None  # the API key the app sends to inference_url (Bearer)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "protocol": PROTOCOL,
            "rollout_id": self.rollout_id,
            "split": self.split,
            "inference_url": self.inference_url,
        }
        if self.example_id is not None:
            data["example_id"] = self.example_id
        if self.inputs is not None:
            data["inputs"] = dict(self.inputs)
        if self.components is not None:
            data["components"] = dict(self.components)
        if self.inference_token is not None:
            data["inference_token"] = self.inference_token
        return check("rollout_request", data)  # type: ignore[return-value]

    @classmethod
    def from_json(cls, data: Any) -> RolloutRequest:
        check("rollout_request", data)
        return cls(
            rollout_id=data["rollout_id"],
            split=data["split"],
            inference_url=data["inference_url"],
            example_id=data.get("example_id"),
            inputs=data.get("inputs"),
            components=data.get("components"),
            inference_token=data.get("inference_token"),
        )


@dataclass(frozen=True)
class RolloutResult:
    """What ``POST /rollout`` answers: a score in [0, 1] with feedback and outputs, or the error that
    stopped the app's run (then ``score`` is ``None``: a failed rollout is not a score of 0)."""

    rollout_id: str
    score: float | None = None
    feedback: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "score": self.score,
            "feedback": self.feedback,
            "outputs": dict(self.outputs),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Any, *, expected_id: str | None = None) -> RolloutResult:
        check("rollout_result", data)
        result = cls(
            rollout_id=data["rollout_id"],
            score=data.get("score"),
            feedback=data.get("feedback", ""),
            outputs=data.get("outputs") or {},
            error=data.get("error"),
        )
        if expected_id is not None and result.rollout_id != expected_id:
            raise ProtocolError(
                f"The rollout result answers rollout {result.rollout_id!r}, not {expected_id!r}."
            )
        if result.error is None:
            if result.score is None:
                raise ProtocolError(f"Rollout {result.rollout_id!r} has neither a score nor an error.")
            if not math.isfinite(result.score) or not 0.0 <= result.score <= 1.0:
                raise ProtocolError(
                    f"Rollout {result.rollout_id!r} scored {result.score}; scores are in [0, 1]."
                )
        return result
