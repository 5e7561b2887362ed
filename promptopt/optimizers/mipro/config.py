"""What a MIPROv2 run searches, as one frozen record (how it runs is
:class:`~promptopt.optimizers.base.RunOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from promptopt.optimizers.bootstrap import check_limits
from promptopt.optimizers.mipro.storage import Heartbeat, redacted_url

# auto presets: (num_candidates, num_trials). With one predictor and demo search there are
# num_candidates**2 combinations; the trials cover roughly a third (light) to all (heavy) of them,
# which is where TPE has had enough startup trials to start exploiting.
AUTO_PRESETS: dict[str, tuple[int, int]] = {
    "light": (6, 12),
    "medium": (12, 30),
    "heavy": (18, 60),
}


@dataclass(frozen=True)
class MIPROConfig:
    """MIPROv2's search options; see :class:`~promptopt.optimizers.mipro.MIPROv2` for each one.

    Build it with :meth:`from_options`, which resolves ``auto`` into ``num_candidates`` and
    ``num_trials`` (an explicit value overrides the preset's).
    """

    auto: str | None
    num_candidates: int
    num_trials: int
    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 4
    metric_threshold: float | None = None
    max_rounds: int = 1
    proposer_temperature: float = 0.7
    data_aware: bool = True
    program_aware: bool = True
    tip_aware: bool = True
    fewshot_aware: bool = True
    history_aware: bool = True
    summary_batches: int = 2
    summary_batch_size: int = 5
    minibatch_size: int | None = None
    minibatch_full_eval_steps: int = 10
    storage: str | None = None
    study_name: str = "mipro"
    heartbeat_interval: int | None = 60  # None: no heartbeats (a dead worker's trial waits for a hand)
    heartbeat_grace_period: int | None = None
    max_metric_calls: int | None = None
    seed: int = 0

    @classmethod
    def from_options(
        cls, auto: str | None, num_candidates: int | None, num_trials: int | None, **options: Any
    ) -> MIPROConfig:
        if auto is not None and auto not in AUTO_PRESETS:
            raise ValueError(f"auto must be one of {sorted(AUTO_PRESETS)} or None, not {auto!r}.")
        if auto is None and (num_candidates is None or num_trials is None):
            raise ValueError("With auto=None give both num_candidates and num_trials.")
        preset = AUTO_PRESETS.get(auto or "", (0, 0))
        return cls(
            auto=auto,
            num_candidates=num_candidates if num_candidates is not None else preset[0],
            num_trials=num_trials if num_trials is not None else preset[1],
            **options,
        )

    def __post_init__(self) -> None:
        if self.num_candidates < 1 or self.num_trials < 1:
            raise ValueError("num_candidates and num_trials must be at least 1.")
        if (
            self.minibatch_size is not None and self.minibatch_size < 1
        ) or self.minibatch_full_eval_steps < 1:
            raise ValueError("minibatch_size and minibatch_full_eval_steps must be at least 1.")
        check_limits(self.max_bootstrapped_demos, self.max_labeled_demos)
        if self.heartbeat_interval is not None and self.heartbeat_interval < 1:
            raise ValueError(
                f"heartbeat_interval must be at least 1 second or None, not {self.heartbeat_interval}."
            )
        if (
            self.heartbeat_grace_period is not None
            and self.heartbeat_interval is not None
            and (self.heartbeat_grace_period <= self.heartbeat_interval)
        ):
            raise ValueError(
                f"heartbeat_grace_period ({self.heartbeat_grace_period} s) must exceed heartbeat_interval "
                f"({self.heartbeat_interval} s), or a live worker's trial would be failed between beats."
            )

    def heartbeat(self) -> Heartbeat | None:
        if self.heartbeat_interval is None:
            return None
        return Heartbeat(self.heartbeat_interval, self.heartbeat_grace_period)

    def to_dict(self) -> dict[str, Any]:
        """Every option, the storage URL without its password."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["storage"] = redacted_url(self.storage)
        return out
