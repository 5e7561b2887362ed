"""A stored cell is reused only as the same experiment, carries its provenance, and reproduces."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from langprobe.task import mirror_dir
from promptopt.bench import ExperimentSpec, build_report, run_matrix
from promptopt.bench import runner as runner_mod
from promptopt.bench.cli import main as bench_main
from promptopt.bench.code_scope import SCOPES, SourceScopes, current_scopes
from promptopt.bench.reproduce import reproduce_cells
from promptopt.bench.store import Store
from promptopt.provenance import PACKAGES, code_version, files_sha256, source_sha256
from promptopt.testing import ScriptedLM

needs_mirror = pytest.mark.skipif(mirror_dir() is None, reason="no local data mirror (shared/data)")


def test_code_version_and_source_hash(tmp_path):
    version = code_version()
    assert len(version.source_sha256) == 64 and version.version
    # The hash follows the sources: another file or another byte changes it.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    first = source_sha256([tmp_path / "pkg"])
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_sha256([tmp_path / "pkg"]) != first


def test_default_out_is_a_run_folder_not_results():
    assert ExperimentSpec(tasks=["iris"], name="quick").out == "runs/langprobe/quick"
    assert ExperimentSpec(tasks=["iris"]).out == "runs/langprobe/experiment"


@needs_mirror
def test_cells_carry_identity_and_provenance(tmp_path, iris):
    s = iris.spec(tmp_path / "out", seeds=[0])
    outcome = run_matrix(s, lms=iris.lms(), progress=False)
    assert [r.status for r in outcome.ran] == ["ok", "ok"]
    for cell in Store(s.out).cells():
        ident, prov = cell.identity, cell.provenance
        assert ident is not None and prov is not None
        assert set(ident) == {"config", "data", "lms", "code"}
        scope = "gepa" if cell.config.optimizer == "gepa" else "shared"
        assert ident["code"] == {"scope": scope, "sources_sha256": current_scopes().sha256_by_scope[scope]}
        assert len(ident["data"]["files_sha256"]) == 64 and len(ident["data"]["splits_sha256"]) == 64
        assert ident["lms"]["task"] == {"model": "promptopt.testing.scripted_lm.ScriptedLM"}
        assert set(prov.packages) == set(PACKAGES) and prov.packages["promptopt"]
        assert set(prov.code.to_dict()) == {"version", "commit", "dirty", "source_sha256"}
        assert prov.cpu["cores"] >= 1 and prov.command
        assert prov.data["iris"] == ident["data"] and prov.lms == ident["lms"]
    gepa = Store(s.out).load_cell("iris__predict__gepa__local__s0")
    assert set(gepa.identity["lms"]) == {"task", "reflection", "proposer"}
    assert json.loads((Store(s.out).run_dir(gepa.key) / "identity.json").read_text()) == gepa.identity

    # The report says what made the cells and how warm they ran.
    md = build_report(s.out).markdown.read_text()
    prov = md[md.index("## Provenance") :]
    assert "2 cells: promptopt" in prov and code_version().source_sha256[:16] in prov
    assert (
        f"`{code_version().commit or 'no git checkout'}`" in prov
        and "promptopt.testing.scripted_lm.ScriptedLM" in prov
    )
    assert "## LM-cache state" in md and 'lm_cache = "shared"' in md


@needs_mirror
def test_a_cell_is_rerun_when_code_data_or_lm_changed(tmp_path, monkeypatch, iris):
    data = tmp_path / "data"
    shutil.copytree(mirror_dir() / "iris", data / "iris")
    s = iris.spec(tmp_path / "out", seeds=[0], data_dir=str(data))
    run_matrix(s, lms=iris.lms(), progress=False)
    assert run_matrix(s, lms=iris.lms(), progress=False).ran == []

    # Other code: every cell runs again, and the run says why.
    other_code = SourceScopes(dict.fromkeys(SCOPES, "0" * 64))
    monkeypatch.setattr(runner_mod, "code_identity", lambda: other_code)
    again = run_matrix(s, lms=iris.lms(), progress=False)
    assert len(again.ran) == 2 and set(again.rerun_reasons.values()) == {"changed code"}
    monkeypatch.undo()
    assert set(run_matrix(s, lms=iris.lms(), progress=False).rerun_reasons.values()) == {"changed code"}

    # Other GEPA code only: GEPA's cell runs again, the seed program's scores and cell are kept.
    gepa_changed = SourceScopes({**current_scopes().sha256_by_scope, "gepa": "1" * 64})
    monkeypatch.setattr(runner_mod, "code_identity", lambda: gepa_changed)
    baseline_file = Store(s.out).baselines_dir / "iris__predict__local__s0.json"
    baseline_before = baseline_file.read_text()
    again = run_matrix(s, lms=iris.lms(), progress=False)
    assert again.rerun_reasons == {"iris__predict__gepa__local__s0": "changed code"}
    assert baseline_file.read_text() == baseline_before
    monkeypatch.undo()
    run_matrix(s, lms=iris.lms(), progress=False)

    # Other data: a row appended to the task's file in the mirror.
    csv = data / "iris" / "iris.csv"
    csv.write_text(csv.read_text() + csv.read_text().splitlines()[-1] + "\n")
    again = run_matrix(s, lms=iris.lms(), progress=False)
    assert len(again.ran) == 2 and set(again.rerun_reasons.values()) == {"changed data"}

    # Another task LM: the cells that called it run again.
    class OtherLM(ScriptedLM):
        pass

    lms = iris.lms()
    lms.task = OtherLM(iris.reply)
    again = run_matrix(s, lms=lms, progress=False)
    assert set(again.rerun_reasons.values()) == {"changed lms"} and len(again.ran) == 2

    # A cell stored by older code, without an identity, is not trusted.
    store = Store(s.out)
    cell = store.load_cell("iris__predict__gepa__local__s0")
    store.save_cell(dataclasses.replace(cell, identity=None))
    assert "identity" not in json.loads(store.cell_path(cell.key).read_text())
    again = run_matrix(s, lms=lms, progress=False)
    assert again.rerun_reasons == {
        "iris__predict__gepa__local__s0": "stored without an identity (older code)"
    }


@needs_mirror
def test_a_run_dir_of_another_experiment_is_not_resumed(tmp_path, iris):
    s = iris.spec(tmp_path / "out", seeds=[0])
    store = Store(s.out)
    stale = store.run_dir("iris__predict__gepa__local__s0")
    stale.mkdir(parents=True)
    (stale / "identity.json").write_text(json.dumps({"code": "older"}))
    (stale / "state.json").write_text("{}")  # would be resumed if it were kept
    outcome = run_matrix(s, lms=iris.lms(), progress=False)
    assert [r.status for r in outcome.ran] == ["ok", "ok"]
    assert json.loads((stale / "identity.json").read_text())["code"] == current_scopes().for_optimizer("gepa")


@needs_mirror
def test_fresh_reruns_everything(tmp_path, iris):
    s = iris.spec(tmp_path / "out", seeds=[0])
    run_matrix(s, lms=iris.lms(), progress=False)
    run_dir = Store(s.out).run_dir("iris__predict__gepa__local__s0")
    (run_dir / "planted").write_text("state of an earlier run")
    again = run_matrix(s, lms=iris.lms(), progress=False, fresh=True)
    assert set(again.rerun_reasons.values()) == {"--fresh"} and len(again.ran) == 2
    assert not (run_dir / "planted").exists()  # --fresh starts the optimizer over, too


@needs_mirror
def test_reproduce_gives_back_the_stored_numbers_exactly(tmp_path, iris):
    s = iris.spec(tmp_path / "out", seeds=[0])
    run_matrix(s, lms=iris.lms(), progress=False)
    outcomes = reproduce_cells(s.out, lms=iris.lms())
    assert [o.key for o in outcomes] == [c.key for c in sorted(s.cells(), key=lambda c: c.key)]
    assert all(o.exact for o in outcomes), [o.describe() for o in outcomes]
    # Injected scripted LMs have no response cache: every call of the rerun went to them, and the
    # outcome says so (a stored number reproduced by a live LM is weaker evidence than from a cache).
    assert outcomes[0].describe().startswith(f"{outcomes[0].key}: reproduced exactly")
    assert outcomes[0].live_lm_calls > 0 and "went to the live LM" in outcomes[0].describe()

    # A task LM that answers otherwise now (a changed model behind the same name, a lost cache):
    # the rerun differs, and the report names the fields.
    def fickle(messages):
        return "species: setosa"

    outcomes = reproduce_cells(s.out, ["iris__predict__gepa__local__s0"], lms=iris.lms(fickle))
    (outcome,) = outcomes
    assert not outcome.exact
    assert {"baseline.test.scores", "optimized.test.scores", "lift.mean"} <= set(outcome.differences)
    assert "DIFFERS in" in outcome.describe() and "baseline.test.scores" in outcome.describe()
    with pytest.raises(KeyError, match="No finished cell 'nope'"):
        reproduce_cells(s.out, ["nope"], lms=iris.lms())


@needs_mirror
def test_reproduce_command_exit_code(tmp_path, monkeypatch, capsys, iris):
    s = iris.spec(tmp_path / "out", seeds=[0])
    run_matrix(s, lms=iris.lms(), progress=False)
    monkeypatch.setattr("promptopt.bench.reproduce.LMs", iris.lms)
    record = tmp_path / "reproduced.json"
    assert bench_main(["reproduce", "--out", s.out, "-q", "--record", str(record)]) == 0
    assert "2 of 2 cells reproduced exactly" in capsys.readouterr().out
    written = json.loads(record.read_text())
    assert written["exact"] == 2 and [c["exact"] for c in written["cells"]] == [True, True]
    assert written["provenance"]["code"]["source_sha256"] == code_version().source_sha256
    assert bench_main(["reproduce", "--out", s.out, "--cells", "missing"]) == 2


def test_data_identity_hashes_files_and_examples(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "rows.csv").write_text("a\n1\n")
    first = files_sha256(tmp_path / "t")
    (tmp_path / "t" / "rows.csv").write_text("a\n2\n")
    second = files_sha256(tmp_path / "t")
    assert first["sha256"] != second["sha256"] and set(first["files"]) == {"rows.csv"}


@needs_mirror
def test_per_cell_lm_cache_starts_every_cell_cold_and_replays(tmp_path, monkeypatch, iris):
    """Under lm_cache="per_cell" built LMs answer from a cache in the cell's own run directory: a
    cell repeats requests that another cell made (it starts cold), and a replay reproduces it."""
    from promptopt.testing import FakeOpenAIServer

    def reply(messages):
        try:
            return iris.reply(messages)
        except (KeyError, ValueError):  # not an iris case: the reflection prompt
            return f"```\n{iris.RULE}: decide the species from the petal length and width.\n```"

    with FakeOpenAIServer(reply) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        common = dict(lms=["openai/fake-iris"], reflection_lm="openai/fake-iris", budget=20)
        cold = iris.spec(tmp_path / "cold", seeds=[0], lm_cache="per_cell", **common)
        run_matrix(cold, progress=False)
        cold_cell = Store(cold.out).load_cell("iris__predict__gepa__openai-fake-iris__s0")
        assert (Store(cold.out).run_dir(cold_cell.key) / "lm-cache.sqlite").exists()
        cache_dir = tmp_path / "shared-cache"
        monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(cache_dir))
        warm = iris.spec(tmp_path / "warm", seeds=[0], **common)
        run_matrix(warm, progress=False)
        warm_cell = Store(warm.out).load_cell("iris__predict__gepa__openai-fake-iris__s0")
        # The shared cache answered the seed's validation requests that the baseline had made.
        cold_spent, warm_spent = cold_cell.numbers.spending, warm_cell.numbers.spending
        assert cold_spent.uncached_lm_calls > warm_spent.uncached_lm_calls
        assert cold_cell.config.lm_cache == "per_cell" and warm_cell.config.lm_cache == "shared"

        requests = len(server.requests)
        (outcome,) = reproduce_cells(cold.out, [cold_cell.key])
        assert outcome.exact, outcome.describe()
        assert len(server.requests) == requests  # every reply came from the cell's own cache files

        # Another budget with reuse_from: the seed program's cell is copied (it reads no budget),
        # GEPA's runs on the copied baseline. Both replay from caches alone, from any directory:
        # the copy from the first folder's, GEPA's from its own and the baseline's copied cache.
        other = iris.spec(
            tmp_path / "other",
            seeds=[0],
            lm_cache="per_cell",
            reuse_from=[cold.out],
            **{**common, "budget": 21},
        )
        assert [r.key for r in run_matrix(other, progress=False).ran] == [cold_cell.key]
        seed_key = "iris__predict__baseline__openai-fake-iris__s0"
        assert Store(other.out).load_cell(seed_key).copied_from == "../cold"
        requests = len(server.requests)
        monkeypatch.chdir(tmp_path / "shared-cache")
        outcomes = reproduce_cells(other.out)
        assert [o.key for o in outcomes] == sorted([seed_key, cold_cell.key])
        assert all(o.exact for o in outcomes), [o.describe() for o in outcomes]
        assert len(server.requests) == requests
