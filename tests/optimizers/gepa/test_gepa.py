"""GEPA logic with scripted LMs: selection, acceptance, merge, budget, guard rails, resume."""

import json
import random
import re
from collections import Counter

import pytest

import promptopt as po
from promptopt.optimizers import GEPA, Callback, evaluation
from promptopt.optimizers.components import serialize_components
from promptopt.optimizers.evaluation import components_key
from promptopt.optimizers.gepa import pareto
from promptopt.optimizers.gepa.merge import find_merge, merge_components
from promptopt.optimizers.result import Candidate, OptimizationResult
from promptopt.testing import (
    Killed,
    ScriptedLM,
    dies_at,
    field_value,
    last_user_message,
    toy_examples,
    toy_reply,
)
from promptopt.testing import toy_program as program

data = toy_examples


def metric(ex, pred, trace=None):
    if pred.out == ex.out:
        return po.Score(1.0, "Correct.")
    return po.Score(0.0, f"Wrong: expected {ex.out!r} (the word in capital letters), got {pred.out!r}.")


def task_lm(*, demo_works=False):
    """Uppercases only when the system prompt says so (or, optionally, when a demo shows it)."""

    def capitals(word, system, shown):
        return "uppercase" in system or (demo_works and shown)

    return ScriptedLM(lambda messages: toy_reply(messages, capitals))


def rules_reflector(calls=None):
    def reply(messages):
        if calls is not None:
            calls.append(messages[0]["content"])
        return "Here are rules:\n- Always write the output in uppercase letters.\n- Keep the word itself."

    lm = ScriptedLM(reply)
    return lm


def run(tmp_path=None, **kw):
    opts = dict(
        max_metric_calls=60,
        reflection_lm=rules_reflector(),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        seed_demos=0,  # instruction mechanics: no demo candidate beside the seed
        seed=1,
    )
    opts.update(kw)
    lm = opts.pop("lm", None) or task_lm()
    gepa = GEPA(metric, **opts)
    return gepa.compile(program(), data(8), data(6, offset=10), lm=lm, run_dir=tmp_path)


