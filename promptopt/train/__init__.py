"""From optimized prompts to trained weights.

Export the successful traces of an optimization run as an SFT or RL dataset
(:func:`export_sft`, :func:`export_rl`), train a LoRA adapter on it with a
:class:`TrainingBackend` (:class:`LocalBackend` trains here with TRL), and score
the trained model like any other LM: ``promptopt.LM(trained.lm)``.

Training needs the ``train`` extra (torch, transformers, peft, trl, datasets).
"""

from promptopt.train.backend import JobStatus, TrainedModel, TrainingBackend, TrainingJob
from promptopt.train.export import ExportedDataset, choose_candidates, export_rl, export_sft
from promptopt.train.local import LocalBackend, TrainingError
from promptopt.train.reward import MetricReward, resolve_metric

__all__ = [
    "ExportedDataset",
    "JobStatus",
    "LocalBackend",
    "MetricReward",
    "TrainedModel",
    "TrainingBackend",
    "TrainingError",
    "TrainingJob",
    "choose_candidates",
    "export_rl",
    "export_sft",
    "resolve_metric",
]
