"""Which package sources a cell's numbers can depend on, hashed per optimizer.

A cell's code identity is the sha256 of the sources that can change its numbers. Every ``.py``
file of ``promptopt`` and ``langprobe`` counts for every cell except two kinds:

- an optimizer's own sources (:data:`OWN_SOURCES`: its package, or its peer adapter) count only
  for that optimizer's cells and for those declared to read them (:data:`READS`), so a change to
  GEPA reruns GEPA's cells and not the peers' and baselines' beside it;
- the modules that describe a result instead of making it (:data:`DESCRIBING`: the provenance
  block and the identity itself) count for none: they decide what a record says and whether it is
  reused, never a score.

An optimizer this module does not name gets every source (scope ``"all"``), so a new optimizer is
never under-hashed. ``tests/bench/test_code_scope.py`` checks the tables against the import graph:
the modules a cell of one optimizer imports reach no other optimizer's sources beyond its reads.
Importing ``promptopt.optimizers`` runs the module-level definitions of every optimizer package
(the package re-exports them); that defines classes and computes nothing a score depends on.

Cells stored before scopes existed hold the hash of all sources. :func:`scoped_from_full_hash`
finds the commit whose sources have that hash (walking the git history of the sources) and hashes
that commit's sources in the asked scope, so a stored cell whose own code did not change since is
still the same experiment; without the history (a shallow clone) such a cell is simply rerun.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from promptopt.provenance import source_files, source_roots

# Source paths are "<package>/<path inside it>", as the whole-source hash names them.
OWN_SOURCES: Mapping[str, tuple[str, ...]] = {
    "gepa": ("promptopt/optimizers/gepa/",),
    "mipro": ("promptopt/optimizers/mipro/",),
    "dspy_gepa": ("promptopt/peers/dspy_gepa.py",),
    "dspy_mipro": ("promptopt/peers/dspy_mipro.py", "promptopt/peers/mipro_plan.py"),
    "gepa_lib": ("promptopt/peers/gepa_library.py",),
}
# Another optimizer's sources a scope runs: the peers share GEPA's Pareto bookkeeping
# (promptopt.peers.base reads the validation front through it).
READS: Mapping[str, tuple[str, ...]] = {
    "dspy_gepa": ("promptopt/optimizers/gepa/pareto.py",),
    "dspy_mipro": ("promptopt/optimizers/gepa/pareto.py",),
    "gepa_lib": ("promptopt/optimizers/gepa/pareto.py",),
}
# Optimizers that run shared sources only (the seed program and the few-shot baselines).
SHARED_ONLY = frozenset({"baseline", "labeled_fewshot", "bootstrap_fewshot", "bootstrap_rs"})
DESCRIBING = (
    "promptopt/provenance.py",
    "promptopt/bench/identity.py",
    "promptopt/bench/code_scope.py",
)
SHARED, ALL = "shared", "all"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def scope_of(optimizer: str | None) -> str:
    """The scope whose sources a cell of ``optimizer`` (a registry name, a ``NAME@LABEL`` variant,
    or ``None`` for the seed program's scores) hashes."""
    if optimizer is None:
        return SHARED
    base = optimizer.split("@", 1)[0]
    if base in OWN_SOURCES:
        return base
    return SHARED if base in SHARED_ONLY else ALL


def _owned(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes)


def in_scope(path: str, scope: str) -> bool:
    """Whether the source ``path`` ("promptopt/...") counts for cells of ``scope``."""
    if scope == ALL:
        return True
    if _owned(path, DESCRIBING):
        return False
    for owner, prefixes in OWN_SOURCES.items():
        if owner != scope and _owned(path, prefixes) and not _owned(path, READS.get(scope, ())):
            return False
    return True


SCOPES = (SHARED, ALL, *OWN_SOURCES)


def _sort_key(label: str, rel: str) -> tuple[str, PurePosixPath]:
    return label, PurePosixPath(rel)


def hash_sources(files: Sequence[tuple[str, bytes]], scope: str) -> str:
    """sha256 over the named sources of ``scope``; ``files`` are ("<package>/<path>", content) in
    the order of :func:`promptopt.provenance.source_sha256` (scope ``all`` gives that very hash)."""
    h = hashlib.sha256()
    for path, content in files:
        if in_scope(path, scope):
            h.update(f"{path}\0".encode())
            h.update(content)
            h.update(b"\0")
    return h.hexdigest()


def _ordered(files: Iterable[tuple[str, str, bytes]]) -> list[tuple[str, bytes]]:
    """(package, path inside it, content) -> ("<package>/<path>", content), roots in the order given
    and paths sorted as pathlib sorts them."""
    indexed = [(i, pkg, rel, content) for i, (pkg, rel, content) in enumerate(files)]
    root_order: dict[str, int] = {}
    for i, pkg, _, _ in indexed:
        root_order.setdefault(pkg, i)
    indexed.sort(key=lambda t: (root_order[t[1]], PurePosixPath(t[2])))
    return [(f"{pkg}/{rel}", content) for _, pkg, rel, content in indexed]


def working_tree_files(roots: Sequence[Path] | None = None) -> list[tuple[str, bytes]]:
    """The ``.py`` sources under ``roots`` (default: the installed ``promptopt`` and ``langprobe``)."""
    return source_files(roots)


@dataclass(frozen=True)
class SourceScopes:
    """The sha256 of the sources in every scope, computed at once from one reading of the files."""

    sha256_by_scope: Mapping[str, str]

    @classmethod
    def of(cls, files: Sequence[tuple[str, bytes]]) -> SourceScopes:
        return cls({scope: hash_sources(files, scope) for scope in SCOPES})

    def for_optimizer(self, optimizer: str | None) -> dict[str, str]:
        """The stored code identity of a cell of ``optimizer``."""
        scope = scope_of(optimizer)
        return {"scope": scope, "sources_sha256": self.sha256_by_scope[scope]}


@functools.cache
def current_scopes() -> SourceScopes:
    """The running code's scoped hashes (computed once per process)."""
    return SourceScopes.of(working_tree_files())


# --- cells stored with the hash of all sources ---------------------------------------------------
def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], input=stdin, capture_output=True, timeout=120, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def _read_blobs(repo: Path, shas: Sequence[str]) -> list[bytes] | None:
    """The contents of ``shas`` through one ``git cat-file --batch``; ``None`` when one is missing
    (a partial or damaged clone), so a cell that needed it is rerun instead of stopping the run."""
    raw = _git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in shas).encode())
    if raw is None:
        return None
    blobs, pos = [], 0
    for _ in shas:
        header_end = raw.find(b"\n", pos)
        header = raw[pos:header_end].split() if header_end >= 0 else []
        if len(header) != 3 or header[1] != b"blob" or not header[2].isdigit():
            return None  # "<sha> missing", or output cut short
        size = int(header[2])
        blobs.append(raw[header_end + 1 : header_end + 1 + size])
        pos = header_end + 1 + size + 1  # content, then a newline
    return blobs


