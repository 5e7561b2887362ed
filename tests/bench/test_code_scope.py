"""A cell's code identity covers the sources its numbers can depend on, scoped per optimizer."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import grimp
import pytest

from promptopt.bench.code_scope import (
    ALL,
    DESCRIBING,
    OWN_SOURCES,
    READS,
    SCOPES,
    SHARED,
    SHARED_ONLY,
    History,
    SourceScopes,
    commit_files,
    current_scopes,
    scope_of,
    scoped_from_full_hash,
    working_tree_files,
)
from promptopt.bench.optimizers import OPTIMIZERS
from promptopt.provenance import source_roots, source_sha256

REPO = Path(__file__).resolve().parents[2]


def test_each_registered_optimizer_has_a_declared_scope():
    for name in OPTIMIZERS:
        assert name in OWN_SOURCES or name in SHARED_ONLY, f"declare {name}'s sources in code_scope"
    assert scope_of(None) == SHARED and scope_of("bootstrap_fewshot") == SHARED
    assert scope_of("gepa@adaptive") == "gepa" and scope_of("dspy_mipro") == "dspy_mipro"
    assert scope_of("an_optimizer_not_declared") == ALL  # never under-hashed


def test_declared_sources_exist():
    for path in [p for paths in (*OWN_SOURCES.values(), *READS.values()) for p in paths] + list(DESCRIBING):
        assert (REPO / path).exists(), path


def test_scope_all_is_the_whole_source_hash():
    assert current_scopes().sha256_by_scope[ALL] == source_sha256()


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


FAKE = {
    "promptopt/evaluate.py": "x = 1\n",
    "promptopt/provenance.py": "p = 1\n",
    "promptopt/optimizers/gepa/engine.py": "g = 1\n",
    "promptopt/optimizers/gepa/pareto.py": "front = 1\n",
    "promptopt/optimizers/mipro/engine.py": "m = 1\n",
    "promptopt/peers/dspy_gepa.py": "d = 1\n",
    "promptopt/peers/gepa_library.py": "lib = 1\n",
}


@pytest.mark.parametrize(
    ("edited", "changes"),
    [
        ("promptopt/evaluate.py", set(SCOPES)),  # shared: every cell
        ("promptopt/optimizers/gepa/engine.py", {"gepa", ALL}),
        ("promptopt/optimizers/gepa/pareto.py", {"gepa", "dspy_gepa", "dspy_mipro", "gepa_lib", ALL}),
        ("promptopt/optimizers/mipro/engine.py", {"mipro", ALL}),
        ("promptopt/peers/dspy_gepa.py", {"dspy_gepa", ALL}),
        ("promptopt/provenance.py", {ALL}),  # describes a result, makes none
    ],
)
def test_an_edit_changes_the_scopes_that_run_it(tmp_path, edited, changes):
    _tree(tmp_path, FAKE)
    before = SourceScopes.of(working_tree_files([tmp_path / "promptopt"])).sha256_by_scope
    (tmp_path / edited).write_text("edited = True\n")
    after = SourceScopes.of(working_tree_files([tmp_path / "promptopt"])).sha256_by_scope
    assert {scope for scope in SCOPES if before[scope] != after[scope]} == changes


def _owned_modules(graph: grimp.ImportGraph, scope: str) -> set[str]:
    out = set()
    for path in OWN_SOURCES.get(scope, ()) if scope != SHARED else ():
        module = path.removesuffix("/").removesuffix(".py").replace("/", ".")
        out |= {module} | (graph.find_descendants(module) if path.endswith("/") else set())
    return out


def _module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


# Where a cell of each scope starts: every module of the bench and of the task packages, and the
# optimizer's own modules.
COMMON = ("promptopt.bench", "langprobe")
ENTRIES = {
    SHARED: (*COMMON, "promptopt.optimizers.baselines"),
    "gepa": (*COMMON, "promptopt.optimizers.gepa"),
    "mipro": (*COMMON, "promptopt.optimizers.mipro"),
    "dspy_gepa": (*COMMON, "promptopt.peers.dspy_gepa"),
    "dspy_mipro": (*COMMON, "promptopt.peers.dspy_mipro"),
    "gepa_lib": (*COMMON, "promptopt.peers.gepa_library"),
}


def test_what_a_cell_imports_stays_inside_its_scope():
    """The import graph (grimp, as import-linter reads it) of the modules a cell of each scope
    runs reaches no other optimizer's sources beyond the ones its scope declares it reads."""
    graph = grimp.build_graph("promptopt", "langprobe", exclude_type_checking_imports=True)
    owned = {scope: _owned_modules(graph, scope) for scope in OWN_SOURCES}
    assert set(ENTRIES) == {SHARED, *OWN_SOURCES}
    for scope, entries in ENTRIES.items():
        start = set()
        for entry in entries:
            start |= {entry} | graph.find_descendants(entry)
        reached = set(start)
        for module in start:
            reached |= graph.find_upstream_modules(module)
        others = set().union(*(mods for owner, mods in owned.items() if owner != scope))
        allowed = {_module_of(path) for path in READS.get(scope, ())}
        assert reached & others <= allowed, f"{scope} runs {sorted((reached & others) - allowed)}"


