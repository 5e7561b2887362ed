"""Repeated runs of promptopt.dspy.MIPROv2 on DSPy's own modules: is the held-out gain reproducible?

The configuration of ``tests/real_lm/test_dspy_plugin_real.py``'s MIPROv2 test: iris split 15 train /
20 validation / 30 test, the 1.5B model as task LM (temperature 0) and as proposer (0.7), 4 candidates
per predictor, 8 trials on minibatches of 5 with a full validation every 4, up to 3 bootstrapped + 3
labelled demos. Run k uses optimizer seed k - 1: runs with one seed ask the same questions, which the
LM cache answers the same way, so they would repeat each other. Each run scores the uncompiled module and
the compiled one on the test split with ``dspy.Evaluate``. Usage (resumable: finished runs are kept
in the results file and skipped, a run in progress resumes from
``runs/dspy-mipro-repeats/<program>-<run>/``)::

    python experiments/dspy_mipro_repeats.py --program chain_of_thought --runs 2
    python experiments/dspy_mipro_repeats.py --program two_module_pipeline --runs 2

Appends one JSON line per run to ``results/dspy-plugin/mipro-repeats-iris.jsonl``: test accuracy before
and after, validation seed and best score, metric calls, seconds, adopted demos and instructions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy

import promptopt as po
from langprobe import get_task
from langprobe.dspy_programs import IrisSpecies, PetalsThenSpecies, scores_on
from promptopt.bench.identity import experiment_provenance
from promptopt.dspy import MIPROv2
from promptopt.dspy.conversion import to_dspy_examples
from promptopt.dspy.lms import dspy_lm

ROOT = Path(__file__).resolve().parents[1]

# program -> (a factory building it, its iris split seed, its max_tokens)
PROGRAMS = {
    "chain_of_thought": (lambda: dspy.ChainOfThought(IrisSpecies), 0, 200),
    "two_module_pipeline": (PetalsThenSpecies, 1, 100),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--program", choices=sorted(PROGRAMS), required=True)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--model", default="local/large", help="task LM and proposer")
    ap.add_argument("--out", type=Path, default=ROOT / "results/dspy-plugin/mipro-repeats-iris.jsonl")
    args = ap.parse_args()

    make, split_seed, max_tokens = PROGRAMS[args.program]
    task = get_task("iris")
    sizes = (15, 20, 30)
    splits = task.splits(seed=split_seed, sizes=sizes)
    train, val, test = (to_dspy_examples(s) for s in (splits.train, splits.val, splits.test))
    lm = dspy_lm(po.LM(args.model, max_tokens=max_tokens))
    proposer = dspy_lm(po.LM(args.model, temperature=0.7, max_tokens=400))

    def accuracy(example, pred, trace=None):
        return task.metric(example, pred).value

    def held_out(program: dspy.Module) -> float:
        scores = scores_on(program, test, accuracy)
        return sum(scores) / len(scores)

    done = set()
    if args.out.exists():
        done = {json.loads(line)["run"] for line in args.out.read_text().splitlines() if line.strip()}
    for k in range(1, args.runs + 1):
        run = f"{args.program}-{k}"
        if run in done:
            continue
        t0 = time.time()
        with dspy.context(lm=lm):
            before = held_out(make())
            compiled = MIPROv2(
                accuracy,
                auto=None,
                num_candidates=4,
                num_trials=8,
                minibatch_size=5,
                minibatch_full_eval_steps=4,
                max_bootstrapped_demos=3,
                max_labeled_demos=3,
                prompt_model=proposer,
                num_threads=2,
                seed=k - 1,  # each run its own seed: one seed twice makes the same decisions
                run_dir=ROOT / "runs/dspy-mipro-repeats" / run,
                resume=True,
                progress=False,
            ).compile(make(), trainset=train, valset=val)
            after = held_out(compiled)
        result = compiled.promptopt_result
        record = {
            "run": run,
            "seed": k - 1,
            "model": args.model,
            "test_before": before,
            "test_after": after,
            "test_size": len(test),
            "val_seed": result.seed_score,
            "val_best": result.best_score,
            "metric_calls": result.budget.metric_calls,
            "seconds": round(time.time() - t0),
            "demos": {name: len(p.demos) for name, p in compiled.named_predictors()},
            "instructions": {name: p.signature.instructions for name, p in compiled.named_predictors()},
            "provenance": experiment_provenance(
                "iris", split_seed, sizes, {"task": args.model, "proposer": args.model}
            ),
        }
        print(json.dumps(record), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
