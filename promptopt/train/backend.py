"""The training-backend contract: submit a job, follow it, get the trained model back.

A backend turns an exported dataset (:mod:`promptopt.train.export`) into a trained model that
``promptopt.LM`` can call, so the trained model is scored with the same metric and split as any
other LM. :class:`promptopt.train.local.LocalBackend` trains on this machine; a hosted fine-tuning
service fits the same four methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

JobState = Literal["queued", "running", "succeeded", "failed", "stopped"]


@dataclass
class TrainingJob:
    """What to train.

    Args:
        kind: ``"sft"`` (LoRA supervised fine-tuning on chat rows) or ``"rl"`` (GRPO with the metric
            as reward).
        data: the exported dataset folder (``train.jsonl``, ``val.jsonl``, ``manifest.json``).
        base_model: ``"local"``/``"local/<name>"`` (the embedded model, converted from its GGUF) or a
            Hugging Face model folder.
        metric: for RL, the reward's metric spec (``task:NAME``, ``exact:FIELD`` or ``module:attr``).
        epochs, max_steps: training length (``max_steps > 0`` overrides epochs).
        learning_rate, batch_size, grad_accum, max_length: the usual optimizer and sequence settings.
        lora_r, lora_alpha, lora_dropout, target_modules: the LoRA adapter.
        num_generations, max_completion_length, temperature, beta: GRPO settings.
        save_steps: checkpoint every this many steps (a killed job resumes from the last one).
        seed: the training seed.
    """

    kind: Literal["sft", "rl"]
    data: str
    base_model: str = "local"
    metric: str | None = None
    epochs: float = 2.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    num_generations: int = 4
    max_completion_length: int = 64
    temperature: float = 1.0
    beta: float = 0.0
    save_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("sft", "rl"):
            raise ValueError(f"kind must be 'sft' or 'rl', not {self.kind!r}.")
        if self.kind == "rl" and not self.metric:
            raise ValueError(
                "An RL job needs metric='task:NAME' (or exact:FIELD, module:attr) for its reward."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingJob:
        return cls(**data)


@dataclass
class JobStatus:
    """Where a job stands; ``loss`` and ``reward`` are the latest logged values."""

    job_id: str
    state: JobState
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    reward: float | None = None
    seconds: float = 0.0
    error: str | None = None
    updated_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "stopped")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStatus:
        return cls(**data)


@dataclass
class TrainedModel:
    """A finished job's model: ``lm`` is the string ``promptopt.LM`` takes (e.g. ``hf/<adapter>``)."""

    job_id: str
    lm: str
    adapter: str
    base_model: str
    kind: str
    train_rows: int
    val_rows: int
    steps: int
    seconds: float
    final_loss: float | None = None
    final_reward: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainedModel:
        return cls(**data)


class TrainingBackend(Protocol):
    """Anything that trains :class:`TrainingJob` s."""

    def submit(self, job: TrainingJob, job_id: str | None = None) -> str:
        """Start (or resume) a job; returns its id at once."""
        ...

    def status(self, job_id: str) -> JobStatus: ...

    def logs(self, job_id: str, *, follow: bool = False) -> Iterator[str]:
        """The job's log lines; with ``follow`` keep yielding until the job ends."""
        ...

    def result(self, job_id: str, *, timeout: float | None = None) -> TrainedModel:
        """Wait for the job and return its model; raises if it failed."""
        ...
