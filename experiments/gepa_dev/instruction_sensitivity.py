"""Does the task model do what its instruction says? A probe of the instruction's reach.

Instruction optimizers (GEPA, MIPROv2, their peers) can only gain where the task model's answers
depend on the instruction. This script measures that dependence on each task's holdout split (the
examples outside the comparison's splits, as ``holdout.py`` draws them): the seed program is run
with its own instruction and with one blunt instruction per answer choice ("Always answer
neutral."), which a model that reads its instruction follows on every example. Two placements:

* ``system``: the instruction where promptopt's ``ChatAdapter`` puts it (and DSPy's ``ChatAdapter``
  too), at the top of the system message, above the field descriptions and the demos;
* ``user_end``: the same system message, and the instruction repeated after the inputs of the
  final user message, right before the model answers (demos unchanged).

Per task and placement it stores the score and the answer counts of every variant, and the
obedience rate: the share of answers equal to the choice the blunt instruction demands, over all
choices (a model that ignores the instruction obeys at about one over the number of choices, or
at its favourite choice's share). The seed program's answers come through the holdout's LM cache,
so a killed run resumes from what was answered.

    python experiments/gepa_dev/instruction_sensitivity.py --out results/gepa-dev/instruction-sensitivity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from holdout import add_lm_options, examples_sha256, holdout_examples  # noqa: E402

import promptopt as po  # noqa: E402
from langprobe import get_task  # noqa: E402
from langprobe.task import task_dir  # noqa: E402
from promptopt.core.adapter import ChatAdapter  # noqa: E402
from promptopt.core.signature import Signature  # noqa: E402
from promptopt.lm.identity import lm_identity  # noqa: E402
from promptopt.provenance import collect, files_sha256  # noqa: E402

TASKS = ("iris", "heartdisease", "scone", "hover", "mmlu")


class InstructionLastAdapter(ChatAdapter):
    """promptopt's chat format with the instruction repeated after the final inputs."""

    def format(
        self, signature: Signature, demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
    ) -> list[dict[str, str]]:
        messages = super().format(signature, demos, inputs)
        messages[-1] = {
            **messages[-1],
            "content": messages[-1]["content"] + "\n\n" + signature.instruction.strip(),
        }
        return messages


PLACEMENTS = {"system": ChatAdapter(), "user_end": InstructionLastAdapter()}
PLACEMENT_WHERE = {
    "system": "top of the system message (promptopt's and DSPy's ChatAdapter)",
    "user_end": "also after the inputs of the final user message",
}


def run_variant(task: Any, instruction: str, examples: list, lm: Any, adapter: ChatAdapter) -> dict[str, Any]:
    program = task.program("predict")
    (name, predictor), *rest = program.named_predictors()
    if rest:
        raise SystemExit(f"{task.name}: the probe expects a one-predictor program, not {len(rest) + 1}.")
    field = predictor.signature.outputs[-1].name
    program = program.with_components({f"{name}.instruction": instruction})
    with po.context(adapter=adapter):
        result = po.evaluate(program, examples, task.metric, lm=lm, num_threads=2, display_progress=False)
    if result.unscored:
        raise SystemExit(f"{task.name}: {len(result.unscored)} examples unscored (an LM outage?); rerun.")
    answers = Counter(str((r.prediction or {}).get(field, "")).strip() for r in result.results)
    return {"instruction": instruction, "score": result.score, "answers": dict(answers.most_common())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--size", type=int, default=40, help="holdout examples per task, at most")
    p.add_argument("--placements", default=",".join(PLACEMENTS), help="comma-separated: system, user_end")
    add_lm_options(p)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    placements = [x.strip() for x in args.placements.split(",") if x.strip()]
    unknown = sorted(set(placements) - set(PLACEMENTS))
    if unknown:
        raise SystemExit(f"--placements: unknown {unknown}; known: {', '.join(PLACEMENTS)}.")
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    lm = po.LM(args.lm, max_tokens=args.max_tokens, cache=args.cache)

    tasks: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for name in (t.strip() for t in args.tasks.split(",") if t.strip()):
        task = get_task(name)
        examples = holdout_examples(task, (15, 15, 100), 0, args.size)
        signature = task.program("predict").named_predictors()[0][1].signature
        choices = signature.outputs[-1].choices
        if not choices:
            raise SystemExit(
                f"{name}: its answer field has no choices; the probe needs a classification task."
            )
        gold = Counter(str(e.get(signature.outputs[-1].name)) for e in examples)
        by_placement = {}
        for placement in placements:
            adapter = PLACEMENTS[placement]
            seed = run_variant(task, signature.instruction, examples, lm, adapter)
            blunt = {c: run_variant(task, f"Always answer {c}.", examples, lm, adapter) for c in choices}
            obeyed = sum(v["answers"].get(c, 0) for c, v in blunt.items()) / (len(examples) * len(choices))
            by_placement[placement] = {"seed": seed, "always": blunt, "obedience": obeyed}
            print(
                f"{name} {placement}: seed {100 * seed['score']:.1f} {seed['answers']}; obedience "
                f"{100 * obeyed:.0f}% (" + ", ".join(f"{c}: {v['answers']}" for c, v in blunt.items()) + ")",
                flush=True,
            )
        tasks[name] = {"examples": len(examples), "gold": dict(gold.most_common()), **by_placement}
        data[name] = {
            "files_sha256": files_sha256(task_dir(name))["sha256"] if task_dir(name) else None,
            "holdout_sha256": examples_sha256(examples),
        }
    out = {
        "what": "how far the task model follows its instruction, by where the instruction stands",
        "placements": {p: PLACEMENT_WHERE[p] for p in placements},
        "tasks": tasks,
        "provenance": collect(lms={"task": lm_identity(lm)}, data=data).to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
