"""IReRa on ESCO (TECH): name the ESCO skills a job-vacancy sentence expresses, ranked; RP@5.

As in LangProBe's IReRa task, examples are the sentences of the SkillSpan TECH
annotations with at least one ESCO label (rows labelled "LABEL NOT PRESENT" or
"UNDERSPECIFIED" are dropped); the validation file (75 sentences) is the
train/val pool and the test file (338 sentences) the test pool.

``infer_retrieve_rank`` follows IReRa: an LM infers skill phrases, a retriever
maps them onto the 13,896 ESCO labels, and an LM ranks the retrieved
candidates. The retriever is lexical (TF-IDF over character trigrams of the
words, cosine similarity, each label scored by its best-matching phrase)
instead of IReRa's sentence-transformer, so no model is downloaded.
"""

from __future__ import annotations

import csv
import math
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from langprobe.task import DataNotFoundError, Task, load_from_hub, task_dir
from promptopt import Example, Predict, Prediction, Program, Score, Signature

K = 5
_NOT_A_LABEL = frozenset({"LABEL NOT PRESENT", "UNDERSPECIFIED"})


def _rows(folder, split: str) -> list[dict[str, Any]]:
    if folder is not None:
        with open(folder / f"tech_{split}_annotations.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return load_from_hub("TechWolf/skill-extraction-tech", split=split)


def _examples(rows: list[dict[str, Any]], split: str) -> list[Example]:
    labels: dict[str, list[str]] = {}
    for r in rows:
        label = (r.get("label") or "").strip()
        if label and label not in _NOT_A_LABEL:
            found = labels.setdefault(r["sentence"], [])
            if label not in found:
                found.append(label)
    return [
        Example(_id=f"esco-tech-{split}-{i}", text=sentence, skills=sorted(found)).with_inputs("text")
        for i, (sentence, found) in enumerate(labels.items())
    ]


def load(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(task_dir("irera_esco", data_dir), "validation"), "validation")


def load_test(data_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    return _examples(_rows(task_dir("irera_esco", data_dir), "test"), "test")


def normalize_label(label: object) -> str:
    """Case, no-break spaces, commas and surrounding punctuation do not distinguish ESCO labels."""
    text = unicodedata.normalize("NFKC", str(label)).replace("’", "'").lower().replace(",", " ")
    return " ".join(text.split()).strip(" .;:-*'\"`")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = re.split(r"\n|;", value)
    if not isinstance(value, (list, tuple)):
        return []
    seen, out = set(), []
    for item in value:
        norm = normalize_label(re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", str(item)))
        if norm and norm not in seen:
            seen.add(norm)
            out.append(norm)
    return out


def metric(example: Example, prediction, trace=None, k: int = K) -> Score:
    """Rank-precision at k: gold labels among the top k over min(k, number of gold labels)."""
    gold = {normalize_label(g): g for g in example.skills}
    predicted = _as_list(prediction.get("skills") if hasattr(prediction, "get") else None)
    top = predicted[:k]
    hits = [p for p in top if p in gold]
    value = len(hits) / min(k, len(gold)) if gold else 0.0
    missed = [gold[g] for g in gold if g not in top]
    parts = [f"RP@{k} = {value:.2f}: {len(hits)} of the top {k} skills are gold ({len(gold)} gold in all)."]
    if not predicted:
        parts.append("No skills were predicted; list ESCO skill labels, most relevant first.")
    if missed:
        parts.append("Missed gold ESCO skills: " + ", ".join(repr(m) for m in missed) + ".")
        late = [f"{gold[p]!r} (rank {i + 1})" for i, p in enumerate(predicted) if p in gold and i >= k]
        if late:
            parts.append("Ranked too low: " + ", ".join(late) + ".")
    wrong = [p for p in top if p not in gold]
    if wrong and value < 1:
        parts.append("Top predictions that are not gold: " + ", ".join(repr(w) for w in wrong) + ".")
    return Score(value, " ".join(parts))


# Retrieval -------------------------------------------------------------------
def _features(text: str) -> Counter[str]:
    grams: Counter[str] = Counter()
    for word in re.findall(r"[a-z0-9+#]+", normalize_label(text)):
        padded = f" {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


@dataclass(frozen=True, eq=False)
class Ontology:
    """The ESCO labels with a TF-IDF index; ``retrieve`` ranks labels for a set of phrases."""

    labels: tuple[str, ...]
    idf: dict[str, float]
    postings: dict[str, tuple[np.ndarray, np.ndarray]]
    by_norm: dict[str, str]

    @classmethod
    def build(cls, labels: list[str]) -> Ontology:
        feats = [_features(label) for label in labels]
        df = Counter(g for f in feats for g in f)
        idf = {g: math.log((1 + len(labels)) / (1 + n)) + 1 for g, n in df.items()}
        rows: dict[str, tuple[list[int], list[float]]] = {}
        for i, f in enumerate(feats):
            vec = _unit({g: (1 + math.log(c)) * idf[g] for g, c in f.items()})
            for g, w in vec.items():
                rows.setdefault(g, ([], []))
                rows[g][0].append(i)
                rows[g][1].append(w)
        postings = {g: (np.array(ix), np.array(ws)) for g, (ix, ws) in rows.items()}
        return cls(tuple(labels), idf, postings, {normalize_label(label): label for label in labels})

    def scores(self, phrase: str) -> np.ndarray:
        grams = _features(phrase)
        vec = _unit({g: (1 + math.log(c)) * self.idf[g] for g, c in grams.items() if g in self.idf})
        out = np.zeros(len(self.labels))
        for g, w in vec.items():
            ix, ws = self.postings[g]
            out[ix] += w * ws
        return out

    def retrieve(self, phrases: list[str], n: int) -> list[str]:
        phrases = [p for p in phrases if p.strip()]
        if not phrases:
            return []
        best = np.max([self.scores(p) for p in phrases], axis=0)
        order = np.argsort(-best, kind="stable")[:n]
        return [self.labels[i] for i in order if best[i] > 0]

    def canonical(self, label: str) -> str | None:
        return self.by_norm.get(normalize_label(label))


def _unit(vec: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
    return {g: v / norm for g, v in vec.items()}


@lru_cache(maxsize=4)
def ontology(data_dir: str | None = None) -> Ontology:
    """The ESCO skill labels of the mirror (``skills_en_label.txt``), indexed once per process."""
    folder = task_dir("irera_esco", data_dir)
    if folder is None or not (folder / "skills_en_label.txt").exists():
        raise DataNotFoundError(
            "infer_retrieve_rank needs irera_esco/skills_en_label.txt (the ESCO label list of "
            "jensjorisdecorte/Skill-Extraction-benchmark) in the data mirror; set PROMPTOPT_DATA_DIR."
        )
    with open(folder / "skills_en_label.txt", encoding="utf-8") as fh:
        labels = [" ".join(line.split()) for line in fh if line.strip()]
    return Ontology.build(list(dict.fromkeys(labels)))


# Programs --------------------------------------------------------------------
def _predict_signature() -> Signature:
    return Signature.parse(
        "text -> skills: list",
        instruction="Given a sentence from a job vacancy, list the ESCO skills it expresses, most relevant "
        "first. Use the exact labels of the ESCO skills taxonomy.",
        descriptions={"text": "A sentence from a job vacancy.", "skills": "ESCO skill labels, best first."},
    )


class InferRetrieveRank(Program):
    """IReRa: infer skill phrases, retrieve ESCO labels lexically, rank the candidates with the LM."""

    def __init__(self, n_candidates: int = 30, data_dir: str | None = None) -> None:
        self.infer = Predict(
            Signature.parse(
                "text -> skill_phrases: list",
                instruction="Given a sentence from a job vacancy, identify every skill it asks for or "
                "mentions. Always return skills, phrased like ESCO skills (e.g. 'use SQL', 'manage a team').",
                descriptions={"text": "A sentence from a job vacancy."},
            )
        )
        self.rank = Predict(
            Signature.parse(
                "text, options: list -> skills: list",
                instruction="Given a sentence from a job vacancy, pick the ESCO skills from the options that "
                "the sentence directly expresses, most applicable first. Copy the option labels exactly.",
                descriptions={"options": "Candidate ESCO skill labels.", "skills": "Chosen labels."},
            )
        )
        self._n_candidates = n_candidates
        self._data_dir = data_dir

    def forward(self, text: str) -> Prediction:
        esco = ontology(self._data_dir)
        phrases = [str(p) for p in self.infer(text=text).skill_phrases] or [text]
        candidates = esco.retrieve(phrases, self._n_candidates)
        ranked = self.rank(text=text, options=candidates).skills if candidates else []
        chosen = [c for c in (esco.canonical(str(s)) for s in ranked) if c]
        # The rank step's choices first, then the retriever's order fills the list.
        skills = list(dict.fromkeys([*chosen, *candidates]))
        return Prediction(skills=skills, skill_phrases=phrases, candidates=candidates)


TASK = Task(
    name="irera_esco",
    load=load,
    load_test=load_test,
    metric=metric,
    programs={"predict": lambda: Predict(_predict_signature()), "infer_retrieve_rank": InferRetrieveRank},
    sizes=(25, 50, 200),
    description="ESCO skill extraction from vacancy sentences (TECH); rank-precision@5.",
    kind="multilabel",
)
