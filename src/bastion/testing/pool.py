"""Production's RuleWorkerPool for a test session, on an event loop of its own.

The worker processes are the ones `bastion serve` runs (`python -I -m bastion.rules.worker`,
locked down by rules/sandbox.py: seccomp, rlimits, an empty network namespace where
possible), sized with the server's default settings. The pool lives on a background
thread's event loop, so that tests need no async framework and a session-long pool does
not depend on any test's event loop: `run` blocks, `run_async` awaits from a test's loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from bastion.rules.pool import CallHandler, RuleWorkerPool
from bastion.settings import Settings

__all__ = ["SessionRulePool"]


class SessionRulePool:
    def __init__(self, settings: Settings | None = None):
        settings = settings or Settings.model_construct()  # the defaults, whatever the environment says
        self.settings = settings
        self.timeout = settings.rules_timeout
        self._pool = RuleWorkerPool(
            size=settings.rules_workers,
            memory_mb=settings.rules_memory_mb,
            cpu_seconds=settings.rules_cpu_seconds,
            jobs_per_worker=settings.rules_jobs_per_worker,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bastion-rule-pool", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def sandbox(self) -> dict[str, Any]:
        """What the workers enforce (seccomp, network namespace, uid...), as the server logs it."""
        if self._pool.sandbox is None:
            asyncio.run_coroutine_threadsafe(self._pool.start(), self._loop).result()
        return dict(self._pool.sandbox or {})

    def run(self, job: dict[str, Any], handle_call: CallHandler, *, timeout: float | None = None) -> dict[str, Any]:
        """RuleWorkerPool.run, from any thread; raises RuleTimeout or RuleWorkerCrash as it does."""
        if self._closed:
            raise RuntimeError("the rule pool is closed")
        work = self._pool.run(job, handle_call, timeout=timeout if timeout is not None else self.timeout)
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def run_async(self, job: dict[str, Any], handle_call: CallHandler, *, timeout: float | None = None) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError("the rule pool is closed")
        work = self._pool.run(job, handle_call, timeout=timeout if timeout is not None else self.timeout)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._pool.close(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
