"""Train on this machine: each job runs in its own process, in its own folder.

A job folder (``<root>/<job_id>/``) holds ``job.json`` (what to train), ``status.json`` (rewritten
atomically on every log step), ``train.log``, ``metrics.jsonl`` (one line per logged step),
``checkpoints/`` (the trainer's checkpoints), and at the end ``adapter/`` (the LoRA adapter and
tokenizer), ``model.json`` (a :class:`TrainedModel`) and ``curve.png``.

Submitting a job whose folder already holds checkpoints resumes from the last one; submitting a
finished job returns at once. :meth:`LocalBackend.stop` asks the worker to save a checkpoint and
stop, so a later :meth:`submit` continues where it stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from promptopt.io import write_json_atomic
from promptopt.train.backend import JobStatus, TrainedModel, TrainingJob


class TrainingError(RuntimeError):
    """A training job failed; the message ends with the tail of its log."""


class LocalBackend:
    """Runs :class:`TrainingJob` s with TRL + PEFT on the CPU (or a local GPU) in worker processes."""

    def __init__(self, root: str | os.PathLike[str] = "runs/train") -> None:
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def submit(self, job: TrainingJob, job_id: str | None = None) -> str:
        job_id = job_id or f"{job.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        job_file = folder / "job.json"
        if job_file.exists():
            saved = json.loads(job_file.read_text())
            if saved != job.to_dict():
                raise ValueError(
                    f"{folder} holds a different job: resume it with the same settings"
                    " or pick another job_id."
                )
        else:
            write_json_atomic(job_file, job.to_dict())
        if (folder / "model.json").exists():
            return job_id
        current = self._read_status(job_id)
        if current is not None and current.state == "running" and _alive(self._pid(folder)):
            return job_id  # already training
        (folder / "STOP").unlink(missing_ok=True)
        write_json_atomic(
            folder / "status.json",
            JobStatus(job_id, "queued", updated_at=time.time()).to_dict(),
        )
        log = open(folder / "train.log", "a")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptopt.train.worker", str(folder)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the caller leaves the checkpointing worker alone
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        log.close()
        (folder / "worker.pid").write_text(str(proc.pid))
        return job_id

    def status(self, job_id: str) -> JobStatus:
        folder = self.job_dir(job_id)
        st = self._read_status(job_id)
        if st is None:
            raise FileNotFoundError(f"No job {job_id!r} under {self.root}.")
        if not st.done and not _alive(self._pid(folder)):
            if (folder / "model.json").exists():
                st.state = "succeeded"
            else:
                # The worker died without a word (killed, out of memory): resubmit to resume.
                st.state = "failed"
                st.error = st.error or "the worker process ended unexpectedly; submit again to resume"
        return st

    def logs(self, job_id: str, *, follow: bool = False, poll: float = 1.0) -> Iterator[str]:
        path = self.job_dir(job_id) / "train.log"
        pos = 0
        while True:
            if path.exists():
                with open(path) as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
                yield from chunk.splitlines()
            if not follow or self.status(job_id).done:
                if follow and path.exists():  # the last lines written before the end
                    with open(path) as fh:
                        fh.seek(pos)
                        yield from fh.read().splitlines()
                return
            time.sleep(poll)

    def stop(self, job_id: str) -> None:
        """Ask the worker to checkpoint and stop after the current step."""
        (self.job_dir(job_id) / "STOP").touch()

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 2.0) -> JobStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(job_id)
            if st.done:
                return st
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Job {job_id} still {st.state} at step {st.step}/{st.max_steps}.")
            time.sleep(poll)

    def result(self, job_id: str, *, timeout: float | None = None) -> TrainedModel:
        st = self.wait(job_id, timeout=timeout)
        folder = self.job_dir(job_id)
        if st.state != "succeeded":
            tail = "\n".join(list(self.logs(job_id))[-20:])
            raise TrainingError(f"Job {job_id} {st.state}: {st.error}\n--- train.log (tail) ---\n{tail}")
        return TrainedModel.from_dict(json.loads((folder / "model.json").read_text()))

    def _read_status(self, job_id: str) -> JobStatus | None:
        path = self.job_dir(job_id) / "status.json"
        if not path.exists():
            return None
        return JobStatus.from_dict(json.loads(path.read_text()))

    @staticmethod
    def _pid(folder: Path) -> int | None:
        try:
            return int((folder / "worker.pid").read_text())
        except (OSError, ValueError):
            return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished child
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
