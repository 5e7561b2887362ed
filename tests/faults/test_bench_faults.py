"""Bench runs under faults: damaged cell files, two runs on one folder, failed cells in the exit code."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from langprobe.task import mirror_dir
from promptopt.bench import ExperimentSpec, LMs, build_report, run_matrix
from promptopt.bench import runner as runner_mod
from promptopt.bench.cli import main as bench_main
from promptopt.bench.runner import BUSY, run_cell
from promptopt.bench.store import Store, UnreadableRecordError
from promptopt.testing import ScriptedLM

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


def lms() -> LMs:
    return LMs(
        task=ScriptedLM(lambda m: "species: virginica"), reflection=ScriptedLM(lambda m: "```\nx\n```")
    )


def spec(out, **kw) -> ExperimentSpec:
    opts = dict(
        tasks=["iris"],
        programs=["predict"],
        optimizers=["baseline", "bootstrap_fewshot"],
        seeds=[0],
        budget=10,
        sizes={"iris": (4, 4, 6)},
        num_threads=1,
        out=str(out),
    )
    opts.update(kw)
    return ExperimentSpec(**opts).validate()


BFS = "iris__predict__bootstrap_fewshot__local__s0"


@needs_mirror
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"key": "x", "status": "o', "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8 text"),
        (b"[1, 2, 3]", "a JSON list, not an object"),
        (b'{"key": "k", "status": "ok", "config": {"task": "iris"}}', "missing config.program"),
    ],
)
def test_a_damaged_cell_is_reported_left_out_and_run_again(tmp_path, content, reason):
    s = spec(tmp_path / "out")
    run_matrix(s, lms=lms(), progress=False)
    store = Store(s.out)
    store.cell_path(BFS).write_bytes(content)

    with pytest.raises(UnreadableRecordError, match=rf"{BFS}\.json is not a readable record \({reason}"):
        store.load_cell(BFS)
    # The report is built from the readable cells and names the damaged one.
    md = build_report(s.out).markdown.read_text()
    assert "## Unreadable cells (left out)" in md and f"`{BFS}.json`: {reason}" in md
    assert "bootstrap_fewshot" not in md.split("## Unreadable")[0]
    # The next run sets the damaged file aside (nothing is lost) and runs the cell again.
    again = run_matrix(s, lms=lms(), progress=False)
    assert [r.key for r in again.ran] == [BFS] and again.rerun_reasons[BFS].startswith("unreadable (")
    assert store.load_cell(BFS).status == "ok"
    (aside,) = store.cells_dir.glob(f"{BFS}.json.unreadable-*")
    assert aside.read_bytes() == content


@needs_mirror
def test_a_wrong_shaped_finished_cell_is_left_out_of_the_report(tmp_path):
    s = spec(tmp_path / "out")
    run_matrix(s, lms=lms(), progress=False)
    store = Store(s.out)
    cell = store.load_cell(BFS)
    numbers = cell.finished()
    test = numbers.optimized_test
    moved = dataclasses.replace(test, ids=(*test.ids[::-1][:-1], "elsewhere"))
    store.save_cell(dataclasses.replace(cell, numbers=dataclasses.replace(numbers, optimized_test=moved)))
    md = build_report(s.out).markdown.read_text()
    assert f"`{BFS}.json`: ValueError" in md and "cell " + BFS in md


@needs_mirror
def test_two_runs_on_one_folder_split_the_cells(tmp_path):
    s = spec(tmp_path / "out")
    store = Store(s.out)
    (store.root / "locks").mkdir(parents=True)
    flag = tmp_path / "release"
    holder = textwrap.dedent(
        f"""
        import pathlib, time
        from filelock import FileLock
        lock = FileLock({str(store.root / "locks" / f"{BFS}.cell.lock")!r})
        lock.acquire()
        print("held", flush=True)
        for _ in range(600):  # at most 30 s
            if pathlib.Path({str(flag)!r}).exists():
                break
            time.sleep(0.05)
        """
    )
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        outcome = run_matrix(s, lms=lms(), progress=False)
        # The cell the other run holds is skipped here, said so, and not stored; the rest ran.
        assert outcome.busy == [BFS] and [r.key for r in outcome.ran] == [
            "iris__predict__baseline__local__s0"
        ]
        assert store.load_cell(BFS) is None
    finally:
        flag.touch()
        other.wait(timeout=30)
    again = run_matrix(s, lms=lms(), progress=False)
    assert [r.key for r in again.ran] == [BFS] and not again.busy


@needs_mirror
def test_a_cell_finished_by_another_run_meanwhile_is_reused(tmp_path, monkeypatch):
    s = spec(tmp_path / "out")
    run_matrix(s, lms=lms(), progress=False)
    store = Store(s.out)
    stamp = store.cell_path(BFS).stat().st_mtime_ns
    (cell,) = [c for c in s.cells() if c.key == BFS]
    monkeypatch.setattr(runner_mod, "_run", lambda *a, **k: pytest.fail("ran a finished cell again"))
    record = run_cell(s, cell, store, lms())
    assert record.reused and record.status == "ok" and store.cell_path(BFS).stat().st_mtime_ns == stamp
    # While another process runs it, the cell is reported busy instead.
    with store.claim(BFS) as mine:
        assert mine
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "from promptopt.bench.store import Store; import sys\n"
                f"with Store({s.out!r}).claim({BFS!r}) as mine: sys.exit(0 if not mine else 3)",
            ],
            timeout=60,
        )
        assert other.returncode == 0
    assert BUSY == "busy"


@needs_mirror
def test_bench_langprobe_exits_1_when_a_cell_failed(tmp_path, monkeypatch, capsys):
    def broken(name, ctx):
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(runner_mod, "run_optimizer", broken)
    monkeypatch.setattr(runner_mod, "LMs", lms)
    monkeypatch.setattr("promptopt.bench.executors.LMs", lms)
    args = ["langprobe", "--tasks", "iris", "--optimizers", "bootstrap_fewshot", "--sizes", "4,4,6"]
    rc = bench_main([*args, "--budget", "10", "--num-threads", "1", "--out", str(tmp_path / "o"), "-q"])
    assert rc == 1
    assert "1 cells failed" in capsys.readouterr().err


@needs_mirror
def test_an_lm_outage_is_not_stored_as_scores(tmp_path):
    calls = {"n": 0}

    def flaky(messages):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise ConnectionError("connection refused")
        return "species: virginica"

    s = spec(tmp_path / "out", optimizers=["baseline"])
    down = LMs(task=ScriptedLM(flaky), reflection=ScriptedLM(lambda m: "x"))
    (record,) = run_matrix(s, lms=down, progress=False).ran
    assert record.status == "failed" and record.error.type == "UnscoredExamplesError"
    assert "could not be scored (LM failure" in record.error.message
    assert Store(s.out).load_baseline("iris__predict__local__s0") is None  # no baseline with holes
    (record,) = run_matrix(s, lms=lms(), progress=False).ran  # the LM is back: the cell runs
    assert record.status == "ok" and record.finished().baseline_test.errors == 0
