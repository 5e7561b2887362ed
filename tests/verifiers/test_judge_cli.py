"""`promptopt judge`: score a JSONL file with a rubric or pairwise judge, and calibrate, on scripted LMs."""

import csv
import json

import pytest

from promptopt.cli import main
from promptopt.core.program import load_program
from promptopt.testing import ScriptedLM, field_value, last_user_message
from tests.verifiers.test_calibration import KEY, judge_reply, pairs


def number_judge(messages):
    msg = last_user_message(messages)
    output = field_value(msg, "output")
    if output == "??":
        return "no idea"
    met = output.isdigit()
    return f"reason: {output} {'is' if met else 'is not'} a number\nverdict: {'yes' if met else 'no'}"


@pytest.fixture
def scripted(monkeypatch):
    def use(judge, helper=None):
        monkeypatch.setattr("promptopt.verifiers.cli._judge_lm", lambda args: ScriptedLM(judge))
        if helper is not None:
            monkeypatch.setattr("promptopt.LM", lambda *a, **k: helper)

    return use


def test_scoring_a_file_with_a_rubric_writes_verdicts_and_counts_failures(tmp_path, scripted, capsys):
    scripted(number_judge)
    (tmp_path / "r.toml").write_text('[[criteria]]\nid = "number"\ndescription = "The output is a number."\n')
    rows = [{"id": "a", "input": "q", "output": "42"}, {"id": "b", "input": "q", "output": "many"}]
    rows.append({"id": "c", "input": "q", "output": "??"})
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "v.csv"
    assert (
        main(
            [
                "judge",
                "--rubric",
                str(tmp_path / "r.toml"),
                "--data",
                str(tmp_path / "o.jsonl"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    summary = json.loads(printed.out.splitlines()[0])
    assert summary["rows"] == 3 and summary["failed_to_parse"] == 1 and summary["mean_score"] == 0.5
    assert "1 of 3 rows have no verdict" in printed.err
    table = list(csv.DictReader(out.open()))
    assert [r["score"] for r in table] == ["1.0", "0.0", ""] and "is not a number" in table[1]["verdicts"]


def test_scoring_pairs_reports_agreement_and_position_bias(tmp_path, scripted, capsys):
    scripted(judge_reply)  # without KEY in its instruction it always picks slot A
    data = [
        {"input": e.instruction, "output_1": e.output_1, "output_2": e.output_2, "label": e.label}
        for e in pairs(4)
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in data))
    assert (
        main(["judge", "--pairwise", "--data", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "v.json")])
        == 0
    )
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["position_bias_rate"] == 1.0 and summary["accuracy"] == 0.0
    saved = json.loads((tmp_path / "v.json").read_text())
    assert [r["winner"] for r in saved["rows"]] == [0, 0, 0, 0] and "provenance" in saved


def test_bad_input_names_the_file_and_row(tmp_path, scripted):
    scripted(number_judge)
    (tmp_path / "r.toml").write_text('[[criteria]]\nid = "n"\ndescription = "A number."\n')
    (tmp_path / "o.jsonl").write_text('{"input": "q"}\n')
    with pytest.raises(SystemExit, match=r"o.jsonl row 1 lacks output"):
        main(["judge", "--rubric", str(tmp_path / "r.toml"), "--data", str(tmp_path / "o.jsonl")])
    (tmp_path / "o.jsonl").write_text("{oops\n")
    with pytest.raises(SystemExit, match=r"o.jsonl, line 1: not valid JSON"):
        main(["judge", "--rubric", str(tmp_path / "r.toml"), "--data", str(tmp_path / "o.jsonl")])
    with pytest.raises(SystemExit, match="Give --rubric FILE"):
        main(["judge", "--data", str(tmp_path / "o.jsonl")])


def test_calibrate_from_the_command_line(tmp_path, scripted, capsys):
    scripted(judge_reply, helper=ScriptedLM(lambda m: f"```\n{KEY}: prefer what was asked for.\n```"))
    data = [
        {"id": e.id, "input": e.instruction, "output_1": e.output_1, "output_2": e.output_2, "label": e.label}
        for e in pairs(24)
    ]
    (tmp_path / "l.jsonl").write_text("\n".join(json.dumps(r) for r in data))
    args = ["judge", "calibrate", "--data", str(tmp_path / "l.jsonl"), "--budget", "30", "--sizes", "6,6,12"]
    args += ["--out", str(tmp_path / "rep.json"), "--save-judge", str(tmp_path / "j.json"), "--threads", "1"]
    args += ["--run-dir", str(tmp_path / "run")]
    assert main(args) == 0
    assert "accuracy 0.000 -> 1.000" in capsys.readouterr().out
    report = json.loads((tmp_path / "rep.json").read_text())
    assert set(report["provenance"]["lms"]) == {"judge", "proposer"}
    saved = json.loads((tmp_path / "j.json").read_text())
    assert KEY in saved["predictors"]["compare"]["signature"]["instruction"]
    assert saved["provenance"] == report["provenance"]
    assert KEY in load_program(tmp_path / "j.json").compare.signature.instruction
