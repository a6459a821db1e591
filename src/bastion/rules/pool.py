"""The server side of rule execution: a pool of sandboxed worker processes.

A job (all the rules of one login) goes to an idle worker. While it runs, the
worker may call back for effects (`api.http`, metadata updates, email...), which
`handle_call` performs. The server enforces, per job:

- a wall-clock deadline (the pipeline deadline): past it the worker is killed;
- a CPU-time limit: RLIMIT_CPU set on the worker before the job (SIGXCPU/SIGKILL);
- a crash (the worker exits) fails the job.

A failed, killed or worn-out worker is replaced; other logins keep being served by
the other workers meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bastion.rules.protocol import MAX_MESSAGE_BYTES, decode, encode

__all__ = ["RuleWorkerPool", "RuleTimeout", "RuleWorkerCrash", "CallHandler"]

log = logging.getLogger("bastion.rules")

CallHandler = Callable[[str, dict[str, Any]], Awaitable[Any]]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RuleTimeout(Exception):
    """The job ran past its deadline; the worker was killed."""


class RuleWorkerCrash(Exception):
    """The worker died during the job (a crash, the CPU limit, a protocol violation)."""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, sandbox: dict[str, Any]):
        self.process = process
        self.sandbox = sandbox
        self.jobs = 0
        self.known_scripts: set[str] = set()  # rule keys whose script this worker has compiled

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def kill(self) -> None:
        if self.alive:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass


class RuleWorkerPool:
    def __init__(self, *, size: int = 2, memory_mb: int = 512, cpu_seconds: int = 5, jobs_per_worker: int = 1000):
        self.size = size
        self.memory_mb = memory_mb
        self.cpu_seconds = cpu_seconds
        self.jobs_per_worker = jobs_per_worker
        self._idle: asyncio.Queue[_Worker] | None = None
        self._lock = asyncio.Lock()
        self.sandbox: dict[str, Any] | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "bastion.rules.worker", "--memory-mb", str(self.memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, limit=MAX_MESSAGE_BYTES + 1, start_new_session=True,
        )
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            ready = decode(line)
        except (asyncio.TimeoutError, ValueError) as error:
            process.kill()
            raise RuleWorkerCrash(f"a rule worker failed to start: {error!r}") from None
        if self.sandbox is None:
            self.sandbox = ready.get("sandbox", {})
            log.info("rule workers start with sandbox %s", self.sandbox)
        return _Worker(process, ready.get("sandbox", {}))

    async def start(self) -> None:
        """Start the workers (also done lazily by the first job)."""
        async with self._lock:
            if self._idle is None:
                self._idle = asyncio.Queue()
                workers = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
                for worker in workers:
                    self._idle.put_nowait(worker)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._idle is None:
            return
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            worker.kill()
            await worker.process.wait()

    def _replace(self, worker: _Worker) -> None:
        """Kill the worker (if it still runs) and start another in the background."""
        worker.kill()

        async def respawn() -> None:
            await worker.process.wait()
            for _attempt in range(5):
                if self._closed or self._idle is None:
                    return
                try:
                    self._idle.put_nowait(await self._spawn())
                    return
                except RuleWorkerCrash:
                    log.exception("a rule worker could not be started; retrying")
                    await asyncio.sleep(1)

        task = asyncio.get_running_loop().create_task(respawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, job: dict[str, Any], handle_call: CallHandler, *, timeout: float) -> dict[str, Any]:
        """Run a job; raises RuleTimeout or RuleWorkerCrash (the login then fails closed)."""
        if self._idle is None:
            await self.start()
        assert self._idle is not None
        deadline = time.monotonic() + timeout
        try:
            worker = await asyncio.wait_for(self._idle.get(), timeout=timeout)
        except asyncio.TimeoutError:
            raise RuleTimeout("no rule worker became free before the deadline") from None
        healthy = False
        try:
            result = await self._run_on(worker, job, handle_call, deadline)
            healthy = not result.get("recycle")
            return result
        finally:
            worker.jobs += 1
            if healthy and worker.alive and worker.jobs < self.jobs_per_worker:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker)

    async def _run_on(self, worker: _Worker, job: dict[str, Any], handle_call: CallHandler, deadline: float) -> dict[str, Any]:
        process = worker.process
        try:
            used = _cpu_seconds(process.pid)
            limit = math.ceil(used + self.cpu_seconds)
            resource.prlimit(process.pid, resource.RLIMIT_CPU, (limit, limit + 1))
        except (OSError, ValueError):
            pass  # the worker is gone: the write below fails and says so
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + (deadline - time.monotonic())):
                process.stdin.write(encode({"op": "run", "job": _for_worker(worker, job)}))
                await process.stdin.drain()
                while True:
                    line = await process.stdout.readline()
                    if not line:
                        raise RuleWorkerCrash(_exit_description(await process.wait()))
                    message = decode(line)
                    if message["op"] == "done":
                        return message["result"]
                    if message["op"] != "call":
                        raise RuleWorkerCrash("protocol error")
                    process.stdin.write(encode(await _answer(message, handle_call)))
                    await process.stdin.drain()
        except TimeoutError:
            worker.kill()
            raise RuleTimeout("the rules ran past the pipeline deadline") from None
        except (BrokenPipeError, ConnectionResetError, ValueError, KeyError) as error:
            worker.kill()
            returncode = await process.wait()
            raise RuleWorkerCrash(_exit_description(returncode) if returncode else f"protocol error: {error}") from None


def _for_worker(worker: _Worker, job: dict[str, Any]) -> dict[str, Any]:
    """The job as this worker needs it: a rule's script travels once, then only its key.

    A rule's key (`id:sha256(script)`) changes whenever its script does, so a worker
    never runs a stale version. The worker's compiled-code cache is unbounded only by
    the tenant's rules, and `known_scripts` mirrors it.
    """
    rules = []
    for rule in job["rules"]:
        if rule["key"] in worker.known_scripts:
            rules.append({"id": rule["id"], "name": rule["name"], "key": rule["key"]})
        else:
            rules.append(rule)
            worker.known_scripts.add(rule["key"])
    return {**job, "rules": rules}


async def _answer(message: dict[str, Any], handle_call: CallHandler) -> dict[str, Any]:
    call_id = message.get("id")
    try:
        value = await handle_call(str(message.get("method")), message.get("params") or {})
    except Exception as error:  # noqa: BLE001 - the rule sees the failure as an exception
        return {"op": "reply", "id": call_id, "ok": False, "error": str(error) or type(error).__name__}
    return {"op": "reply", "id": call_id, "ok": True, "value": value}


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "the rule worker stopped answering"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if name in ("SIGXCPU", "SIGKILL"):
            return f"the rule worker was stopped by {name} (CPU time limit)"
        return f"the rule worker crashed ({name})"
    return f"the rule worker exited with status {returncode}"
