"""The Node.js task app on the real local model: started for real, optimized by a short GEPA through
the inference proxy, and every candidate's prompt seen in the app's own LM calls (their traces)."""

from __future__ import annotations

import shutil

import pytest

from promptopt.core.trace import collect_trace
from promptopt.optimizers import GEPA
from promptopt.task_apps.program import TaskApp, rollout_score
from tests.task_apps.node_app import TOKEN, running_node_app


@pytest.mark.real_lm
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_gepa_on_the_node_app_through_the_proxy(tmp_path, local_lm_factory):
    lm = local_lm_factory(tmp_path / "cache.sqlite", max_tokens=48)
    reflection = local_lm_factory(tmp_path / "reflect.sqlite", max_tokens=400, temperature=0.7)
    with running_node_app() as url, TaskApp.connect(url, lm=lm, token=TOKEN) as app:
        splits = app.examples()
        gepa = GEPA(rollout_score, max_metric_calls=16, reflection_lm=reflection, progress=False)
        result = gepa.compile(app.program(), splits.train[:8], splits.val[:4], run_dir=tmp_path / "run")
        assert result.budget.metric_calls >= 4 and result.budget.lm_calls >= result.budget.metric_calls
        # Each candidate, the seed included, runs the app's own code with its prompt in place.
        candidates = [c.components for c in result.candidates]
        candidates.append({"system_prompt": "Name the iris species in one lowercase word."})
        for components in candidates:
            with collect_trace() as trace:
                app.program().with_components(components)(example_id=splits.val[0].id, split="validation")
            assert [e.messages[0]["content"] for e in trace] == [components["system_prompt"]]
            assert trace[0].raw  # the local model answered the app through the proxy
