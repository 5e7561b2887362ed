"""Transformers-backed models in this process: the embedded model's weights, or one trained from them.

``LM("hf/<path>")`` reaches a model through this module instead of litellm, with the same cache,
accounting and history. ``<path>`` is one of

- ``local`` or ``local/<name>``: an embedded local model (the GGUF that the llama.cpp server serves),
  converted once to a Hugging Face folder under ``<cache>/hf/<name>`` (:func:`hf_base_model`);
- a Hugging Face model folder (``config.json``);
- a LoRA adapter folder (``adapter_config.json``), as written by the local training backend: its
  base model is loaded and the adapter applied.

Generation is greedy at temperature 0 and sampled otherwise; requests are served one at a time
(a CPU model gains nothing from concurrent calls). The cache identity is a fingerprint of the
weight files, so a retrained adapter never reuses replies of an older one.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from promptopt.io import file_lock
from promptopt.lm.cache import default_cache_dir
from promptopt.lm_protocol import Completion

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


class HFModelError(RuntimeError):
    """A transformers-backed model could not be found or loaded."""


def _require_transformers() -> Any:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise HFModelError(
            "Transformers-backed models need the training extra: pip install 'promptopt[train]' "
            "(on a CPU machine install torch first: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)."
        ) from exc
    return transformers


def hf_cache_dir() -> Path:
    return default_cache_dir() / "hf"


def hf_base_model(name: str | None = None) -> Path:
    """A Hugging Face copy of an embedded local model, converted from its verified GGUF once.

    transformers dequantizes the GGUF into float32 weights; the folder is written atomically (a
    temporary folder renamed into place) under a file lock, so concurrent callers convert once.
    """
    from promptopt.lm.model_files import resolve_model_path
    from promptopt.lm.models import get_model

    spec = get_model(name)
    target = hf_cache_dir() / spec.name
    if (target / "config.json").exists():
        return target
    transformers = _require_transformers()
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f"{spec.name}.lock"):
        if (target / "config.json").exists():
            return target
        gguf = resolve_model_path(spec.name)
        tmp = target.parent / f".{spec.name}.tmp-{os.getpid()}"
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are dequantized already; without this transformers refuses to save them.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "promptopt_source.json").write_text(
            json.dumps({"gguf": str(gguf), "sha256": spec.sha256, "model": spec.name}, indent=2)
        )
        tmp.rename(target)
    return target


def resolve_hf_path(path: str) -> Path:
    """A model or adapter folder for ``path`` (see the module docstring)."""
    if path == "local" or path.startswith("local/"):
        return hf_base_model(path.split("/", 1)[1] if "/" in path else None)
    folder = Path(path).expanduser()
    if (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
        return folder
    raise HFModelError(
        f"{path!r} is neither 'local[/<name>]' nor a folder holding config.json (a model) or "
        "adapter_config.json (a LoRA adapter)."
    )


def fingerprint(folder: Path) -> str:
    """A short hash of the folder's weights: adapters are hashed whole, large files by name, size, mtime."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if not f.is_file() or not (f.suffix in _WEIGHT_SUFFIXES or f.name.endswith("config.json")):
            continue
        h.update(f.name.encode())
        st = f.stat()
        if st.st_size <= 64 << 20:
            h.update(f.read_bytes())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    if (folder / "adapter_config.json").exists():
        h.update(fingerprint(adapter_base(folder)).encode())
    return h.hexdigest()[:16]


def adapter_base(folder: Path) -> Path:
    """The base model folder a LoRA adapter was trained on."""
    cfg = json.loads((folder / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path") or ""
    if base and Path(base).exists():
        return Path(base)
    raise HFModelError(
        f"The adapter in {folder} was trained on {base!r}, which is not a folder here; "
        "pass the base model folder or convert the local model first (hf_base_model())."
    )


class HFEngine:
    """A loaded model and tokenizer that answer chat requests, one at a time."""

    _engines: dict[str, HFEngine] = {}  # noqa: RUF012 - a process-wide registry
    _registry_lock = threading.Lock()

    def __init__(self, folder: Path) -> None:
        transformers = _require_transformers()
        import torch

        self.folder = folder
        self._lock = threading.Lock()
        if (folder / "adapter_config.json").exists():
            from peft import PeftModel

            base = adapter_base(folder)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
            model = PeftModel.from_pretrained(model, str(folder))
            model = model.merge_and_unload()  # merged weights generate as fast as the base
            tok_dir = folder if (folder / "tokenizer_config.json").exists() else base
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
            tok_dir = folder
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
        self.model = model.eval()
        self.name = f"hf/{folder.name}"

    @classmethod
    def get(cls, folder: Path) -> HFEngine:
        key = str(folder.resolve())
        with cls._registry_lock:
            if key not in cls._engines:
                cls._engines[key] = cls(folder)
            return cls._engines[key]

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        import torch

        max_tokens = int(params.get("max_tokens") or 512)
        temperature = float(params.get("temperature") or 0.0)
        with self._lock:
            start = time.perf_counter()
            enc = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            gen: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.tokenizer.eos_token_id}
            if temperature > 0:
                gen.update(do_sample=True, temperature=temperature, top_p=float(params.get("top_p", 1.0)))
            else:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.no_grad():
                out = self.model.generate(**enc, **gen)
            new = out[0][enc["input_ids"].shape[1] :]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            n_new = int(new.shape[0])
            stopped = n_new > 0 and int(new[-1]) in _stop_ids(self.tokenizer, self.model)
            return Completion(
                text=text,
                prompt_tokens=int(enc["input_ids"].shape[1]),
                completion_tokens=n_new,
                latency=time.perf_counter() - start,
                finish_reason="stop" if stopped or n_new < max_tokens else "length",
                model=self.name,
            )


def _stop_ids(tokenizer: Any, model: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
