"""An MLflow run for each optimization run, written through MLflow's own client.

    from promptopt.tracking import MLflowCallback
    GEPA(metric, ..., callbacks=[MLflowCallback("sqlite:///mlflow.db", experiment="iris")])

No server is needed: a ``sqlite:///`` or ``file:`` tracking URI is a local store, and ``mlflow ui
--backend-store-uri <the same URI>`` shows the runs. Artifacts of a new experiment go where
``artifact_location`` says (MLflow's default with a SQLite store: ``./mlruns``).

Logged: the optimizer's config as parameters (each value cut to MLflow's 6000 characters); per
iteration the best validation score, metric calls and LM calls (step: metric calls spent); each
candidate's validation score; at the end the seed's and the best candidate's scores, the budget, and
as artifacts ``result.json``, ``best_components.json`` and ``report.html`` (the run page). The run
ends FINISHED, KILLED when the optimizer was interrupted, or FAILED when its end could not be
logged. A tracking store that fails never stops the optimization (callbacks never do).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from promptopt.optimizers.callbacks import (
    Callback,
    IterationEndEvent,
    ProposalEvent,
    RunEndEvent,
    RunStartEvent,
    ValEvaluatedEvent,
)
from promptopt.run_page.page import render_run_page
from promptopt.run_page.view import ProposalView, RunView

MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value


class MLflowCallback(Callback):
    """Log one optimization run to MLflow (see the module's doc)."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = "promptopt",
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        artifact_location: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ImportError("MLflowCallback needs MLflow: pip install 'promptopt[mlflow]'") from exc
        self.client = MlflowClient(tracking_uri)
        self.experiment, self.run_name, self.tags = experiment, run_name, dict(tags or {})
        self.artifact_location = artifact_location  # for a new experiment; None: MLflow's default
        self.run_id: str | None = None
        self._proposals: list[ProposalView] = []
        self._step = 0
        self._best = float("-inf")

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.experiment, artifact_location=self.artifact_location)

    def on_run_start(self, event: RunStartEvent) -> None:
        tags = {
            "promptopt.optimizer": event["optimizer"],
            "promptopt.resumed": str(event["resumed"]),
            **self.tags,
        }
        run = self.client.create_run(self._experiment_id(), run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        self._proposals, self._step, self._best = [], 0, float("-inf")  # a callback may serve runs in turn
        for key, value in sorted(event["config"].items()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self.client.log_param(self.run_id, key, text[:MAX_PARAM_CHARS])

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        if self.run_id is None:
            return
        progress = event["progress"]
        self._step = progress.metric_calls
        for key, value in (
            ("best_val_score", progress.best_score),
            ("metric_calls", progress.metric_calls),
            ("lm_calls", progress.lm_calls),
            ("iteration", event["iteration"]),
        ):
            self.client.log_metric(self.run_id, key, float(value), step=self._step)

    def on_val_evaluated(self, event: ValEvaluatedEvent) -> None:
        if self.run_id is None:
            return
        score = float(event["score"])
        self.client.log_metric(self.run_id, "candidate_val_score", score, step=self._step)
        if score > self._best:  # the seed's score starts the curve before the first iteration ends
            self._best = score
            self.client.log_metric(self.run_id, "best_val_score", score, step=self._step)

    def on_proposal(self, event: ProposalEvent) -> None:
        self._proposals.append(
            ProposalView(
                iteration=event["iteration"],
                component=event.get("component") or "",
                accepted=event["accepted"],
                reason=event["reason"],
                text=event.get("text"),
            )
        )

    def on_run_end(self, event: RunEndEvent) -> None:
        if self.run_id is None:
            return
        result = event["result"]
        interrupted = "interrupted" in (result.stop_reason or "")
        status = "FAILED"
        try:
            self._log_end(result)
            status = "KILLED" if interrupted else "FINISHED"
        finally:  # a run whose artifacts could not be written still ends (FAILED), never stays RUNNING
            self.client.set_terminated(self.run_id, status=status)

    def _log_end(self, result: Any) -> None:
        assert self.run_id is not None
        budget = result.budget
        for key, value in (
            ("seed_val_score", result.seed_score),
            ("best_val_score", result.best_score),
            ("metric_calls", budget.metric_calls),
            ("lm_calls", budget.lm_calls),
            ("tokens", budget.prompt_tokens + budget.completion_tokens),
            ("cost", budget.cost),
            ("seconds", budget.seconds),
            ("candidates", len(result.candidates)),
        ):
            self.client.log_metric(self.run_id, key, float(value), step=budget.metric_calls)
        self.client.set_tag(self.run_id, "promptopt.stop_reason", result.stop_reason or "")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
            components = result.best_candidate.components if result.candidates else {}
            (folder / "best_components.json").write_text(json.dumps(components, indent=1, default=str))
            view = RunView(Path(self.run_name or result.optimizer), result, self._proposals, 0)
            (folder / "report.html").write_text(render_run_page(view), encoding="utf-8")
            self.client.log_artifacts(self.run_id, str(folder))

    def tracked_run(self) -> Any:
        """The MLflow run this callback wrote (``None`` before the optimization started)."""
        return None if self.run_id is None else self.client.get_run(self.run_id)
