"""The typed records of a LangProBe store: a cell (one optimizer run and its scores) and the seed
program's shared baseline.

Each record is frozen and reads and writes the JSON layout described in :mod:`promptopt.bench.store`
(``to_dict``/``from_dict`` round-trip a stored file exactly). ``from_dict`` raises
:class:`RecordError` naming what is missing or malformed, so a damaged or hand-edited file is reported
as such rather than failing later with a ``KeyError`` deep inside a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from promptopt.bench.cell_config import CellConfig
from promptopt.bench.cell_numbers import CellNumbers, CellSpending, OptimizerSummary, SplitScores
from promptopt.bench.record_fields import RecordError, as_object, required
from promptopt.provenance import Provenance

__all__ = [
    "BUSY",
    "FAILED",
    "OK",
    "SCHEMA",
    "BaselineRecord",
    "CellConfig",
    "CellError",
    "CellNumbers",
    "CellRecord",
    "CellSpending",
    "OptimizerSummary",
    "RecordError",
    "SplitScores",
]
# 2: cells carry their identity and provenance.
SCHEMA = 2

OK, FAILED = "ok", "failed"
BUSY = "busy"  # the status of a cell another process was running: not run here, not stored


@dataclass(frozen=True)
class CellError:
    """Why a cell failed: the exception's type and message, and where it was raised."""

    type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: Any) -> CellError:
        data = as_object(data, "error")
        return cls(str(data.get("type", "")), str(data.get("message", "")), str(data.get("traceback", "")))

    def describe(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True)
class CellRecord:
    """One cell of the matrix as stored in ``cells/<key>.json``.

    ``status`` is :data:`OK` (``numbers`` set), :data:`FAILED` (``error`` set) or, only in what
    :func:`~promptopt.bench.runner.run_cell` returns and never stored, :data:`BUSY`. ``identity`` is
    the stored identity (compared as a whole, see :class:`~promptopt.bench.identity.CellIdentity`);
    ``reused`` marks a record returned as stored instead of run, and is not written;
    ``copied_from`` names the folder a record was taken from (see ``ExperimentSpec.reuse_from``).
    """

    key: str
    status: str
    config: CellConfig
    numbers: CellNumbers | None = None
    error: CellError | None = None
    identity: Mapping[str, Any] | None = None
    provenance: Provenance | None = None
    started_at: str | None = None
    finished_at: str | None = None
    host: str | None = None
    seconds: float | None = None  # the whole cell: baseline, optimizer and test evaluation
    schema: int = SCHEMA
    reused: bool = field(default=False, compare=False)
    # The experiment folder this record was first stored in (relative to the folder holding this
    # copy), when a run whose spec names that folder in ``reuse_from`` found it to be the same
    # experiment and took it instead of running it.
    copied_from: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def finished(self) -> CellNumbers:
        """The numbers of a finished cell; raises ``ValueError`` for a failed or busy one."""
        if self.numbers is None:
            raise ValueError(f"cell {self.key} has no numbers: its status is {self.status!r}.")
        return self.numbers

    def as_reused(self) -> CellRecord:
        return replace(self, reused=True)

    def as_copied_from(self, folder: str) -> CellRecord:
        """This record as stored in another folder (its first folder kept when it was copied before)."""
        return replace(self, copied_from=self.copied_from or folder)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": self.schema,
            "key": self.key,
            "status": self.status,
            "config": self.config.to_dict(),
            "started_at": self.started_at,
            "host": self.host,
        }
        if self.identity is not None:
            data["identity"] = dict(self.identity)
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        if self.numbers is not None:
            data.update(self.numbers.to_dict())
        data["error"] = None if self.error is None else self.error.to_dict()
        data["finished_at"] = self.finished_at
        data["seconds"] = self.seconds
        if self.copied_from is not None:
            data["copied_from"] = self.copied_from
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CellRecord:
        """Read a stored cell; raises :class:`RecordError` naming what it lacks."""
        data = as_object(data, "record")
        key, status = required(data, "key"), required(data, "status")
        config = CellConfig.from_dict(required(data, "config"))
        identity = data.get("identity")
        provenance = data.get("provenance")
        return cls(
            key=key,
            status=status,
            config=config,
            numbers=CellNumbers.from_dict(data) if status == OK else None,
            error=None if data.get("error") is None else CellError.from_dict(data["error"]),
            identity=identity if isinstance(identity, Mapping) else None,
            provenance=Provenance.from_dict(provenance) if isinstance(provenance, Mapping) else None,
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            host=data.get("host"),
            seconds=data.get("seconds"),
            schema=data.get("schema", 1),
            copied_from=data.get("copied_from") if isinstance(data.get("copied_from"), str) else None,
        )


@dataclass(frozen=True)
class BaselineRecord:
    """The seed program scored on validation and test for one (task, program, lm, seed), stored once in
    ``baselines/<key>.json`` and shared by the cells of every optimizer."""

    key: str
    config: Mapping[str, Any]  # CellConfig.baseline_part() of the cells that share it
    splits: Mapping[str, Sequence[str]]
    val: SplitScores
    test: SplitScores
    identity: Mapping[str, Any] | None = None
    provenance: Provenance | None = None
    finished_at: str | None = None
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": self.schema, "key": self.key, "config": dict(self.config)}
        if self.identity is not None:
            data["identity"] = dict(self.identity)
        if self.provenance is not None:
            data["provenance"] = self.provenance.to_dict()
        data.update(
            splits={name: list(ids) for name, ids in self.splits.items()},
            val=self.val.to_dict(),
            test=self.test.to_dict(),
            finished_at=self.finished_at,
        )
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BaselineRecord:
        data = as_object(data, "record")
        for name in ("key", "config", "splits", "val", "test"):
            required(data, name)
        identity, provenance = data.get("identity"), data.get("provenance")
        return cls(
            key=data["key"],
            config=dict(as_object(data["config"], "config")),
            splits={name: list(ids) for name, ids in as_object(data["splits"], "splits").items()},
            val=SplitScores.from_dict(data["val"], "val"),
            test=SplitScores.from_dict(data["test"], "test"),
            identity=identity if isinstance(identity, Mapping) else None,
            provenance=Provenance.from_dict(provenance) if isinstance(provenance, Mapping) else None,
            finished_at=data.get("finished_at"),
            schema=data.get("schema", 1),
        )
