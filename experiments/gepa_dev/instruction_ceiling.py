"""How much can an instruction that knows the task move the task model? A probe on the holdout split.

The instruction probe (``instruction_sensitivity.py``) found that the 0.5B task model ignores blunt
instructions ("Always answer neutral.") on most tasks, and the instructions that GEPA's local
reflectors wrote in the recorded comparison are mostly restatements of the seed or rules read off
two or three examples. Neither says whether a good instruction would be read. This script scores,
on each task's holdout split (``holdout.py``'s, outside the comparison's splits), the seed program and
BootstrapFewShot's program (a bench folder's cell, demos included) with their own instruction and
with one written from what is known about the task before seeing any of its examples:

* iris: the petal measurements that separate the species in Fisher's data (the textbook rule);
* heart disease: the signs of coronary artery disease among the Cleveland attributes;
* ScoNe: how negation reverses the direction of entailment between a specific and a general word,
  which is what the benchmark tests.

HoVer's and MMLU's seed instructions already say all there is to say without the answers, so they
are left out. With ``--proposer LM`` the proposer is asked for the same (``KNOWLEDGE_PROMPT``: the
task's instruction, fields and answers, and a request for concrete rules from what is known about
the domain), at temperature 0, and BootstrapFewShot's program is also scored with its reply: whether
a local proposer, asked directly, writes what the written instruction says. The instruction stands
where promptopt's ``ChatAdapter`` puts it (the top of the system message). Per task and program it
stores the scores, the per-example scores and the answer counts, and each other instruction's mean
difference from the program's own with a paired bootstrap interval over the examples (scipy.stats).
The answers come through the holdout's LM cache, so a killed run resumes.

    python experiments/gepa_dev/instruction_ceiling.py results/comparison/r0.5b-b60 \
        --proposer local/large --out results/gepa-dev/instruction-ceiling.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_order_probe import paired_difference  # noqa: E402
from holdout import add_lm_options, examples_sha256, holdout_examples, one_cell_per_task  # noqa: E402

import promptopt as po  # noqa: E402
from langprobe import get_task  # noqa: E402
from langprobe.task import task_dir  # noqa: E402
from promptopt.lm.identity import lm_identity  # noqa: E402
from promptopt.optimizers.components import deserialize_components  # noqa: E402
from promptopt.optimizers.gepa.reflection import fenced_blocks  # noqa: E402
from promptopt.provenance import collect, files_sha256  # noqa: E402

WRITTEN = {
    "iris": (
        "Name the species from the petal measurements. Setosa has small petals: petal length below "
        "2.5 cm. Versicolor has medium petals: petal length from 2.5 to 4.9 cm and petal width below "
        "1.7 cm. Virginica has large petals: petal length of 5 cm or more, or petal width of 1.7 cm "
        "or more."
    ),
    "heartdisease": (
        "Answer present when the patient shows signs of coronary artery disease: asymptomatic chest "
        "pain, exercise-induced angina, ST depression above 1, a flat or downsloping ST slope, one or "
        "more major vessels colored, or a reversible or fixed thalassemia defect. Two or more of "
        "these signs: present. At most one: absent."
    ),
    "scone": (
        "Negation reverses entailment. Without negation, a premise about a specific thing (a shotgun) "
        "entails the hypothesis about the general thing (a gun), but not the other way. Under a "
        "negation ('not', 'no', 'never', 'is false'), the general statement entails the specific one, "
        "and the specific one does not entail the general one. Answer entailment only if the "
        "hypothesis must be true; otherwise answer neutral."
    ),
}
KNOWLEDGE_PROMPT = """A small language model does this task:
{instruction}

It reads these inputs:
{inputs}
and answers {output}, one of: {choices}.

