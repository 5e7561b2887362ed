"""Where a stored number came from: the code, the packages, the machine and the command.

Every record promptopt writes under ``results/`` (bench cells, experiment JSON) carries a
:func:`collect` block, so a number can be traced to the commit that made it, rerun with the same
command, and told apart from a number made by other code, data or model.

The code version has two parts with different jobs. ``commit`` and ``dirty`` say where to look in
the history. ``source_sha256`` hashes the Python sources of ``promptopt`` and ``langprobe``
themselves: it tells results apart where the commit cannot, because it also covers uncommitted edits
and installs outside a git checkout, and it does not change when only documentation or results are
committed. A bench cell decides whether it is the same experiment on the part of these sources its
optimizer runs (:mod:`promptopt.bench.code_scope`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from promptopt.version import __version__

# The packages whose versions can change a result: ours, the peers we run, and the libraries
# between us and the model or the search.
PACKAGES = ("promptopt", "dspy", "gepa", "litellm", "optuna", "numpy", "scipy")
# Paths whose uncommitted edits make a checkout "dirty" for a result; results/ and docs do not.
_CODE_PATHS = ("promptopt", "benchmarks", "experiments", "pyproject.toml", "scripts")


@dataclass(frozen=True)
class CodeVersion:
    """The code a result was made with."""

    version: str
    commit: str | None  # None outside a git checkout
    dirty: bool | None  # uncommitted edits under _CODE_PATHS; None outside a git checkout
    source_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PACKAGE_ROOT = Path(__file__).resolve().parent


def source_roots() -> list[Path]:
    """The folders of the installed ``promptopt`` and (when present) ``langprobe`` packages."""
    roots = [_PACKAGE_ROOT]
    # Found without importing it: the task package imports promptopt, not the other way round.
    spec = importlib.util.find_spec("langprobe")
    if spec is not None and spec.origin:  # None: promptopt installed without the benchmark tasks
        roots.append(Path(spec.origin).resolve().parent)
    return roots


def source_files(roots: Iterable[Path] | None = None) -> list[tuple[str, bytes]]:
    """("<package>/<path inside it>", content) of every ``.py`` file under ``roots`` (default: the
    installed ``promptopt`` and ``langprobe``), roots in order, paths sorted as pathlib sorts them."""
    files = []
    for root in roots if roots is not None else source_roots():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.append((f"{root.name}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return files


def source_sha256(roots: Iterable[Path] | None = None) -> str:
    """sha256 over the relative paths and contents of every ``.py`` file under ``roots``."""
    h = hashlib.sha256()
    for name, content in source_files(roots):
        h.update(f"{name}\0".encode())
        h.update(content)
        h.update(b"\0")
    return h.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.cache
def code_version() -> CodeVersion:
    """The running promptopt's version, git commit, dirty flag and source hash (computed once)."""
    repo = _PACKAGE_ROOT.parent
    commit = dirty = None
    if (repo / ".git").exists():
        commit = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *_CODE_PATHS)
        dirty = None if status is None else bool(status)
    return CodeVersion(version=__version__, commit=commit, dirty=dirty, source_sha256=source_sha256())


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None``: not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def cpu() -> dict[str, Any]:
    """The processor's model name, logical core count and architecture."""
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "machine": platform.machine()}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_sha256(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The sha256 of every file under ``root`` and one sha256 over all of them (names included)."""
    base = Path(root)
    files = {p.relative_to(base).as_posix(): sha256_file(p) for p in sorted(base.rglob("*")) if p.is_file()}
    combined = hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in files.items()).encode())
    return {"sha256": combined.hexdigest(), "files": files}


def command_line() -> str:
    """The command that started this process, as a shell would take it back."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    if argv and Path(argv[0]).name.startswith("python"):
        argv[0] = "python"
    return shlex.join(argv)


@dataclass(frozen=True)
class Provenance:
    """Where a stored result came from (see :func:`collect`)."""

    recorded_at: str
    code: CodeVersion
    packages: Mapping[str, str | None]
    python: str
    platform: str
    cpu: Mapping[str, Any]  # model, cores, machine
    lms: Mapping[str, Mapping[str, Any]]  # role -> LM identity
    data: Mapping[str, Mapping[str, Any]]  # task -> what its examples came from
    command: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded_at": self.recorded_at,
            "code": self.code.to_dict(),
            "packages": dict(self.packages),
            "python": self.python,
            "platform": self.platform,
            "cpu": dict(self.cpu),
            "lms": {role: dict(ident) for role, ident in self.lms.items()},
            "data": {task: dict(ident) for task, ident in self.data.items()},
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Read a stored block; fields it lacks read as unknown (empty or ``None``)."""
        code = data.get("code") or {}
        return cls(
            recorded_at=str(data.get("recorded_at") or ""),
            code=CodeVersion(
                version=str(code.get("version") or ""),
                commit=code.get("commit"),
                dirty=code.get("dirty"),
                source_sha256=str(code.get("source_sha256") or ""),
            ),
            packages=dict(data.get("packages") or {}),
            python=str(data.get("python") or ""),
            platform=str(data.get("platform") or ""),
            cpu=dict(data.get("cpu") or {}),
            lms={role: dict(ident) for role, ident in (data.get("lms") or {}).items()},
            data={task: dict(ident) for task, ident in (data.get("data") or {}).items()},
            command=str(data.get("command") or ""),
        )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def collect(
    *,
    lms: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> Provenance:
    """The provenance of a result made by this process (``to_dict()`` is the stored block).

    Args:
        lms: role -> LM identity (see :func:`promptopt.lm.identity.lm_identity`).
        data: what the examples came from, e.g. ``{"iris": {"sha256": ..., "files": {...}}}``.
        command: the command to rerun it; defaults to this process's command line.
    """
    return Provenance(
        recorded_at=now(),
        code=code_version(),
        packages=package_versions(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu(),
        lms=dict(lms or {}),
        data=dict(data or {}),
        command=command if command is not None else command_line(),
    )
