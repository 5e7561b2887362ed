"""Which model an LM string or object names, precisely enough to tell two models apart.

An API model is its litellm string (the provider decides what stands behind it). A local GGUF model
is its file's sha256: ``local`` means whatever file was resolved, and two machines with different
files under the same name must not share results. A transformers model is its folder's fingerprint.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any


def lm_identity(lm: Any) -> dict[str, Any]:
    """``{"model": ..., "sha256": ...}`` for a model string, a promptopt ``LM``, a ``dspy.LM`` or a
    test double (which is named by its class)."""
    if isinstance(lm, str):
        return _identity_of(lm)
    own = getattr(lm, "identity", None)
    if callable(own):
        return dict(own())
    model = getattr(lm, "model", None)
    if isinstance(model, str):
        return _identity_of(model)
    return {"model": f"{type(lm).__module__}.{type(lm).__qualname__}"}


def _identity_of(model: str) -> dict[str, Any]:
    if model == "local" or model.startswith("local/"):
        name = model.split("/", 1)[1] if "/" in model else None
        return local_identity(name)
    if model.startswith("hf/"):
        from promptopt.lm.hf import fingerprint, resolve_hf_path

        folder = resolve_hf_path(model[3:])
        return {"model": model, "fingerprint": fingerprint(folder)}
    return {"model": model}


def local_identity(name: str | None = None) -> dict[str, Any]:
    """The local model ``name`` resolves to here: its registry name, file and sha256."""
    from promptopt.lm.model_files import models_dir, resolve_model_path
    from promptopt.lm.models import get_model

    spec = get_model(name)
    path = resolve_model_path(spec.name)
    # The joined file was verified against the pinned sha256 when it was written.
    pinned = path.resolve() == (models_dir() / f"{spec.name}.gguf").resolve()
    sha = spec.sha256 if pinned else _file_sha256(str(path), *_stat(path))
    return {"model": f"local/{spec.name}", "sha256": sha, "file": path.name, **_engine_identity()}


def _engine_identity() -> dict[str, Any]:
    from promptopt.lm.engines import local_slots, resolve_engine
    from promptopt.lm.models import LocalModelError

    try:
        engine = resolve_engine()
        served: dict[str, Any] = engine.identity()
        slots = local_slots(engine)
    except LocalModelError as exc:  # nothing can serve it here: say so rather than guess
        return {"server": f"none ({exc})"}
    if slots > 1:  # replies may then depend on which requests shared a batch
        served["server_slots"] = slots
    return served


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key: a replaced file is hashed again.
    from promptopt.provenance import sha256_file

    return sha256_file(path)
