"""MIPROv2 with scripted LMs: proposals, search bookkeeping, selection, resume, shared workers."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

import promptopt as po
from promptopt.optimizers import Callback, MIPROv2
from promptopt.optimizers.mipro import AUTO_PRESETS, GroundedProposer, parse_proposal, program_summary
from promptopt.optimizers.mipro.summaries import dataset_summary
from promptopt.testing import (
    InterruptAfter,
    Killed,
    ScriptedLM,
    dies_at,
    field_value,
    last_user_message,
    toy_examples,
    toy_proposer,
    toy_reply,
)
from promptopt.testing import toy_metric as metric
from promptopt.testing import toy_program as program

data = toy_examples


def task_lm():
    """Uppercases when the instruction says so or when a demo is shown."""
    return ScriptedLM(
        lambda messages: toy_reply(messages, lambda word, system, shown: "uppercase" in system or shown)
    )


PROPOSALS = [
    "proposed_instruction: Write the word in uppercase letters.",
    "```\nRepeat the word exactly.\n```",
    "Spell the word backwards.",
    "proposed_instruction: Return the word unchanged, please.",
]


def proposer_lm(proposals=PROPOSALS):
    # the merge of the dataset notes gets the notes' own text
    return toy_proposer(
        proposals, merged_notes="Each example is a word and the same word in capital letters."
    )


def mipro(**kw):
    opts = dict(
        num_candidates=3,
        num_trials=6,
        minibatch_size=3,
        minibatch_full_eval_steps=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
        proposer_lm=proposer_lm(),
        progress=False,
        seed=0,
    )
    opts.update(kw)
    return MIPROv2(metric, **opts)


# --- proposals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, finish, text, reason",
    [
        ("Sure!\n```\nAnswer in capitals.\n```\nHope it helps.", "stop", "Answer in capitals.", "fenced"),
        ("``` fences\nAnswer in capitals.\n```", "stop", "Answer in capitals.", "fenced"),
        ("```markdown\nAnswer in capitals.\n```", "stop", "Answer in capitals.", "fenced"),
        ("```Answer in capitals.```", "stop", "Answer in capitals.", "fenced"),
        ("```Read the question\nand answer in capitals.\n```", "stop",
         "Read the question\nand answer in capitals.", "fenced"),
        ("```en\nAnswer in capitals.", "stop", "Answer in capitals.", "fenced"),
        ("```\nAnswer in capitals.\n```\nor:\n```\nAnswer in upper case.", "stop",
         "Answer in upper case.", "fenced"),
        ("proposed_instruction: Answer in capitals.", "stop", "Answer in capitals.", "field"),
        ("**Proposed Instruction:** Answer in capitals.\n\nThis is better because", "stop",
         "Answer in capitals.", "field"),
        ('"Answer in capitals."', "stop", "Answer in capitals.", "plain"),
        ("Instruction: Answer in capitals.", "stop", "Answer in capitals.", "plain"),
        ("", "stop", None, "empty reply"),
        ("   \n ", "stop", None, "empty reply"),
        ("proposed_instruction:", "stop", None, "empty field proposal"),
        ("```\n\n```", "stop", None, "empty"),
        ("proposed_instruction: Answer in capi", "length", None, "truncated"),
        ("x" * 40 + " word" * 400, "stop", None, "too long"),
    ],
)  # fmt: skip
def test_parse_proposal_is_tolerant_but_rejects_bad_replies(raw, finish, text, reason):
    got, why = parse_proposal(raw, finish)
    assert got == text
    assert reason in why


def test_proposer_dedupes_bounds_attempts_and_grounds_its_prompt():
    prompts = []

    def reply(messages):
        prompts.append(messages[0]["content"])
        return ["proposed_instruction: Use capitals.", "proposed_instruction: use CAPITALS!", ""][
            (len(prompts) - 1) % 3
        ]

    proposer = GroundedProposer(ScriptedLM(reply), attempts_per_proposal=2)
    import random

    texts, logs = proposer.propose(
        "self",
        program().signature,
        "Repeat the word.",
        3,
        rng=random.Random(0),
        demo_pool=[data(2)],
        seed_score=0.25,
        dataset_summary="Words and capitals.",
        program_summary="The program has one step.",
    )
    assert texts == ["Use capitals."]  # the second is the same once normalized, the third empty
    assert len(logs) == 6 and sum(log.accepted for log in logs) == 1
    assert {log.reason for log in logs if not log.accepted} == {
        "duplicate of an earlier instruction",
        "empty reply",
    }
    first = prompts[0]
    for part in ("Words and capitals.", "The program has one step.", "word: apple", "out: APPLE",
                 '"Repeat the word." (score 25%)', "proposed_instruction:"):  # fmt: skip
        assert part in first
    assert '"Use capitals."' in prompts[1]  # earlier proposals are shown, without a score
    assert len(first) < 1200  # short enough for a small model


def test_summaries():
    lm = ScriptedLM(["The words are fruit names.", "", "Fruit names and their capitals."])
    import random

    text = dataset_summary(lm, data(10), batch_size=5, max_batches=2, rng=random.Random(0))
    assert text == "The words are fruit names."  # the second note was empty: nothing to merge
    assert len(lm.calls) == 2 and lm.calls[0]["messages"][0]["content"].count("Example ") == 5
    fallback = dataset_summary(ScriptedLM([""]), data(4), batch_size=5, max_batches=1, rng=random.Random(0))
    assert "4 examples; inputs: word; labels: out" in fallback

    class Pipe(po.Program):
        def __init__(self):
            self.draft = po.ChainOfThought("question -> notes")
            self.answer = po.Predict("question, notes -> answer")

    summary = program_summary(Pipe())
    assert "2 steps" in summary and "step `draft` reads question and writes notes after reasoning" in summary
    assert "(it gets notes from step 1)" in summary


# --- the search ----------------------------------------------------------------------------


def test_presets_and_config_errors():
    opt = MIPROv2(metric)
    assert (opt.search.num_candidates, opt.search.num_trials) == AUTO_PRESETS["light"] == (6, 12)
    assert MIPROv2(metric, auto="heavy", num_trials=7).search.num_trials == 7
    with pytest.raises(ValueError, match="auto must be"):
        MIPROv2(metric, auto="huge")
    with pytest.raises(ValueError, match="both num_candidates and num_trials"):
        MIPROv2(metric, auto=None, num_trials=3)
    with pytest.raises(ValueError, match="duplicate"):
        mipro().compile(program(), data(4), data(3) + data(3), lm=task_lm())
    with pytest.raises(ValueError, match="resume=True needs"):
        mipro().compile(program(), data(4), lm=task_lm(), resume=True)


def test_run_bookkeeping_and_no_pair_scored_twice(tmp_path):
    lm = task_lm()
    res = mipro(num_trials=8).compile(program(), data(6), data(6, offset=10), lm=lm, run_dir=tmp_path / "r")
    assert res.optimizer == "promptopt.MIPROv2" and res.stop_reason == "all 8 trials run"
    assert [t["number"] for t in res.trials] == list(range(8))
    space = res.config["search_space"]
    assert space == {"self.instruction": 3, "self.demos": 3}
    for t in res.trials:
        assert set(t["params"]) == set(space) and len(t["example_ids"]) == 3
        assert 0.0 <= t["minibatch_score"] <= 1.0
    # the seed is candidate 0; every candidate was scored on the whole validation set
    assert res.candidates[0].origin == "seed" and res.candidates[0].val_score == 0.0
    assert all(len(c.val_scores) == 6 for c in res.candidates)
    assert [c.origin for c in res.candidates[1:]].count("mipro:step") <= 8 // 3
    keys = [json.dumps(c.components, sort_keys=True) for c in res.candidates]
    assert len(keys) == len(set(keys))
    assert res.best_score == 1.0 and res.learning_curve[0] == (res.candidates[0].discovered_at, 0.0)
    # every task-LM call ran a distinct (program, example) pair: nothing was scored twice
    seen = [json.dumps(c["messages"]) for c in lm.calls]
    assert len(seen) == len(set(seen))
    assert res.budget.metric_calls == len(lm.calls)  # one LM call per metric call here
    assert (
        res.budget.proposer_lm_calls >= 3
        and res.budget.lm_calls == len(lm.calls) + res.budget.proposer_lm_calls
    )
    saved = json.loads((tmp_path / "r" / "search_space.json").read_text())
    assert saved["instructions"]["self"][0] == "Repeat the word."
    assert saved["instructions"]["self"][1] == "Write the word in uppercase letters."
    assert (tmp_path / "r" / "optuna.db").exists() and (tmp_path / "r" / "result.json").exists()
    events = {
        json.loads(line)["event"] for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()
    }
    assert {"run_start", "proposal", "trial", "val_evaluated", "run_end"} <= events


def test_demo_limits_and_instruction_only_search(tmp_path):
    train = data(8)
    teacher = po.Predict("word -> out", "Write the word in uppercase.")  # the seed itself fails
    mipro(
        max_bootstrapped_demos=2, max_labeled_demos=3, num_candidates=5, num_trials=2, teacher=teacher
    ).compile(program(), train, data(4, offset=10), lm=task_lm(), run_dir=tmp_path / "d")
    sets = json.loads((tmp_path / "d" / "search_space.json").read_text())["demo_sets"]["self"]
    train_ids = {e.id for e in train}
    counts = [(sum(d["id"] not in train_ids for d in s), sum(d["id"] in train_ids for d in s)) for s in sets]
    assert counts[0] == (0, 0)  # the seed's own (none)
    assert counts[1] == (2, 1) and counts[2] == (0, 3)  # the in-order bootstrap, then labeled-only
    assert len(counts) == 5 and all(1 <= b <= 2 and b + lab == 3 for b, lab in counts[3:])
    only = mipro(max_bootstrapped_demos=0, max_labeled_demos=0).compile(
        program(), train, data(4, offset=10), lm=task_lm()
    )
    assert only.config["search_space"] == {"self.instruction": 3}
    assert all(set(t["params"]) == {"self.instruction"} for t in only.trials)
    assert all(c.components["self.demos"] == [] for c in only.candidates)


def test_program_is_chosen_from_full_evaluations_only():
    """A proposal that aces its one-example minibatch but fails the rest must not win."""
    state = {"lucky": True}

    def reply(messages):
        word = field_value(last_user_message(messages), "word")
        system = messages[0]["content"].lower()
        if "uppercase" in system:  # right once (the first call), wrong ever after
            ok, state["lucky"] = state["lucky"], False
            return f"out: {word.upper() if ok else word}"
        return f"out: {word.upper() if word < 'm' else word}"  # the seed: right on half

    val = data(4, offset=8)  # icing jelly kiwis lemon  (seed right) ...
    val += data(4, offset=14)  # olive peach quinc raspy (seed wrong)
    proposals = ["proposed_instruction: Write it in uppercase."]
    res = mipro(
        num_candidates=2,
        num_trials=1,
        minibatch_size=1,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        proposer_lm=proposer_lm(proposals),
        seed=0,  # TPE's first (random) draw with this seed is the proposal, as asserted below
    ).compile(program(), data(4), val, lm=ScriptedLM(reply))
    (trial,) = res.trials
    assert trial["params"] == {"self.instruction": 1} and trial["minibatch_score"] == 1.0
    assert res.candidates[0].val_score == 0.5  # the seed, worse on its minibatch-free record ...
    assert res.candidates[1].val_score == 1 / 8  # ... but the proposal is worse on the full set
    assert res.best_id == 0 and res.best_program.get_instructions()["self"] == "Repeat the word."


def test_interrupt_and_kill_then_resume_from_the_study(tmp_path):
    run_dir = tmp_path / "r"
    train, val = data(6), data(6, offset=10)
    first = mipro(num_trials=9, callbacks=[InterruptAfter(2)]).compile(
        program(), train, val, lm=task_lm(), run_dir=run_dir
    )
    assert first.stop_reason == "interrupted (Ctrl-C)" and len(first.trials) == 2
    assert first.best_program is not None and first.candidates[0].origin == "seed"

    dying = dies_at(metric, 2)

    with pytest.raises(Killed):
        MIPROv2(
            dying,
            num_candidates=3,
            num_trials=9,
            minibatch_size=3,
            minibatch_full_eval_steps=3,
            max_bootstrapped_demos=1,
            max_labeled_demos=1,
            proposer_lm=proposer_lm(),
            progress=False,
        ).compile(program(), train, val, lm=task_lm(), run_dir=run_dir, resume=True)
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    states = [t.state.name for t in optuna.load_study(study_name="mipro", storage=storage).trials]
    assert states[-1] == "RUNNING"  # the killed trial was left behind

    again = proposer_lm()
    res = mipro(num_trials=9, proposer_lm=again).compile(
        program(), train, val, lm=task_lm(), run_dir=run_dir, resume=True
    )
    assert again.calls == []  # proposals were loaded, not regenerated
    assert res.stop_reason == "all 9 trials run" and len(res.trials) == 9
    numbers = [t["number"] for t in res.trials]
    assert len(set(numbers)) == 9
    study = optuna.load_study(study_name="mipro", storage=storage)
    # the killed trial was taken over and run again under its own number, not failed and replaced
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 9
    assert res.best_score == 1.0


class TouchAfter(Callback):
    def __init__(self, path, n):
        self.path, self.n, self.seen = path, n, 0

    def on_trial(self, event):
        self.seen += 1
        if self.seen == self.n:
            self.path.touch()


def test_stoppers_and_in_memory_runs(tmp_path):
    train, val = data(6), data(6, offset=10)
    res = mipro(num_trials=50, max_metric_calls=30).compile(program(), train, val, lm=task_lm())
    assert "budget of 30" in res.stop_reason and 1 <= len(res.trials) < 50
    # The budget holds, and what is left when trials stop pays for the final full evaluation.
    assert res.budget.metric_calls <= 30 and res.candidates[-1].origin == "mipro:end"
    res = mipro(num_trials=50, score_threshold=1.0).compile(program(), train, val, lm=task_lm())
    assert "reached 1.0" in res.stop_reason and res.best_score == 1.0 and len(res.trials) < 50
    stop = tmp_path / "r" / "STOP"
    res = mipro(num_trials=50, callbacks=[TouchAfter(stop, 2)]).compile(
        program(), train, val, lm=task_lm(), run_dir=tmp_path / "r"
    )
    assert "stop file" in res.stop_reason and len(res.trials) == 2


def test_minibatch_size_fits_the_budget_unless_given():
    from promptopt.optimizers.mipro.search import fitted_minibatch_size

    assert fitted_minibatch_size(None, 100, None, 12) == 25  # no budget: the default
    assert fitted_minibatch_size(None, 15, None, 12) == 15  # capped at the validation set
    assert fitted_minibatch_size(None, 15, 60, 12) == 3  # (60 - 2 * 15) // 12 = 2, never under 3
    assert fitted_minibatch_size(None, 40, 400, 12) == 25  # room enough for the default
    assert fitted_minibatch_size(None, 40, 200, 12) == 10
    assert fitted_minibatch_size(8, 15, 60, 12) == 8  # an explicit size is kept
    # A budgeted run with no size given runs many small trials, not one validation-sized one.
    train, val = data(6), data(10, offset=10)
    res = mipro(minibatch_size=None, num_trials=8, max_metric_calls=44).compile(
        program(), train, val, lm=task_lm()
    )
    assert res.config["minibatch_size_used"] == 3 and len(res.trials) >= 4
    assert res.budget.metric_calls <= 44


WORKER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import promptopt as po
    from test_mipro import data, mipro, proposer_lm, program, task_lm

    class SlowLM:
        def __init__(self, lm):
            self.lm = lm
        def __call__(self, messages, **options):
            time.sleep(0.04)
            return self.lm(messages, **options)

    proposer = proposer_lm()
    res = mipro(num_trials=10, minibatch_full_eval_steps=4, proposer_lm=proposer).compile(
        program(), data(6), data(8, offset=10), lm=SlowLM(task_lm()), run_dir=sys.argv[1], resume=True
    )
    print(json.dumps({{"proposer_calls": len(proposer.calls), "trials": len(res.trials),
                      "candidates": len(res.candidates), "best": res.best_score}}))
    """
)


