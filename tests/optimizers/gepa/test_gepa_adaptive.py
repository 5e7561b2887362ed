"""The adaptive proposer: rewrites and rules side by side, chosen by their results, resumable."""

import json

import pytest

import promptopt as po
from promptopt.optimizers import GEPA, Callback
from promptopt.optimizers.gepa import AdaptiveProposer, RewriteProposer, RulesProposer
from promptopt.optimizers.gepa.adaptive import auto_proposer
from promptopt.testing import Killed, ScriptedLM, dies_at, field_value, last_user_message, toy_examples

data = toy_examples


def metric(ex, pred, trace=None):
    if pred.out == ex.out:
        return po.Score(1.0, "Correct.")
    return po.Score(0.0, f"Wrong: expected {ex.out!r}, got {pred.out!r}.")


def task_lm():
    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        system = messages[0]["content"].lower()
        return f"out: {word.upper() if 'uppercase' in system else word}"

    return ScriptedLM(reply)


def is_rules_prompt(messages) -> bool:
    return "What general rules" in messages[0]["content"]


class Collect(Callback):
    def __init__(self):
        self.events = []

    def on_event(self, name, event):
        self.events.append((name, dict(event)))


def compile_with(
    reflector, seed=1, budget=60, run_dir=None, resume=False, lm=None, callbacks=(), the_metric=metric
):
    gepa = GEPA(
        the_metric,
        max_metric_calls=budget,
        reflection_lm=reflector,
        proposer="adaptive",
        progress=False,
        evolve_demos=False,
        use_merge=False,
        seed=seed,
        callbacks=list(callbacks),
    )
    return gepa.compile(
        po.Predict("word -> out", "Repeat the word."),
        data(8),
        data(6, offset=10),
        lm=lm or task_lm(),
        run_dir=run_dir,
        resume=resume,
    )


def test_choice_tries_each_then_prefers_the_winner():
    ap = AdaptiveProposer({"rewrite": RewriteProposer(), "rules": RulesProposer()})
    assert ap.choose() == "rewrite"
    ap._pending.append("rewrite")
    ap.observe(False)
    assert ap.choose() == "rules"
    ap._pending.append("rules")
    ap.observe(True)
    assert ap.choose() == "rules"  # 2/3 against 1/3
    for _ in range(3):
        ap._pending.append("rules")
        ap.observe(False)
    assert ap.choose() == "rewrite"  # rules 2/6 against rewrite 1/3: tie, rewrite tried less
    back = AdaptiveProposer({"rewrite": RewriteProposer(), "rules": RulesProposer()})
    back.load_state_dict(json.loads(json.dumps(ap.state_dict())))
    assert (
        back.state_dict()
        == ap.state_dict()
        == {
            "tries": {"rewrite": 1, "rules": 4},
            "wins": {"rewrite": 0, "rules": 1},
        }
    )
    with pytest.raises(ValueError, match="at least one"):
        AdaptiveProposer({})


@pytest.mark.parametrize("winner", ["rewrite", "rules"])
def test_gepa_finds_the_proposer_that_helps(winner):
    def reply(messages):
        rules = is_rules_prompt(messages)
        if rules:
            return "- Write the output in uppercase letters." if winner == "rules" else "- Be careful."
        if winner == "rewrite":
            return "```\nRepeat the word in uppercase letters.\n```"
        return "The instruction is fine."  # unfenced: rejected by the guard rails

    cb = Collect()
    res = compile_with(ScriptedLM(reply), callbacks=[cb])
    assert res.best_score == 1.0
    proposals = [d for e, d in cb.events if e == "proposal" and d.get("proposer")]
    assert proposals[0]["proposer"] == "rewrite"  # every proposer is tried, in order
    adopted = [d["proposer"] for d in proposals if d["accepted"]]
    assert winner in adopted
    stats = res.config["proposer_state"]
    assert stats["wins"][winner] >= 1
    loser = "rules" if winner == "rewrite" else "rewrite"
    assert stats["wins"][loser] == 0


def test_adaptive_run_resumes_exactly(tmp_path):
    def reflect(messages):
        n = sum(map(ord, messages[0]["content"])) % 7
        if is_rules_prompt(messages):
            return f"- Mind the vowels ({n}).\n- Always write in uppercase when the word is long."
        return [
            "no fence",
            f"```\nRepeat the word (variant {n}).\n```",
            f"```\nUppercase, always ({n}).\n```",
        ][n % 3]

    def noisy_lm():
        def reply(messages):
            word = field_value(last_user_message(messages), "word")
            system = messages[0]["content"].lower()
            ok = ("uppercase" in system and word[1] in "ae") or word[0] in "aeiou"
            return f"out: {word.upper() if ok else word}"

        return ScriptedLM(reply)

    full = compile_with(ScriptedLM(reflect), seed=5, budget=90, run_dir=tmp_path / "full", lm=noisy_lm())
    assert "budget" in full.stop_reason and len(full.candidates) > 1, (full.stop_reason, full.config)

    with pytest.raises(Killed):
        compile_with(
            ScriptedLM(reflect),
            seed=5,
            budget=90,
            run_dir=tmp_path / "resumed",
            lm=noisy_lm(),
            the_metric=dies_at(metric, 40),
        )
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["iteration"] > 0 and sum(state["proposer_state"]["tries"].values()) > 0
    resumed = compile_with(
        ScriptedLM(reflect), seed=5, budget=90, run_dir=tmp_path / "resumed", resume=True, lm=noisy_lm()
    )
    assert resumed.config["proposer_state"] == full.config["proposer_state"]
    assert [c.components for c in resumed.candidates] == [c.components for c in full.candidates]
    assert resumed.best_program.components() == full.best_program.components()


def test_auto_is_adaptive_for_local_reflectors_only():
    class Local:
        is_local = True

    assert isinstance(auto_proposer(Local()), AdaptiveProposer)
    assert isinstance(auto_proposer(ScriptedLM(["x"])), RewriteProposer)