def commit_files(repo: Path, commit: str, roots: Sequence[tuple[str, str]]) -> list[tuple[str, bytes]] | None:
    """The ``.py`` sources of ``commit`` under ``roots`` ((package name, its folder in the
    repository) pairs), named and ordered as :func:`working_tree_files` names them."""
    entries: list[tuple[str, str, str]] = []
    for package, folder in roots:
        listing = _git(repo, "ls-tree", "-r", "-z", commit, "--", folder)
        if listing is None:
            return None
        for item in listing.split(b"\0"):
            if not item:
                continue
            meta, path = os.fsdecode(item).split("\t", 1)
            kind, sha = meta.split()[1:3]
            rel = path[len(folder) :].lstrip("/")
            if kind == "blob" and rel.endswith(".py") and "__pycache__" not in rel.split("/"):
                entries.append((package, rel, sha))
    blobs = _read_blobs(repo, [sha for _, _, sha in entries])
    if blobs is None:
        return None
    return _ordered((pkg, rel, blob) for (pkg, rel, _), blob in zip(entries, blobs, strict=True))


def _repo_roots() -> tuple[Path, tuple[tuple[str, str], ...]] | None:
    """The git checkout the running sources live in, and their folders in it."""
    roots = source_roots()
    repo = roots[0].parent
    if not (repo / ".git").exists():
        return None
    pairs = []
    for root in roots:
        try:
            pairs.append((root.name, root.resolve().relative_to(repo.resolve()).as_posix()))
        except ValueError:  # installed outside the checkout: its history is not here
            return None
    return repo, tuple(pairs)


class History:
    """Whole-source hash -> scoped hashes of the commits in HEAD's history that changed the
    sources, read newest first and only as far back as a lookup needs."""

    def __init__(self, located: tuple[Path, tuple[tuple[str, str], ...]] | None) -> None:
        self._found: dict[str, SourceScopes] = {}
        self._pending: list[str] | None = None
        self._located = located  # the checkout and the sources' folders in it; None: no history

    def _commits(self) -> list[str]:
        if self._pending is None:
            self._pending = []
            if self._located is not None:
                repo, roots = self._located
                listing = _git(repo, "rev-list", "HEAD", "--", *(folder for _, folder in roots))
                self._pending = (listing or b"").decode().split()[::-1]  # popped newest first
        return self._pending

    def lookup(self, full_sha256: str) -> SourceScopes | None:
        pending = self._commits()
        while full_sha256 not in self._found and pending and self._located is not None:
            repo, roots = self._located
            files = commit_files(repo, pending.pop(), roots)
            if files is not None:
                scopes = SourceScopes.of(files)
                self._found.setdefault(scopes.sha256_by_scope[ALL], scopes)
        return self._found.get(full_sha256)


@functools.cache
def _history() -> History:
    return History(_repo_roots())


def scoped_from_full_hash(full_sha256: str, optimizer: str | None) -> dict[str, str] | None:
    """The scoped code identity of a cell stored with the hash of all sources, read from the commit
    whose sources have that hash; ``None`` when no commit of this checkout's history has it."""
    scopes = current_scopes()
    if not _SHA256.fullmatch(full_sha256):
        return None
    if scopes.sha256_by_scope[ALL] == full_sha256:
        return scopes.for_optimizer(optimizer)
    past = _history().lookup(full_sha256)
    return None if past is None else past.for_optimizer(optimizer)
