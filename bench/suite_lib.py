"""Helpers of bench/suite.py: servers (SQLite / PostgreSQL, 1 or 2 workers), CPU meters from
/proc (the server's process tree, its PostgreSQL backends, the load generator, the rest of the
machine), wrk runs, the in-process ceilings, and the tenant seeding through the Management API.

Reuses bench/rules_pipeline.py (imported as `rp`): its Server, Tenant, login flows, TreeCpu and
/proc helpers.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules_pipeline as rp  # noqa: E402

ROOT = rp.ROOT
BASTION = rp.BASTION
CLK_TCK = rp.CLK_TCK
log = rp.log

PEER_SCRIPT = Path(os.environ.get("BENCH_PEER_SCRIPT", ROOT.parent / "shared" / "bench" / "run-peer.sh"))
SHARED_LUA = PEER_SCRIPT.parent / "lua"
POSTGRES_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

API_RS256 = "https://api-rs256.bench.bastion.test"
API_ES256 = "https://api-es256.bench.bastion.test"
API_SCOPE = "read:bench"


# -- budget ---------------------------------------------------------------------------------


class Budget:
    """The wall-time budget of the whole run: phases ask how much slack is left for waiting."""

    def __init__(self, total_s: float):
        self.t0 = time.monotonic()
        self.total = total_s

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()


# -- CPU accounting ---------------------------------------------------------------------------


def _stat_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    procs = rp._all_procs()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in tree:
            tree.append(pid)
            todo.extend(c for c, (pp, _) in procs.items() if pp == pid)
    return tree


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Postgres:
    """Databases of our own on the local PostgreSQL (trust auth), and the CPU of their backends."""

    def __init__(self, admin_url: str = POSTGRES_ADMIN):
        import psycopg

        self.admin_url = admin_url
        self.conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        self.databases: list[str] = []
        self.version = self.conn.execute("SHOW server_version").fetchone()[0]

    def create(self) -> tuple[str, str]:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        self.conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        admin = urlsplit(self.admin_url)
        return name, f"postgresql+psycopg://{admin.netloc}/{name}"

    def backends(self, database: str) -> list[int]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
        return [r[0] for r in rows]

    def backend_ticks(self, database: str) -> dict[int, int]:
        out = {}
        for pid in self.backends(database):
            ticks = _stat_ticks(pid)
            if ticks is not None:
                out[pid] = ticks
        return out

    def drop_all(self) -> None:
        for name in self.databases:
            try:
                self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                log(f"dropped PostgreSQL database {name}")
            except Exception as error:  # noqa: BLE001 - go on dropping the others
                log(f"could not drop PostgreSQL database {name}: {error}")
        self.databases = []
        self.conn.close()


class Meter:
    """CPU over a window: the server's process tree (granian main, workers, rule workers), its
    PostgreSQL backends (PostgreSQL deployments), the load generator (a process we started, or
    children reaped in the window: wrk), this suite's own process, and the whole machine."""

    def __init__(self, server: "SuiteServer", loadgen_pid: int | None = None):
        self.server = server
        self.loadgen_pid = loadgen_pid

    def snapshot(self) -> dict:
        snap = {
            "t": time.monotonic(),
            "server": rp.TreeCpu(self.server.pid).read()[0],
            "pg": self.server.pg.backend_ticks(self.server.pg_database) if self.server.pg else {},
            "loadgen": rp.TreeCpu(self.loadgen_pid).read()[0] if self.loadgen_pid else 0.0,
            "children": children_cpu_seconds(),
            "self": rp.self_cpu_seconds(),
            "machine": rp.machine_busy_seconds(),
        }
        return snap

    @staticmethod
    def figures(a: dict, b: dict) -> dict:
        wall = b["t"] - a["t"]
        server = b["server"] - a["server"]
        pg = sum(ticks - a["pg"].get(pid, 0) for pid, ticks in b["pg"].items()) / CLK_TCK
        loadgen = (b["loadgen"] - a["loadgen"]) + (b["children"] - a["children"])
        suite = b["self"] - a["self"]
        machine = b["machine"] - a["machine"]
        return {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 3),
            "pg_cpu_s": round(pg, 3),
            "loadgen_cpu_s": round(loadgen, 3),
            "suite_cpu_s": round(suite, 3),
            "server_cores": round(server / wall, 3),
            "pg_cores": round(pg / wall, 3),
            "server_total_cores": round((server + pg) / wall, 3),
            "loadgen_cores": round(loadgen / wall, 3),
            "other_cores": round((machine - server - pg - loadgen - suite) / wall, 3),
        }


