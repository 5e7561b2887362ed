"""The training process of a local job: ``python -m promptopt.train.worker JOB_DIR``.

It reads ``job.json``, trains a LoRA adapter with TRL (``SFTTrainer`` or ``GRPOTrainer``), and keeps
``status.json`` and ``metrics.jsonl`` current. A job folder with checkpoints resumes from the last.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from promptopt.io import write_json_atomic
from promptopt.train.backend import JobStatus, TrainedModel, TrainingJob
from promptopt.train.export import ExportedDataset


def base_model_dir(spec: str) -> Path:
    """The Hugging Face folder of ``local``/``local/<name>`` (converted once) or a model folder."""
    from promptopt.lm.hf import resolve_hf_path

    folder = resolve_hf_path(spec).resolve()
    if (folder / "adapter_config.json").exists():
        raise ValueError(f"{spec} is an adapter; train from its base model folder instead.")
    return folder


class _Reporter:
    """Writes status.json and metrics.jsonl; tells the trainer to stop when a STOP file appears."""

    def __init__(self, folder: Path, job_id: str) -> None:
        self.folder = folder
        self.status = JobStatus(job_id, "running", updated_at=time.time())
        self.start = time.time()
        self.history: list[dict[str, Any]] = []
        metrics = folder / "metrics.jsonl"
        if metrics.exists():  # a resumed job keeps its earlier curve
            self.history = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            self.start -= self.history[-1].get("seconds", 0.0) if self.history else 0.0

    def write(self) -> None:
        self.status.seconds = time.time() - self.start
        self.status.updated_at = time.time()
        write_json_atomic(self.folder / "status.json", self.status.to_dict())

    def callback(self) -> Any:
        from transformers import TrainerCallback

        reporter = self

        class StatusCallback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
                reporter.status.max_steps = state.max_steps
                reporter.write()

            def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
                logs = dict(logs or {})
                row = {
                    "step": state.global_step,
                    "epoch": state.epoch,
                    "seconds": time.time() - reporter.start,
                }
                row.update({k: v for k, v in logs.items() if isinstance(v, int | float)})
                reporter.history.append(row)
                with open(reporter.folder / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                st = reporter.status
                st.step, st.epoch = state.global_step, float(state.epoch or 0.0)
                if "loss" in logs:
                    st.loss = float(logs["loss"])
                reward = logs.get("reward", logs.get("rewards/mean"))
                if reward is not None:
                    st.reward = float(reward)
                reporter.write()

            def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
                if (reporter.folder / "STOP").exists():
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return StatusCallback()


def _load(base: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    return model, tokenizer


def _lora(job: TrainingJob) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=job.lora_r,
        lora_alpha=job.lora_alpha,
        lora_dropout=job.lora_dropout,
        target_modules=list(job.target_modules),
        task_type="CAUSAL_LM",
    )


def _common_args(job: TrainingJob, folder: Path) -> dict[str, Any]:
    return {
        "output_dir": str(folder / "checkpoints"),
        "num_train_epochs": job.epochs,
        "max_steps": job.max_steps,
        "learning_rate": job.learning_rate,
        "gradient_accumulation_steps": job.grad_accum,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": job.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "seed": job.seed,
        "disable_tqdm": True,
        "use_cpu": not _has_gpu(),
        "dataloader_num_workers": 0,
    }


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def train_sft(job: TrainingJob, data: ExportedDataset, folder: Path, reporter: _Reporter) -> Any:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def convert(rows: list[dict[str, Any]]) -> Any:
        # prompt/completion rows: the loss covers the assistant reply only.
        return Dataset.from_list(
            [{"prompt": r["messages"][:-1], "completion": [r["messages"][-1]]} for r in rows]
        )

    train_rows, val_rows = data.rows("train"), data.rows("val")
    if not train_rows:
        raise ValueError(f"{data.path} has no training rows; export with a lower threshold or more examples.")
    base = base_model_dir(job.base_model)
    model, tokenizer = _load(base)
    args = SFTConfig(
        **_common_args(job, folder),
        per_device_train_batch_size=job.batch_size,
        per_device_eval_batch_size=job.batch_size,
        max_length=job.max_length,
        completion_only_loss=True,
        eval_strategy="epoch" if val_rows else "no",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=convert(train_rows),
        eval_dataset=convert(val_rows) if val_rows else None,
        processing_class=tokenizer,
        peft_config=_lora(job),
        callbacks=[reporter.callback()],
    )
    return trainer, tokenizer, base


def train_rl(job: TrainingJob, data: ExportedDataset, folder: Path, reporter: _Reporter) -> Any:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from promptopt.train.reward import MetricReward, resolve_metric

    rows = data.rows("train")
    if not rows:
        raise ValueError(f"{data.path} has no RL prompts.")
    signatures = data.manifest.get("signatures")
    if not signatures:
        raise ValueError(f"{data.path}/manifest.json has no signatures: export it with export_rl().")
    reward = MetricReward(resolve_metric(str(job.metric)), signatures)
    dataset = Dataset.from_list(
        [
            {"prompt": r["prompt"], "example": json.dumps(r["example"]), "predictor": r["predictor"]}
            for r in rows
        ]
    )
    base = base_model_dir(job.base_model)
    model, tokenizer = _load(base)
    # Each step scores whole groups: the batch must hold a whole number of groups.
    batch = max(job.num_generations, job.batch_size - job.batch_size % job.num_generations)
    args = GRPOConfig(
        **_common_args(job, folder),
        per_device_train_batch_size=batch,
        num_generations=job.num_generations,
        max_completion_length=job.max_completion_length,
        temperature=job.temperature,
        beta=job.beta,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora(job),
        callbacks=[reporter.callback()],
    )
    return trainer, tokenizer, base


def plot_curve(history: list[dict[str, Any]], path: Path, kind: str) -> Path | None:
    rows = [h for h in history if "loss" in h or "reward" in h]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["loss"] + (["reward"] if kind == "rl" else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        pts = [(h["step"], h[key]) for h in rows if key in h and math.isfinite(h[key])]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".")
        evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h] if key == "loss" else []
        if evals:
            ax.plot(*zip(*evals, strict=True), "o--", label="validation")
            ax.legend()
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{kind.upper()} training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(folder: Path) -> TrainedModel:
    job = TrainingJob.from_dict(json.loads((folder / "job.json").read_text()))
    reporter = _Reporter(folder, folder.name)
    reporter.write()
    data = ExportedDataset.load(job.data)
    if data.kind != job.kind:
        raise ValueError(f"{job.data} is a {data.kind} dataset but the job is {job.kind}.")
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    trainer, tokenizer, base = (train_sft if job.kind == "sft" else train_rl)(job, data, folder, reporter)
    checkpoints = sorted(
        (folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
    )
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    if (folder / "STOP").exists():
        reporter.status.state = "stopped"
        reporter.write()
        raise SystemExit(0)
    adapter = folder / "adapter"
    trainer.model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    _point_at_base(adapter, base)
    plot_curve(reporter.history, folder / "curve.png", job.kind)
    losses = [h["loss"] for h in reporter.history if "loss" in h]
    rewards = [h.get("reward", h.get("rewards/mean")) for h in reporter.history]
    rewards = [r for r in rewards if r is not None]
    model = TrainedModel(
        job_id=folder.name,
        lm=f"hf/{adapter.resolve()}",
        adapter=str(adapter.resolve()),
        base_model=str(base),
        kind=job.kind,
        train_rows=data.n_train,
        val_rows=data.n_val,
        steps=reporter.status.step,
        seconds=time.time() - reporter.start,
        final_loss=losses[-1] if losses else None,
        final_reward=rewards[-1] if rewards else None,
        history=reporter.history,
    )
    write_json_atomic(folder / "model.json", model.to_dict())
    reporter.status.state = "succeeded"
    reporter.write()
    return model


def _point_at_base(adapter: Path, base: Path) -> None:
    """Record the base folder's absolute path, so ``LM('hf/<adapter>')`` finds it from anywhere."""
    cfg_file = adapter / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_file.write_text(json.dumps(cfg, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m promptopt.train.worker JOB_DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    try:
        run(folder)
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        status_file = folder / "status.json"
        data = json.loads(status_file.read_text()) if status_file.exists() else {"job_id": folder.name}
        data.update(state="failed", error=f"{type(exc).__name__}: {exc}", updated_at=time.time())
        write_json_atomic(status_file, {**JobStatus(folder.name, "failed").to_dict(), **data})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
