"""Run directories: atomic JSON state, an exclusive lock, and where results land.

Layout of ``RUN_DIR``::

    state.json     the optimizer's full state, rewritten atomically after every step
    events.jsonl   one line per event (see promptopt.optimizers.callbacks)
    result.json    the OptimizationResult, when the run ends
    best_program.json
    STOP           create this file to stop the run cleanly after the current step
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from promptopt.io import LockBusyError, hold_lock, write_json_atomic


class DamagedStateError(ValueError):
    """A run's saved state cannot be read: the message names the file and the way out."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is {reason}: the run cannot be resumed from it. Move the run directory aside "
            "(the file stays there for a look) and run again, or compile with resume=False, which "
            "starts over."
        )


class RunDirBusyError(RuntimeError):
    pass


class RunDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock: Any = None

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def stop_file(self) -> Path:
        return self.path / "STOP"

    def lock(self) -> None:
        """Hold the directory for this process; a second run on it fails fast."""
        try:
            self._lock = hold_lock(self.path / "run.lock")
        except LockBusyError:
            raise RunDirBusyError(
                f"Another process is running in {self.path}; wait for it or use another run_dir."
            ) from None

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def has_state(self) -> bool:
        return self.state_file.exists()

    def load_state(self) -> dict[str, Any]:
        """The saved run state; a damaged file (atomic writes make it a foreign or hand-edited one)
        raises :class:`DamagedStateError` naming it."""
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DamagedStateError(
                self.state_file, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
        except json.JSONDecodeError as exc:
            raise DamagedStateError(
                self.state_file, f"not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        if not isinstance(state, dict):
            raise DamagedStateError(self.state_file, f"a JSON {type(state).__name__}, not a run state")
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.state_file, state)

    def clear(self) -> None:
        for name in ("state.json", "events.jsonl", "result.json", "STOP"):
            (self.path / name).unlink(missing_ok=True)