def test_two_workers_share_one_study(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    run_dir = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(run_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["proposer_calls"] > 0 for o in outs) == [False, True]  # proposals made once
    study = optuna.load_study(study_name="mipro", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 10 and len(study.trials) == 10
    assert len({t.number for t in complete}) == 10
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both pulled trials
    fulls = {k: v for k, v in study.user_attrs.items() if k.startswith("full:")}
    assert sum(v["kind"] == "step" for v in fulls.values()) <= 10 // 4
    result = json.loads((run_dir / "result.json").read_text())
    assert len(result["trials"]) == 10
    assert result["best_id"] == max(
        range(len(result["candidates"])),
        key=lambda i: (sum(result["candidates"][i]["val_scores"].values()), -i),
    )


class Pipe(po.Program):
    def __init__(self):
        self.first = po.Predict("word -> mid", "Copy the word.")
        self.second = po.Predict("mid -> out", "Copy the text.")

    def forward(self, word):
        return self.second(mid=self.first(word=word).mid)


def test_multi_step_programs_get_one_dimension_per_predictor_and_a_program_summary():
    def reply(messages):
        user = last_user_message(messages)
        system = messages[0]["content"].lower()
        if user.startswith("word:"):
            return f"mid: {field_value(user, 'word')}"
        text = field_value(user, "mid")
        return f"out: {text.upper() if 'uppercase' in system else text}"

    prompter = proposer_lm(["proposed_instruction: Copy it.", "proposed_instruction: Write it in uppercase."])
    # seed 1: the random startup draws reach the uppercasing second step within the 6 trials
    res = mipro(max_bootstrapped_demos=0, max_labeled_demos=0, proposer_lm=prompter, seed=1).compile(
        Pipe(), data(6), data(4, offset=10), lm=ScriptedLM(reply)
    )
    assert res.config["search_space"] == {"first.instruction": 3, "second.instruction": 3}
    prompts = [c["messages"][0]["content"] for c in prompter.calls]
    proposal_prompts = [p for p in prompts if "proposed_instruction" in p]
    assert any("The step to instruct is `second`" in p for p in proposal_prompts)
    assert all("The program has 2 steps" in p and "(it gets mid from step 1)" in p for p in proposal_prompts)
    # labeled examples lack the intermediate field `mid`, so they are shown to neither step
    assert all("Examples of the step's inputs" not in p for p in proposal_prompts)
    assert res.best_score == 1.0


def test_a_proposal_that_fills_the_output_field_is_an_example_not_an_instruction():
    import random

    from promptopt.optimizers.mipro.proposer import filled_output_field

    sig = program().signature  # word -> out
    assert filled_output_field("word: kiwi\nout: KIWI", sig) == "out"
    assert filled_output_field("**Out:** KIWI", sig) == "out"
    assert filled_output_field("Write the output in capitals; the out field holds one word.", sig) is None
    assert filled_output_field("Repeat the word.\nOutput: the word in capitals.", sig) is None

    proposer = GroundedProposer(ScriptedLM(["word: kiwi\nout: KIWI", "proposed_instruction: Use capitals."]))
    texts, logs = proposer.propose("self", sig, "Repeat the word.", 1, rng=random.Random(0))
    assert texts == ["Use capitals."]
    assert "fills the output field `out`" in logs[0].reason and not logs[0].accepted
