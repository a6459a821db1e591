#!/usr/bin/env python
"""Bastion's benchmark suite (`make bench`): every figure the performance targets need, in one
bounded run (< 10 min on a quiet machine; `--quick`: a smoke run, < 2 min).

    .venv/bin/python bench/suite.py             # the full run  -> bench/results/<UTC date>.md + .json
    .venv/bin/python bench/suite.py --quick     # smoke run     -> bench/results/<UTC date>-quick.md + .json

It starts Bastion as a user deploys it: `bastion serve` (granian) with 1 and 2 worker
processes, on SQLite and on PostgreSQL (127.0.0.1:5432, trust auth; a database of its own per
server, `bench_<random>`, dropped at the end): four servers, all on loopback, each with its own
`BASTION_*` environment and the bootstrap Management API client. Each is seeded through the
Management API: an RS256 and an ES256 API (`signing_alg`), a machine-to-machine client with
client grants on both, browser clients, users, and trivial rules (each sets one ID-token claim).

Phases (progress on stderr):

1. ceilings, in this process, one thread: RSA-2048 and P-256 signatures (`cryptography`) and
   argon2id verifications with Bastion's own hasher (bastion.security.passwords), per CPU second;
2. side by side with the peer (panva's oidc-provider): ../shared/bench/run-peer.sh --also on the
   SQLite 1-worker server: discovery, JWKS and client credentials with RS256, then the token
   endpoint with PEER_ALG=ES256 (the audience in TOKEN_BODY; the peer ignores that field);
3. wrk on all four servers: client credentials RS256 (twice, in ABBA order: the 1- vs 2-worker
   ratio) and ES256, discovery, JWKS;
4. the full authorization-code login (authorize, login form POST, code exchange with PKCE) by 8
   concurrent clients in a separate process (bench/suite_driver.py): 0 and 5 rules (A B B A) on
   1-worker servers, 5 rules on 2-worker ones; logins per second per server core;
5. the refresh-token grant with 5 rules (each concurrent client keeps its own rotating chain);
6. the rule pipeline overhead: sequential SSO-reuse logins with 0, 1, 5, 10 rules interleaved in
   rounds (bench/rules_pipeline.py's latency phase, fewer samples), p50 and p99.

"Per server core" = requests per second / CPU cores the server used (its process tree from
/proc: granian main, workers, rule workers; plus, on PostgreSQL, the CPU of its database's
backends). Everything started is stopped at the end (process groups; rule workers by pid),
also on Ctrl-C, SIGTERM or failure, and the temporary databases are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules_pipeline as rp  # noqa: E402
import suite_lib as sl  # noqa: E402
import suite_report  # noqa: E402

log = rp.log
DRIVER = Path(__file__).resolve().parent / "suite_driver.py"
CONFIGS = (("sqlite-w1", 1, "sqlite"), ("sqlite-w2", 2, "sqlite"), ("pg-w1", 1, "postgres"), ("pg-w2", 2, "postgres"))

FULL = dict(
    budget_s=570, quiet_wait=15.0, quiet_sample=2.0,
    ceiling_cpu_s=0.8, ceiling_repeats=3,
    peer_duration=8, peer_warmup=2, peer_quiet_wait=15,
    wrk_token_s=6, wrk_get_s=4, wrk_warmup=1, wrk_token_rounds=2, conns=32, threads=1,
    concurrency=8, login_segment=4.0, login_pattern_w1=[0, 5, 5, 0], login_segments_w2=2, transition=0.5, driver_warmup=1.5,
    refresh_segment=4.0, refresh_segments=2,
    latency_rounds=12, latency_sso_per_block=10, latency_pw_per_block=1,
)
QUICK = dict(
    budget_s=115, quiet_wait=0.0, quiet_sample=0.5,
    ceiling_cpu_s=0.25, ceiling_repeats=1,
    peer_duration=1, peer_warmup=0, peer_quiet_wait=0,
    wrk_token_s=1, wrk_get_s=1, wrk_warmup=0, wrk_token_rounds=1, conns=32, threads=1,
    concurrency=2, login_segment=1.0, login_pattern_w1=[0, 5], login_segments_w2=1, transition=0.3, driver_warmup=0.3,
    refresh_segment=1.0, refresh_segments=1,
    latency_rounds=2, latency_sso_per_block=3, latency_pw_per_block=1,
)

ACTIVE: list[subprocess.Popen] = []  # load generators we started: stopped (their groups) on the way out


# -- budget estimates (seconds) per phase -----------------------------------------------------------


def estimates(p: dict, n_servers: int, n_w1: int, peer: bool) -> dict[str, float]:
    loads_matrix = n_servers * (p["wrk_token_rounds"] + 1) * (p["wrk_token_s"] + p["wrk_warmup"] + 0.2) + \
        n_servers * 2 * (p["wrk_get_s"] + p["wrk_warmup"] + 0.2)
    login_per = lambda segs, s: segs * (s + p["transition"] + 0.1) + 1.0 + p["driver_warmup"]  # noqa: E731
    return {
        "ceilings": p["ceiling_repeats"] * p["ceiling_cpu_s"] * 3.9 + 1,
        "peer": (8 * (2 + p["peer_warmup"] + p["peer_duration"] + 2) + 8) if peer else 0,
        "matrix": loads_matrix + 5 * p["quiet_sample"],
        "logins": n_w1 * login_per(len(p["login_pattern_w1"]), p["login_segment"]) +
        (n_servers - n_w1) * login_per(p["login_segments_w2"], p["login_segment"]) + p["quiet_sample"],
        "refresh": n_servers * login_per(p["refresh_segments"], p["refresh_segment"]) + p["quiet_sample"],
        "latency": p["latency_rounds"] * 4 * (p["latency_sso_per_block"] * 0.04 + 0.3) + p["quiet_sample"],
    }


class Plan:
    """What is left to do, so that waiting for a quiet machine never eats the budget."""

    def __init__(self, budget: sl.Budget, est: dict[str, float], p: dict, result: dict):
        self.budget, self.est, self.p, self.result = budget, dict(est), p, result
        self.notes: list[str] = []

    def begin(self, phase: str, waits: int = 1, quiet_wait: float | None = None) -> tuple[float, float]:
        """(quiet wait allowed before each of the phase's `waits` measurements, duration scale)."""
        rest = sum(v for k, v in self.est.items())
        slack = self.budget.left() - rest - 15
        wait = max(0.0, min(self.p["quiet_wait"] if quiet_wait is None else quiet_wait, slack / waits))
        scale = 1.0
        if slack < 0:
            scale = max(0.35, (self.budget.left() - 15) / max(rest, 1))
            if scale < 0.98:
                self.notes.append(f"{phase}: durations scaled ×{scale:.2f} to stay within the time budget "
                                  f"({self.budget.left():.0f} s left for ~{rest:.0f} s of planned work)")
                log(f"WARNING: {self.notes[-1]}")
        self.est.pop(phase, None)
        self.result.setdefault("phase_started_s", {})[phase] = round(self.budget.elapsed(), 1)
        return wait, min(scale, 1.0)


def quiet(p: dict, wait: float, label: str) -> dict:
    q = sl.quiet_check(wait, p["quiet_sample"])
    q["phase"] = label
    log(f"{label}: other processes used {q['other_cores_before']} cores before it"
        f"{'' if q['quiet'] else ' (busy machine)'}; waited {q['waited_s']} s")
    return q


# -- phase 2: the peer ---------------------------------------------------------------------------------


def run_peer(server: sl.SuiteServer, alg: str, endpoints: str, audience: str, p: dict, scale: float, quiet_wait: float,
             tsv: Path, workdir: Path) -> dict:
    duration = max(1, int(round(p["peer_duration"] * scale)))
    warmup = int(round(p["peer_warmup"] * scale)) if p["peer_warmup"] else 0
    env = {**os.environ, "DURATION": str(duration), "WARMUP": str(warmup), "QUIET_WAIT": str(int(quiet_wait)),
           "RESULTS": str(tsv), "TOKEN_BODY": "audience=" + sl.quote(audience, safe=""), "PEER_ALG": alg,
           "ENDPOINTS": endpoints, "CONNS": str(p["conns"]), "THREADS": str(p["threads"])}
    m2m = server.tenant.m2m
    label = f"bastion/{alg}/{server.label}"
    cmd = ["bash", str(sl.PEER_SCRIPT), "--also", label, server.base, m2m["client_id"], m2m["client_secret"], str(server.pid)]
    loads = 2 * len(endpoints.split())
    timeout = loads * (quiet_wait + warmup + duration + 40) + 240  # (+ an npm install on a new machine)
    log(f"peer ({alg}): run-peer.sh, {endpoints}, DURATION={duration} WARMUP={warmup} QUIET_WAIT={int(quiet_wait)}")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True, cwd=workdir)
    ACTIVE.append(proc)
    err_lines: list[str] = []
    out_lines: list[str] = []

    def pump_err() -> None:  # the harness's progress, passed on as it comes
        for line in proc.stderr:
            err_lines.append(line.rstrip("\n"))
            print(f"    {line.rstrip()}", file=sys.stderr, flush=True)

    def pump_out() -> None:
        out_lines.extend(proc.stdout)

    threads = [threading.Thread(target=pump_err, daemon=True), threading.Thread(target=pump_out, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        sl.stop_group(proc, "run-peer.sh")
        raise SystemExit(f"run-peer.sh ({alg}) did not finish within {timeout:.0f} s")
    finally:
        for thread in threads:
            thread.join(timeout=5)
        if proc in ACTIVE:
            ACTIVE.remove(proc)
    out = "".join(out_lines)
    if proc.returncode != 0:
        raise SystemExit(f"run-peer.sh ({alg}) exited with {proc.returncode}:\n{out}\n" + "\n".join(err_lines[-30:]))
    print(out, file=sys.stderr, flush=True)
    return {"alg": alg, "label": label, "duration_s": duration, "warmup_s": warmup, "quiet_wait_s": int(quiet_wait),
            "stdout": out, "stderr": err_lines,
            "env_line": next((ln for ln in out.splitlines() if ln.startswith("host:")), "")}


def read_tsv(tsv: Path) -> list[dict]:
    if not tsv.exists():
        return []
    lines = tsv.read_text().splitlines()
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        values = dict(zip(head, line.split("\t")))
        row: dict = {"label": values["label"], "endpoint": values["endpoint"]}
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_cores", "wrk_cpu_cores", "other_cpu_cores"):
            try:
                row[key] = float(values[key])
            except (ValueError, KeyError):
                row[key] = None
        for key in ("requests", "non2xx", "socket_errors", "conns", "threads"):
            row[key] = int(values.get(key) or 0)
        row["duration_s"] = float(values.get("duration_s") or 0)
        row["per_server_core"] = round(row["rps"] / row["server_cpu_cores"], 1) if row["server_cpu_cores"] else None
        rows.append(row)
    return rows


def peer_phase(server: sl.SuiteServer, p: dict, plan: Plan, workdir: Path) -> dict:
    wait, scale = plan.begin("peer", waits=8, quiet_wait=p["peer_quiet_wait"])
    if not sl.PEER_SCRIPT.exists():
        log(f"no peer harness at {sl.PEER_SCRIPT}: side-by-side phase skipped")
        return {"skipped": f"{sl.PEER_SCRIPT} not found"}
    tsv = workdir / "peer.tsv"
    runs = [run_peer(server, "RS256", "discovery jwks token", sl.API_RS256, p, scale, wait, tsv, workdir)]
    runs.append(run_peer(server, "ES256", "token", sl.API_ES256, p, scale, wait, tsv, workdir))
    rows = read_tsv(tsv)
    comparisons = []
    for alg, endpoint in (("RS256", "discovery"), ("RS256", "jwks"), ("RS256", "token"), ("ES256", "token")):
        peer = next((r for r in rows if r["label"] == f"oidc-provider/{alg}/w1" and r["endpoint"] == endpoint), None)
        ours = next((r for r in rows if r["label"] == f"bastion/{alg}/{server.label}" and r["endpoint"] == endpoint), None)
        if not peer or not ours:
            continue
        name = f"token-{alg.lower()}" if endpoint == "token" else endpoint
        comparisons.append({
            "endpoint": name, "peer": peer, "bastion": ours,
            "ratio_per_core": round(ours["per_server_core"] / peer["per_server_core"], 3) if ours["per_server_core"] and peer["per_server_core"] else None,
            "ratio_rps": round(ours["rps"] / peer["rps"], 3) if peer["rps"] else None,
        })
    return {"runs": runs, "rows": rows, "comparisons": comparisons, "tsv": tsv.read_text() if tsv.exists() else ""}


# -- phase 3: wrk on every deployment -----------------------------------------------------------------


def matrix_phase(servers: list[sl.SuiteServer], p: dict, plan: Plan, lua: Path) -> dict:
    wait, scale = plan.begin("matrix", waits=5)
    rows, quiet_checks = [], []
    groups: list[tuple[str, list[sl.SuiteServer], float]] = []
    for r in range(p["wrk_token_rounds"]):
        groups.append(("token-rs256", servers if r % 2 == 0 else list(reversed(servers)), p["wrk_token_s"]))
    groups.append(("token-es256", servers, p["wrk_token_s"]))
    groups.append(("discovery", servers, p["wrk_get_s"]))
    groups.append(("jwks", servers, p["wrk_get_s"]))
    for i, (endpoint, order, seconds) in enumerate(groups):
        quiet_checks.append(quiet(p, wait, f"wrk {endpoint}"))  # (each ABBA round too)
        for s in order:
            row = sl.run_wrk(s, lua, endpoint, seconds * scale, p["wrk_warmup"], p["conns"], p["threads"])
            row["round"] = sum(1 for g in groups[:i] if g[0] == endpoint)
            rows.append(row)
            log(f"  {s.label:9s} {endpoint:11s} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:.1f} ms  server {row['server_total_cores']:.2f} cores "
                f"-> {row['per_server_core']} per core; wrk {row['loadgen_cores']:.2f}, other {row['other_cores']:.2f}"
                f"{'  NON-2xx: ' + str(row['non2xx']) if row['non2xx'] else ''}")
    summary: dict[str, dict] = {}
    for s in servers:
        for endpoint in ("token-rs256", "token-es256", "discovery", "jwks"):
            rs = [r for r in rows if r["config"] == s.label and r["endpoint"] == endpoint]
            if not rs:
                continue
            wall = sum(r["wall_s"] for r in rs)
            dur = sum(r["duration_s"] for r in rs)
            cpu = sum(r["server_cpu_s"] + r["pg_cpu_s"] for r in rs)
            bastion_cpu = sum(r["server_cpu_s"] for r in rs)
            req = sum(r["requests"] for r in rs)
            summary[f"{s.label}/{endpoint}"] = {
                "rps": round(req / dur, 1), "per_server_core": round(req / dur / (cpu / wall), 1) if cpu else None,
                "per_bastion_core": round(req / dur / (bastion_cpu / wall), 1) if bastion_cpu else None,
                "server_total_cores": round(cpu / wall, 2), "loadgen_cores": round(sum(r["loadgen_cpu_s"] for r in rs) / wall, 2),
                "other_cores": round(max(r["other_cores"] for r in rs), 2), "non2xx": sum(r["non2xx"] for r in rs),
                "p50_ms": sorted(r["p50_ms"] for r in rs)[len(rs) // 2], "p99_ms": max(r["p99_ms"] for r in rs), "loads": len(rs)}
    scaling = {}
    for db in ("sqlite", "pg"):
        one, two = summary.get(f"{db}-w1/token-rs256"), summary.get(f"{db}-w2/token-rs256")
        if one and two:
            pairs = []
            for r in range(p["wrk_token_rounds"]):
                a = next((x for x in rows if x["config"] == f"{db}-w1" and x["endpoint"] == "token-rs256" and x["round"] == r), None)
                b = next((x for x in rows if x["config"] == f"{db}-w2" and x["endpoint"] == "token-rs256" and x["round"] == r), None)
                if a and b:
                    pairs.append(round(b["rps"] / a["rps"], 3))
            scaling[db] = {"w1_rps": one["rps"], "w2_rps": two["rps"], "ratio": round(two["rps"] / one["rps"], 3), "per_round": pairs,
                           "w2_server_cores": two["server_total_cores"], "w2_loadgen_cores": two["loadgen_cores"],
                           "w1_server_cores": one["server_total_cores"], "w1_loadgen_cores": one["loadgen_cores"],
                           "w2_other_cores": two["other_cores"]}
    return {"rows": rows, "summary": summary, "scaling_token_rs256": scaling, "quiet_checks": quiet_checks, "scale": round(scale, 2)}


# -- phases 4 and 5: the driver process -------------------------------------------------------------------


def _read_json_line(proc: subprocess.Popen, timeout: float, what: str, log_path: Path) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise SystemExit(f"the load driver gave no {what} within {timeout:.0f} s (exit {proc.poll()}):\n{tail}")
    return json.loads(line)


def driver_run(server: sl.SuiteServer, kind: str, pattern: list[int], seconds: float, p: dict, probe: httpx.Client | None,
               workdir: Path) -> dict:
    """One load-driver process against one server; the rule count switches between segments (one-worker
    servers, checked by a probe login); per segment the operations completed and the CPU used."""
    tenant = server.tenant
    client = tenant.clients["load" if kind == "login" else "refresh"]
    current = None
    stale_total = 0
    if server.workers == 1:
        stale_total += sl.switch_rules(tenant, probe, tenant.clients["settle"], pattern[0])
        current = pattern[0]
    log_path = workdir / f"driver-{server.label}-{kind}.log"
    config = {"base": server.base, "kind": kind, "client": client, "emails": tenant.emails[:p["concurrency"]],
              "audience": sl.API_RS256 if kind == "refresh" else None,
              "max_seconds": len(pattern) * (seconds + p["transition"] + 5) + 60}
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True, cwd=workdir)
    ACTIVE.append(proc)
    segments = []
    try:
        proc.stdin.write(json.dumps(config) + "\n")
        proc.stdin.flush()
        ready = _read_json_line(proc, 60, "ready line", log_path)
        time.sleep(p["driver_warmup"])
        for n in pattern:
            stale = 0
            if server.workers == 1 and n != current:
                stale = sl.switch_rules(tenant, probe, tenant.clients["settle"], n)
                current = n
                time.sleep(p["transition"])  # logins in flight at the switch finish outside the segment
            meter = sl.Meter(server, proc.pid)
            a = meter.snapshot()
            time.sleep(seconds)
            b = meter.snapshot()
            segments.append((n, a, b, stale))
            stale_total += stale
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        out = _read_json_line(proc, 60, "result", log_path)
        proc.wait(timeout=30)
    finally:
        sl.stop_group(proc, "load driver", grace=5)
        if proc in ACTIVE:
            ACTIVE.remove(proc)
    done = out["done"]
    rows = []
    for n, a, b, stale in segments:
        t0, t1 = a["t"], b["t"]
        inside = [d for d in done if t0 <= d[1] < t1]
        whole = [d for d in inside if d[0] >= t0]
        wrong = sum(1 for d in whole if d[2] != n)
        durations = [1000 * (d[1] - d[0]) for d in inside]
        fig = sl.Meter.figures(a, b)
        total = fig["server_cpu_s"] + fig["pg_cpu_s"]
        rows.append({"config": server.label, "kind": kind, "rules": n, "ops": len(inside), "ops_per_s": round(len(inside) / fig["wall_s"], 2),
                     "per_server_core": round(len(inside) / total, 2) if total else None,
                     "per_bastion_core": round(len(inside) / fig["server_cpu_s"], 2) if fig["server_cpu_s"] else None,
                     "p50_ms": round(rp.pct(durations, 50), 1), "p99_ms": round(rp.pct(durations, 99), 1),
                     "wrong_claims": wrong, "stale_rule_probes": stale, **fig})
    return {"segments": rows, "errors": out["errors"], "error_count": out["error_count"], "prepare_s": ready.get("prepare_s"),
            "stale_rule_probes": stale_total, "concurrency": len(config["emails"])}


def summarize_segments(rows: list[dict]) -> dict:
    out = {}
    order = [c[0] for c in CONFIGS]
    for key in sorted({(r["config"], r["rules"]) for r in rows}, key=lambda k: (order.index(k[0]), k[1])):
        rs = [r for r in rows if (r["config"], r["rules"]) == key]
        wall = sum(r["wall_s"] for r in rs)
        ops = sum(r["ops"] for r in rs)
        cpu = sum(r["server_cpu_s"] + r["pg_cpu_s"] for r in rs)
        bcpu = sum(r["server_cpu_s"] for r in rs)
        out[f"{key[0]}/{key[1]}"] = {
            "config": key[0], "rules": key[1], "ops": ops, "ops_per_s": round(ops / wall, 2),
            "per_server_core": round(ops / cpu, 2) if cpu else None, "per_bastion_core": round(ops / bcpu, 2) if bcpu else None,
            "server_total_cores": round(cpu / wall, 2), "pg_cores": round(sum(r["pg_cpu_s"] for r in rs) / wall, 2),
            "loadgen_cores": round(sum(r["loadgen_cpu_s"] for r in rs) / wall, 2),
            "other_cores": round(max(r["other_cores"] for r in rs), 2), "wrong_claims": sum(r["wrong_claims"] for r in rs),
            "p50_ms": sorted(r["p50_ms"] for r in rs)[len(rs) // 2], "p99_ms": max(r["p99_ms"] for r in rs), "segments": len(rs),
            "per_server_core_by_segment": [r["per_server_core"] for r in rs]}
    return out


def flows_phase(name: str, kind: str, servers: list[sl.SuiteServer], p: dict, plan: Plan, probes: dict, workdir: Path) -> dict:
    wait, scale = plan.begin(name)
    seconds = (p["login_segment"] if kind == "login" else p["refresh_segment"]) * scale
    q = quiet(p, wait, name)
    runs = {}
    rows: list[dict] = []
    for s in servers:
        if kind == "login":
            pattern = list(p["login_pattern_w1"]) if s.workers == 1 else [5] * p["login_segments_w2"]
        else:
            pattern = [5] * p["refresh_segments"]
        log(f"{name}: {s.label}, {p['concurrency']} concurrent clients, rules {pattern}, {seconds:.1f} s segments")
        run = driver_run(s, kind, pattern, seconds, p, probes.get(s.label), workdir)
        runs[s.label] = {k: v for k, v in run.items() if k != "segments"}
        rows += run["segments"]
        for r in run["segments"]:
            log(f"  {r['rules']} rules: {r['ops_per_s']} /s, server {r['server_total_cores']:.2f} cores -> {r['per_server_core']} per core; "
                f"driver {r['loadgen_cores']:.2f}, other {r['other_cores']:.2f}; p50 {r['p50_ms']} ms"
                f"{'; WRONG CLAIMS ' + str(r['wrong_claims']) if r['wrong_claims'] else ''}")
        if run["error_count"]:
            log(f"  {run['error_count']} failed, e.g. {run['errors'][:1]}")
    return {"segments": rows, "summary": summarize_segments(rows), "runs": runs, "quiet_check": q, "segment_s": round(seconds, 2)}


# -- phase 6: rule pipeline latency --------------------------------------------------------------------------


def latency_phase(server: sl.SuiteServer, p: dict, plan: Plan) -> dict:
    wait, scale = plan.begin("latency")
    q = quiet(p, wait, "latency")
    rounds = max(2, int(round(p["latency_rounds"] * scale)))
    lp = {"rounds": rounds, "pw_per_block": p["latency_pw_per_block"], "sso_per_block": p["latency_sso_per_block"]}
    log(f"latency: {rounds} rounds x rules (0, 1, 5, 10) x {lp['sso_per_block']} sequential SSO-reuse logins on {server.label}")
    tenant = server.tenant
    clients = {"password": tenant.clients["password"], "sso": tenant.clients["sso"], "settle": tenant.clients["settle"]}
    lat = rp.latency_phase(server, tenant, clients, tenant.emails, lp)
    summary = rp.summarize_latency({"sso": lat["samples"]["sso"]})["sso"]
    for n in rp.CONFIGS:
        r = summary[str(n)]
        log(f"  {n:2d} rules: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, overhead p50 {r['overhead_p50_ms']:+.2f} "
            f"[{r['overhead_p50_ci95_ms'][0]:+.2f}, {r['overhead_p50_ci95_ms'][1]:+.2f}]")
    return {"parameters": lp, "sso": summary, "cpu": lat["cpu"], "cpu_per_login": lat["cpu_per_login"].get("sso"),
            "samples": lat["samples"], "quiet_check": q}


# -- machine facts (no git command: HEAD read from the files) -------------------------------------------------


def git_head() -> str:
    try:
        head = (sl.ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = sl.ROOT / ".git" / ref
            if path.exists():
                return path.read_text().strip()[:7]
            packed = sl.ROOT / ".git" / "packed-refs"
            for line in packed.read_text().splitlines() if packed.exists() else []:
                if line.endswith(" " + ref):
                    return line[:7]
            return "?"
        return head[:7]
    except OSError:
        return "?"


def machine_facts(pg: sl.Postgres | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    def cmd(*args: str) -> str:
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "0")
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu_model": model, "mem_gib": round(int(mem) / 2**20, 1),
            "platform": platform.platform(), "python": platform.python_version(), "loadavg_start": sl.loadavg(),
            "granian": v("granian"), "httpx": v("httpx"), "sqlalchemy": v("sqlalchemy"), "cryptography": v("cryptography"),
            "argon2-cffi": v("argon2-cffi"), "joserfc": v("joserfc"), "psycopg": v("psycopg"), "wrk": (cmd("wrk", "-v").split() + ["?", "?"])[1],
            "node": cmd("node", "--version"), "postgres": pg.version if pg else None, "git_head": git_head(),
            "oidc_provider": peer_version()}


def peer_version() -> str | None:
    folder = Path(os.environ.get("PEER_WORKDIR", Path(os.environ.get("TMPDIR", "/tmp")) / "bastion-bench-peer"))
    for path in (folder / "node_modules" / "oidc-provider" / "package.json", sl.PEER_SCRIPT.parent / "peer-oidc-provider" / "package.json"):
        try:
            data = json.loads(path.read_text())
            return data.get("version") or (data.get("dependencies") or {}).get("oidc-provider")
        except (OSError, ValueError):
            continue
    return None


# -- the run ----------------------------------------------------------------------------------------------------


def run(p: dict, args: argparse.Namespace, result: dict) -> None:
    budget = sl.Budget(p["budget_s"])
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-suite-"))
    servers: list[sl.SuiteServer] = []
    probes: dict[str, httpx.Client] = {}
    pg = None
    try:
        if not args.no_postgres:
            try:
                pg = sl.Postgres()
            except Exception as error:  # noqa: BLE001 - SQLite alone is still worth measuring
                log(f"PostgreSQL at {sl.POSTGRES_ADMIN} unusable ({error}); SQLite only")
                result["postgres_skipped"] = str(error)
        result["machine"] = machine_facts(pg)
        for label, workers, db in CONFIGS:
            if db == "postgres" and pg is None:
                continue
            servers.append(sl.SuiteServer(workdir / label, label, workers, db, pg))
        log(f"starting {len(servers)} servers: " + ", ".join(f"{s.label} on {s.base}" for s in servers))
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_ready()
        result["server_start_s"] = {s.label: s.started_s for s in servers}
        t_seed = time.monotonic()
        for s in servers:
            s.tenant = sl.SuiteTenant(s)
            s.tenant.seed(users=p["concurrency"], rules_enabled=None if s.workers == 1 else 5)
            sl.check_token(s, sl.API_RS256, "RS256")
            sl.check_token(s, sl.API_ES256, "ES256")
            if s.workers == 1:
                probes[s.label] = httpx.Client(base_url=s.base, timeout=30)
                rp.password_login(probes[s.label], s.tenant.clients["settle"], s.tenant.emails[0])
            s.remember_rule_workers()
        result["seed_s"] = round(time.monotonic() - t_seed, 1)
        result["setup_s"] = round(budget.elapsed(), 1)
        log(f"servers ready and seeded in {result['setup_s']} s (rules via {servers[0].tenant.rules_via})")
        n_w1 = sum(1 for s in servers if s.workers == 1)
        plan = Plan(budget, estimates(p, len(servers), n_w1, not args.no_peer), p, result)
        result["estimates_s"] = {k: round(v, 1) for k, v in plan.est.items()}
        log(f"planned: {sum(plan.est.values()):.0f} s of measurement, {budget.left():.0f} s of budget left")

        wait, _ = plan.begin("ceilings")
        q = quiet(p, wait, "ceilings")
        log("ceilings: RSA-2048 and P-256 signatures, argon2id verifications (this process, one thread)")
        result["ceilings"] = sl.ceilings(p["ceiling_cpu_s"], p["ceiling_repeats"])
        result["ceilings"]["quiet_check"] = q
        c = result["ceilings"]
        log(f"  RSA-2048 {c['rsa2048_sign']['per_core']}/s per core, P-256 {c['p256_sign']['per_core']}/s, "
            f"argon2id {c['argon2id_verify']['per_core']}/s (other {c['other_cores']} cores)")

        sqlite1 = next(s for s in servers if s.label == "sqlite-w1")
        if args.no_peer:
            plan.est.pop("peer", None)
            result["peer"] = {"skipped": "--no-peer"}
        else:
            result["peer"] = peer_phase(sqlite1, p, plan, workdir)
        lua, lua_from = sl.lua_dir(workdir)
        result["lua_scripts"] = lua_from
        log("wrk on every deployment")
        result["matrix"] = matrix_phase(servers, p, plan, lua)
        result["logins"] = flows_phase("logins", "login", servers, p, plan, probes, workdir)
        result["refresh"] = flows_phase("refresh", "refresh", servers, p, plan, probes, workdir)
        result["latency"] = latency_phase(sqlite1, p, plan)
        result["budget_notes"] = plan.notes
        for s in servers:
            s.remember_rule_workers()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        for proc in list(ACTIVE):
            sl.stop_group(proc, "load generator", grace=5)
        for http in probes.values():
            http.close()
        for s in servers:
            if s.tenant is not None:
                s.tenant.http.close()
            s.stop()
        if servers:
            result["server_logs_tail"] = {s.label: s.output()[-600:] for s in servers if "Traceback" in s.output()}
            log(f"stopped {len(servers)} servers (process groups) and {sum(len(s.rule_worker_pids) for s in servers)} rule workers")
        if pg is not None:
            pg.drop_all()
        sl.rmtree(workdir)
        result["elapsed_s"] = round(budget.elapsed(), 1)
        result["loadavg_end"] = sl.loadavg()


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through run()'s finally: everything is stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 2 min): tiny windows, figures not to be quoted")
    parser.add_argument("--out", type=Path, default=sl.ROOT / "bench" / "results", help="report folder (default bench/results)")
    parser.add_argument("--no-peer", action="store_true", help="skip the side-by-side phase with oidc-provider")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite servers only")
    parser.add_argument("--budget", type=float, default=None, help="wall-time budget in seconds (default 570; quick 110)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    p = dict(QUICK if args.quick else FULL)
    if args.budget:
        p["budget_s"] = args.budget
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    result: dict = {"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
                    "parameters": p, "command": " ".join(["bench/suite.py", *sys.argv[1:]])}
    try:
        run(p, args, result)
    except KeyboardInterrupt:
        log("interrupted: servers, load generators and rule workers stopped, temporary databases dropped")
        return 130
    args.out.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    stem = date + ("-quick" if args.quick else "")
    md, js = args.out / f"{stem}.md", args.out / f"{stem}.json"
    rp.keep_earlier_report(md, js)
    result["targets"] = suite_report.targets(result)
    text = suite_report.report(result)
    js.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md.write_text(text)
    print(text)
    log(f"wrote {md} and {js} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
