#!/usr/bin/env bash
# Time one of the README's promises as a new user (or CI) meets it: a clean clone of HEAD beside this
# checkout (so the data mirror in ../shared/data is found as in CI) and an empty cache (no llama.cpp
# wheel, no joined model files, no LM replies).
#
#   bash scripts/time_fresh.sh ci        # `bash .ci/run` with CI=true -> results/ci/timing.json
#   bash scripts/time_fresh.sh main-job  # set-up, then the main job -> results/quick/ (report, charts,
#                                        # cells and timing.json)
#
# Each takes as long as what it times (CI: about half an hour on 2 cores; the main job: about 10 min).
set -euo pipefail
what=${1:-}
case "$what" in ci | main-job) ;; *) echo "usage: bash scripts/time_fresh.sh ci|main-job" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
repo=$(pwd)
commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "time_fresh: uncommitted changes are not timed; the clone is HEAD ($commit)" >&2
fi
work=$(mktemp -d "$(dirname "$repo")/fresh-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
mkdir -p "$work/cache"
in_clone() {
  (cd "$work/clone" && env -u PROMPTOPT_CACHE_DIR -u PROMPTOPT_MODELS_DIR -u PROMPTOPT_MODEL_PATH \
    XDG_CACHE_HOME="$work/cache" "$@" </dev/null)
}
stages="$work/stages.json"
log="$work/run.log"
set +e
if [ "$what" = ci ]; then
  in_clone env CI=true CI_TIMING_FILE="$stages" bash .ci/run 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  target=results/ci/timing.json
else
  t0=$(date +%s)
  in_clone bash scripts/setup.sh >"$work/setup.log" 2>&1
  rc=$?
  t1=$(date +%s)
  if [ "$rc" -eq 0 ]; then
    in_clone .venv/bin/python -m promptopt.bench langprobe --preset quick 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    tail -30 "$work/setup.log"
  fi
  t2=$(date +%s)
  printf '{"setup": %d, "main_job": %d, "total": %d}\n' $((t1 - t0)) $((t2 - t1)) $((t2 - t0)) >"$stages"
  target=results/quick/timing.json
  if [ "$rc" -eq 0 ]; then
    rm -rf results/quick
    mkdir -p results/quick
    cp -r "$work/clone/runs/langprobe/quick/"{report.md,report.csv,charts,cells} results/quick/
  fi
fi
set -e
mkdir -p "$(dirname "$target")"
python3 - "$stages" "$commit" "$rc" "$log" "$what" >"$target" <<'PY'
import json, os, platform, re, sys
from datetime import datetime, timezone
stages_file, commit, rc, log, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
stages = json.load(open(stages_file)) if os.path.exists(stages_file) else {}
total = stages.pop("total", None)
lines = open(log, errors="replace").read().splitlines() if os.path.exists(log) else []
wanted = r"\d+ (passed|failed)|cells|^Report|^Charts"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
print(json.dumps({
    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    "commit": commit,
    "seconds": total,
    "exit_code": rc,
    "stages": stages,
    "printed": [l.strip("= ") for l in lines if re.search(wanted, l)],
    "clean": "fresh clone of the commit, empty cache (XDG_CACHE_HOME)" + (", CI=true" if what == "ci" else ""),
    "command": f"bash scripts/time_fresh.sh {what}",
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()},
}, indent=2))
PY
cat "$target"
exit "$rc"
