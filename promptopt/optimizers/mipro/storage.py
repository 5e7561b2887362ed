"""Where a MIPROv2 study lives: an Optuna storage URL, opened with heartbeats when it can hold them.

The default is ``sqlite:///RUN_DIR/optuna.db``; any Optuna RDB URL works (PostgreSQL for workers on
several machines). On an RDB storage every running trial records a heartbeat (see
:mod:`~promptopt.optimizers.mipro.heartbeat`), so a trial whose worker died anywhere, on any host,
is failed by Optuna once its heartbeat is older than the grace period, and redone.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial says it is alive, and how long silence means its worker is gone."""

    interval: int = 60  # seconds
    grace_period: int | None = None  # seconds; None: Optuna's default (twice the interval)


def default_storage(run_dir: Path | None) -> str | None:
    return f"sqlite:///{run_dir / 'optuna.db'}" if run_dir is not None else None


def open_storage(url: str | None, heartbeat: Heartbeat | None = None) -> optuna.storages.BaseStorage:
    if url is None:
        return optuna.storages.InMemoryStorage()
    beat = (
        {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace_period}
        if heartbeat is not None
        else {}
    )
    # Optuna marks heartbeats experimental; MIPROv2 relies on them on purpose (heartbeat.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if url.startswith("sqlite"):
            # Several worker processes write one SQLite file: wait for its lock instead of failing.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}}, **beat)
        return optuna.storages.RDBStorage(url, **beat)


def sqlite_file(url: str | None) -> Path | None:
    """The database file of a SQLite storage URL (None for other storages and in-memory SQLite)."""
    if not url or not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def delete_study(url: str, study_name: str) -> None:
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=study_name, storage=open_storage(url))


def study_exists(url: str, study_name: str) -> bool:
    return study_name in optuna.get_all_study_names(storage=open_storage(url))


def redacted_url(url: str | None) -> str | None:
    """A storage URL without its password, for the saved config."""
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
