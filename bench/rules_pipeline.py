#!/usr/bin/env python
"""Rules pipeline benchmark: what 0, 1, 5 and 10 trivial rules cost a login, in one run.

    .venv/bin/python bench/rules_pipeline.py            # the full run (~3.6 min)
    .venv/bin/python bench/rules_pipeline.py --quick    # a smoke run (< 1 min; too few samples to quote)
    .venv/bin/python bench/rules_pipeline.py --profile  # also py-spy the server under SSO-reuse load (+~25 s)

It starts a real `bastion serve` (1 worker, SQLite in a temporary folder, its own
environment; loopback only) and drives it from this process with httpx:

1. Latency, sequential, one login at a time. Configurations 0, 1, 5, 10 enabled rules
   (each sets one namespaced ID-token claim) are interleaved in rounds (0,1,5,10,0,1,...)
   so that machine noise hits them alike. In every block:
   - password logins: GET /authorize -> GET /u/login -> POST credentials -> code ->
     POST /oauth/token with PKCE, from a fresh cookie jar (argon2id runs every time);
   - SSO-reuse logins: GET /authorize with the SSO session cookie -> code -> token
     (no password hash; the rules still run).
   Every login's ID token is checked to carry exactly N rule claims. The server's CPU per
   login and its run-queue wait come from /proc/<pid>/task/*/schedstat.
2. Throughput: 8 concurrent clients log in without a pause while the configuration
   switches between 0 and 5 rules every few seconds (A B B A A B B A ...: a linear drift of
   the machine cancels out), with the CPU seconds used by the server's whole process tree
   (rule workers included) read from /proc, so logins per server-CPU-second can be compared
   on a shared machine. Password logins, then SSO-reuse logins.
3. The server's own record of each rule run (rule_executions.duration_ms, and each rule's
   duration inside the worker) is read back from the database; then, with the server
   stopped, RulesEngine.run and the transaction that stores the execution record are timed
   in this process on the same database, to split the overhead into the rules themselves,
   the worker round trip and the execution record.

Writes bench/results/<UTC date>-rules.md and .json. Stops everything it started
(the server is in its own process group, which is killed at the end; rule workers,
which start sessions of their own, are killed by pid).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import inspect
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BASTION = Path(sys.executable).parent / "bastion"
PY_SPY = Path(sys.executable).parent / "py-spy"
CALLBACK = "http://127.0.0.1:9/callback"  # never fetched: the driver reads the Location header
CONNECTION = "Username-Password-Authentication"
PASSWORD = "Bench-Correct-Horse-9"
MGMT_ID = "bench-management-client"
CLAIM_PREFIX = "https://bench.bastion.test/r"
CONFIGS = (0, 1, 5, 10)
CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL = dict(rounds=30, pw_per_block=5, sso_per_block=10, concurrency=8, pattern=[0, 5, 5, 0] * 3, pw_segment=4.0, sso_segment=3.5,
            warmup=2.0, quiet_wait=30.0, profile_seconds=10, inprocess_per_block=12)
QUICK = dict(rounds=4, pw_per_block=3, sso_per_block=6, concurrency=8, pattern=[0, 5, 5, 0], pw_segment=2.5, sso_segment=2.0,
             warmup=0.5, quiet_wait=4.0, profile_seconds=4, inprocess_per_block=10)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _report_time(path: Path) -> str:
    """HHMM (UTC) of the run a report describes: the time its first line (Markdown) or its
    `started_utc` (JSON) names; the file's own time only when it names none (a fresh checkout
    gives every file the time of the checkout)."""
    text = path.read_text(errors="replace")[:2000]
    match = re.search(r"\d{4}-\d{2}-\d{2}T(\d{2}):(\d{2})", text)
    if match:
        return match.group(1) + match.group(2)
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%H%M")


def keep_earlier_report(*paths: Path) -> None:
    """Before a run writes today's report again, keep the earlier one as `<stem>-<HHMM>` (UTC, the
    time of its run), so a second run of the day does not overwrite the first. A report already
    kept under that name is not kept twice."""
    for path in paths:
        if not path.exists():
            continue
        kept = path.with_name(f"{path.stem}-{_report_time(path)}{path.suffix}")
        if kept.exists() and kept.read_bytes() == path.read_bytes():
            path.unlink()
        else:
            path.rename(kept)


# -- statistics -------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def bootstrap_p50_diff(a: list[dict], b: list[dict], n: int = 1000, seed: int = 7) -> tuple[float, float]:
    """95% interval of p50(b) - p50(a), resampling whole rounds (the machine's noise comes in
    bursts of seconds, so logins of one block are not independent; rounds are)."""
    rng = random.Random(seed)
    rounds = sorted({s["round"] for s in a} & {s["round"] for s in b})
    by_a = {r: [s["total"] for s in a if s["round"] == r] for r in rounds}
    by_b = {r: [s["total"] for s in b if s["round"] == r] for r in rounds}
    diffs = []
    for _ in range(n):
        pick = [rounds[rng.randrange(len(rounds))] for _ in rounds]
        diffs.append(pct([x for r in pick for x in by_b[r]], 50) - pct([x for r in pick for x in by_a[r]], 50))
    return pct(diffs, 2.5), pct(diffs, 97.5)


# -- CPU accounting from /proc -------------------------------------------------------


def _all_procs() -> dict[int, tuple[int, int]]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                # ppid, utime+stime+cutime+cstime: the c* fields hold the CPU of children that exited and
                # were waited for (a recycled rule worker), so a tree's total never goes backwards
                procs[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
            except (OSError, IndexError, ValueError):
                pass
    return procs


class TreeCpu:
    """CPU seconds of a process tree (a rule worker that exits and is reaped moves its
    ticks into its parent's cutime/cstime, which are counted)."""

    def __init__(self, root: int):
        self.root = root

    def read(self) -> tuple[float, dict[int, int]]:
        procs = _all_procs()
        tree, todo = set(), [self.root]
        while todo:
            pid = todo.pop()
            if pid in procs and pid not in tree:
                tree.add(pid)
                todo.extend(c for c, (pp, _) in procs.items() if pp == pid)
        ticks = {p: procs[p][1] for p in tree}
        return sum(ticks.values()) / CLK_TCK, ticks


def _task_ns(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns waiting in the run queue) of all threads of a process (/proc/PID/task/*/schedstat)."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
            run += int(fields[0])
            wait += int(fields[1])
        except (OSError, ValueError, IndexError):
            pass
    return run, wait


def server_cpu_parts(main_pid: int, app_pid: int) -> dict[str, float]:
    """Nanosecond-precise CPU seconds so far (schedstat): the app worker's threads, the live rule
    workers under it, the granian main process; and the seconds they spent waiting for a CPU
    (run queue): the contention from other processes on a shared machine."""
    app_run, app_wait = _task_ns(app_pid)
    main_run, main_wait = _task_ns(main_pid)
    parts = {"app": app_run / 1e9, "main": main_run / 1e9, "runqueue_wait": (app_wait + main_wait) / 1e9}
    for pid, (ppid, _) in _all_procs().items():
        if ppid == app_pid:  # a rule worker: kept per pid, as a recycled one disappears
            r, w = _task_ns(pid)
            parts[f"rule_worker:{pid}"] = r / 1e9
            parts[f"rule_worker_wait:{pid}"] = w / 1e9
    return parts


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """after - before, per part; rule workers summed (one that appeared counts from 0, one
    that exited in between loses its last share)."""
    out = {"app": after["app"] - before["app"], "main": after["main"] - before["main"],
           "runqueue_wait": after["runqueue_wait"] - before["runqueue_wait"], "rule_workers": 0.0}
    for key, value in after.items():
        if key.startswith("rule_worker:"):
            out["rule_workers"] += value - before.get(key, 0.0)
        elif key.startswith("rule_worker_wait:"):
            out["runqueue_wait"] += value - before.get(key, 0.0)
    return out


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """Server tree, driver (this process) and whole-machine CPU over a window."""

    def __init__(self, server_pid: int):
        self.tree = TreeCpu(server_pid)

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.s0, self.pids0 = self.tree.read()
        self.d0 = self_cpu_seconds()
        self.m0 = machine_busy_seconds()
        return self

    def __exit__(self, *exc):
        self.t1 = time.perf_counter()
        self.s1, pids1 = self.tree.read()
        self.d1 = self_cpu_seconds()
        self.m1 = machine_busy_seconds()
        self.exited = sorted(set(self.pids0) - set(pids1))
        return False

    def figures(self) -> dict:
        wall = self.t1 - self.t0
        server, driver, machine = self.s1 - self.s0, self.d1 - self.d0, self.m1 - self.m0
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 2),
            "driver_cpu_s": round(driver, 2),
            "machine_busy_s": round(machine, 2),
            "server_cores": round(server / wall, 2),
            "driver_cores": round(driver / wall, 2),
            "other_cores": round((machine - server - driver) / wall, 2),
            "server_processes_exited": len(self.exited),
        }


def wait_quiet(max_wait: float, threshold: float = 0.15) -> dict:
    """Wait (bounded) until other processes use < threshold cores over 2 s."""
    started = time.monotonic()
    while True:
        m0, d0 = machine_busy_seconds(), self_cpu_seconds()
        time.sleep(2)
        busy = (machine_busy_seconds() - m0 - (self_cpu_seconds() - d0)) / 2
        waited = time.monotonic() - started
        if busy < threshold:
            return {"other_cores_before": round(busy, 2), "waited_s": round(waited, 1), "quiet": True}
        if waited >= max_wait:
            log(f"WARNING: machine still busy ({busy:.2f} cores used by others) after {waited:.0f} s; measuring anyway")
            return {"other_cores_before": round(busy, 2), "waited_s": round(waited, 1), "quiet": False}
        log(f"machine busy ({busy:.2f} cores by other processes); waiting")


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "bastion.db"
        self.log_path = workdir / "server.log"
        self.mgmt_secret = "bench-mgmt-" + secrets.token_urlsafe(24)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
            "BASTION_ISSUER": self.base,
            "BASTION_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            "BASTION_SECRET_KEY": "bench-master-key-" + secrets.token_urlsafe(32),
            "BASTION_VAR_DIR": str(workdir / "var"),
            "BASTION_BOOTSTRAP_CLIENT_ID": MGMT_ID,
            "BASTION_BOOTSTRAP_CLIENT_SECRET": self.mgmt_secret,
            "PYTHONUNBUFFERED": "1",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        assert self.base.startswith("http://127.0.0.1:")
        (self.workdir / "var").mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(BASTION), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bastion serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"bastion serve did not answer within 60 s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no output)"

    def cli(self, *args: str) -> str:
        result = subprocess.run([str(BASTION), *args], env=self.env, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL, cwd=self.workdir)
        if result.returncode != 0:
            raise SystemExit(f"`bastion {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def worker_pids(self) -> tuple[int | None, list[int]]:
        """(the granian worker running the app, the rule workers under it)."""
        assert self.process is not None
        procs = _all_procs()
        children = [p for p, (pp, _) in procs.items() if pp == self.process.pid]
        app_worker = children[0] if children else None
        rule_workers = [p for p, (pp, _) in procs.items() if pp == app_worker] if app_worker else []
        return app_worker, rule_workers

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the server's pid
        if self.process.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:  # the rule workers run in sessions of their own: kill any left in the tree
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process = None


def kill_leftover_rule_workers(pids: list[int]) -> None:
    """Rule workers start their own session (so they are not in the server's group): stop those
    the server left behind, by pid, only if they are still bastion rule workers."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"bastion.rules.worker" not in f.read():
                    continue
            os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


# -- tenant set-up through the Management API ------------------------------------------------


class Tenant:
    def __init__(self, server: Server):
        self.server = server
        self.http = httpx.Client(base_url=server.base, timeout=30)
        self._token: str | None = None
        self.rule_ids: list[str] = []
        self.enabled: list[bool] = []
        self.rules_via = "management API"

    def token(self) -> str:
        if self._token is None:
            r = self.http.post("/oauth/token", data={
                "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": self.server.mgmt_secret,
                "audience": self.server.base + "/api/v2/"})
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, "/api/v2" + path, headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)

    def create_client(self, name: str) -> dict:
        r = self.api("POST", "/clients", json={"name": name, "app_type": "regular_web", "callbacks": [CALLBACK],
                                               "grant_types": ["authorization_code", "refresh_token"]})
        assert r.status_code == 201, r.text
        return r.json()

    def enable_connection(self, client_ids: list[str]) -> None:
        r = self.api("GET", "/connections", params={"name": CONNECTION})
        assert r.status_code == 200, r.text
        body = r.json()
        connection = (body if isinstance(body, list) else body.get("connections", []))[0]
        enabled = sorted(set(connection.get("enabled_clients") or []) | set(client_ids))
        r = self.api("PATCH", f"/connections/{connection['id']}", json={"enabled_clients": enabled})
        assert r.status_code == 200, r.text

    def create_user(self, email: str) -> None:
        r = self.api("POST", "/users", json={"connection": CONNECTION, "email": email, "password": PASSWORD,
                                             "email_verified": True})
        assert r.status_code == 201, r.text

    def create_rules(self, count: int) -> None:
        scripts = [rule_script(i) for i in range(1, count + 1)]
        probe = self.api("GET", "/rules")
        if probe.status_code == 200 and os.environ.get("BENCH_RULES_VIA") != "cli":
            for i, script in enumerate(scripts, 1):
                r = self.api("POST", "/rules", json={"name": f"bench-claim-{i}", "script": script, "order": i, "enabled": False})
                assert r.status_code == 201, r.text
                self.rule_ids.append(r.json()["id"])
        else:  # no Management API for rules: the CLI
            self.rules_via = "CLI"
            for i, script in enumerate(scripts, 1):
                path = self.server.workdir / f"bench_claim_{i}.py"
                path.write_text(script)
                out = self.server.cli("rules", "add", str(path), "--order", str(i), "--name", f"bench-claim-{i}", "--disabled")
                self.rule_ids.append(json.loads(out)["id"])
        self.enabled = [False] * count

    def set_rule_count(self, n: int) -> None:
        """Enable the first n rules (by order), disable the rest."""
        for i, rule_id in enumerate(self.rule_ids):
            want = i < n
            if self.enabled[i] == want:
                continue
            if self.rules_via == "management API":
                r = self.api("PATCH", f"/rules/{rule_id}", json={"enabled": want})
                assert r.status_code == 200, r.text
            else:
                self.server.cli("rules", "enable" if want else "disable", rule_id)
            self.enabled[i] = want


    def reinvalidate(self) -> None:
        """PATCH a rule with what it already has: the server invalidates its tenant cache again."""
        if self.rules_via == "management API" and self.rule_ids:
            r = self.api("PATCH", f"/rules/{self.rule_ids[0]}", json={"enabled": self.enabled[0]})
            assert r.status_code == 200, r.text
        else:  # changes made by the CLI (another process) reach the server when its cache expires
            time.sleep(0.5)


def rule_script(i: int) -> str:
    return f'def rule(user, context, api):\n    context.id_token["{CLAIM_PREFIX}{i}"] = {i}\n'


# -- the browser flows (sync, for latency) ------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


_HIDDEN = re.compile(r'<input type="hidden" name="(state|csrf_token)" value="([^"]*)"')


def hidden_fields(html: str) -> dict[str, str]:
    return {k: v.replace("&amp;", "&").replace("&#34;", '"').replace("&#39;", "'") for k, v in _HIDDEN.findall(html)}


def authorize_params(client: dict, challenge: str, state: str) -> dict:
    return {"client_id": client["client_id"], "response_type": "code", "redirect_uri": CALLBACK,
            "scope": "openid profile email", "state": state, "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge, "code_challenge_method": "S256"}


def token_form(client: dict, code: str, verifier: str) -> dict:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier,
            "client_id": client["client_id"], "client_secret": client["client_secret"]}


class LoginFailed(Exception):
    pass


def _code_from(response: httpx.Response, state: str) -> str:
    if response.status_code != 302:
        raise LoginFailed(f"expected a redirect with a code, got HTTP {response.status_code}: {response.text[:300]}")
    location = response.headers["location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if not location.startswith(CALLBACK) or "code" not in query or query.get("state") != state:
        raise LoginFailed(f"unexpected redirect {location[:300]}")
    return query["code"]


def rule_claims(token_response: dict) -> int:
    payload = token_response["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return sum(1 for k in claims if k.startswith(CLAIM_PREFIX))


def password_login(http: httpx.Client, client: dict, email: str) -> tuple[dict, dict]:
    """A fresh browser's complete login. Returns (step timings in ms, token response)."""
    http.cookies.clear()
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    t0 = time.perf_counter()
    r = http.get("/authorize", params=authorize_params(client, challenge, state))
    t1 = time.perf_counter()
    if r.status_code != 302 or not r.headers["location"].startswith("/u/login"):
        raise LoginFailed(f"/authorize: HTTP {r.status_code} {r.headers.get('location')}")
    login_path = r.headers["location"]
    page = http.get(login_path)
    t2 = time.perf_counter()
    fields = hidden_fields(page.text)
    if page.status_code != 200 or set(fields) != {"state", "csrf_token"}:
        raise LoginFailed(f"/u/login: HTTP {page.status_code}")
    r = http.post(login_path, data={**fields, "username": email, "password": PASSWORD})
    t3 = time.perf_counter()
    code = _code_from(r, state)
    r = http.post("/oauth/token", data=token_form(client, code, verifier))
    t4 = time.perf_counter()
    if r.status_code != 200:
        raise LoginFailed(f"/oauth/token: HTTP {r.status_code} {r.text[:300]}")
    ms = lambda a, b: round((b - a) * 1000, 3)  # noqa: E731
    return {"total": ms(t0, t4), "authorize": ms(t0, t1), "login_page": ms(t1, t2), "login_post": ms(t2, t3),
            "token": ms(t3, t4)}, r.json()


def sso_login(http: httpx.Client, client: dict) -> tuple[dict, dict]:
    """A login answered from the SSO session (the cookie jar holds one): /authorize -> code -> token."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    t0 = time.perf_counter()
    r = http.get("/authorize", params=authorize_params(client, challenge, state))
    t1 = time.perf_counter()
    code = _code_from(r, state)
    r = http.post("/oauth/token", data=token_form(client, code, verifier))
    t2 = time.perf_counter()
    if r.status_code != 200:
        raise LoginFailed(f"/oauth/token: HTTP {r.status_code} {r.text[:300]}")
    return {"total": round((t2 - t0) * 1000, 3), "authorize": round((t1 - t0) * 1000, 3),
            "token": round((t2 - t1) * 1000, 3)}, r.json()


# -- async flows (for throughput) ---------------------------------------------------------------


async def apassword_login(http: httpx.AsyncClient, client: dict, email: str) -> dict:
    http.cookies.clear()
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    r = await http.get("/authorize", params=authorize_params(client, challenge, state))
    if r.status_code != 302 or not r.headers["location"].startswith("/u/login"):
        raise LoginFailed(f"/authorize: HTTP {r.status_code}")
    login_path = r.headers["location"]
    page = await http.get(login_path)
    fields = hidden_fields(page.text)
    if page.status_code != 200 or set(fields) != {"state", "csrf_token"}:
        raise LoginFailed(f"/u/login: HTTP {page.status_code}")
    r = await http.post(login_path, data={**fields, "username": email, "password": PASSWORD})
    code = _code_from(r, state)
    r = await http.post("/oauth/token", data=token_form(client, code, verifier))
    if r.status_code != 200:
        raise LoginFailed(f"/oauth/token: HTTP {r.status_code} {r.text[:200]}")
    return r.json()


async def asso_login(http: httpx.AsyncClient, client: dict) -> dict:
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(8)
    r = await http.get("/authorize", params=authorize_params(client, challenge, state))
    code = _code_from(r, state)
    r = await http.post("/oauth/token", data=token_form(client, code, verifier))
    if r.status_code != 200:
        raise LoginFailed(f"/oauth/token: HTTP {r.status_code} {r.text[:200]}")
    return r.json()


async def throughput_run(server: Server, tenant: Tenant, client: dict, probe_client: dict, emails: list[str], kind: str,
                         pattern: list[int], warmup: float, seconds: float, transition: float = 0.5) -> tuple[list[dict], int]:
    """`len(emails)` concurrent clients log in back to back without a pause, while the rule
    configuration switches every segment (`pattern`, e.g. A B B A A B B A). Per segment: logins
    completed in it, and the CPU the server's process tree used in it.

    After each switch a probe login checks that the server runs the new rule set: under load, a
    login that read the enabled rules just before the switch can put the old list back into the
    server's tenant cache after the Management API invalidated it (for up to BASTION_CACHE_TTL).
    The probe then invalidates again; how often that happened is returned."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=server.base, timeout=30, limits=limits) for _ in emails]
    done: list[tuple[float, float, int]] = []  # (start, end, rule claims in the ID token)
    errors: list[str] = []
    stop = False

    async def one(http: httpx.AsyncClient, email: str) -> None:
        if kind == "sso":
            await apassword_login(http, client, email)  # the session this browser then reuses
        while not stop:
            started = time.perf_counter()
            try:
                tokens = await (apassword_login(http, client, email) if kind == "password" else asso_login(http, client))
            except (LoginFailed, httpx.HTTPError) as error:
                errors.append(str(error)[:200])
                if len(errors) > 50:
                    raise
                continue
            done.append((started, time.perf_counter(), rule_claims(tokens)))

    segments = []
    stale = 0
    probe = httpx.AsyncClient(base_url=server.base, timeout=30)
    await apassword_login(probe, probe_client, emails[0])

    async def switch(n: int) -> None:
        nonlocal stale
        await asyncio.to_thread(tenant.set_rule_count, n)
        for _ in range(20):
            if rule_claims(await asso_login(probe, probe_client)) == n:
                return
            stale += 1
            await asyncio.to_thread(tenant.reinvalidate)
        raise SystemExit(f"the server kept running the old rule set after switching to {n} rules")

    await switch(pattern[0])
    tasks = [asyncio.create_task(one(h, e)) for h, e in zip(clients, emails)]
    try:
        await asyncio.sleep(warmup)
        for n in pattern:
            await switch(n)
            await asyncio.sleep(transition)  # logins in flight at the switch finish outside the segment
            window = CpuWindow(server.process.pid)
            with window:
                start = time.perf_counter()
                await asyncio.sleep(seconds)
                end = time.perf_counter()
            segments.append((n, start, end, window))
        stop = True
        await asyncio.gather(*tasks)
    finally:
        stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for h in [*clients, probe]:
            await h.aclose()
    out = []
    for n, start, end, window in segments:
        count = sum(1 for _, e, _ in done if start <= e < end)
        wrong = sum(1 for s0, e, claims in done if s0 >= start and e < end and claims != n)
        figures = window.figures()
        figures.update({
            "kind": kind, "rules": n, "logins": count, "logins_per_s": round(count / (end - start), 2),
            "logins_per_server_cpu_s": round(count / figures["server_cpu_s"], 2) if figures["server_cpu_s"] else None,
            "errors": len(errors), "wrong_claim_count": wrong,
        })
        out.append(figures)
    if errors:
        log(f"  {len(errors)} failed logins, e.g. {errors[0]}")
    return out, stale


# -- profile ------------------------------------------------------------------------------------


PROFILE_RATE = 250  # samples per second


def profile_server(server: Server, tenant: Tenant, client: dict, email: str, seconds: int, out_dir: Path, tag: str = "") -> dict:
    """py-spy record (raw collapsed stacks) of the app worker and its rule workers under sequential
    SSO-reuse logins, once with 0 rules and once with 10, so the difference shows where the rules'
    cost goes."""
    spy = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if not spy:
        log("py-spy is not installed (pip install py-spy): no profile")
        return {"skipped": "py-spy not installed"}
    app_worker, _ = server.worker_pids()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    profiles = {}
    http = httpx.Client(base_url=server.base, timeout=30)
    try:
        password_login(http, client, email)
        for n in (0, 10):
            tenant.set_rule_count(n)
            for _ in range(20):
                sso_login(http, client)
            raw = out_dir / f"{date}-rules{tag}-profile-{n}.txt"
            spy_proc = subprocess.Popen([spy, "record", "--pid", str(app_worker), "--subprocesses", "--duration", str(seconds),
                                         "--rate", str(PROFILE_RATE), "--format", "raw", "--output", str(raw)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            time.sleep(1.0)  # py-spy attaches
            logins = 0
            times = []
            try:
                while spy_proc.poll() is None:
                    steps, _ = sso_login(http, client)
                    times.append(steps["total"])
                    logins += 1
                _, err = spy_proc.communicate(timeout=30)
            finally:
                if spy_proc.poll() is None:
                    os.killpg(spy_proc.pid, signal.SIGKILL)
                    spy_proc.wait()
            if not raw.exists():
                log(f"py-spy produced no output: {err.decode(errors='replace')[-500:]}")
                return {"skipped": "py-spy failed", "stderr": err.decode(errors="replace")[-500:]}
            summary = summarize_profile(raw, logins)
            packed = raw.with_name(raw.name + ".gz")  # the raw stacks, gzipped (~20x smaller)
            with open(raw, "rb") as src, gzip.open(packed, "wb", compresslevel=9) as dst:
                shutil.copyfileobj(src, dst)
            raw.unlink()
            summary.update({"rules": n, "logins": logins, "seconds": seconds, "p50_ms_under_profiler": round(pct(times, 50), 2),
                            "raw_file": str(packed.relative_to(ROOT)) if packed.is_relative_to(ROOT) else str(packed)})
            profiles[str(n)] = summary
    finally:
        http.close()
    return profiles


# Waits that py-spy does not always see as idle here: a sample whose innermost frame is one of
# these (or that has no Python frame: granian's Rust threads) is dropped.
IDLE_FRAMES = ("_connection_worker_thread (aiosqlite/core.py:59)", "Condition.wait (threading.py", "EpollSelector.select",
               "_do_waitpid (asyncio/unix_events.py", "_LineReader.readline (bastion/rules/worker.py:200)",
               "_worker (concurrent/futures/thread.py", "Event.wait (threading.py", "Queue.get (queue.py")


def _is_idle(frame: str) -> bool:
    return any(idle in frame for idle in IDLE_FRAMES)

# A sample counts in the first bucket (in this order) one of its frames matches.
PROFILE_BUCKETS = [
    ("rule worker process (unpack job, run rules, pack result)", lambda st: "bastion.rules.worker" in st),
    ("argon2 password hashing", lambda st: "argon2" in st),
    ("RulesEngine.run in the server (job, pipe round trip, JSON, outcome)", lambda st: "run (bastion/rules/engine.py" in st),
    ("insert_rule_execution (the execution record)", lambda st: "insert_rule_execution" in st),
    ("rule input building (rule_user, rule_context)", lambda st: "rules/context.py" in st),
    ("token signing (joserfc)", lambda st: "joserfc" in st or "cryptography" in st),
    ("record_event (log event insert)", lambda st: "record_event (bastion/events.py" in st),
    ("database: SQLAlchemy + aiosqlite + sqlite3", lambda st: "sqlalchemy" in st or "aiosqlite" in st or "sqlite3" in st),
    ("HTML templates (jinja2)", lambda st: "jinja2" in st),
    ("HTTP / ASGI (starlette, fastapi, granian glue)", lambda st: "starlette" in st or "fastapi" in st or "granian" in st),
]


def summarize_profile(raw: Path, logins: int) -> dict:
    """Collapsed stacks -> per bucket: share of busy samples and sampled ms per login."""
    busy = idle = 0
    buckets: dict[str, int] = defaultdict(int)
    self_frames: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        python_frames = [f for f in frames if not f.startswith("process ")]
        if not python_frames or _is_idle(python_frames[-1]):
            idle += n
            continue
        busy += n
        for name, match in PROFILE_BUCKETS:
            if match(stack):
                buckets[name] += n
                break
        else:
            buckets["other"] += n
        self_frames[python_frames[-1]] += n
        for f in set(python_frames):
            if "bastion/" in f or "json" in f:
                inclusive[f] += n
    share = lambda n: round(100 * n / busy, 1) if busy else 0.0  # noqa: E731
    per_login = lambda n: round(1000 * n / PROFILE_RATE / logins, 3) if logins else None  # noqa: E731
    return {
        "busy_samples": busy, "idle_samples_dropped": idle,
        "busy_ms_per_login": per_login(busy),
        "buckets": {k: {"pct": share(v), "ms_per_login": per_login(v)} for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "top_self_pct": [(f, share(v)) for f, v in sorted(self_frames.items(), key=lambda kv: -kv[1])[:25]],
        "top_inclusive_pct": [(f, share(v)) for f, v in sorted(inclusive.items(), key=lambda kv: -kv[1])[:40]],
    }


# -- the rules engine in-process ------------------------------------------------------------------


async def _engine_inprocess(server: Server, client_id: str, email: str, rounds: int, per_block: int) -> dict:
    """RulesEngine.run timed in this process, with the server's settings and database (the server is
    stopped), on a real user and context: 0, 1, 5, 10 rules interleaved, plus the transaction that
    stores the login's log event with (N > 0) or without (N = 0) the execution record."""
    from bastion.events import EventType, record_event
    from bastion.rules.context import RequestInfo, now_ms, rule_context, rule_user
    from bastion.rules.protocol import decode, encode
    from bastion.services import build_services
    from bastion.settings import load_settings
    from bastion.storage import rules as rule_store
    from bastion.storage import users as user_store

    # Where this code keeps a login's execution record: inside the log event, or in a row of its own.
    record_in_event = "rules_execution" in inspect.signature(record_event).parameters
    settings = load_settings(issuer=server.base, database_url=server.env["BASTION_DATABASE_URL"],
                             secret_key=server.env["BASTION_SECRET_KEY"], var_dir=server.workdir / "var")
    services = build_services(settings)
    try:
        client = await services.tenant.client(client_id)
        connection = await services.tenant.connection(CONNECTION)
        async with services.database.reader() as session:
            user = await user_store.find_user_by_login(session, connection=CONNECTION, login=email)
            page = await rule_store.list_rules(session, page=0, per_page=100)
        rules = sorted((r for r in page.items if r.name.startswith("bench-claim-")), key=lambda r: r.order)
        _, challenge = pkce()
        query = authorize_params({"client_id": client_id}, challenge, secrets.token_urlsafe(8))

        def build():
            return rule_user(user), rule_context(
                issuer=settings.issuer, protocol="oidc-basic-profile", client=client, connection=connection,
                request=RequestInfo(ip="127.0.0.1", user_agent=f"python-httpx/{httpx.__version__}", hostname="127.0.0.1", query=query),
                user=user, session_id=secrets.token_urlsafe(24), methods=[("pwd", now_ms())], audience=None)

        async def no_calls(method, params):
            raise RuntimeError("no api calls expected")

        async def one(n: int) -> dict:
            t0 = time.perf_counter()
            u, c = build()
            t1 = time.perf_counter()
            run = await services.rules.run(user=u, context=c, rules=rules[:n])
            t2 = time.perf_counter()
            event = dict(description="Successful login", user_id=user.user_id, user_name=user.email, client_id=client_id,
                         client_name=client.name, connection=CONNECTION, ip="127.0.0.1", user_agent="bench")
            values = run.execution_values(protocol="oidc-basic-profile", client_id=client_id, user_id=user.user_id) if run.ran else None
            async with services.database.transaction() as session:  # as complete_login's last transaction
                if record_in_event:
                    await record_event(session, EventType.SUCCESS_LOGIN, details={"prompt": [], "sid": "bench"},
                                       rules_execution=values, **event)
                else:
                    if values:
                        await rule_store.insert_rule_execution(session, **values)
                    await record_event(session, EventType.SUCCESS_LOGIN, **event, details={
                        "prompt": [], "sid": "bench", **({"rules_execution_id": run.execution_id} if run.ran else {})})
            t3 = time.perf_counter()
            in_rules = sum(r.get("duration_ms", 0) for r in run.records)
            assert run.status == "ok", run.message
            return {"build_ms": (t1 - t0) * 1000, "engine_ms": (t2 - t1) * 1000, "pool_ms": run.duration_ms,
                    "in_rules_ms": in_rules, "store_ms": (t3 - t2) * 1000}

        await services.rules.pool.start()
        for n in CONFIGS:
            for _ in range(20):
                await one(n)
        timings: dict[int, list[dict]] = defaultdict(list)
        floor: list[float] = []
        for _ in range(rounds):
            for n in CONFIGS:
                for _ in range(per_block):
                    timings[n].append(await one(n))
            for _ in range(per_block):  # the pipe round trip alone: a job with no rules, straight to the pool
                u, c = build()
                t0 = time.perf_counter()
                await services.rules.pool.run({"rules": [], "user": u, "context": c, "configuration": {}}, no_calls, timeout=20)
                floor.append((time.perf_counter() - t0) * 1000)

        # JSON: the job to the worker and the result back, for 10 rules
        u, c = build()
        run = await services.rules.run(user=u, context=c, rules=rules)
        job = {"op": "run", "job": {"rules": [{"id": r.id, "name": r.name, "script": r.script} for r in rules],
                                    "user": u, "context": c, "configuration": {}}}
        done = {"op": "done", "result": {"user": run.user, "context": run.context, "records": run.records, "stopped_by": None, "recycle": False}}
        json_costs = {}
        for name, message in (("job", job), ("result", done)):
            line = encode(message)
            reps = 300
            t0 = time.perf_counter()
            for _ in range(reps):
                encode(message)
            t1 = time.perf_counter()
            for _ in range(reps):
                decode(line)
            t2 = time.perf_counter()
            json_costs[name] = {"bytes": len(line), "encode_us": round((t1 - t0) / reps * 1e6, 1),
                                "decode_us": round((t2 - t1) / reps * 1e6, 1)}
    finally:
        await services.close()

    out: dict = {"execution_record": "inside the log event" if record_in_event else "a row of its own (rule_executions)",
                 "pipe_round_trip_no_rules": {"n": len(floor), "p50_ms": round(pct(floor, 50), 4), "p99_ms": round(pct(floor, 99), 4)},
                 "json_10_rules": json_costs, "configs": {}}
    for n, items in timings.items():
        row = {"n": len(items)}
        for key in ("build_ms", "engine_ms", "pool_ms", "in_rules_ms", "store_ms"):
            values = [i[key] for i in items]
            row[key.replace("_ms", "_p50_ms")] = round(pct(values, 50), 4)
            row[key.replace("_ms", "_p99_ms")] = round(pct(values, 99), 4)
        out["configs"][str(n)] = row
    base = out["configs"]["0"]
    for n, row in out["configs"].items():
        row["added_p50_ms"] = round(row["engine_p50_ms"] + row["store_p50_ms"] - base["engine_p50_ms"] - base["store_p50_ms"], 4)
    return out


# -- the server's execution records -----------------------------------------------------------------


def read_executions(db_path: Path, clients: dict[str, str]) -> list[dict]:
    """Each rules execution record: (client label, number of rules, engine duration, sum of the
    rules' own durations). Read from the `rule_executions` table, or, where the code keeps the
    record inside the login's log event, from `log_events.details["rules_execution"]`."""
    by_id = {cid: label for label, cid in clients.items()}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "rule_executions" in tables:
            rows = [(c, o, d, json.loads(r or "[]"))
                    for c, o, d, r in con.execute("SELECT client_id, outcome, duration_ms, rules FROM rule_executions")]
        else:
            rows = []
            for (details,) in con.execute("SELECT details FROM log_events WHERE rules_execution_id IS NOT NULL"):
                record = (json.loads(details or "{}") or {}).get("rules_execution") or {}
                rows.append((record.get("client_id"), record.get("outcome"), record.get("duration_ms") or 0.0, record.get("rules") or []))
    finally:
        con.close()
    out = []
    for client_id, outcome, duration, rules in rows:
        records = [r for r in rules if isinstance(r, dict) and "id" in r]
        out.append({"client": by_id.get(client_id, client_id), "outcome": outcome, "rules": len(records),
                    "engine_ms": float(duration), "in_rules_ms": round(sum(float(r.get("duration_ms") or 0) for r in records), 4)})
    return out


# -- the run ------------------------------------------------------------------------------------------


def latency_phase(server: Server, tenant: Tenant, clients: dict, emails: list[str], p: dict) -> dict:
    samples: dict[str, dict[int, list[dict]]] = {"password": defaultdict(list), "sso": defaultdict(list)}
    app_pid, _ = server.worker_pids()
    cpu: dict[str, dict[int, dict[str, float]]] = {"password": defaultdict(lambda: defaultdict(float)),
                                                    "sso": defaultdict(lambda: defaultdict(float))}

    def account(kind: str, n: int, before: dict, after: dict, logins: int) -> None:
        for part, value in cpu_delta(before, after).items():
            cpu[kind][n][part] += value
        cpu[kind][n]["logins"] += logins
    pw_http = httpx.Client(base_url=server.base, timeout=30)
    sso_http = httpx.Client(base_url=server.base, timeout=30)
    settle_http = httpx.Client(base_url=server.base, timeout=30)
    try:
        password_login(sso_http, clients["sso"], emails[0])  # the SSO session the sso logins reuse
        password_login(settle_http, clients["settle"], emails[0])
        wrong = 0
        with CpuWindow(server.process.pid) as window:
            for round_no in range(p["rounds"]):
                for n in CONFIGS:
                    tenant.set_rule_count(n)
                    # Settle: until a login shows the new rule set (immediate with the Management
                    # API, which invalidates the tenant cache; up to the cache TTL with the CLI).
                    deadline = time.monotonic() + 15
                    while True:
                        _, tokens = sso_login(settle_http, clients["settle"])
                        if rule_claims(tokens) == n:
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"the server did not pick up {n} enabled rules within 15 s")
                        time.sleep(0.2)
                    sso_login(settle_http, clients["settle"])  # one more warm-up, not counted
                    c0 = server_cpu_parts(server.process.pid, app_pid)
                    for _ in range(p["pw_per_block"]):
                        steps, tokens = password_login(pw_http, clients["password"], emails[0])
                        wrong += rule_claims(tokens) != n
                        samples["password"][n].append({**steps, "round": round_no})
                    c1 = server_cpu_parts(server.process.pid, app_pid)
                    for _ in range(p["sso_per_block"]):
                        steps, tokens = sso_login(sso_http, clients["sso"])
                        wrong += rule_claims(tokens) != n
                        samples["sso"][n].append({**steps, "round": round_no})
                    c2 = server_cpu_parts(server.process.pid, app_pid)
                    account("password", n, c0, c1, p["pw_per_block"])
                    account("sso", n, c1, c2, p["sso_per_block"])
                log(f"latency round {round_no + 1}/{p['rounds']} done")
        if wrong:
            raise SystemExit(f"{wrong} logins carried the wrong number of rule claims")
    finally:
        for h in (pw_http, sso_http, settle_http):
            h.close()
    cpu_per_login = {
        kind: {str(n): {"logins": int(v["logins"]),
                        "app_ms": round(1000 * v["app"] / v["logins"], 3),
                        "rule_workers_ms": round(1000 * v["rule_workers"] / v["logins"], 3),
                        "total_ms": round(1000 * (v["app"] + v["rule_workers"] + v["main"]) / v["logins"], 3),
                        "runqueue_wait_ms": round(1000 * v["runqueue_wait"] / v["logins"], 3)}
               for n, v in sorted(d.items())}
        for kind, d in cpu.items()}
    return {"samples": {k: {str(n): v for n, v in d.items()} for k, d in samples.items()}, "cpu": window.figures(),
            "cpu_per_login": cpu_per_login}


def summarize_latency(samples: dict) -> dict:
    out = {}
    for kind, per_config in samples.items():
        rows = {}
        base = [s["total"] for s in per_config["0"]]
        for n_str, items in per_config.items():
            totals = [s["total"] for s in items]
            row = {"n": len(totals), "p50_ms": round(pct(totals, 50), 3), "p90_ms": round(pct(totals, 90), 3),
                   "p99_ms": round(pct(totals, 99), 3), "mean_ms": round(sum(totals) / len(totals), 3),
                   "steps_p50_ms": {k: round(pct([s[k] for s in items], 50), 3) for k in items[0] if k not in ("total", "round")}}
            row["overhead_p50_ms"] = round(row["p50_ms"] - pct(base, 50), 3)
            row["overhead_p99_ms"] = round(row["p99_ms"] - pct(base, 99), 3)
            row["ratio_p50"] = round(row["p50_ms"] / pct(base, 50), 3)
            lo, hi = bootstrap_p50_diff(per_config["0"], items) if n_str != "0" else (0.0, 0.0)
            row["overhead_p50_ci95_ms"] = [round(lo, 3), round(hi, 3)]
            # per-round paired estimate: median over rounds of (p50 of N in round r - p50 of 0 in round r)
            rounds = sorted({s["round"] for s in items})
            paired = [pct([s["total"] for s in items if s["round"] == r], 50) - pct([s["total"] for s in per_config["0"] if s["round"] == r], 50)
                      for r in rounds]
            row["overhead_p50_paired_median_ms"] = round(pct(paired, 50), 3)
            rows[n_str] = row
        out[kind] = rows
    return out


def summarize_executions(executions: list[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in executions:
        groups[f"{e['client']}/{e['rules']}"].append(e)
    out = {}
    for key, items in sorted(groups.items(), key=lambda kv: (kv[0].rsplit("/", 1)[0], int(kv[0].rsplit("/", 1)[1]))):
        engine = [e["engine_ms"] for e in items]
        in_rules = [e["in_rules_ms"] for e in items]
        rest = [e["engine_ms"] - e["in_rules_ms"] for e in items]
        out[key] = {"n": len(items), "outcomes": sorted({e["outcome"] for e in items}),
                    "engine_p50_ms": round(pct(engine, 50), 3), "engine_p99_ms": round(pct(engine, 99), 3),
                    "in_rules_p50_ms": round(pct(in_rules, 50), 4), "in_rules_p99_ms": round(pct(in_rules, 99), 4),
                    "round_trip_p50_ms": round(pct(rest, 50), 3), "round_trip_p99_ms": round(pct(rest, 99), 3)}
    return out


def machine_facts() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(package: str) -> str | None:
        try:
            from importlib.metadata import version as v
            return v(package)
        except Exception:  # noqa: BLE001
            return None

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", False
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "granian": version("granian"), "httpx": version("httpx"), "sqlalchemy": version("sqlalchemy"),
            "argon2-cffi": version("argon2-cffi"), "git_commit": commit, "src_uncommitted_changes": dirty}


def run(args: argparse.Namespace) -> dict:
    p = dict(QUICK if args.quick else FULL)
    started = time.perf_counter()
    result: dict = {"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
                    "parameters": p, "machine": machine_facts()}
    # Load the code the in-process phase uses now, when the server loads it too: the working
    # tree may change during a run, and both must match the database the server migrates.
    import bastion.events, bastion.rules.context, bastion.rules.protocol, bastion.services  # noqa: E401, F401
    import bastion.settings, bastion.storage.rules, bastion.storage.users  # noqa: E401, F401

    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-rules-"))
    try:
        return _run_in(workdir, p, args, started, result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, p: dict, args: argparse.Namespace, started: float, result: dict) -> dict:
    server = Server(workdir)
    rule_worker_pids: list[int] = []
    try:
        log(f"starting bastion serve on {server.base} (workdir {workdir})")
        server.start()
        result["server_start_s"] = round(time.perf_counter() - started, 1)
        tenant = Tenant(server)
        clients = {label: tenant.create_client(f"bench-{label}")
                   for label in ("password", "sso", "settle", "throughput", "profile")}
        tenant.enable_connection([c["client_id"] for c in clients.values()])
        emails = [f"bench{i}@example.com" for i in range(p["concurrency"])]
        for email in emails:
            tenant.create_user(email)
        tenant.create_rules(max(CONFIGS))
        result["rules_stored_via"] = tenant.rules_via
        result["rule_script_example"] = rule_script(1)
        app_worker, rule_worker_pids = server.worker_pids()
        log(f"tenant ready (rules via {tenant.rules_via}); app worker pid {app_worker}")

        result["quiet_check"] = wait_quiet(p["quiet_wait"])
        log("latency phase (sequential logins, configurations interleaved in rounds)")
        latency = latency_phase(server, tenant, clients, emails, p)
        result["latency_samples"] = latency["samples"]
        result["latency_cpu"] = latency["cpu"]
        result["latency_cpu_per_login"] = latency["cpu_per_login"]
        result["latency"] = summarize_latency(latency["samples"])

        result["throughput"] = []
        for kind, seconds in (("password", p["pw_segment"]), ("sso", p["sso_segment"])):
            log(f"throughput: {kind} logins, {p['concurrency']} clients, rules {p['pattern']}, {seconds:g} s segments")
            segments, stale = asyncio.run(throughput_run(server, tenant, clients["throughput"], clients["settle"], emails,
                                                         kind, p["pattern"], p["warmup"], seconds))
            result.setdefault("stale_rule_cache_after_switch", {})[kind] = stale
            if stale:
                log(f"  the server ran a stale rule set after {stale} switch(es) (tenant cache refilled by a login in flight)")
            for f in segments:
                log(f"  {f['rules']} rules: {f['logins_per_s']} logins/s, {f['logins_per_server_cpu_s']} per server CPU s, "
                    f"server {f['server_cores']} cores, driver {f['driver_cores']}, other {f['other_cores']}")
            result["throughput"] += segments

        if args.profile:
            log(f"profiling the server with py-spy under SSO-reuse logins ({p['profile_seconds']} s with 0 rules, then 10)")
            args.out.mkdir(parents=True, exist_ok=True)
            result["profile"] = profile_server(server, tenant, clients["profile"], emails[0], p["profile_seconds"], args.out,
                                               "-quick" if args.quick else "")
    finally:
        try:
            _, rule_worker_pids = server.worker_pids()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass
        server.stop()
        kill_leftover_rule_workers(rule_worker_pids)
    executions = read_executions(server.db_path, {k: v["client_id"] for k, v in clients.items()})
    result["rule_executions"] = summarize_executions(executions)
    log("the rules engine in-process (server stopped; same database and settings)")
    result["engine_inprocess"] = asyncio.run(_engine_inprocess(server, clients["sso"]["client_id"], emails[0],
                                                               p["rounds"], p["inprocess_per_block"]))
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result


# -- the report ------------------------------------------------------------------------------------------


def throughput_summary(windows: list[dict]) -> dict:
    out = {}
    for kind in ("password", "sso"):
        per = {}
        for n in (0, 5):
            ws = [w for w in windows if w["kind"] == kind and w["rules"] == n]
            logins = sum(w["logins"] for w in ws)
            wall = sum(w["wall_s"] for w in ws)
            cpu = sum(w["server_cpu_s"] for w in ws)
            per[n] = {"logins": logins, "logins_per_s": round(logins / wall, 2) if wall else None,
                      "logins_per_server_cpu_s": round(logins / cpu, 2) if cpu else None,
                      "server_cores": round(cpu / wall, 2) if wall else None,
                      "errors": sum(w["errors"] for w in ws)}
        ws = [w for w in windows if w["kind"] == kind]
        pairs = [(ws[i], ws[i + 1]) for i in range(0, len(ws) - 1, 2)]
        for key in ("logins_per_s", "logins_per_server_cpu_s"):
            ratios = sorted(round((b if b["rules"] == 5 else a)[key] / (a if a["rules"] == 0 else b)[key], 3)
                            for a, b in pairs if a[key] and b[key] and {a["rules"], b["rules"]} == {0, 5})
            per[f"pair_ratios_{key}"] = ratios
        if per[0]["logins_per_s"] and per[5]["logins_per_s"]:
            per["ratio_5_vs_0_logins_per_s"] = round(per[5]["logins_per_s"] / per[0]["logins_per_s"], 3)
        if per[0]["logins_per_server_cpu_s"] and per[5]["logins_per_server_cpu_s"]:
            per["ratio_5_vs_0_per_cpu_s"] = round(per[5]["logins_per_server_cpu_s"] / per[0]["logins_per_server_cpu_s"], 3)
            per["server_cpu_ms_per_login_0"] = round(1000 / per[0]["logins_per_server_cpu_s"], 2)
            per["server_cpu_ms_per_login_5"] = round(1000 / per[5]["logins_per_server_cpu_s"], 2)
        out[kind] = per
    return out


def report(result: dict) -> str:
    m, p = result["machine"], result["parameters"]
    lat, ex = result["latency"], result["rule_executions"]
    tput = result["throughput_summary"]
    noisy = [w for w in result["throughput"] if w["other_cores"] > 0.15]
    lat_other = result["latency_cpu"]["other_cores"]
    lines = [
        f"# Rules pipeline benchmark — {result['started_utc']} ({result['mode']} run)",
        "",
        "Produced by `bench/rules_pipeline.py`"
        f"{' --quick' if result['mode'] == 'quick' else ''}; raw numbers in the `.json` file of the same name.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} cores ({m['cpu_model']}), {m['platform']}; load average at start {' '.join(m['loadavg_start'])}",
        f"- Python {m['python']}, granian {m['granian']}, SQLAlchemy {m['sqlalchemy']}, httpx {m['httpx']}, argon2-cffi {m['argon2-cffi']}",
        f"- code: git {m['git_commit']}{' + uncommitted changes under src/' if m['src_uncommitted_changes'] else ''}",
        f"- quiet check before measuring: other processes used {result['quiet_check']['other_cores_before']} cores "
        f"(waited {result['quiet_check']['waited_s']} s){'' if result['quiet_check']['quiet'] else ' — NOT quiet'}",
        f"- during the latency phase: server {result['latency_cpu']['server_cores']} cores, driver {result['latency_cpu']['driver_cores']}, "
        f"other processes {lat_other} cores{' — NOISY' if lat_other > 0.15 else ''}",
        f"- whole run: {result['elapsed_s']} s",
        "",
        "## Method",
        "",
        "One `bastion serve` (granian, 1 worker, default 2 rule workers, SQLite in a temporary folder, loopback), "
        "driven by this script's process with httpx. Rules are stored disabled through the "
        f"{result['rules_stored_via']} and the first N are enabled per configuration. Each rule is trivial:",
        "",
        "```python",
        result["rule_script_example"].rstrip(),
        "```",
        "",
        f"- **Latency**: {p['rounds']} rounds × configurations 0, 1, 5, 10 rules, interleaved (0,1,5,10,0,1,...). "
        f"Per block: {p['pw_per_block']} password logins (fresh cookie jar: `/authorize` → `/u/login` → POST credentials → code → "
        f"`/oauth/token` with PKCE; argon2id runs each time) then {p['sso_per_block']} SSO-reuse logins "
        "(`/authorize` with the session cookie → code → token; no password hash, the rules still run). One at a time. "
        "Every ID token is checked to carry exactly N rule claims. Overhead = p(N rules) − p(0 rules); the 95% interval of "
        "the p50 overhead is a bootstrap over rounds (whole rounds resampled: the machine's noise comes in bursts of "
        "seconds); 'paired' is the median over rounds of the per-round p50 difference.",
        f"- **Throughput**: {p['concurrency']} concurrent clients (asyncio, one connection each, distinct users) log in "
        f"back to back without a pause while the configuration switches every segment, 0 and 5 rules as {p['pattern']} "
        "(A B B A: a linear drift of the machine cancels out), "
        f"{p['pw_segment']:g} s segments for password logins, {p['sso_segment']:g} s for SSO-reuse logins, "
        f"after {p['warmup']:g} s warm-up and 0.5 s after each switch. Logins are counted by completion time. "
        "Server CPU = utime+stime of the server's process tree (granian main, app worker, rule workers, "
        "reaped children included) from /proc; 'other' = machine busy − server − driver. The ratio is the "
        "total of the 5-rule segments over the total of the 0-rule ones; 'pairs' are the ratios within each "
        "adjacent (A, B) pair, to show the spread.",
        "- **Rules engine alone**: the `duration_ms` of the server's rules execution records (time around the worker job in "
        "`RulesEngine.run`: job to the worker, rules, result back, outcome) and each rule's own duration measured "
        "inside the worker; engine − rules = worker round trip (JSON encode/decode, pipes, scheduling).",
        "",
        "## Latency per login, sequential",
        "",
    ]
    for kind, title in (("sso", "SSO-reuse logins (no password hash)"), ("password", "Password logins (argon2id ≈ 36–40 ms each)")):
        lines += [f"### {title}", "",
                  "| rules | n | p50 ms | p99 ms | overhead p50 ms [95% CI] | paired p50 ms | overhead p99 ms | p50 ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in CONFIGS:
            r = lat[kind][str(n)]
            ci = "—" if n == 0 else f"{r['overhead_p50_ms']:+.2f} [{r['overhead_p50_ci95_ms'][0]:+.2f}, {r['overhead_p50_ci95_ms'][1]:+.2f}]"
            paired = "—" if n == 0 else f"{r['overhead_p50_paired_median_ms']:+.2f}"
            p99 = "—" if n == 0 else f"{r['overhead_p99_ms']:+.2f}"
            lines.append(f"| {n} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ci} | {paired} | {p99} | {r['ratio_p50']:.3f} |")
        cpu = result["latency_cpu_per_login"][kind]
        lines += ["", "Server CPU per login in the same blocks (schedstat, ns precision; run-queue wait = time the server "
                      "was ready but waited for a CPU, i.e. contention):", "",
                  "| rules | app worker CPU ms | rule workers CPU ms | total CPU ms | added vs 0 rules | run-queue wait ms |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for n in CONFIGS:
            c = cpu[str(n)]
            lines.append(f"| {n} | {c['app_ms']:.2f} | {c['rule_workers_ms']:.3f} | {c['total_ms']:.2f} | "
                         f"{c['total_ms'] - cpu['0']['total_ms']:+.2f} | {c['runqueue_wait_ms']:.2f} |")
        steps = list(lat[kind]["0"]["steps_p50_ms"])
        lines += ["", "p50 per step (ms): " + "; ".join(
            f"{n} rules: " + ", ".join(f"{s} {lat[kind][str(n)]['steps_p50_ms'][s]:.2f}" for s in steps) for n in CONFIGS), ""]
    lines += ["## Rules engine alone (the server's execution records)", "",
              "| logins | rules | n | engine p50 ms | engine p99 ms | in rules p50 ms | round trip p50 ms | round trip p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in ex.items():
        label, n = key.rsplit("/", 1)
        if label not in ("sso", "password", "throughput") or (label == "throughput" and n != "5"):
            continue  # (throughput logins in flight while the rules were being switched ran 1-4 rules)
        lines.append(f"| {label} | {n} | {r['n']} | {r['engine_p50_ms']:.3f} | {r['engine_p99_ms']:.3f} | {r['in_rules_p50_ms']:.4f} | "
                     f"{r['round_trip_p50_ms']:.3f} | {r['round_trip_p99_ms']:.3f} |")
    ip = result.get("engine_inprocess")
    if ip:
        lines += ["", "## Rules engine in-process (RulesEngine.run timed in this process, same database and settings)", "",
                  "`build` = rule_user + rule_context; `engine` = RulesEngine.run; `pool` = its own duration_ms (job to the "
                  "worker and back); `store` = the login's last transaction as complete_login writes it: the log event and, "
                  f"with rules, the execution record ({ip.get('execution_record', 'a row of its own')}); "
                  "`added` = (engine + store) − the same with 0 rules.", "",
                  "| rules | n | build p50 | engine p50 | engine p99 | pool p50 | in rules p50 | store p50 | store p99 | added p50 |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in CONFIGS:
            r = ip["configs"][str(n)]
            lines.append(f"| {n} | {r['n']} | {r['build_p50_ms']:.3f} | {r['engine_p50_ms']:.3f} | {r['engine_p99_ms']:.3f} | "
                         f"{r['pool_p50_ms']:.3f} | {r['in_rules_p50_ms']:.4f} | {r['store_p50_ms']:.3f} | {r['store_p99_ms']:.3f} | "
                         f"{r['added_p50_ms']:+.3f} |")
        f = ip["pipe_round_trip_no_rules"]
        j = ip["json_10_rules"]
        lines += ["", f"- pipe round trip with a job of no rules (pool.run straight): p50 {f['p50_ms']:.3f} ms, p99 {f['p99_ms']:.3f} ms",
                  f"- JSON for 10 rules: job {j['job']['bytes']} bytes (encode {j['job']['encode_us']} µs, decode {j['job']['decode_us']} µs); "
                  f"result {j['result']['bytes']} bytes (encode {j['result']['encode_us']} µs, decode {j['result']['decode_us']} µs)"]
    lines += ["", "## Throughput, concurrent clients", "",
              "| segment | logins | rules | logins/s | server CPU s | logins per server CPU s | server cores | driver cores | other cores | wrong claims |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, w in enumerate(result["throughput"], 1):
        lines.append(f"| {i} | {w['kind']} | {w['rules']} | {w['logins_per_s']:.1f} | {w['server_cpu_s']:.1f} | "
                     f"{w['logins_per_server_cpu_s']} | {w['server_cores']:.2f} | {w['driver_cores']:.2f} | "
                     f"{w['other_cores']:.2f}{' (noisy)' if w['other_cores'] > 0.15 else ''} | {w['wrong_claim_count']} |")
    stale = result.get("stale_rule_cache_after_switch") or {}
    errors = {kind: max([w["errors"] for w in result["throughput"] if w["kind"] == kind] or [0]) for kind in ("password", "sso")}
    lines += ["", f"Failed logins: {errors}. 'wrong claims': logins started and finished inside the segment whose ID token "
                  "did not carry the segment's number of rule claims. Switches after which the probe login still saw the "
                  f"old rule set (stale tenant cache, invalidated again): {stale}."]
    lines += ["", "| logins | rules | logins/s | logins per server CPU s | server CPU ms per login |", "|---|---:|---:|---:|---:|"]
    for kind in ("password", "sso"):
        for n in (0, 5):
            r = tput[kind][n]
            cpu_ms = tput[kind].get(f"server_cpu_ms_per_login_{n}")
            lines.append(f"| {kind} | {n} | {r['logins_per_s']} | {r['logins_per_server_cpu_s']} | {cpu_ms} |")
    lines += [""]
    for kind in ("password", "sso"):
        t = tput[kind]
        lines.append(f"- {kind}: 5 rules vs none: logins/s ×{t.get('ratio_5_vs_0_logins_per_s')} "
                     f"(pairs {t.get('pair_ratios_logins_per_s')}), logins per server CPU second "
                     f"×{t.get('ratio_5_vs_0_per_cpu_s')} (pairs {t.get('pair_ratios_logins_per_server_cpu_s')})")
    lines += ["", "## Target: 10 trivial rules add < 2 ms at p50", ""]
    for kind, label in (("sso", "SSO-reuse login"), ("password", "password login")):
        r = lat[kind]["10"]
        lo, hi = r["overhead_p50_ci95_ms"]
        verdict = "met" if hi < 2 else "NOT met" if lo > 2 else "not decided by this measurement (the interval straddles 2 ms)"
        cpu = result["latency_cpu_per_login"][kind]
        lines.append(f"- {label}, end to end over HTTP: {r['overhead_p50_ms']:+.2f} ms at p50 (95% CI [{lo:+.2f}, {hi:+.2f}], "
                     f"paired {r['overhead_p50_paired_median_ms']:+.2f}), {r['overhead_p99_ms']:+.2f} ms at p99: **{verdict}**; "
                     f"server CPU per login {cpu['10']['total_ms'] - cpu['0']['total_ms']:+.2f} ms.")
    if "sso/10" in ex:
        lines.append(f"- the server's own record of the engine call with 10 rules (SSO-reuse logins): p50 {ex['sso/10']['engine_p50_ms']:.2f} ms, "
                     f"p99 {ex['sso/10']['engine_p99_ms']:.2f} ms, of which the rules themselves {ex['sso/10']['in_rules_p50_ms']:.3f} ms.")
    if ip:
        r = ip["configs"]["10"]
        lines.append(f"- in-process, what 10 rules add to the login's server work (engine + execution record): "
                     f"{r['added_p50_ms']:+.2f} ms at p50 (engine {r['engine_p50_ms']:.2f} ms, store {r['store_p50_ms']:.2f} ms "
                     f"vs {ip['configs']['0']['store_p50_ms']:.2f} ms without rules).")
    if noisy or lat_other > 0.15 or not result["quiet_check"]["quiet"]:
        lines += ["", f"**Noise**: other processes used > 0.15 cores during {len(noisy)} throughput segment(s)"
                      f"{' and the latency phase' if lat_other > 0.15 else ''}; compare ratios, not absolute figures."]
    prof = result.get("profile")
    if prof and "0" in prof and "10" in prof:
        p0, p10 = prof["0"], prof["10"]
        lines += ["", f"## Profile (py-spy {PROFILE_RATE} Hz, app worker + rule workers, sequential SSO-reuse logins, {p0['seconds']} s each)", "",
                  f"0 rules: {p0['logins']} logins (p50 {p0['p50_ms_under_profiler']} ms under the profiler), "
                  f"{p0['busy_ms_per_login']} busy ms sampled per login; 10 rules: {p10['logins']} logins "
                  f"(p50 {p10['p50_ms_under_profiler']} ms), {p10['busy_ms_per_login']} busy ms per login. "
                  "Samples whose innermost frame is a wait (queue get, select, waitpid, blocking read) are dropped; "
                  "a sample counts in the first bucket that matches, in the table's order.", "",
                  "| where | 0 rules: ms/login (%) | 10 rules: ms/login (%) | Δ ms/login |", "|---|---:|---:|---:|"]
        names = [name for name, _ in PROFILE_BUCKETS] + ["other"]
        for name in names:
            a0 = p0["buckets"].get(name, {"pct": 0.0, "ms_per_login": 0.0})
            a10 = p10["buckets"].get(name, {"pct": 0.0, "ms_per_login": 0.0})
            lines.append(f"| {name} | {a0['ms_per_login']:.2f} ({a0['pct']}%) | {a10['ms_per_login']:.2f} ({a10['pct']}%) | "
                         f"{a10['ms_per_login'] - a0['ms_per_login']:+.2f} |")
        sign0 = p0["buckets"].get("token signing (joserfc)", {}).get("ms_per_login", 0.0)
        sign10 = p10["buckets"].get("token signing (joserfc)", {}).get("ms_per_login", 0.0)
        lines += ["", f"The two profiles ran one after the other: a bucket the rules do not touch (token signing: "
                      f"{sign0:.2f} vs {sign10:.2f} ms/login) shows how far the Δ column is noise. Read the shares; take "
                      "the cost of the rules from the measurements above."]
        lines += ["", "Top self frames, 10 rules:", ""] + [f"- {v}% `{f}`" for f, v in p10["top_self_pct"][:15]]
        lines += ["", "Top inclusive frames (bastion code and json), 10 rules:", ""] + [f"- {v}% `{f}`" for f, v in p10["top_inclusive_pct"][:25]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, short windows (< 1 min)")
    parser.add_argument("--profile", action="store_true", help="also record a py-spy profile of the server under SSO-reuse load")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the report (default bench/results)")
    args = parser.parse_args()
    result = run(args)
    result["throughput_summary"] = throughput_summary(result["throughput"])
    args.out.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    suffix = "-quick" if args.quick else ""
    md, js = args.out / f"{date}-rules{suffix}.md", args.out / f"{date}-rules{suffix}.json"
    keep_earlier_report(md, js)
    text = report(result)
    md.write_text(text)
    js.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(text)
    log(f"wrote {md} and {js} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
