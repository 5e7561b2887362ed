"""GEPA on the Node.js example task app through the inference proxy, on the local model.

Starts ``examples/task-app-node/app.mjs`` (iris from the data mirror; its prompt lives in its own
code), optimizes that prompt with GEPA on the app's train/validation splits, and scores the seed and
the best prompt on the app's 40 test examples. Usage (resumable: rerun the same command after an
interruption; LM calls are cached)::

    python experiments/task_app_node.py --budget 80

Writes ``results/task-apps/node-iris<tag>.json`` (test scores, paired lift with its 95% interval,
budget, best prompt, provenance with the sha256 of the app and of its data); the run state lives
in ``runs/task-apps/node-iris<tag>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from langprobe.task import mirror_dir
from promptopt.bench.single_run import RunConfig, optimize
from promptopt.io import write_json_atomic
from promptopt.provenance import sha256_file
from promptopt.task_apps.launch import launched_app

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "task-app-node" / "app.mjs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=int, default=80, help="metric calls (rollouts) for GEPA")
    ap.add_argument("--lm", default="local", help="the app's LM, called through the proxy")
    ap.add_argument("--reflection-lm", default="local")
    ap.add_argument("--minibatch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix of the output names")
    ap.add_argument("--data-dir", default=None, help="the data mirror (default: shared/data)")
    args = ap.parse_args()

    if shutil.which("node") is None:
        sys.exit("node is not installed; the example app is a Node.js program.")
    data = mirror_dir(args.data_dir)
    if data is None or not (data / "iris" / "iris.csv").exists():
        sys.exit("The data mirror has no iris/iris.csv; pass --data-dir or set PROMPTOPT_DATA_DIR.")
    csv = data / "iris" / "iris.csv"
    token = secrets.token_hex(8)
    env = {"DATA": str(csv), "TOKEN": token, "PORT": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    name = f"node-iris{args.tag}"
    config = {
        "optimizer": "gepa",
        "budget": args.budget,
        "seed": args.seed,
        "out": str(ROOT / "runs" / "task-apps" / name),
        "lm": {"task": args.lm, "reflection": args.reflection_lm, "max_tokens": 48},
        "options": {"minibatch_size": args.minibatch_size},
    }
    started = time.time()
    with launched_app(["node", str(APP)], env=env) as url:
        config["program"] = {"task_app": url, "token": token}
        summary = optimize(
            RunConfig.from_dict(config, source="experiments/task_app_node.py"),
            data_provenance={
                "iris": {"sha256": sha256_file(csv), "file": "iris/iris.csv"},
                "app": {"sha256": sha256_file(APP), "file": str(APP.relative_to(ROOT))},
            },
        )
    summary["wall_seconds"] = round(time.time() - started, 1)
    # The URL and token were this run's alone; what reruns it is the command in the provenance.
    summary["config"]["program"] = {"task_app": "examples/task-app-node/app.mjs (started by this script)"}
    out = ROOT / "results" / "task-apps" / f"{name}.json"
    write_json_atomic(out, summary)
    print(json.dumps({"validation": summary["validation"], "test": summary["test"]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
