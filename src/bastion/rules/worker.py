"""A rule worker process: `python -I -m bastion.rules.worker --memory-mb N`.

It locks itself down (sandbox.py), says `ready`, then runs one job at a time: every
rule of the job in order, on the same `user` and `context`, each rule's output and
timing captured. Effects go to the server through the protocol (protocol.py).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import inspect
import logging
import os
import sys
import time
import traceback
from typing import Any

from bastion.rules.objects import Api, UnauthorizedError, wrap_context, wrap_user
from bastion.rules.policy import REFUSED_NAMES, is_allowed_module
from bastion.rules.protocol import MAX_MESSAGE_BYTES, decode, encode, to_jsonable
from bastion.rules.sandbox import lock_down

MAX_LOG_LINES = 200
MAX_LOG_LINE = 2000


class CallFailed(Exception):
    """The server refused or failed an `api` call; the message says why."""


class Channel:
    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(encode(message))
        self._writer.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self._reader.readline(MAX_MESSAGE_BYTES + 1)
        if not line:
            return None
        return decode(line)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self._next_id += 1
        self.send({"op": "call", "id": self._next_id, "method": method, "params": to_jsonable(params)})
        reply = self.receive()
        if reply is None:
            raise SystemExit(0)
        if reply.get("op") != "reply" or reply.get("id") != self._next_id:
            raise CallFailed("protocol error")
        if not reply.get("ok"):
            raise CallFailed(reply.get("error") or "the call failed")
        return reply.get("value")


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] | None = None

    def add(self, text: str) -> None:
        if self.lines is not None and len(self.lines) < MAX_LOG_LINES:
            self.lines.append(text[:MAX_LOG_LINE])

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(f"{record.levelname}: {record.getMessage()}")
        except Exception:  # a bad format string in a rule's log call
            self.add(f"{record.levelname}: {record.msg!r}")


def _restricted_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or not is_allowed_module(name):
        raise ImportError(f"import of {name!r} is not allowed in rules")
    module = sys.modules.get(name)
    if module is None:
        raise ImportError(f"{name!r} is not available in the rule sandbox")
    return module if fromlist or "." not in name else sys.modules[name.split(".")[0]]


class Runner:
    def __init__(self, channel: Channel):
        self.channel = channel
        self.capture = LogCapture()
        root = logging.getLogger()
        root.handlers[:] = [self.capture]
        root.setLevel(logging.DEBUG)
        self.cache_store: dict = {}
        self.compiled: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        safe = {k: v for k, v in vars(builtins).items() if k not in REFUSED_NAMES}
        safe["__import__"] = _restricted_import
        safe["print"] = self._print
        self.builtins = safe

    def _print(self, *values, sep=" ", end="\n", **_ignored) -> None:
        self.capture.add(sep.join(str(v) for v in values))

    def _code(self, rule: dict[str, Any]):
        """The rule's compiled code. The server sends a script once per worker, then only its key
        (pool._for_worker), so the cache keeps every key it was given for the worker's life."""
        script = rule.get("script")
        if script is not None:
            try:
                self.compiled[rule["key"]] = compile(script, f"<rule {rule['name']}>", "exec")
            except SyntaxError as error:
                self.compiled[rule["key"]] = error  # fails the same way each time it is used
        code = self.compiled[rule["key"]]
        if isinstance(code, SyntaxError):
            raise code
        return code

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        user = wrap_user(job["user"])
        context = wrap_context(job["context"])
        api = Api(self.channel.call, configuration=job.get("configuration") or {}, cache_store=self.cache_store, user=user)
        records = []
        stopped_by = None
        for rule in job["rules"]:
            record: dict[str, Any] = {"id": rule["id"], "name": rule["name"], "outcome": "ok"}
            self.capture.lines = []
            started = time.perf_counter()
            try:
                namespace = {"__builtins__": self.builtins, "__name__": "rule", "UnauthorizedError": UnauthorizedError}
                exec(self._code(rule), namespace)
                result = namespace["rule"](user, context, api)
                if inspect.isawaitable(result):
                    self.loop.run_until_complete(result)
            except UnauthorizedError as denial:
                record.update(outcome="unauthorized", message=str(denial))
                stopped_by = rule["id"]
            except MemoryError:
                record.update(outcome="error", error="MemoryError: the rule exceeded its memory limit")
                stopped_by = rule["id"]
                record["recycle"] = True
            except BaseException as error:  # noqa: BLE001 - any failure, SystemExit included, fails the login closed
                record.update(outcome="error", error=f"{type(error).__name__}: {error}", traceback=_rule_traceback(error))
                stopped_by = rule["id"]
            record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            record["logs"] = self.capture.lines
            self.capture.lines = None
            records.append(record)
            if stopped_by:
                break
        return {
            "user": to_jsonable(user),
            "context": to_jsonable(context),
            "records": records,
            "stopped_by": stopped_by,
            "recycle": any(r.get("recycle") for r in records),
        }


def _rule_traceback(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith("<rule")]
    lines = [f'  {f.filename}, line {f.lineno}, in {f.name}\n    {f.line or ""}' for f in frames]
    return "\n".join(lines + [f"{type(error).__name__}: {error}"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=512)
    args = parser.parse_args()
    # The protocol gets private copies of stdin/stdout; fd 0 and 1 then point elsewhere,
    # so nothing a rule prints can corrupt the protocol.
    protocol_in = os.fdopen(os.dup(0), "rb", buffering=0)
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    channel = Channel(_LineReader(protocol_in), protocol_out)
    runner = Runner(channel)
    report = lock_down(memory_mb=args.memory_mb)
    channel.send({"op": "ready", "sandbox": report, "pid": os.getpid()})
    while True:
        message = channel.receive()
        if message is None or message.get("op") == "exit":
            return
        if message.get("op") == "run":
            channel.send({"op": "done", "result": runner.run(message["job"])})


class _LineReader:
    """Reads lines from a raw fd without Python's buffered reader allocating past the limit."""

    def __init__(self, raw):
        self._raw = raw
        self._buffer = b""

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise ValueError("message too large")
            chunk = self._raw.read(65536)
            if not chunk:
                return b""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the server went away: nothing to answer
        pass