def test_gepa_improves_and_reports_everything(tmp_path):
    res = run(tmp_path / "run")
    assert res.seed_score == 0.0 and res.best_score == 1.0
    best = res.best_program
    assert "uppercase" in best.get_instructions()["self"].lower()
    assert res.best_candidate.parents == [0] and res.best_candidate.origin.startswith("reflection:")
    assert res.budget.metric_calls <= 60  # a budget is never overspent
    assert res.budget.proposer_lm_calls >= 1 and res.budget.lm_calls > res.budget.proposer_lm_calls
    assert res.learning_curve[0] == (6, 0.0) and res.learning_curve[-1][1] == 1.0
    assert res.pareto_front == [res.best_id]
    assert "perfect on every validation example" in res.stop_reason
    back = OptimizationResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.to_dict() == res.to_dict()
    assert back.program_for(program()).get_instructions() == best.get_instructions()
    run_dir = tmp_path / "run"
    assert (run_dir / "result.json").exists() and (run_dir / "best_program.json").exists()
    events = [json.loads(line)["event"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    for e in (
        "run_start",
        "parent_selected",
        "minibatch_evaluated",
        "proposal",
        "candidate_accepted",
        "iteration_end",
        "run_end",
    ):
        assert e in events
    loaded = po.Predict("word -> out").load(run_dir / "best_program.json")
    assert loaded.get_instructions() == best.get_instructions()


def test_nothing_is_scored_twice(monkeypatch):
    """The evaluator runs and scores each (candidate, example) pair at most once: a parent's minibatch
    seen again, a tie extension, and a merge's validation subsample all come from its records."""
    runs, asked = Counter(), Counter()
    run_examples = evaluation.evaluate

    def counting_evaluate(prog, examples, *args, **kwargs):
        key = components_key(serialize_components(prog.components()))
        runs.update((key, ex.id) for ex in examples)
        return run_examples(prog, examples, *args, **kwargs)

    cached_run = evaluation.CandidateEvaluator.run

    def counting_run(self, components, examples, phase=None):
        asked.update((components_key(components), ex.id) for ex in examples)
        return cached_run(self, components, examples, phase)

    monkeypatch.setattr(evaluation, "evaluate", counting_evaluate)
    monkeypatch.setattr(evaluation.CandidateEvaluator, "run", counting_run)
    scored = []

    def counted_metric(ex, pred, trace=None):
        scored.append(ex.id)
        return two_stage_metric(ex, pred, trace)

    res, _ = two_stage_run(seed=8, metric=counted_metric)

    twice = {pair: n for pair, n in runs.items() if n > 1}
    assert not twice, twice
    # the budget counts exactly the pairs run, and the metric saw nothing else
    assert sum(runs.values()) == res.budget.metric_calls == len(scored)
    val_ids = [e.id for e in data(4, offset=10)]
    for c in res.candidates:
        key = components_key(c.components)
        assert sorted(c.val_scores) == sorted(val_ids)
        assert [runs[(key, i)] for i in val_ids] == [1] * len(val_ids), c.origin
    # the run did ask for pairs again (so the cache was exercised) ...
    assert sum(asked.values()) > sum(runs.values())
    # ... among them the merge's validation subsample, scored once when the merge was judged and
    # reused when it was accepted
    (merged,) = [c for c in res.candidates if c.origin == "merge"]
    key = components_key(merged.components)
    assert [asked[(key, i)] for i in val_ids] == [2] * len(val_ids)

    # A run that stops on a perfect candidate spends the same with a larger budget.
    first = run()
    more = run(max_metric_calls=first.budget.metric_calls + 30)
    assert more.best_score == first.best_score == 1.0
    assert more.budget.metric_calls == first.budget.metric_calls


class Collect(Callback):
    def __init__(self):
        self.events = []

    def on_event(self, name, event):
        self.events.append((name, dict(event)))


@pytest.mark.parametrize(
    "reply, finish, reason",
    [
        ("Answer in uppercase.", "stop", "unfenced"),
        ("```\n\n```", "stop", "empty"),
        ("```\nAnswer in upper", "length", "truncated"),
        ("```\nRepeat the word.\n```", "stop", "unchanged"),
        ("```\n" + "uppercase " * 500 + "\n```", "stop", "too long"),
    ],
)
def test_bad_rewrites_are_rejected_not_adopted(reply, finish, reason):
    cb = Collect()
    res = run(
        proposer="rewrite",
        reflection_lm=ScriptedLM([reply], finish_reason=finish),
        callbacks=[cb],
        max_metric_calls=30,
        use_merge=False,
    )
    assert len(res.candidates) == 1 and res.best_id == 0
    reasons = [d["reason"] for e, d in cb.events if e == "proposal"]
    assert reasons and all(reason in r for r in reasons), reasons


@pytest.mark.parametrize(
    "reply",
    [
        "Sure:\n```\nRepeat the word in uppercase letters.\n```",
        "```text\nRepeat the word in uppercase letters.\n```",
        # the 0.5B model echoes the prompt's "inside ``` fences": an info string, not the instruction
        "``` fences\nRepeat the word in uppercase letters.\n```",
        "```Repeat the word in uppercase letters.```",
        # a fence never closed in a reply that stopped on its own: the block runs to the end
        "```en\nRepeat the word in uppercase letters.",
    ],
)
def test_good_rewrite_is_adopted(reply):
    reflector = ScriptedLM([reply])
    res = run(proposer="rewrite", reflection_lm=reflector)
    assert res.best_score == 1.0
    assert res.best_program.get_instructions()["self"] == "Repeat the word in uppercase letters."


def test_reflection_prompt_is_capped():
    prompts = []
    long_word = "x" * 5000

    def lm(messages):
        return "out: nope"

    ds = [po.Example(_id=f"l{i}", word=long_word + str(i), out="Y").with_inputs("word") for i in range(6)]
    gepa = GEPA(
        metric,
        max_metric_calls=20,
        reflection_lm=rules_reflector(prompts),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        max_reflection_examples=2,
        max_reflection_chars=300,
    )
    gepa.compile(program(), ds, ds[:3], lm=ScriptedLM(lm))
    assert prompts and all(len(p) < 2500 for p in prompts)
    assert all(p.count("### Example") == 2 for p in prompts)


def test_perfect_minibatch_skips_without_budget():
    cb = Collect()
    solved = po.Predict("word -> out", "Repeat the word in uppercase.")
    gepa = GEPA(
        metric,
        max_metric_calls=40,
        reflection_lm=rules_reflector(),
        progress=False,
        evolve_demos=False,
        callbacks=[cb],
        patience=6,
        seed_demos=0,
    )
    # one validation example nobody can get right, so the run does not stop at a perfect validation score
    unsolvable = po.Example(_id="bad", word="zebra", out="no such answer").with_inputs("word")
    res = gepa.compile(solved, data(6), [*data(3, offset=10), unsolvable], lm=task_lm())
    assert res.best_score == 0.75 and len(res.candidates) == 1
    reasons = [d["reason"] for e, d in cb.events if e == "proposal"]
    assert any("no budget spent" in r for r in reasons)
    # each training example scored once; the later perfect minibatches were free
    assert res.budget.metric_calls == 4 + 6
    assert "no improvement" in res.stop_reason


def test_stalled_run_stops_instead_of_looping():
    # every proposal is rejected before it is scored, and minibatches come from the cache after one epoch
    gepa = GEPA(
        metric,
        max_metric_calls=10_000,
        reflection_lm=ScriptedLM(["no fence here"]),
        progress=False,
        proposer="rewrite",
        evolve_demos=False,
        use_merge=False,
        max_stalled_iterations=5,
        seed_demos=0,
    )
    res = gepa.compile(program(), data(6), data(3, offset=10), lm=task_lm())
    assert "no progress: 5 iterations" in res.stop_reason
    assert res.budget.metric_calls == 3 + 6 and len(res.candidates) == 1


def test_demos_evolve_when_wording_cannot_help():
    never = ScriptedLM(lambda m: "- Be careful with the answer.")  # useless rules

    def lm(messages):  # right only for the first word seen, or with a demo shown
        word = field_value(last_user_message(messages), "word")
        shown = any(m["role"] == "assistant" for m in messages)
        return f"out: {word.upper() if shown or word == 'apple' else word}"

    gepa = GEPA(
        metric,
        max_metric_calls=80,
        reflection_lm=never,
        proposer="rules",
        progress=False,
        evolve_demos=True,
        labeled_demos=False,
        seed=0,
        seed_demos=0,
    )
    res = gepa.compile(program(), data(8), data(6, offset=10), lm=ScriptedLM(lm))
    assert res.best_score == 1.0
    assert res.best_candidate.origin == "reflection:self.demos"
    # the only successful trace was on "apple": without labeled demos it is the demo
    assert [d["word"] for d in res.best_program.get_demos()["self"]] == ["apple"]


def test_labeled_demos_are_spread_over_classes():
    from promptopt.optimizers.gepa.demos import DemoPool

    sig = po.Predict("text -> label").signature
    train = [
        po.Example(_id=f"t{i}", text=f"t{i}", label="yes" if i < 8 else "no").with_inputs("text")
        for i in range(10)
    ]
    pool = DemoPool()
    pool.add_labeled("self", sig, train)
    for seed in range(5):
        demos = pool.propose("self", [], 4, random.Random(seed))
        labels = sorted(d["fields"]["label"] if "fields" in d else d["label"] for d in demos)
        assert labels == ["no", "no", "yes", "yes"], labels
    # a predictor whose fields the examples lack gets no labeled demos
    other = po.Predict("question -> answer").signature
    pool.add_labeled("other", other, train)
    assert pool.propose("other", [], 4, random.Random(0)) is None


def test_pareto_front_and_selection():
    def cand(i, scores, parents=()):
        return Candidate(
            id=i, components={}, parents=list(parents), val_scores={f"e{k}": s for k, s in enumerate(scores)}
        )

    cands = [cand(0, [0, 0, 1, 0]), cand(1, [1, 0, 1, 0]), cand(2, [0, 1, 0, 0]), cand(3, [1, 0, 0, 0])]
    assert pareto.best_sets(cands)["e0"] == {1, 3}
    assert pareto.front(cands) == [1, 2]  # 0 and 3 are dominated by 1
    assert pareto.front_frequencies(cands) == {1: 3, 2: 2}  # e3: everyone ties at 0
    rng = random.Random(0)
    picks = [pareto.select_parent(cands, rng) for _ in range(2000)]
    assert set(picks) == {1, 2}
    assert 0.5 < picks.count(1) / 2000 < 0.7  # proportional to 3:2


def test_merge_takes_each_sides_change():
    base = Candidate(0, {"a.instruction": "A", "b.instruction": "B"})
    left = Candidate(1, {"a.instruction": "A2", "b.instruction": "B"}, parents=[0], val_scores={"x": 1})
    right = Candidate(2, {"a.instruction": "A", "b.instruction": "B2"}, parents=[0], val_scores={"y": 1})
    merged, both = merge_components(left, right, base)
    assert merged == {"a.instruction": "A2", "b.instruction": "B2"} and both
    found = find_merge([base, left, right], [1, 2], set(), random.Random(0))
    assert found is not None and found[:3] == (1, 2, 0)
    assert find_merge([base, left, right], [1, 2], {"1+2@0"}, random.Random(0)) is None


class Pipe(po.Program):
    def __init__(self):
        self.first = po.Predict("word -> mid", "Copy the word.")
        self.second = po.Predict("mid -> out", "Copy the text.")

    def forward(self, word):
        return self.second(mid=self.first(word=word).mid)


# One rule alone confuses the second stage on one validation word (it answers "?"), so a candidate
# with only one of the two rules scores below the seed there and the seed stays on the Pareto front.
CONFUSED_BY = {"exclaim": "lemon", "uppercase": "mango"}


def two_stage_lm():
    def reply(messages):
        system = messages[0]["content"].lower()
        user = last_user_message(messages)
        if user.startswith("word:"):
            w = field_value(user, "word")
            return f"mid: {w + '!' if 'exclaim' in system else w}"
        mid = field_value(user, "mid")
        exclaimed, upper = mid.endswith("!"), "uppercase" in system
        if exclaimed != upper and mid.rstrip("!") == CONFUSED_BY["exclaim" if exclaimed else "uppercase"]:
            return "out: ?"
        return f"out: {mid.upper() if upper else mid}"

    return ScriptedLM(reply)


def two_stage_reflect(messages):
    """Knows the fix of each stage, but proposes it only while the other stage is untouched: no line
    of reflections holds both rules, so only a merge can reach a perfect score."""
    prompt = messages[0]["content"]
    if "reads `mid`" in prompt:
        return "- Keep the text as it is." if "!\nOutput:" in prompt else "- Always uppercase the text."
    if any(got.isupper() for got in re.findall(r"got '([^']*)'", prompt)):
        return "- Keep the word as it is."
    return "- Always exclaim: add an exclamation mark."


def two_stage_metric(ex, pred, trace=None):
    out = pred.out
    score = ((out.rstrip("!").lower() == ex.word) + out.isupper() + out.endswith("!")) / 3
    return po.Score(score, f"The output must be the word in uppercase, ending with '!'; got {out!r}.")


def two_stage_run(seed, metric=two_stage_metric):
    cb = Collect()
    gepa = GEPA(
        metric,
        max_metric_calls=150,
        reflection_lm=ScriptedLM(two_stage_reflect),
        proposer="rules",
        progress=False,
        evolve_demos=False,
        use_merge=True,
        seed=seed,
        callbacks=[cb],
        minibatch_size=2,
        seed_demos=0,  # the merge of two instruction lines, with no demo candidate beside them
    )
    res = gepa.compile(Pipe(), data(8), data(4, offset=10), lm=two_stage_lm())
    return res, cb


@pytest.mark.parametrize("seed", [0, 3, 8])
def test_merge_combines_two_components_end_to_end(seed):
    """Each stage needs its own rule; a merge joins two lines that each fixed one stage."""
    res, cb = two_stage_run(seed)
    by_id = {c.id: c for c in res.candidates}
    merges = [d for e, d in cb.events if e == "merge"]
    assert [d["accepted"] for d in merges] == [True], merges
    merged = res.best_candidate
    assert merged.origin == "merge" and merged.parents == merges[0]["ids"]
    # the parents are the two one-rule lines, siblings from the seed
    a, b = (by_id[p] for p in merged.parents)
    assert {a.origin, b.origin} == {"reflection:first.instruction", "reflection:second.instruction"}
    assert a.parents == b.parents == [0]
    for key in ("first.instruction", "second.instruction"):
        assert merged.components[key] in (a.components[key], b.components[key])
        assert merged.components[key] != by_id[0].components[key]
    # the merge was scored on every validation example, and is what the run returns
    assert merged.val_scores == dict.fromkeys((e.id for e in data(4, offset=10)), 1.0)
    assert max(a.val_score, b.val_score) < res.best_score == 1.0
    assert ("val_evaluated", {"candidate_id": merged.id, "score": 1.0}) in cb.events


def test_stop_file_and_threshold(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "STOP").touch()
    res = run(tmp_path / "run")
    assert "stop file" in res.stop_reason and len(res.candidates) == 1
    res = run(score_threshold=0.5, max_metric_calls=500)
    assert "reached 0.5" in res.stop_reason and res.best_score == 1.0


def test_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="exactly one"):
        GEPA(metric)
    with pytest.raises(ValueError, match="auto must be"):
        GEPA(metric, auto="huge")
    with pytest.raises(ValueError, match="duplicate"):
        GEPA(metric, auto="light", progress=False, reflection_lm=rules_reflector()).compile(
            program(), data(3) + data(3), lm=task_lm()
        )


def resumable_gepa(max_metric_calls=90, *, metric=metric, **options) -> GEPA:
    """The GEPA the resume tests run: rules proposals varied by step, so runs differ in their choices."""
    return GEPA(
        metric,
        max_metric_calls=max_metric_calls,
        reflection_lm=ScriptedLM(_varied_rules),
        proposer="rules",
        progress=False,
        evolve_demos=True,
        use_merge=True,
        seed=7,
        **options,
    )


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):

    full = resumable_gepa().compile(
        program(), data(10), data(6, offset=10), lm=noisy_lm(), run_dir=tmp_path / "full"
    )

    dying_metric = dies_at(metric, 40)

    with pytest.raises(Killed):
        resumable_gepa(metric=dying_metric).compile(
            program(), data(10), data(6, offset=10), lm=noisy_lm(), run_dir=tmp_path / "resumed"
        )
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["iteration"] > 0
    resumed = resumable_gepa().compile(
        program(), data(10), data(6, offset=10), lm=noisy_lm(), run_dir=tmp_path / "resumed", resume=True
    )
    a, b = full.to_dict(), resumed.to_dict()
    for d in (a, b):
        for k in (
            "lm_calls",
            "uncached_lm_calls",
            "prompt_tokens",
            "completion_tokens",
            "seconds",
            "seconds_by_phase",  # wall time: each process's own
            "proposer_lm_calls",
        ):
            d["budget"].pop(k)
    assert a == b
    assert resumed.best_program.components() == full.best_program.components()
    with pytest.raises(ValueError, match="same data"):
        resumable_gepa().compile(
            program(), data(9), data(6, offset=10), lm=noisy_lm(), run_dir=tmp_path / "resumed", resume=True
        )


