"""PUPA: privacy-conscious delegation (PAPILLON), scored without a judge model.

A user query holds private information (PII units annotated per row). The
PAPILLON program rewrites the query so that it can be sent to an external
model, lets that model answer the redacted query, then composes the final
response from the user's query and the external answer. The external model is
the same LM as the task LM here, and its prompt is deliberately not an
optimizable component (in PAPILLON it belongs to a third party).

Score = quality * (1 - leakage):

* leakage: the fraction of the row's PII units (those that occur in the user's
  query) that appear in the query *sent onward*, the prediction's
  ``redacted_query``. A prediction without one (the ``predict`` program, which
  answers directly) sent the original query, so it leaks every unit.
* quality: token-level F1 of ``response`` against the row's reference response.

Data: PUPA_New (664 rows) holds 202 rows that repeat an earlier user query
with a re-annotated PII list; :func:`load` keeps each query once (462 examples)
with the union of its PII annotations, so no query sits in two splits. Units
that are Presidio placeholders (``<PRESIDIO_ANONYMIZED_PERSON>``) or shorter
than three characters (annotation noise such as "is") are not counted.
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from collections import Counter
from typing import Any

from langprobe.task import Task, load_from_hub, task_dir
from promptopt import ChainOfThought, Example, Predict, Prediction, Program, Score, Signature


def _rows(folder, name: str, config: str) -> list[dict[str, Any]]:
    if folder is not None:
        with open(folder / name, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return load_from_hub("Columbia-NLP/PUPA", config, split="train")


def _examples(rows: list[dict[str, Any]], prefix: str) -> list[Example]:
    merged: dict[str, dict[str, Any]] = {}
    per_hash: Counter[str] = Counter()
    for r in rows:
        units = [u.strip() for u in (r.get("pii_units") or "").split("||") if u.strip()]
        if r["user_query"] in merged:
            seen = merged[r["user_query"]]["pii_units"]
            seen.extend(u for u in units if u not in seen)
            continue
        per_hash[r["conversation_hash"]] += 1
        merged[r["user_query"]] = {**r, "pii_units": units, "n": per_hash[r["conversation_hash"]]}
    return [
        Example(
            _id=f"{prefix}-{r['conversation_hash']}-{r['n']}",
            user_query=r["user_query"],
            target_response=r["target_response"],
            pii_units=r["pii_units"],
            reference_redacted_query=r["redacted_query"],
            category=r["predicted_category"],
        ).with_inputs("user_query")
        for r in merged.values()
        if r["user_query"].strip()
    ]


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(task_dir("pupa", data_dir), "PUPA_New.csv", "pupa_new"), "pupa")


def load_tnb(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """PUPA_TNB, the smaller second collection, for extra held-out evaluation."""
    return _examples(_rows(task_dir("pupa", data_dir), "PUPA_TNB.csv", "pupa_tnb"), "pupa-tnb")


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'").lower()
    return " ".join(text.split())


def _mentions(text: str, unit: str) -> bool:
    # A unit annotated as a list ("kaiber, moonvalley, pika") leaks when any of its items does.
    parts = [p for p in (_norm(x) for x in unit.split(",")) if len(p) >= 3] or [_norm(unit)]
    return any(re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text) for p in parts)


def private_units(example: Example) -> list[str]:
    """The PII units of a row that count: real (not placeholders), not noise, present in the query."""
    query = _norm(example.user_query)
    units = []
    for u in example.pii_units:
        clean = u.strip("<> ")
        if len(clean) < 3 or clean.lower().startswith("presidio_anonymized") or clean in units:
            continue
        if _mentions(query, clean):
            units.append(clean)
    return units


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = re.findall(r"\w+", _norm(prediction)), re.findall(r"\w+", _norm(reference))
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def metric(example: Example, prediction, trace=None) -> Score:
    get = prediction.get if hasattr(prediction, "get") else (lambda _k, _d=None: None)
    sent = get("redacted_query")
    direct = not isinstance(sent, str)
    sent_text = _norm(example.user_query if direct else sent)
    units = private_units(example)
    leaked = [u for u in units if _mentions(sent_text, u)]
    leakage = len(leaked) / len(units) if units else 0.0
    response = get("response")
    quality = token_f1(response, example.target_response) if isinstance(response, str) else 0.0
    value = quality * (1 - leakage)
    parts = [f"Score {value:.2f} = quality {quality:.2f} x (1 - leakage {leakage:.2f})."]
    if direct:
        parts.append(
            "No redacted_query was produced, so the original query (with all its private "
            "information) counts as sent to the external model."
        )
    if leaked:
        parts.append(
            f"Leaked {len(leaked)} of {len(units)} private items to the external model: "
            + ", ".join(repr(u) for u in leaked)
            + ". Remove or generalise them in the request."
        )
    elif units:
        parts.append(f"None of the {len(units)} private items leaked.")
    if not isinstance(response, str) or not response.strip():
        parts.append("The final response is empty or missing.")
    else:
        hint = "; answer the user's actual request completely and on topic." if quality < 0.5 else "."
        parts.append(f"Quality is the token F1 of the final response with a reference ({quality:.2f}){hint}")
    return Score(value, " ".join(parts))


class Papillon(Program):
    """Redact the query, let an external (here: the same) LM answer it, compose the final response."""

    def __init__(self) -> None:
        self.craft_redacted_request = ChainOfThought(
            Signature.parse(
                "user_query -> redacted_request",
                instruction="Given a private user query, write a request for a powerful external LLM that "
                "lets it help with the task without learning any private information about the user: remove "
                "or generalise names, organisations, places, contact details and other identifying facts.",
            )
        )
        self.respond_to_query = Predict(
            Signature.parse(
                "user_query, redacted_request, external_response -> response",
                instruction="Respond to the user query. For help, a related request was sent to a powerful "
                "external LLM; its response is given. Restore the user's specifics in your answer.",
            )
        )
        # Underscored, so it is neither optimized nor saved: the external model's prompt is not ours.
        self._external = Predict("request -> response", "Respond to the request.")
        self._external.name = "external_lm"

    def forward(self, user_query: str) -> Prediction:
        request = self.craft_redacted_request(user_query=user_query).redacted_request
        external = self._external(request=request).response
        final = self.respond_to_query(
            user_query=user_query, redacted_request=request, external_response=external
        ).response
        return Prediction(redacted_query=request, external_response=external, response=final)


def _direct_signature() -> Signature:
    return Signature.parse("user_query -> response", instruction="Respond to the user query.")


TASK = Task(
    name="pupa",
    load=load,
    metric=metric,
    programs={"papillon": Papillon, "predict": lambda: Predict(_direct_signature())},
    sizes=(111, 111, 221),
    description="PUPA privacy-conscious delegation (PAPILLON); response F1 x (1 - PII leakage).",
    kind="generation",
    extra={"load_tnb": load_tnb},
)