def quiet_check(max_wait: float, sample_s: float = 2.0, threshold: float = 0.15) -> dict:
    """Wait (at most max_wait s) until other processes use < threshold cores over sample_s.
    Everything counts as 'other' here but this process: the idle servers use ~0."""
    started = time.monotonic()
    while True:
        m0, s0 = rp.machine_busy_seconds(), rp.self_cpu_seconds()
        time.sleep(sample_s)
        busy = (rp.machine_busy_seconds() - m0 - (rp.self_cpu_seconds() - s0)) / sample_s
        waited = time.monotonic() - started
        if busy < threshold:
            return {"other_cores_before": round(busy, 2), "waited_s": round(waited, 1), "quiet": True}
        if waited >= max_wait:
            if max_wait > 0:
                log(f"machine busy ({busy:.2f} cores used by other processes) after {waited:.0f} s; measuring anyway")
            return {"other_cores_before": round(busy, 2), "waited_s": round(waited, 1), "quiet": False}


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


# -- servers --------------------------------------------------------------------------------------


class SuiteServer(rp.Server):
    """`bastion serve` as a user deploys it: granian, N workers, SQLite or PostgreSQL."""

    def __init__(self, workdir: Path, label: str, workers: int, database: str, pg: Postgres | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.label = label
        self.workers = workers
        self.database = database
        self.pg = pg
        self.pg_database: str | None = None
        if database == "postgres":
            assert pg is not None
            self.pg_database, url = pg.create()
            self.env["BASTION_DATABASE_URL"] = url
        self.rule_worker_pids: set[int] = set()
        self.tenant: SuiteTenant | None = None
        self.started_s: float | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self) -> None:
        assert self.base.startswith("http://127.0.0.1:")
        (self.workdir / "var").mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(BASTION), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir,
            )

    def wait_ready(self, timeout: float = 90) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.label}: bastion serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    self.started_s = round(time.monotonic() - self._t0, 1)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.label}: bastion serve did not answer within {timeout:.0f} s:\n{self.output()}")

    def app_workers(self) -> list[int]:
        procs = rp._all_procs()
        return sorted(p for p, (pp, _) in procs.items() if pp == self.pid)

    def remember_rule_workers(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for pid in descendants(self.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"bastion.rules.worker" in f.read():
                        self.rule_worker_pids.add(pid)
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self.remember_rule_workers()
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        super().stop()
        rp.kill_leftover_rule_workers(sorted(self.rule_worker_pids))


# -- seeding through the Management API -------------------------------------------------------------


class SuiteTenant(rp.Tenant):
    """What the suite needs on one server, set up through the Management API with the bootstrap client."""

    def __init__(self, server: SuiteServer):
        super().__init__(server)
        self.m2m: dict = {}
        self.clients: dict[str, dict] = {}
        self.emails: list[str] = []

    def checked(self, method: str, path: str, expect: int, **kwargs) -> dict:
        r = self.api(method, path, **kwargs)
        if r.status_code != expect:
            raise SystemExit(f"{self.server.label}: {method} /api/v2{path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json() if r.content else {}

    def seed(self, users: int, rules_enabled: int | None) -> None:
        """Two APIs (RS256 and ES256, offline access allowed), a machine-to-machine client with client
        grants on both, browser clients, users, and the trivial rules: 10 stored disabled (switched per
        phase) when rules_enabled is None, else that many stored enabled."""
        for identifier, alg in ((API_RS256, "RS256"), (API_ES256, "ES256")):
            self.checked("POST", "/resource-servers", 201, json={
                "identifier": identifier, "name": f"bench {alg}", "signing_alg": alg, "allow_offline_access": True,
                "scopes": [{"value": API_SCOPE, "description": "bench"}]})
        self.m2m = self.checked("POST", "/clients", 201, json={
            "name": "bench-m2m", "app_type": "non_interactive", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic"})
        for identifier in (API_RS256, API_ES256):
            self.checked("POST", "/client-grants", 201, json={"client_id": self.m2m["client_id"], "audience": identifier, "scope": [API_SCOPE]})
        for label in ("load", "settle", "password", "sso", "refresh"):
            self.clients[label] = self.create_client(f"bench-{label}")
        self.enable_connection([c["client_id"] for c in self.clients.values()])
        self.emails = [f"bench{i}@example.com" for i in range(users)]
        for email in self.emails:
            self.create_user(email)
        if rules_enabled is None:
            self.create_rules(10)
        else:
            for i in range(1, rules_enabled + 1):
                r = self.checked("POST", "/rules", 201, json={"name": f"bench-claim-{i}", "script": rp.rule_script(i), "order": i, "enabled": True})
                self.rule_ids.append(r["id"])
                self.enabled.append(True)


def switch_rules(tenant: SuiteTenant, probe: httpx.Client, probe_client: dict, n: int) -> int:
    """Enable the first n rules; a probe login (SSO reuse) checks the server runs them. Returns how
    many probes saw a stale rule set (then invalidated again). One-worker servers only: with two,
    the Management API call invalidates the cache of the worker that answered it."""
    tenant.set_rule_count(n)
    stale = 0
    for _ in range(20):
        _, tokens = rp.sso_login(probe, probe_client)
        if rp.rule_claims(tokens) == n:
            return stale
        stale += 1
        tenant.reinvalidate()
        time.sleep(0.05)
    raise SystemExit(f"{tenant.server.label}: the server kept running the old rule set after switching to {n} rules")


# -- wrk ---------------------------------------------------------------------------------------------

_LUA = {
    "report.lua": """function wrk_report(summary, latency, requests)
  local dur_s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
    '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,' ..
    '"mean_ms":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}\\n',
    summary.requests, dur_s, summary.requests / dur_s, summary.bytes,
    e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
""",
    "get.lua": """local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.headers["Accept"] = "application/json"
done = wrk_report
""",
    "token.lua": """local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
done = wrk_report
""",
}


def lua_dir(workdir: Path) -> tuple[Path, str]:
    """The harness's Lua scripts (/work/shared/bench/lua), else identical copies of our own."""
    if (SHARED_LUA / "token.lua").exists() and (SHARED_LUA / "get.lua").exists():
        return SHARED_LUA, str(SHARED_LUA)
    own = workdir / "lua"
    own.mkdir(parents=True, exist_ok=True)
    for name, text in _LUA.items():
        (own / name).write_text(text)
    return own, "embedded copies (bench/suite_lib.py)"


def basic_auth(client_id: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()


def token_body(audience: str) -> str:
    return "grant_type=client_credentials&audience=" + quote(audience, safe="")


def check_token(server: SuiteServer, audience: str, expect_alg: str) -> dict:
    """One client-credentials request as wrk sends it: HTTP 200 and a JWT signed with expect_alg."""
    import base64

    m2m = server.tenant.m2m
    r = httpx.post(server.base + "/oauth/token", content=token_body(audience), timeout=10, headers={
        "Authorization": basic_auth(m2m["client_id"], m2m["client_secret"]), "Content-Type": "application/x-www-form-urlencoded"})
    if r.status_code != 200:
        raise SystemExit(f"{server.label}: token request for {audience}: HTTP {r.status_code} {r.text[:300]}")
    head = r.json()["access_token"].split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    if header.get("alg") != expect_alg:
        raise SystemExit(f"{server.label}: expected an {expect_alg} token for {audience}, got {header}")
    return header


def run_wrk(server: SuiteServer, lua: Path, endpoint: str, duration: float, warmup: float, conns: int, threads: int) -> dict:
    """One wrk load (after a discarded warm-up) with the server's CPU over the measured run."""
    env = dict(os.environ)
    if endpoint.startswith("token"):
        alg = endpoint.split("-")[1].upper()
        audience = API_RS256 if alg == "RS256" else API_ES256
        m2m = server.tenant.m2m
        env.update(WRK_AUTH=basic_auth(m2m["client_id"], m2m["client_secret"]), WRK_BODY=token_body(audience))
        url, script = server.base + "/oauth/token", lua / "token.lua"
    elif endpoint == "discovery":
        url, script = server.base + "/.well-known/openid-configuration", lua / "get.lua"
    elif endpoint == "jwks":
        url, script = server.base + "/.well-known/jwks.json", lua / "get.lua"
    else:
        raise ValueError(endpoint)
    assert url.startswith("http://127.0.0.1:")
    secs = max(1, int(round(duration)))
    base_cmd = ["wrk", f"-t{threads}", f"-c{conns}", "--timeout", "5s", "-s", str(script)]
    if warmup > 0:
        subprocess.run(base_cmd + [f"-d{max(1, int(round(warmup)))}s", url], env=env, capture_output=True, timeout=warmup + 20)
    meter = Meter(server)
    a = meter.snapshot()
    out = subprocess.run(base_cmd + [f"-d{secs}s", "--latency", url], env=env, capture_output=True, text=True, timeout=secs + 20)
    b = meter.snapshot()
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk produced no result for {server.label}/{endpoint}:\n{out.stdout}\n{out.stderr}")
    w = json.loads(line.split(" ", 1)[1])
    fig = Meter.figures(a, b)
    errors = w["errors_status"] + w["errors_connect"] + w["errors_read"] + w["errors_write"] + w["errors_timeout"]
    row = {
        "config": server.label, "endpoint": endpoint, "rps": w["rps"], "requests": w["requests"], "duration_s": w["duration_s"],
        "p50_ms": w["p50_ms"], "p90_ms": w["p90_ms"], "p99_ms": w["p99_ms"], "max_ms": w["max_ms"], "errors": errors,
        "non2xx": w["errors_status"], **fig,
    }
    total = fig["server_total_cores"]
    row["per_server_core"] = round(w["rps"] / total, 1) if total > 0 else None
    row["per_bastion_core"] = round(w["rps"] / fig["server_cores"], 1) if fig["server_cores"] > 0 else None
    return row


# -- ceilings (in-process, one thread) ------------------------------------------------------------


def _rate(fn, cpu_seconds: float) -> dict:
    fn()  # warm
    n = 0
    c0, w0 = time.thread_time(), time.perf_counter()
    while time.thread_time() - c0 < cpu_seconds:
        fn()
        n += 1
    cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
    return {"n": n, "cpu_s": round(cpu, 4), "wall_s": round(wall, 4), "per_core": round(n / cpu, 1), "per_wall_s": round(n / wall, 1),
            "ms_cpu_each": round(1000 * cpu / n, 4)}


def ceilings(cpu_seconds: float, repeats: int) -> dict:
    """RSA-2048 (PKCS#1 v1.5, SHA-256) and P-256 (ECDSA, SHA-256) signatures with `cryptography`,
    argon2id verifications with Bastion's own hasher, and, for reference, one JWT signed the way
    Bastion signs (joserfc, through bastion.keys.jose): per CPU second of this one thread."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from bastion.keys.jose import generate_private_key, load_private_key
    from bastion.security import passwords

    message = secrets.token_bytes(360)  # about the signing input of a client-credentials access token
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    hasher = passwords._HASHER  # the hasher object Bastion verifies passwords with
    stored = hasher.hash(rp.PASSWORD)
    jose = {}
    for alg in ("RS256", "ES256"):
        pem, _ = generate_private_key(alg, "bench")
        jose[alg] = load_private_key(alg, "bench", pem.encode())
    claims = {"iss": "http://127.0.0.1:8000/", "sub": "x@clients", "aud": API_RS256, "iat": 1, "exp": 2, "scope": API_SCOPE,
              "jti": "a" * 22, "azp": "x" * 32, "gty": "client-credentials"}
    ops = {
        "rsa2048_sign": lambda: rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()),
        "p256_sign": lambda: ec_key.sign(message, ec.ECDSA(hashes.SHA256())),
        "argon2id_verify": lambda: hasher.verify(stored, rp.PASSWORD),
        "jwt_rs256_joserfc": lambda: jose["RS256"].sign(claims),
        "jwt_es256_joserfc": lambda: jose["ES256"].sign(claims),
    }
    seconds = {"rsa2048_sign": cpu_seconds, "p256_sign": cpu_seconds / 2, "argon2id_verify": cpu_seconds * 1.5,
               "jwt_rs256_joserfc": cpu_seconds / 2, "jwt_es256_joserfc": cpu_seconds / 3}
    runs: dict[str, list[dict]] = {k: [] for k in ops}
    m0, s0, t0 = rp.machine_busy_seconds(), rp.self_cpu_seconds(), time.monotonic()
    for _ in range(repeats):  # interleaved, so a burst of noise does not hit one figure only
        for name, fn in ops.items():
            runs[name].append(_rate(fn, seconds[name]))
    wall = time.monotonic() - t0
    other = (rp.machine_busy_seconds() - m0 - (rp.self_cpu_seconds() - s0)) / wall
    out = {name: {"per_core": round(sorted(r["per_core"] for r in rs)[len(rs) // 2], 1),
                  "ms_cpu_each": round(sorted(r["ms_cpu_each"] for r in rs)[len(rs) // 2], 4),
                  "per_wall_s": round(sorted(r["per_wall_s"] for r in rs)[len(rs) // 2], 1), "runs": rs}
           for name, rs in runs.items()}
    out["argon2_parameters"] = {"type": str(hasher.type.name), "time_cost": hasher.time_cost, "memory_cost_kib": hasher.memory_cost,
                                "parallelism": hasher.parallelism, "hash_len": hasher.hash_len, "salt_len": hasher.salt_len}
    out["other_cores"] = round(other, 2)
    out["wall_s"] = round(wall, 1)
    return out


# -- processes we start --------------------------------------------------------------------------


def stop_group(process: subprocess.Popen | None, name: str, grace: float = 10) -> None:
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL what is left."""
    if process is None:
        return
    pgid = process.pid
    try:
        if process.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        os.killpg(pgid, signal.SIGKILL)  # whatever of the group is left
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {pgid}) did not exit")


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
