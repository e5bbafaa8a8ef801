"""Jobs: a bounded queue, one worker thread that owns the model, batching, cancellation, events.

One worker runs the model (one model in memory; two decodes at once on one device only slow each
other down). Each turn it takes the oldest job and, when that job has a batch key, every queued
job with the same key (up to ServeSettings.max_batch): those are decoded together in one batch.
A job that fails is marked failed with its one-line reason; the worker goes on with the next.
A queued job is cancelled at once; a running one stops at the next decode step (see progress.py);
in a batch, the others go on and only the cancelled job's result is thrown away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

from ..errors import VidgptError
from .progress import JobCancelled
from .store import NotFound, new_id

log = logging.getLogger("vidgpt.serve")

TERMINAL = ("done", "failed", "cancelled")


class QueueFull(VidgptError):
    """ServeSettings.queue_limit jobs are already waiting."""


class Job:
    def __init__(self, kind: str, params: dict, key=None, session_id: str | None = None):
        self.id = new_id("job")
        self.kind = kind
        self.params = params
        self.key = key
        self.session_id = session_id
        self.status = "queued"
        self.events: list[dict] = []
        self.result: dict | None = None
        self.error: str | None = None
        self.preview: dict | None = None
        self.progress = {"tokens": 0, "total": None, "phase": "queued"}
        self.cancel_requested = threading.Event()
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.batch_size = 0
        self.emit("status", {"status": "queued"})

    def emit(self, event: str, data: dict) -> None:
        self.events.append({"event": event, "data": data})

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def set_progress(self, tokens: int, total, phase: str) -> None:
        self.progress = {"tokens": int(tokens), "total": total, "phase": phase}
        self.emit("progress", dict(self.progress))

    def finish(self, status: str, result: dict | None = None, error: str | None = None) -> None:
        if self.terminal:
            return
        self.status, self.result, self.error = status, result, error
        self.finished = time.time()
        if status == "done":
            self.emit("done", {"result": result})
        elif status == "failed":
            self.emit("failed", {"error": error})
        else:
            self.emit("cancelled", {"error": error or "cancelled"})

    def info(self, position: int | None = None) -> dict:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "queue_position": position,
            "progress": self.progress, "preview": self.preview, "result": self.result, "error": self.error,
            "batch_size": self.batch_size, "session_id": self.session_id,
            "created": self.created, "started": self.started, "finished": self.finished,
            "events_url": f"/api/jobs/{self.id}/events", "cancel_url": f"/api/jobs/{self.id}/cancel",
        }


class JobManager:
    """Queue + worker. `runner(batch)` does the work of a list of jobs and finishes each of them."""

    def __init__(self, runner: Callable[[list[Job]], None], queue_limit: int = 32, max_batch: int = 4, max_jobs: int = 256):
        self.runner = runner
        self.queue_limit = max(1, int(queue_limit))
        self.max_batch = max(1, int(max_batch))
        self.max_jobs = max(1, int(max_jobs))
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.queue: deque[Job] = deque()
        self.cond = threading.Condition()
        self.running: list[Job] = []
        self._thread: threading.Thread | None = None
        self._stop = False
        self.completed = 0

    # --- clients ----------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self.cond:
            if len(self.queue) >= self.queue_limit:
                raise QueueFull(f"the queue is full ({self.queue_limit} jobs waiting); try again shortly")
            self.jobs[job.id] = job
            self.queue.append(job)
            self._forget_old()
            self.cond.notify_all()
        self._ensure_worker()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found (unknown id, or forgotten: the server keeps the last {self.max_jobs})")
        return job

    def position(self, job: Job) -> int | None:
        with self.cond:
            try:
                return self.queue.index(job)
            except ValueError:
                return None

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self.cond:
            job.cancel_requested.set()
            if job in self.queue:
                self.queue.remove(job)
                job.finish("cancelled", error="cancelled before it started")
        return job

    # --- worker -----------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        with self.cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="vidgpt-serve-worker", daemon=True)
                self._thread.start()

    def _take(self) -> list[Job]:
        job = self.queue.popleft()
        batch = [job]
        if job.key is not None:
            for other in list(self.queue):
                if len(batch) >= self.max_batch:
                    break
                if other.key == job.key:
                    self.queue.remove(other)
                    batch.append(other)
        return batch

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self._stop:
                    self.cond.wait()
                if self._stop:
                    return
                batch = self._take()
                self.running = batch
                now = time.time()
                for j in batch:
                    j.status, j.started, j.batch_size = "running", now, len(batch)
                    j.emit("status", {"status": "running", "batch_size": len(batch)})
            try:
                self.runner(batch)
            except JobCancelled as e:
                for j in batch:
                    j.finish("cancelled", error=str(e))
            except VidgptError as e:
                msg = " ".join(str(e).split())
                for j in batch:
                    j.finish("cancelled" if j.cancel_requested.is_set() else "failed", error=msg)
            except Exception as e:  # a bug or a library error: the job fails, the server goes on
                log.exception("job %s failed", ",".join(j.id for j in batch))
                for j in batch:
                    j.finish("failed", error=f"internal error ({type(e).__name__}); the server log has the details")
            finally:
                for j in batch:
                    if not j.terminal:  # a runner that forgot a job must not leave it hanging
                        j.finish("failed", error="internal error (no result)")
                with self.cond:
                    self.running = []
                    self.completed += len(batch)
                    self.cond.notify_all()

    def _forget_old(self) -> None:
        while len(self.jobs) > self.max_jobs:
            for jid, j in self.jobs.items():
                if j.terminal:
                    del self.jobs[jid]
                    break
            else:
                return

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until the queue is empty and nothing runs (tests, shutdown)."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.queue or self.running:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        with self.cond:
            for j in list(self.queue):
                j.finish("cancelled", error="the server is shutting down")
            self.queue.clear()
            for j in self.running:
                j.cancel_requested.set()
            self._stop = True
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
