"""Progress over the metric-call budget: a tqdm bar on a terminal, plain throttled lines in a log."""

from __future__ import annotations

import io

from promptopt.optimizers.progress import ProgressReport


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_throttled_and_always_the_last():
    log = io.StringIO()
    report = ProgressReport("GEPA", 100, stream=log, log_every=3600)
    report.update(10, 0.25, it=1)
    report.update(20, 0.5, it=2)  # inside the interval: held back
    report.update(30, 0.75, it=3)
    report.close("done: 0.25 -> 0.75")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines == [
        "GEPA: metric calls 10/100 | best val 25.0% | it 1",
        "GEPA: metric calls 30/100 | best val 75.0% | it 3",
        "done: 0.25 -> 0.75",
    ]


def test_every_update_is_a_line_when_not_throttled():
    log = io.StringIO()
    report = ProgressReport("random search", None, stream=log, log_every=0)
    for n in (1, 2, 3):
        report.update(n, n / 4)
    report.close()
    assert log.getvalue().count("\n") == 3 and "metric calls 3 |" in log.getvalue()


def test_a_terminal_gets_a_tqdm_bar_with_the_best_score():
    term = _Terminal()
    report = ProgressReport("GEPA", 40, stream=term)
    report.update(12, 0.5, it=1)
    report.update(40, 0.9, it=4)
    report.close()
    shown = term.getvalue()
    assert "GEPA" in shown and "40/40" in shown and "best val=90.0%" in shown


def test_a_gepa_run_in_a_captured_log_has_no_carriage_returns(capsys, tmp_path):
    from tests.optimizers.gepa.test_gepa import run

    run(tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "GEPA: metric calls" in err and "best val" in err