# Who may import a module left out of every scope: where results are recorded, compared or
# reused, and the LM identity (which hashes the model file); nothing that computes a score.
DESCRIBING_IMPORTERS = {
    "promptopt.bench.cli",
    "promptopt.bench.code_scope",
    "promptopt.bench.identity",
    "promptopt.bench.records",
    "promptopt.bench.report_provenance",
    "promptopt.bench.runner",  # builds each cell's identity and provenance block
    "promptopt.bench.single_run",
    "promptopt.lm.identity",
    "promptopt.verifiers.cli",
}


def test_describing_modules_are_read_only_by_bookkeeping():
    graph = grimp.build_graph("promptopt", "langprobe", exclude_type_checking_imports=True)
    for path in DESCRIBING:
        importers = graph.find_modules_that_directly_import(_module_of(path))
        assert importers <= DESCRIBING_IMPORTERS, f"{sorted(importers - DESCRIBING_IMPORTERS)} import {path}"


def _computes_on_import(body: list[ast.stmt]) -> list[int]:
    """Lines of module- or class-level statements that do more than define: a bare call, a loop, a
    with block (imports, definitions, assignments, docstrings and TYPE_CHECKING blocks define)."""
    found = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            found += _computes_on_import(node.body)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        elif not isinstance(
            node,
            (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign, ast.AnnAssign),
        ):
            found.append(node.lineno)
    return found


def test_importing_an_optimizer_computes_nothing():
    """Every cell imports every optimizer package (``promptopt.optimizers`` and ``promptopt.peers``
    re-export them all), which runs their module-level statements although only the cell's own
    optimizer is hashed: those statements must only define."""
    for path in [p for paths in OWN_SOURCES.values() for p in paths]:
        files = sorted((REPO / path).rglob("*.py")) if path.endswith("/") else [REPO / path]
        for file in files:
            lines = _computes_on_import(ast.parse(file.read_text()).body)
            assert not lines, f"{file.relative_to(REPO)} computes on import at lines {lines}"


def test_the_peers_read_the_pareto_module_itself():
    """The peers' scopes read GEPA's pareto.py but not the package's __init__, so the name they
    import must be that module, not something the __init__ defines."""
    import promptopt.optimizers.gepa.pareto as pareto_module
    from promptopt.peers import base

    assert base.pareto is pareto_module


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_a_cell_stored_with_the_whole_source_hash_is_read_through_its_commit(tmp_path):
    repo = tmp_path / "repo"
    _tree(repo, FAKE)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    roots = (("promptopt", "promptopt"),)
    first = SourceScopes.of(working_tree_files([repo / "promptopt"]))
    assert commit_files(repo, "HEAD", roots) == working_tree_files([repo / "promptopt"])

    (repo / "promptopt/optimizers/gepa/engine.py").write_text("g = 2\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    second = SourceScopes.of(working_tree_files([repo / "promptopt"]))

    history = History((repo, roots))
    found = history.lookup(first.sha256_by_scope[ALL])
    assert found == first
    # A GEPA edit: the shared scope of the older cell is the same experiment, GEPA's is not.
    assert found.sha256_by_scope[SHARED] == second.sha256_by_scope[SHARED]
    assert found.sha256_by_scope["gepa"] != second.sha256_by_scope["gepa"]
    assert History((repo, roots)).lookup("f" * 64) is None
    assert History(None).lookup(first.sha256_by_scope[ALL]) is None


def test_lookups_of_the_running_code():
    full = current_scopes().sha256_by_scope[ALL]
    assert scoped_from_full_hash(full, "gepa") == current_scopes().for_optimizer("gepa")
    assert scoped_from_full_hash("not a hash", "gepa") is None
    assert source_roots()[0].name == "promptopt"


def test_an_identity_stored_with_the_whole_source_hash_is_compared_in_scope():
    from promptopt.bench.identity import CellIdentity

    config = {"task": "iris", "optimizer": "gepa@adaptive"}
    ident = CellIdentity(config=config, data={}, lms={}, code=current_scopes())
    assert ident.code == current_scopes().for_optimizer("gepa")
    stored = {"config": config, "data": {}, "lms": {}, "code": source_sha256()}
    assert ident.changed_parts(stored) == []
    assert ident.changed_parts({**stored, "code": "0" * 64}) == ["code"]
    seed_scores = CellIdentity(config={"task": "iris"}, data={}, lms={}, code=current_scopes())
    assert seed_scores.code["scope"] == SHARED
