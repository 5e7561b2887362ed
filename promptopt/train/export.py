"""Training data from an optimization run: SFT chat JSONL and RL prompt/reference sets.

The chosen candidates (the best, the Pareto front, or the top k by validation score) are run on
training examples with traces. For SFT, every predictor call of a run whose metric reaches the
threshold becomes one chat conversation ``{"messages": [system, user(s), assistant]}`` — the form
OpenAI-compatible fine-tuning and TRL's ``SFTTrainer`` read. ``prompt="optimized"`` keeps the
candidate's prompt (its instruction and demos); ``prompt="seed"`` distills it away: the same reply
under the seed program's prompt, so the trained model behaves optimized without the long prompt.

For RL, each training example becomes one prompt (the call of the predictor that produces the final
outputs) with its reference labels; the task metric is the reward (:mod:`promptopt.train.reward`).

Everything is written atomically into one folder with a ``manifest.json`` that records provenance
(run, optimizer, candidate ids and scores, metric, threshold) and counts, and per-row provenance in
``*.provenance.jsonl`` files aligned line by line with the data files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from promptopt.core.adapter import ChatAdapter
from promptopt.core.example import Example
from promptopt.core.program import Program
from promptopt.evaluate import evaluate
from promptopt.example_run import ExampleResult
from promptopt.io import write_json_atomic
from promptopt.lm_protocol import LanguageModel
from promptopt.optimizers.result import OptimizationResult
from promptopt.train.traced_calls import final_call, under_seed_prompt

CandidateChoice = Literal["best", "front"] | int | Sequence[int]


@dataclass
class ExportedDataset:
    """A training set on disk: ``train.jsonl``, ``val.jsonl`` and ``manifest.json`` in ``path``."""

    path: Path
    kind: str  # "sft" or "rl"
    n_train: int
    n_val: int
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def train_file(self) -> Path:
        return self.path / "train.jsonl"

    @property
    def val_file(self) -> Path:
        return self.path / "val.jsonl"

    def rows(self, split: str = "train") -> list[dict[str, Any]]:
        return _read_jsonl(self.path / f"{split}.jsonl")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportedDataset:
        return cls(**{**data, "path": Path(data["path"])})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExportedDataset:
        folder = Path(path)
        manifest_file = folder / "manifest.json"
        if not manifest_file.exists():
            raise FileNotFoundError(f"{folder} holds no manifest.json; export a dataset into it first.")
        manifest = json.loads(manifest_file.read_text())
        counts = manifest["counts"]
        return cls(folder, manifest["kind"], counts["train"], counts["val"], manifest)


def choose_candidates(result: OptimizationResult, which: CandidateChoice) -> list[int]:
    """Candidate ids: ``"best"``, ``"front"`` (the Pareto front), an int k (top k by validation), or ids."""
    if which == "best":
        return [result.best_id]
    if which == "front":
        return list(result.pareto_front) or [result.best_id]
    if isinstance(which, int):
        if which < 1:
            raise ValueError("top-k export needs k >= 1.")
        ranked = sorted(result.candidates, key=lambda c: (-_score(c.val_score), c.id))
        return [c.id for c in ranked[:which]]
    ids = [int(i) for i in which]
    unknown = [i for i in ids if not 0 <= i < len(result.candidates)]
    if unknown:
        raise ValueError(f"Candidates {unknown} are not in the result (0..{len(result.candidates) - 1}).")
    return ids


def _score(x: float) -> float:
    return -1.0 if x != x else x  # NaN (never validated) sorts last


def export_sft(
    result: OptimizationResult,
    seed_program: Program,
    trainset: Sequence[Example],
    metric: Callable[..., Any],
    out_dir: str | os.PathLike[str],
    *,
    candidates: CandidateChoice = "best",
    threshold: float = 1.0,
    prompt: Literal["optimized", "seed"] = "optimized",
    val_fraction: float = 0.1,
    seed: int = 0,
    lm: LanguageModel | None = None,
    num_threads: int = 1,
    source: dict[str, Any] | None = None,
) -> ExportedDataset:
    """Write the successful traces of the chosen candidates as a chat SFT dataset.

    Args:
        result: the optimization result (its candidates' components are applied to ``seed_program``).
        seed_program: the program the run started from.
        trainset: examples to run the candidates on (never the test split).
        metric: the task metric; a run is kept when its score is ``>= threshold``.
        out_dir: the folder to write (replaced atomically when it exists).
        candidates: ``"best"``, ``"front"``, top-k as an int, or a list of candidate ids.
        prompt: ``"optimized"`` keeps each candidate's prompt; ``"seed"`` puts the reply under the
            seed program's prompt (distillation of the optimized prompt into the weights).
        val_fraction: share of rows held out as ``val.jsonl`` (split by example, never by row).
        lm: the LM to run the candidates with (default: the configured one); its cache makes a
            second export of the same run cost nothing.
        source: extra provenance for the manifest (run folder, task, ...).
    """
    if prompt not in ("optimized", "seed"):
        raise ValueError(f"prompt must be 'optimized' or 'seed', not {prompt!r}.")
    ids = choose_candidates(result, candidates)
    adapter = ChatAdapter()
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    examined = passing = failed = 0
    for cid in ids:
        program = result.program_for(seed_program, cid)
        for res in _run(program, trainset, metric, lm, num_threads):
            examined += 1
            if res.error is not None:
                failed += 1
                continue
            if res.score < threshold:
                continue
            passing += 1
            for call, entry in enumerate(res.trace):
                if not entry.ok or entry.raw is None:
                    continue
                if prompt == "seed":
                    messages = under_seed_prompt(entry, seed_program, program, adapter)
                else:
                    messages = list(entry.messages)
                conversation = {"messages": [*messages, {"role": "assistant", "content": entry.raw}]}
                prov = {
                    "example_id": res.example.id,
                    "candidate": cid,
                    "predictor": entry.predictor,
                    "call": call,
                    "score": res.score,
                }
                rows.append((conversation, prov))
    unique, duplicates = _dedup(rows)
    train, val = _split(unique, val_fraction, seed)
    manifest = _manifest(
        "sft",
        result,
        ids,
        metric,
        source,
        options={"threshold": threshold, "prompt": prompt, "val_fraction": val_fraction, "seed": seed},
        counts={
            "examples_run": examined,
            "runs_passing": passing,
            "runs_failed": failed,
            "rows": len(rows),
            "duplicates": duplicates,
            "train": len(train),
            "val": len(val),
        },
    )
    manifest["programs"] = {
        "seed": seed_program.dump_state(),
        **{str(cid): result.program_for(seed_program, cid).dump_state() for cid in ids},
    }
    return _write(out_dir, "sft", train, val, manifest)


def export_rl(
    result: OptimizationResult,
    seed_program: Program,
    trainset: Sequence[Example],
    metric: Callable[..., Any],
    out_dir: str | os.PathLike[str],
    *,
    candidate: int | Literal["best"] = "best",
    prompt: Literal["optimized", "seed"] = "optimized",
    val_fraction: float = 0.1,
    seed: int = 0,
    lm: LanguageModel | None = None,
    num_threads: int = 1,
    source: dict[str, Any] | None = None,
) -> ExportedDataset:
    """Write one RL prompt per training example, with its reference labels, for GRPO-style training.

    The prompt is the call of the predictor that produced the program's final outputs in the
    candidate's trace (for a one-predictor program, its only call), under the candidate's prompt or
    the seed's. Each row holds ``prompt`` (chat messages), ``reference`` (the example's labels),
    ``example`` (the whole example, for the reward) and ``predictor``; the manifest holds the
    signatures the reward parses completions with.
    """
    cid = result.best_id if candidate == "best" else int(candidate)
    program = result.program_for(seed_program, cid)
    adapter = ChatAdapter()
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    skipped = 0
    for res in _run(program, trainset, metric, lm, num_threads):
        last = final_call(res)
        if last is None:
            skipped += 1
            continue
        pred_name, entry = last
        if prompt == "seed":
            messages = under_seed_prompt(entry, seed_program, program, adapter)
        else:
            messages = list(entry.messages)
        row = {
            "prompt": messages,
            "reference": res.example.labels(),
            "example": res.example.to_dict(),
            "predictor": pred_name,
        }
        rows.append((row, {"example_id": res.example.id, "candidate": cid, "seed_score": res.score}))
    unique, duplicates = _dedup(rows, key=lambda r: r["prompt"])
    train, val = _split(unique, val_fraction, seed)
    manifest = _manifest(
        "rl",
        result,
        [cid],
        metric,
        source,
        options={"prompt": prompt, "val_fraction": val_fraction, "seed": seed},
        counts={
            "examples_run": len(trainset),
            "skipped_no_trace": skipped,
            "rows": len(rows),
            "duplicates": duplicates,
            "train": len(train),
            "val": len(val),
        },
    )
    source_program = seed_program if prompt == "seed" else program
    manifest["signatures"] = {n: p.signature.to_dict() for n, p in source_program.named_predictors()}
    return _write(out_dir, "rl", train, val, manifest)


def _run(
    program: Program,
    trainset: Sequence[Example],
    metric: Callable[..., Any],
    lm: LanguageModel | None,
    num_threads: int,
) -> list[ExampleResult]:
    return evaluate(
        program, list(trainset), metric, lm=lm, num_threads=num_threads, display_progress=False
    ).results


def _dedup(
    rows: list[tuple[dict[str, Any], dict[str, Any]]],
    key: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
    seen: set[str] = set()
    kept = []
    for row, prov in rows:
        digest = hashlib.sha256(
            json.dumps(key(row) if key else row, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        kept.append((row, prov))
    return kept, len(rows) - len(kept)


def _split(
    rows: list[tuple[dict[str, Any], dict[str, Any]]], val_fraction: float, seed: int
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Hold out whole examples, so no example has rows on both sides."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1).")
    example_ids = sorted({prov["example_id"] for _, prov in rows})
    random.Random(seed).shuffle(example_ids)
    n_val = round(len(example_ids) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(example_ids) > 1:
        n_val = 1
    held = set(example_ids[:n_val])
    train = [r for r in rows if r[1]["example_id"] not in held]
    val = [r for r in rows if r[1]["example_id"] in held]
    return train, val


def _manifest(
    kind: str,
    result: OptimizationResult,
    ids: list[int],
    metric: Callable[..., Any],
    source: dict[str, Any] | None,
    options: dict[str, Any],
    counts: dict[str, int],
) -> dict[str, Any]:
    return {
        "kind": kind,
        "format": "chat-jsonl" if kind == "sft" else "prompt-reference-jsonl",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {
            **(source or {}),
            "optimizer": result.optimizer,
            "best_id": result.best_id,
            "candidates": [
                {
                    "id": i,
                    "val_score": _nan_none(result.candidates[i].val_score),
                    "origin": result.candidates[i].origin,
                }
                for i in ids
            ],
        },
        "metric": getattr(metric, "__name__", type(metric).__name__),
        "options": options,
        "counts": counts,
    }


def _nan_none(x: float) -> float | None:
    return None if x != x else x


def _write(
    out_dir: str | os.PathLike[str],
    kind: str,
    train: list[tuple[dict[str, Any], dict[str, Any]]],
    val: list[tuple[dict[str, Any], dict[str, Any]]],
    manifest: dict[str, Any],
) -> ExportedDataset:
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    files: dict[str, str] = {}
    for split, rows in (("train", train), ("val", val)):
        for name, part in ((f"{split}.jsonl", 0), (f"{split}.provenance.jsonl", 1)):
            path = tmp / name
            with open(path, "w") as fh:
                for row in rows:
                    fh.write(json.dumps(row[part], ensure_ascii=False) + "\n")
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["files"] = files
    write_json_atomic(tmp / "manifest.json", manifest)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        _rmtree(old)
    else:
        tmp.rename(target)
    return ExportedDataset(target, kind, len(train), len(val), manifest)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
