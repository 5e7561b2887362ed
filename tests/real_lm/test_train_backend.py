"""The local training backend on a tiny run: LoRA SFT and GRPO in worker processes, stop and resume,
and the adapter served back through ``LM("hf/...")``.

The model is a tiny randomly initialised Qwen2 with the embedded model's real tokenizer (read from
its GGUF), so each step takes a fraction of a second; the same code trains the 0.5B model in
``experiments/train_local.py``.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

import promptopt as po
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.testing import ScriptedLM, field_value, last_user_message, toy_examples
from promptopt.train import LocalBackend, TrainingError, TrainingJob, export_rl, export_sft


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from promptopt.lm.model_files import resolve_model_path

    gguf = resolve_model_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    folder = tmp_path_factory.mktemp("tiny-qwen")
    Qwen2ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def metric(ex, pred, trace=None):
    return float(pred.out == ex.out)


def optimized_run():
    seed = po.Predict("word -> out", "Repeat the word.")
    comps = serialize_components(seed.components())
    result = OptimizationResult(
        optimizer="gepa",
        candidates=[
            Candidate(0, comps, val_scores={"a": 0.0}),
            Candidate(
                1, dict(comps, **{"self.instruction": "Repeat the word in capitals."}), val_scores={"a": 1.0}
            ),
        ],
        best_id=1,
    )
    lm = ScriptedLM(lambda m: "out: " + field_value(last_user_message(m), "word").upper())
    return seed, result, lm


def test_sft_stop_resume_and_serve(tiny_model, tmp_path):
    seed, result, lm = optimized_run()
    data = export_sft(result, seed, toy_examples(20), metric, tmp_path / "data", lm=lm, val_fraction=0.2)
    backend = LocalBackend(tmp_path / "jobs")
    job = TrainingJob(
        kind="sft",
        data=str(data.path),
        base_model=str(tiny_model),
        max_steps=40,
        batch_size=2,
        save_steps=1000,
    )
    job_id = backend.submit(job, "sft")
    # Asked for before the worker has started (it needs seconds to import torch), the stop is seen at
    # the end of step 1: the worker checks for it after every step, so the run always stops there.
    backend.stop(job_id)
    assert backend.status(job_id).state == "queued"
    st = backend.wait(job_id, timeout=300)
    assert st.state == "stopped", list(backend.logs(job_id))[-30:]
    assert st.step == 1 and st.max_steps == 40
    folder = tmp_path / "jobs" / "sft"
    assert [p.name for p in (folder / "checkpoints").glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (folder / "model.json").exists()
    with pytest.raises(TrainingError, match="stopped"):
        backend.result(job_id)

    assert backend.submit(job, "sft") == "sft"  # resumes from checkpoint-1
    st = backend.wait(job_id, timeout=300)
    assert st.state == "succeeded", list(backend.logs(job_id))[-30:]
    assert st.step == 40
    # one training log line per step, in order: steps 2..40 came after step 1, which was not redone
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 41))
    trained = backend.result(job_id)
    assert trained.steps == 40 and trained.train_rows == data.n_train and trained.final_loss is not None
    assert (folder / "adapter" / "adapter_config.json").exists() and (folder / "curve.png").exists()
    cfg = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model.resolve())

    served = po.LM(trained.lm, cache=tmp_path / "cache.sqlite", max_tokens=8)
    reply = served([{"role": "user", "content": "word: apple"}])
    assert reply.completion_tokens > 0 and reply.model.startswith("hf/")
    again = served([{"role": "user", "content": "word: apple"}])
    # Greedy decoding gives the same reply; it is answered from the cache unless it is blank (a blank
    # reply is never cached, so it is not replayed on later runs).
    assert again.text == reply.text and again.cached == bool(reply.text.strip())
    # A trained model is scored like any other LM.
    res = po.evaluate(seed, toy_examples(2), metric, lm=served, num_threads=1, display_progress=False)
    assert len(res.results) == 2


def test_grpo_with_the_metric_as_reward(tiny_model, tmp_path):
    seed, result, lm = optimized_run()
    data = export_rl(result, seed, toy_examples(8), metric, tmp_path / "rl", lm=lm, val_fraction=0.0)
    backend = LocalBackend(tmp_path / "jobs")
    job = TrainingJob(
        kind="rl",
        data=str(data.path),
        base_model=str(tiny_model),
        metric="exact:out",
        max_steps=2,
        batch_size=4,
        num_generations=4,
        max_completion_length=8,
    )
    trained = backend.result(backend.submit(job, "rl"), timeout=600)
    assert trained.kind == "rl" and trained.steps == 2
    # Each step logs one reward, and it is the job's metric (exact:out) scoring the completions.
    rewards = [h for h in trained.history if "reward" in h]
    assert [h["step"] for h in rewards] == [1, 2]
    assert all(h["reward"] == h.get("rewards/reward_exact_match_out/mean") for h in rewards), rewards
