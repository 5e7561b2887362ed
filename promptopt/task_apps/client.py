"""Talking to a task app: ``GET /health``, ``GET /info`` and ``POST /rollout`` with a bearer token and
a timeout on every request.

What can go wrong is told apart, because it decides what a rollout counts as:

* :class:`TaskAppUnavailableError`: the app cannot be reached, or answered 5xx/401/403 (an outage or a
  misconfiguration): infrastructure, never a score; the optimizer's failure streak stops a run that
  keeps meeting it, and a resumed run retries those rollouts.
* :class:`RolloutFailedError`: the app answered, but its rollout failed (its code raised, it hung past
  the timeout, it answered malformed JSON or a score outside [0, 1]); the rollout is a recorded
  failure with the app's error, and the run goes on.
"""

from __future__ import annotations

import json
from typing import Any

from promptopt.task_apps.protocol import AppInfo, ProtocolError, RolloutRequest, RolloutResult


class TaskAppUnavailableError(ConnectionError):
    """The task app could not be reached or refused the request (not the rollout's fault)."""


class RolloutFailedError(RuntimeError):
    """The task app answered, but the rollout failed; the message holds the app's error."""


class TaskAppClient:
    """A client for one task app at ``url`` (e.g. ``http://127.0.0.1:8123``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"A task app URL starts with http:// or https://, not {url!r}.")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        where = f"{method} {self.url}{path}"
        try:
            response = httpx.request(
                method, self.url + path, json=body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            if path == "/rollout":
                raise RolloutFailedError(
                    f"{where} gave no answer within {self.timeout:g}s (the app hung)."
                ) from exc
            raise TaskAppUnavailableError(f"{where} gave no answer within {self.timeout:g}s.") from exc
        except httpx.HTTPError as exc:
            raise TaskAppUnavailableError(
                f"{where} failed: {type(exc).__name__}: {exc}. Is the app running?"
            ) from exc
        if response.status_code in (401, 403):
            raise TaskAppUnavailableError(
                f"{where} was refused ({response.status_code}): give the app's token (--task-app-token)."
            )
        if response.status_code >= 500 and path != "/rollout":
            raise TaskAppUnavailableError(f"{where} answered {response.status_code}: {response.text[:300]}")
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = response.text[:200]
            raise RolloutFailedError(
                f"{where} answered {response.status_code} with something that is not JSON: {text!r}"
            ) from exc
        if response.status_code >= 400:
            detail = data.get("error") or data.get("detail") if isinstance(data, dict) else data
            raise RolloutFailedError(f"{where} answered {response.status_code}: {detail}")
        return data

    def health(self) -> bool:
        """Whether the app answers ``GET /health`` (never raises)."""
        try:
            self._request("GET", "/health")
        except (TaskAppUnavailableError, RolloutFailedError):
            return False
        return True

    def info(self) -> AppInfo:
        data = self._request("GET", "/info")
        try:
            return AppInfo.from_json(data)
        except ProtocolError as exc:
            raise TaskAppUnavailableError(f"{self.url}/info: {exc}") from exc

    def rollout(self, request: RolloutRequest) -> RolloutResult:
        """The app's result for one rollout; :class:`RolloutFailedError` when it failed."""
        data = self._request("POST", "/rollout", request.to_json())
        try:
            result = RolloutResult.from_json(data, expected_id=request.rollout_id)
        except ProtocolError as exc:
            raise RolloutFailedError(str(exc)) from exc
        if result.error is not None:
            raise RolloutFailedError(f"the task app's rollout failed: {result.error}")
        return result
