"""``promptopt judge``: score a file of outputs with a rubric or pairwise judge, or calibrate a judge.

    promptopt judge --rubric rubric.toml --data outputs.jsonl --out verdicts.csv
    promptopt judge --pairwise --data pairs.jsonl --out verdicts.json
    promptopt judge calibrate --task llmbar --lm local/large --reflection-lm local/large --budget 200 \\
        --out results/verifiers/llmbar.json --save-judge judge.json

Rows of ``--data`` (JSON lines): for a rubric judge ``input`` and ``output`` (and ``steps``, a list of
``{"name", "inputs", "outputs"}``, for event criteria); for a pairwise judge ``input`` (or
``instruction``), ``output_1`` and ``output_2``, with ``label`` (1 or 2) when known. Every row gets a
verdict with reasons, or a recorded failure when the judge's reply could not be read.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptopt.core.example import Example
from promptopt.io import write_json_atomic


def _rows(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(
                    f"{path}, line {n}: not valid JSON ({exc.msg}); one JSON object per line."
                ) from exc
            if not isinstance(row, dict):
                raise SystemExit(f"{path}, line {n}: a JSON {type(row).__name__}, not an object.")
            rows.append(row)
    if not rows:
        raise SystemExit(f"{path} holds no rows.")
    return rows


def _need(row: dict[str, Any], names: Sequence[str], where: str) -> list[Any]:
    missing = [n for n in names if n not in row]
    if missing:
        raise SystemExit(f"{where} lacks {', '.join(missing)}; rows need {', '.join(names)}.")
    return [row[n] for n in names]


def _write(out: str, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    path = Path(out)
    if path.suffix.lower() == ".csv":
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = sorted({k for r in records for k in r})
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for r in records:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                )
    else:
        from promptopt.provenance import collect

        write_json_atomic(path, {"summary": summary, "rows": records, "provenance": collect().to_dict()})
    print(f"wrote {path}")


def _judge_lm(args: argparse.Namespace) -> Any:
    import promptopt as po

    return po.LM(args.lm, max_tokens=args.max_tokens)


def cmd_score(args: argparse.Namespace) -> int:
    from promptopt.lm.usage import track_usage
    from promptopt.verifiers import PairwiseJudge, RubricJudge, load_rubric, position_bias_rate

    if bool(args.rubric) == bool(args.pairwise):
        raise SystemExit("Give --rubric FILE (a pointwise judge) or --pairwise, not both or neither.")
    rows, lm = _rows(args.data), _judge_lm(args)
    records: list[dict[str, Any]] = []
    with track_usage() as usage:
        if args.rubric:
            judge = RubricJudge(load_rubric(args.rubric), lm=lm)
            for i, row in enumerate(rows, start=1):
                task_input, output = _need(row, ("input", "output"), f"{args.data} row {i}")
                v = judge.judge(task_input, output, row.get("steps"))
                records.append({"id": row.get("id", i), **v.to_dict()})
            scores = [r["score"] for r in records if r["score"] is not None]
            summary: dict[str, Any] = {"mean_score": sum(scores) / len(scores) if scores else None}
        else:
            pair_judge = PairwiseJudge(lm=lm)
            verdicts = []
            for i, row in enumerate(rows, start=1):
                row = {"instruction": row.get("instruction", row.get("input")), **row}
                instruction, o1, o2 = _need(
                    row, ("instruction", "output_1", "output_2"), f"{args.data} row {i}"
                )
                v = pair_judge.verdict(instruction, o1, o2)
                verdicts.append(v)
                records.append({"id": row.get("id", i), "label": row.get("label"), **v.to_dict()})
            labeled = [r for r in records if r["label"] is not None and r["winner"] is not None]
            summary = {
                "position_bias_rate": position_bias_rate(verdicts),
                "accuracy": sum(r["winner"] == int(r["label"]) for r in labeled) / len(labeled)
                if labeled
                else None,
            }
    failed = sum(1 for r in records if r.get("failure") or (args.rubric and r["score"] is None))
    summary.update(rows=len(records), failed_to_parse=failed, judge_lm_calls=usage.calls, judge=args.lm)
    print(json.dumps(summary))
    if failed:
        print(
            f"{failed} of {len(records)} rows have no verdict: the judge's reply could not be read.",
            file=sys.stderr,
        )
    if args.out:
        _write(args.out, records, summary)
    return 0


def _labeled(args: argparse.Namespace) -> list[Example]:
    if args.task:
        from promptopt.tasks import get_task

        return list(get_task(args.task).load(args.data_dir))
    if not args.data:
        raise SystemExit("calibrate needs --task NAME (e.g. llmbar) or --data labeled.jsonl.")
    out = []
    for i, row in enumerate(_rows(args.data), start=1):
        row = {"instruction": row.get("instruction", row.get("input")), **row}
        _need(row, ("instruction", "output_1", "output_2", "label"), f"{args.data} row {i}")
        ex = Example(
            _id=str(row.get("id", f"row-{i}")), **{k: v for k, v in row.items() if k not in ("id", "input")}
        )
        out.append(ex.with_inputs("instruction", "output_1", "output_2"))
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    import promptopt as po
    from promptopt.lm.identity import lm_identity
    from promptopt.optimizers import GEPA, MIPROv2
    from promptopt.provenance import collect
    from promptopt.verifiers import PairwiseJudge, agreement_with_label
    from promptopt.verifiers.calibration import calibrate

    if not args.out:
        raise SystemExit("calibrate needs --out REPORT.json (held-out agreement before and after).")
    examples = _labeled(args)
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None
    helper = po.LM(args.reflection_lm, max_tokens=1024)
    if args.optimizer == "gepa":
        optimizer: Any = GEPA(
            agreement_with_label, max_metric_calls=args.budget, reflection_lm=helper, seed=args.seed
        )
    else:
        optimizer = MIPROv2(
            agreement_with_label,
            auto=None,
            num_candidates=4,
            num_trials=args.trials,
            proposer_lm=helper,
            seed=args.seed,
        )
    judge_lm = _judge_lm(args)
    report = calibrate(
        PairwiseJudge(),
        examples,
        optimizer=optimizer,
        sizes=sizes,  # type: ignore[arg-type]
        seed=args.seed,
        lm=judge_lm,
        run_dir=args.run_dir,
        resume=True,
        num_threads=args.threads,
        progress=True,
    )
    lms = {"judge": lm_identity(judge_lm), "proposer": lm_identity(helper)}
    provenance = collect(lms=lms).to_dict()
    path = report.save(args.out, provenance=provenance, task=args.task or args.data)
    if args.save_judge:
        # The program's saved state, with the calibration's provenance (loading ignores the extra key).
        write_json_atomic(args.save_judge, {**report.judge.dump_state(), "provenance": provenance})
    b, a, d = report.before, report.after, report.change
    print(
        f"held-out agreement ({b.n} pairs): accuracy {b.accuracy.value:.3f} -> {a.accuracy.value:.3f} "
        f"(change {d.accuracy.value:+.3f} [{d.accuracy.low:+.3f}, {d.accuracy.high:+.3f}]); kappa "
        f"{b.kappa.value:.3f} -> {a.kappa.value:.3f}; position bias "
        f"{b.position_bias.value if b.position_bias else float('nan'):.3f} -> "
        f"{a.position_bias.value if a.position_bias else float('nan'):.3f}\nwrote {path}"
    )
    return 0


def add_subcommand(sub: Any) -> None:
    p = sub.add_parser("judge", help="score outputs with an LM judge, or calibrate a judge against labels")
    p.add_argument("action", nargs="?", default="score", choices=["score", "calibrate"])
    p.add_argument("--rubric", help="a rubric (.toml or .json) for a pointwise judge")
    p.add_argument("--pairwise", action="store_true", help="a pairwise judge (output_1 vs output_2)")
    p.add_argument("--data", help="JSON lines: the outputs to judge, or labeled pairs for calibrate")
    p.add_argument("--task", help="calibrate on a task's labeled examples (e.g. llmbar)")
    p.add_argument("--data-dir", help="data mirror directory (default: $PROMPTOPT_DATA_DIR)")
    p.add_argument("--lm", default="local", help="the judge's LM (litellm string, or local / local/<name>)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--out", help="per-row verdicts (.json or .csv); for calibrate the report (.json)")
    p.add_argument("--optimizer", default="gepa", choices=["gepa", "mipro"], help="calibrate: the optimizer")
    p.add_argument("--reflection-lm", default="local", help="calibrate: the LM that proposes new prompts")
    p.add_argument("--budget", type=int, default=200, help="calibrate (gepa): metric calls")
    p.add_argument("--trials", type=int, default=8, help="calibrate (mipro): trials")
    p.add_argument("--sizes", help="calibrate: train,val,held-out sizes (default 40/30/30 percent)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run-dir", help="calibrate: the optimizer's run directory (a rerun resumes there)")
    p.add_argument("--save-judge", help="calibrate: save the calibrated judge program here")
    p.set_defaults(func=lambda args: (cmd_calibrate if args.action == "calibrate" else cmd_score)(args))