Write a better instruction for it. Use what is known about this domain: say which input values \
point to each answer ({choices}), as short concrete rules. Reply with the new instruction only, \
inside ``` fences."""
PROGRAMS = ("baseline", "bootstrap_fewshot")  # the seed program, and BootstrapFewShot's with its demos


def score(program: Any, examples: list, task: Any, lm: Any, field: str) -> dict[str, Any]:
    result = po.evaluate(program, examples, task.metric, lm=lm, num_threads=2, display_progress=False)
    if result.unscored:
        raise SystemExit(f"{task.name}: {len(result.unscored)} examples unscored (an LM outage?); rerun.")
    answers = Counter(str((r.prediction or {}).get(field, "")).strip() for r in result.results)
    return {"score": result.score, "scores": result.scores, "answers": dict(answers.most_common())}


def proposed(signature: Any, proposer: Any) -> dict[str, Any]:
    """The proposer's instruction for ``signature`` from what it knows of the domain (its reply's first
    fenced block, else the whole reply)."""
    out = signature.outputs[-1]
    prompt = KNOWLEDGE_PROMPT.format(
        instruction=signature.instruction.strip(),
        inputs="\n".join(f"- {f.name}" + (f": {f.desc}" if f.desc else "") for f in signature.inputs),
        output=out.name,
        choices=", ".join(out.choices or ()),
    )
    reply = proposer([{"role": "user", "content": prompt}]).text
    blocks = fenced_blocks(reply)
    return {"prompt": prompt, "reply": reply, "instruction": blocks[0] if blocks else reply.strip()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="bench folder holding the BootstrapFewShot cells")
    p.add_argument("--seed", type=int, default=0, help="which seed's cell to take per task")
    p.add_argument("--tasks", default=",".join(WRITTEN))
    p.add_argument("--size", type=int, default=100, help="holdout examples per task, at most")
    add_lm_options(p)
    p.add_argument("--proposer", default="", help="also ask this LM (e.g. local/large) for the instruction")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(WRITTEN))
    if unknown:
        raise SystemExit(f"--tasks: no written instruction for {unknown}; known: {', '.join(WRITTEN)}.")
    lm = po.LM(args.lm, max_tokens=args.max_tokens, cache=args.cache)
    proposer = po.LM(args.proposer, max_tokens=512, cache=args.cache) if args.proposer else None
    cells = one_cell_per_task(Path(args.folder), "bootstrap_fewshot", args.seed, wanted)

    tasks: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for name in wanted:
        task, cell = get_task(name), cells[name]
        examples = holdout_examples(task, (15, 15, 100), 0, args.size)
        programs = {
            "baseline": task.program(cell.config.program),
            "bootstrap_fewshot": task.program(cell.config.program).with_components(
                deserialize_components(dict(cell.finished().components))
            ),
        }
        by_program: dict[str, Any] = {}
        for label, program in programs.items():
            (pred_name, predictor), *rest = program.named_predictors()
            if rest:
                raise SystemExit(f"{name}: the probe expects a one-predictor program, not {len(rest) + 1}.")
            field = predictor.signature.outputs[-1].name
            own = score(program, examples, task, lm, field)
            written = score(
                program.with_components({f"{pred_name}.instruction": WRITTEN[name]}),
                examples,
                task,
                lm,
                field,
            )
            by_program[label] = {
                "own": own,
                "written": written,
                "written_minus_own": paired_difference(written["scores"], own["scores"]),
            }
            print(
                f"{name} {label}: own instruction {100 * own['score']:.1f} {own['answers']}; "
                f"written {100 * written['score']:.1f} {written['answers']}",
                flush=True,
            )
        if proposer is not None:
            program = programs["bootstrap_fewshot"]
            (pred_name, predictor), *_ = program.named_predictors()
            field = predictor.signature.outputs[-1].name
            asked = proposed(predictor.signature, proposer)
            scored = score(
                program.with_components({f"{pred_name}.instruction": asked["instruction"]}),
                examples,
                task,
                lm,
                field,
            )
            by_program["bootstrap_fewshot"]["proposed"] = {**asked, **scored}
            by_program["bootstrap_fewshot"]["proposed_minus_own"] = paired_difference(
                scored["scores"], by_program["bootstrap_fewshot"]["own"]["scores"]
            )
            print(
                f"{name} bootstrap_fewshot: proposed {100 * scored['score']:.1f} {scored['answers']}",
                flush=True,
            )
        tasks[name] = {
            "cell": cell.key,
            "examples": len(examples),
            "written_instruction": WRITTEN[name],
            **by_program,
        }
        data[name] = {
            "files_sha256": files_sha256(task_dir(name))["sha256"] if task_dir(name) else None,
            "holdout_sha256": examples_sha256(examples),
        }
    means = {
        label: {
            which: float(np.mean([t[label][which]["score"] for t in tasks.values()]))
            for which in ("own", "written")
        }
        for label in PROGRAMS
    }
    if proposer is not None:
        means["bootstrap_fewshot"]["proposed"] = float(
            np.mean([t["bootstrap_fewshot"]["proposed"]["score"] for t in tasks.values()])
        )
    lms = {"task": lm_identity(lm), **({"proposer": lm_identity(proposer)} if proposer else {})}
    out = {
        "what": "holdout score of the seed and BootstrapFewShot programs, own and written instruction",
        "folder": args.folder,
        "means": means,
        "tasks": tasks,
        "provenance": collect(lms=lms, data=data).to_dict(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for label, m in means.items():
        print(f"{label}: " + ", ".join(f"{which} {100 * v:.1f}" for which, v in m.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