def _varied_rules(messages):
    prompt = messages[0]["content"]
    n = sum(map(ord, prompt)) % 4
    return [
        "- Use uppercase for short words.",
        "- Mind the vowels.",
        "- Always write in uppercase.",
        "- Think.",
    ][n]


def noisy_lm():
    """Deterministic but input-dependent: some words need the rule, some get it right anyway."""

    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        system = messages[0]["content"].lower()
        shown = sum(m["role"] == "assistant" for m in messages)
        ok = "always write in uppercase" in system or (shown and len(word) % 2 == 0) or word[0] in "aeiou"
        return f"out: {word.upper() if ok else word}"

    return ScriptedLM(reply)


def test_rules_lose_markdown_emphasis():
    from promptopt.optimizers.gepa.reflection import ProposalRequest, RulesProposer

    sig = po.Predict("word -> out").signature
    lm = ScriptedLM(["- **Case**: write the word in uppercase letters.\n- __Keep__ the word itself."])
    proposal = RulesProposer()(ProposalRequest("self.instruction", "Repeat the word.", sig, []), lm)
    assert proposal.instruction is not None
    assert "**" not in proposal.instruction and "__" not in proposal.instruction
    assert "- Case: write the word in uppercase letters." in proposal.instruction


def test_result_picture_is_written(tmp_path):
    from promptopt.optimizers.plots import plot_result

    res = run(max_metric_calls=40)
    png = plot_result(res, tmp_path / "lineage.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("extensions, seen", [(0, 3), (1, 6)])
def test_ties_look_at_more_examples_before_rejecting(extensions, seen):
    cb = Collect()
    # the rules change nothing the task LM reads, so parent and child always tie
    useless = ScriptedLM(lambda m: "- Think about the word carefully before answering.")
    res = run(
        reflection_lm=useless, callbacks=[cb], max_metric_calls=40, use_merge=False, tie_extensions=extensions
    )
    rejected = [d for e, d in cb.events if e == "candidate_rejected"]
    assert rejected and all(len(d["example_ids"]) == seen for d in rejected)
    assert all(d["parent_score"] == d["child_score"] for d in rejected)
    assert len(res.candidates) == 1


def test_a_finished_run_resumed_with_a_larger_budget_continues_to_the_larger_runs_result(tmp_path):
    # Without a demo candidate nothing is drawn for a budget too small for a proposal, so the
    # smaller run is the start of the larger one.
    def run(budget, run_dir, lm=None):
        return resumable_gepa(budget, seed_demos=0).compile(
            program(), data(10), data(6, offset=10), lm=lm or noisy_lm(), run_dir=run_dir, resume=True
        )

    whole = run(90, tmp_path / "whole")
    small = run(40, tmp_path / "grown")
    assert small.budget.metric_calls < whole.budget.metric_calls
    assert "budget" in small.stop_reason
    task_lm = noisy_lm()
    again = run(40, tmp_path / "grown", task_lm)  # the same budget: nothing more is spent
    assert task_lm.calls == []
    assert again.budget.metric_calls == small.budget.metric_calls and again.stop_reason == small.stop_reason
    grown = run(90, tmp_path / "grown")
    assert grown.budget.metric_calls == whole.budget.metric_calls
    assert grown.best_program.components() == whole.best_program.components()
    assert [c.components for c in grown.candidates] == [c.components for c in whole.candidates]


def test_spare_demo_sets_drawn_at_the_end_of_a_budget_stay_when_it_grows(tmp_path):
    def run(budget):
        return resumable_gepa(budget, screened_reflections=False).compile(
            program(), data(10), data(6, offset=10), lm=noisy_lm(), run_dir=tmp_path, resume=True
        )

    small = run(40)
    grown = run(90)
    assert [c.components for c in grown.candidates[: len(small.candidates)]] == [
        c.components for c in small.candidates
    ]
    assert small.budget.metric_calls <= 40 < grown.budget.metric_calls <= 90
    assert grown.best_score >= small.best_score and "budget" in grown.stop_reason


def test_a_finished_run_resumed_as_it_was_does_not_rescore_what_an_outage_left_unscored(tmp_path):
    def run(lm):
        # Without screened reflections the outage leaves the run finished by its budget; with them
        # more children try the failing example, and ten failures in a row stop it unfinished.
        return resumable_gepa(40, screened_reflections=False).compile(
            program(), data(10), data(6, offset=10), lm=lm, run_dir=tmp_path / "run", resume=True
        )

    def flaky(messages):
        if field_value(last_user_message(messages), "word") == data(1, offset=11)[0].word:
            raise ConnectionError("the server went away")
        return noisy_lm()._fn(messages)

    first = run(ScriptedLM(flaky))
    assert len(first.candidates[0].val_scores) == 5  # one validation example left unscored
    task_lm = noisy_lm()
    again = run(task_lm)
    assert task_lm.calls == []
    assert again.budget.metric_calls == first.budget.metric_calls and again.stop_reason == first.stop_reason
