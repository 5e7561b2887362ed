"""A MIPROv2 run's files and study: a fresh run discards what an earlier one left, a resumed one
checks that what it finds is whole, and of several workers started together exactly one builds
the search space.

The study is created before the search space is saved, so a run directory with a
``search_space.json`` always has its study: a study that is missing, empty or unreadable then is
damage, and so is a study with trials but no search space. Either stops the run with a
:class:`~promptopt.optimizers.mipro.search_space.DamagedRunError` naming the file, rather than
running every trial again over what was there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy

from promptopt.io import file_lock
from promptopt.optimizers.mipro.config import MIPROConfig
from promptopt.optimizers.mipro.search import SharedStudy
from promptopt.optimizers.mipro.search_space import (
    LEGACY_SEARCH_SPACE_FILE,
    SEARCH_SPACE_FILE,
    DamagedRunError,
    SearchSpace,
    damaged,
)
from promptopt.optimizers.mipro.storage import redacted_url, sqlite_file, study_exists
from promptopt.optimizers.rundir import RunDir

RUN_FILES = (
    SEARCH_SPACE_FILE,
    LEGACY_SEARCH_SPACE_FILE,
    "result.json",
    "best_program.json",
    "events.jsonl",
    "STOP",
)
# What a run directory holds once a run has got past its study's creation (events.jsonl may be
# older: it logs the preparation too).
STATE_FILES = (SEARCH_SPACE_FILE, "result.json", "best_program.json")
DB_FILE = "optuna.db"


class StudyExistsError(ValueError):
    """A fresh run names a study that its storage already holds."""


class MiproRunFiles:
    """The run directory (``None``: an in-memory run) and the study's storage of one run."""

    def __init__(self, rundir: RunDir | None, storage: str, cfg: MIPROConfig, resume: bool) -> None:
        self.rundir = rundir
        self.storage = storage
        self.cfg = cfg
        self.resume = resume

    def _lock_path(self, name: str) -> Path | None:
        return self.rundir.path / name if self.rundir else None

    def prepare(
        self,
        train_ids: list[str],
        val_ids: list[str],
        predictors: list[str],
        build: Callable[[], SearchSpace],
    ) -> tuple[SharedStudy, SearchSpace, bool]:
        """Open the study; load the saved search space, or build and save it; True when loaded.

        Under the search space's lock, so of several workers started together exactly one builds it.
        The study is created before the search space is saved, so a run directory with a
        ``search_space.json`` always has its study: a study that is missing, empty or unreadable then
        is damage, and so is a study with trials but no search space. Either stops the run with a
        :class:`DamagedRunError`, rather than running every trial again over what was there.
        """
        with file_lock(self._lock_path("search_space.lock")):
            if not self.resume:
                self._discard()
            space = SearchSpace.load(self.rundir.path) if self.rundir else None
            self._check_db_file()
            study, (n_trials, n_fulls) = self._open_study()
            resumed = space is not None
            if space is not None:
                self._check_same_run(space, train_ids, val_ids, predictors)
            elif n_trials or n_fulls:
                raise damaged(
                    self.rundir.path / SEARCH_SPACE_FILE if self.rundir else "The search space",
                    f"missing, while {self._storage_name()} holds {n_trials} trial(s) and {n_fulls} "
                    "full evaluation(s) of a run, which index into that search space",
                    self._advice_dir(),
                )
            else:
                space = build()
                if self.rundir:
                    space.save(self.rundir.path)
            study.set_space(space.param_sizes())
            return study, space, resumed

    def _advice_dir(self) -> Path | None:
        """The folder a damaged run is started over from: the run directory, when it holds the
        study too (a storage of the caller's choosing must be seen to by the caller)."""
        return self.rundir.path if self.rundir and self.cfg.storage is None else None

    def _storage_name(self) -> str:
        return str(sqlite_file(self.storage) or f"the Optuna storage {redacted_url(self.storage)}")

    def _discard(self) -> None:
        """A fresh run: remove what an earlier run left (a damaged file too, unread)."""
        if self.rundir:
            for name in RUN_FILES:
                (self.rundir.path / name).unlink(missing_ok=True)
        if self.rundir and self.cfg.storage is None:
            for suffix in ("", "-journal", "-wal", "-shm"):
                (self.rundir.path / (DB_FILE + suffix)).unlink(missing_ok=True)
        elif self.storage:
            # A storage of the caller's choosing may hold other experiments' studies: a fresh run
            # never deletes one (Optuna's convention), it says so.
            try:
                exists = study_exists(self.storage, self.cfg.study_name)
            except Exception as exc:
                if (err := self._unreadable_storage(exc)) is exc:
                    raise
                raise err from exc
            if exists:
                raise StudyExistsError(
                    f"The study {self.cfg.study_name!r} already exists in {self._storage_name()}. To "
                    "continue it, pass resume=True; to start over, choose another study_name or delete "
                    f"it (optuna delete-study --study-name {self.cfg.study_name} --storage URL)."
                )

    def _check_db_file(self) -> None:
        """SQLite takes a zero-byte (or missing) file for a new database: with the run's other
        files there, resuming from it would run every trial again as if none had run."""
        path = sqlite_file(self.storage)
        if path is None or self.rundir is None or (path.is_file() and path.stat().st_size > 0):
            return
        if not path.exists() and self.cfg.storage is not None:
            return  # a storage of the caller's choosing may be new to this run directory
        held = [name for name in STATE_FILES if (self.rundir.path / name).exists()]
        if held:
            what = "empty (0 bytes)" if path.exists() else "missing"
            raise damaged(
                path,
                f"{what}, while {self.rundir.path} holds this run's {', '.join(held)}: the trials and "
                "full evaluations the run recorded are gone",
                self._advice_dir(),
            )

    def _open_study(self) -> tuple[SharedStudy, tuple[int, int]]:
        """The shared study, read through once: (study, (trials, full evaluations))."""
        try:
            study = SharedStudy(
                self.storage,
                self.cfg.study_name,
                seed=self.cfg.seed,
                num_trials=self.cfg.num_trials,
                lock_path=self._lock_path("search.lock"),
                heartbeat=self.cfg.heartbeat() if self.storage else None,
            )
            return study, study.contents()
        except Exception as exc:
            if (err := self._unreadable_storage(exc)) is exc:
                raise
            raise err from exc

    def _unreadable_storage(self, exc: Exception) -> Exception:
        """``exc`` as a :class:`DamagedRunError` when it says a SQLite study file is damaged."""
        if isinstance(exc, DamagedRunError) or sqlite_file(self.storage) is None or not _unreadable(exc):
            return exc
        return damaged(
            self._storage_name(), f"not a readable Optuna database ({_brief(exc)})", self._advice_dir()
        )

    def _check_same_run(
        self, space: SearchSpace, train_ids: list[str], val_ids: list[str], predictors: list[str]
    ) -> None:
        where = self.rundir.path if self.rundir else "the storage"
        if space.train_ids != train_ids or space.val_ids != val_ids:
            raise ValueError(
                f"The run in {where} used other training/validation examples; resume with the same "
                "data, or start a new run directory."
            )
        if space.predictors != predictors:
            raise ValueError(
                f"The run in {where} optimized predictors {space.predictors}, this program has "
                f"{predictors}; resume with the same program."
            )


def _unreadable(exc: BaseException) -> bool:
    """Whether reading a SQLite storage failed on its contents (not on a lock or a missing folder)."""
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text
    return isinstance(
        exc, (sqlalchemy.exc.DatabaseError, ValueError, TypeError, KeyError, UnicodeDecodeError)
    )


def _brief(exc: BaseException) -> str:
    """The database's own words, without SQLAlchemy's statement and help link."""
    inner = getattr(exc, "orig", None) or exc
    return f"{type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}".rstrip(": ")
