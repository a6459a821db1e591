"""The work a server process does besides answering requests: delivering the outbox
(emails, rules' queued requests) and the log streams.

Each job is a `Poller`: `run_once()` does what is due and says when to look again;
`run_forever()` loops on it, waking early when `wake()` is called (a new delivery was
committed in this process). Every process runs every poller: the rows they work on are
claimed with a compare-and-set lease, so two processes never deliver the same thing at
once, and a process that dies mid-delivery leaves a lease that simply expires.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

__all__ = ["Poller", "Background", "PollingJob"]

log = logging.getLogger("bastion.background")


class PollingJob(Protocol):
    name: str

    async def run_once(self) -> float:
        """Do what is due now; return how many seconds until it is worth looking again."""
        ...


class Poller:
    """Runs one job in a loop until stopped; `wake()` ends the current wait early."""

    def __init__(self, job: PollingJob, *, max_wait: float):
        self.job = job
        self.max_wait = max_wait
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                wait = await self.job.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: keep the process serving, look again later
                log.exception("%s failed; retrying in %.0f s", self.job.name, self.max_wait)
                wait = self.max_wait
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(wait, self.max_wait)))
            except asyncio.TimeoutError:
                pass
            self._wake.clear()


class Background:
    """The pollers of one process, started by the app's lifespan (and by tests that want them)."""

    def __init__(self):
        self._pollers: dict[str, Poller] = {}
        self._tasks: list[asyncio.Task] = []
        self._one_shots: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._stopped = False  # after stop(), nothing more starts (the process is closing)

    def add(self, job: PollingJob, *, max_wait: float) -> Poller:
        poller = Poller(job, max_wait=max_wait)
        self._pollers[job.name] = poller
        return poller

    def wake(self, name: str) -> None:
        """Something is due for `name` now: wake its poller; when the pollers are not running (a
        command, a test), run the job once in a task instead, so the first attempt still happens."""
        poller = self._pollers.get(name)
        if poller is None or self._stopped:
            return
        if self._tasks:
            poller.wake()
            return
        if name in self._one_shots:
            self._again.add(name)  # it is running: run it once more when it ends
            return
        task = asyncio.get_running_loop().create_task(self._run_once(name), name=f"bastion:{name}:once")
        self._one_shots[name] = task

    async def _run_once(self, name: str) -> None:
        try:
            while True:
                self._again.discard(name)
                try:
                    await self._pollers[name].job.run_once()
                except Exception:
                    log.exception("%s failed", name)
                if name not in self._again:
                    return
        finally:
            self._one_shots.pop(name, None)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(p.run_forever(), name=f"bastion:{name}") for name, p in self._pollers.items()]

    async def stop(self) -> None:
        self._stopped = True
        tasks, self._tasks = self._tasks + list(self._one_shots.values()), []
        self._one_shots.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("a background task failed while stopping")
