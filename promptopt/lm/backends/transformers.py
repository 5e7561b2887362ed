"""A transformers model run inside this process (:mod:`promptopt.lm.hf`), such as a LoRA adapter
from ``promptopt train``; it has no HTTP endpoint for other clients."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from promptopt.lm_protocol import Completion, LMError


class TransformersBackend:
    is_local = True
    in_process = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._folder: tuple[Path, str] | None = None
        self._lock = threading.Lock()

    def _resolved(self) -> tuple[Path, str]:
        with self._lock:
            if self._folder is None:
                from promptopt.lm.hf import fingerprint, resolve_hf_path

                folder = resolve_hf_path(self.path)
                self._folder = (folder, fingerprint(folder))
            return self._folder

    def cache_identity(self) -> str:
        folder, fp = self._resolved()
        return f"hf/{folder.name}@{fp}"

    def connection(self) -> tuple[str, dict[str, Any]]:
        raise LMError(
            f"hf/{self.path} runs inside this process and has no HTTP endpoint for other clients "
            "(DSPy, litellm); call it through promptopt, or convert the model to GGUF and serve it."
        )

    def context_window(self) -> int | None:
        import json

        folder, _ = self._resolved()
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return None
        tokens = config.get("max_position_embeddings")
        return int(tokens) if isinstance(tokens, int) else None

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any], timeout: float) -> Completion:
        from promptopt.lm.hf import HFEngine

        folder, _ = self._resolved()
        return HFEngine.get(folder).complete(messages, params)
