"""The embedded local model end to end: server, program, evaluation, cache."""

import json
import subprocess
import sys

import promptopt as po
from langprobe import get_task
from promptopt.lm.server import LocalServer


def test_program_on_20_real_examples_then_all_from_cache(tmp_path, local_lm_factory):
    task = get_task("iris")
    data = task.splits(seed=0).test[:20]
    program = task.program("predict")

    first = po.evaluate(
        program, data, task.metric, lm=local_lm_factory(tmp_path / "c.sqlite"), display_progress=False
    )
    assert len(first.results) == 20
    assert first.usage.uncached_calls == 20 and first.usage.completion_tokens > 0
    parsed = [r for r in first.results if not r.error]
    assert len(parsed) >= 16, [r.error for r in first.results if r.error]
    # A 0.5B model on a 3-class task: better than nothing, short of perfect.
    assert 0.2 <= first.score <= 0.95, first.summary()
    for r in first.results:
        assert r.trace and r.trace[0].raw and r.trace[0].messages[0]["role"] == "system"

    second = po.evaluate(
        program, data, task.metric, lm=local_lm_factory(tmp_path / "c.sqlite"), display_progress=False
    )
    assert second.usage.uncached_calls == 0 and second.usage.cached_calls == 20
    assert second.scores == first.scores
    assert [r.prediction for r in second.results] == [r.prediction for r in first.results]


def test_server_is_shared_across_processes_and_fresh_samples_differ(tmp_path, local_lm_factory):
    lm = local_lm_factory(tmp_path / "c.sqlite", temperature=1.0, max_tokens=24)
    msg = [{"role": "user", "content": "Invent a name for a cat. Reply with the name only."}]
    texts = {lm(msg, rollout_id=i).text for i in range(4)}
    assert len(texts) >= 2  # rollout ids are real new samples at temperature 1
    assert lm(msg, rollout_id=0).cached

    server = LocalServer.for_model(None)
    code = (
        "import json, promptopt as po\n"
        "lm = po.LM('local', cache=False)\n"
        "c = lm([{'role': 'user', 'content': 'Say ok.'}], max_tokens=4)\n"
        "print(json.dumps({'pid': lm.backend.server.pid, 'text': c.text}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["pid"] == server.pid  # reused, not a second server
    assert server.healthy()  # the child's exit did not stop a server this process still leases
