"""Where the cells of a matrix run: in this process, a local process pool, or a Ray cluster.

An executor's ``run(spec, cells, lms=..., progress=..., reuse_finished=...)`` yields each cell's
stored record as it finishes. Every cell writes its own files, so the executors differ only in where
the work happens; with Ray the output directory must be on a file system every node sees.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from promptopt.bench.lms import LMs
from promptopt.bench.records import CellRecord
from promptopt.bench.runner import run_cell
from promptopt.bench.spec import Cell, ExperimentSpec
from promptopt.bench.store import Store


class ExecutorError(RuntimeError):
    pass


def _cell_job(
    spec_dict: dict[str, Any], cell_dict: dict[str, Any], progress: bool, reuse_finished: bool = True
) -> CellRecord:
    """Run one cell in a worker (a fresh process: LMs are built from the spec's strings)."""
    spec = ExperimentSpec.from_dict(spec_dict)
    cell, store = Cell(**cell_dict), Store(spec.out)
    return run_cell(spec, cell, store, LMs(), progress=progress, reuse_finished=reuse_finished)


class LocalExecutor:
    """Cells one after another in this process, or ``workers`` at a time in a process pool."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ExecutorError(f"workers must be at least 1, not {workers}.")
        self.workers = workers

    def run(
        self,
        spec: ExperimentSpec,
        cells: list[Cell],
        *,
        lms: LMs | None = None,
        progress: bool = True,
        reuse_finished: bool = True,
    ) -> Iterator[CellRecord]:
        if self.workers == 1 or len(cells) <= 1:
            store, lms = Store(spec.out), lms or LMs()
            for cell in cells:
                yield run_cell(spec, cell, store, lms, progress=progress, reuse_finished=reuse_finished)
            return
        if lms is not None and any(x is not None for x in (lms.task, lms.reflection, lms.proposer)):
            raise ExecutorError("Injected LM objects need workers=1 (worker processes build their own LMs).")
        ctx = multiprocessing.get_context("spawn")
        spec_dict = {**spec.to_dict(), "out": str(Path(spec.out).resolve())}
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            futures = [pool.submit(_cell_job, spec_dict, c.to_dict(), False, reuse_finished) for c in cells]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


class RayExecutor:
    """One Ray task per cell (``ray.init(address)``; ``None`` starts or joins a local Ray)."""

    def __init__(
        self, address: str | None = None, num_cpus_per_cell: float = 1.0, max_retries: int = 3
    ) -> None:
        self.address = address
        self.num_cpus_per_cell = num_cpus_per_cell
        self.max_retries = max_retries

    @staticmethod
    def _ray() -> Any:
        try:
            import ray
        except ImportError as exc:
            raise ExecutorError(
                "--executor ray needs Ray, which is not installed here: pip install ray "
                "(or use --executor local --workers N)."
            ) from exc
        return ray

    def run(
        self,
        spec: ExperimentSpec,
        cells: list[Cell],
        *,
        lms: LMs | None = None,
        progress: bool = True,
        reuse_finished: bool = True,
    ) -> Iterator[CellRecord]:
        ray = self._ray()
        if lms is not None and any(x is not None for x in (lms.task, lms.reflection, lms.proposer)):
            raise ExecutorError(
                "Injected LM objects are not supported with Ray; give LM strings in the spec."
            )
        if not cells:
            return
        connected_here = not ray.is_initialized()  # a driver the caller connected stays connected
        ray.init(address=self.address, ignore_reinit_error=True)
        # A cell whose node dies is run again elsewhere (Ray retries a task whose worker died); it
        # resumes from its run directory, and finished cells are stored, so nothing is lost.
        remote = ray.remote(num_cpus=self.num_cpus_per_cell, max_retries=self.max_retries)(_cell_job)
        spec_dict = {**spec.to_dict(), "out": str(Path(spec.out).resolve())}
        pending = [remote.remote(spec_dict, c.to_dict(), False, reuse_finished) for c in cells]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
        finally:
            if connected_here:
                ray.shutdown()


def make_executor(name: str, workers: int = 1, address: str | None = None) -> LocalExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        RayExecutor._ray()  # fail before any work when Ray is missing
        return RayExecutor(address)
    raise ExecutorError(f"Unknown executor {name!r}; executors: local, ray.")
