#!/usr/bin/env python
"""Rules overhead benchmark: do 10 trivial rules add less than 2 ms to a login at p50?

    .venv/bin/python bench/rules_overhead.py            # the full run (~3 min quiet; 6.5-7.5 min on a busy VM)
    .venv/bin/python bench/rules_overhead.py --quick    # a smoke run (< 1 min; too few samples to quote)
    .venv/bin/python bench/rules_overhead.py --pin      # both servers on one CPU, the driver on another

Method (side by side, paired):

- Two real `bastion serve` processes run at the same time, each with its own temporary
  folder, SQLite database and port (granian, 1 worker, default rule workers, loopback only,
  the same `BASTION_*` settings and PYTHONHASHSEED). Each has one client and one user, set up
  through the Management API. Server A has no rules; server B has 10 enabled trivial rules
  (each sets one namespaced ID-token claim; the same `rule_script(i)` as
  bench/rules_pipeline.py, created through the Management API with enabled=true).
- Both are warmed up (logins discarded), then measured in PAIRS: one login on A and one on
  B, back to back, the order inside each pair drawn at random. Whatever the shared machine
  does (bursts of other jobs, drift, periodic noise) hits A and B alike, and the per-pair
  difference B - A cancels most of it.
  - SSO-reuse logins (the main measurement): GET /authorize with the session cookie ->
    code -> POST /oauth/token with PKCE (no password hash; the rules run).
  - Password logins (fewer pairs): fresh cookie jar, /authorize -> /u/login -> POST
    credentials -> code -> token (argon2id runs every time).
  - Every login's ID token must carry exactly 0 (A) or 10 (B) rule claims; any failed
    login or wrong claim count aborts the run.
  - The driver's garbage collector is paused while timing (collected between chunks).
- Estimates of what the rules add, with 95% bootstrap intervals (pairs resampled):
  p50(B) - p50(A), and the median of the paired differences; plus the Hodges-Lehmann
  estimate (median of the Walsh averages of the paired differences). The same intervals
  also come from a moving-block bootstrap (runs of 50 consecutive pairs), which stays
  honest when neighbouring pairs share noise; the lag-1 rank autocorrelation of the paired
  differences says whether they do.
- Server CPU per login (app worker + its rule workers + granian main, from
  /proc/<pid>/task/*/schedstat) for A and B over each phase, the run-queue wait (time the
  servers were ready but waited for a CPU), and the CPU used by the rest of the machine
  (per phase and per chunk of pairs).
- A/A check at the end: B's rules are disabled and a few hundred more SSO pairs are
  measured; any difference left is the offset between the two server instances, not rules.

Verdict on the target (SSO-reuse logins, p50 difference): "met" if the upper bound of its
95% interval is below 2 ms, "not met" if the lower bound is above 2 ms, else "not decided".

Writes bench/results/<UTC date>-rules-overhead.md and .json (`--out DIR` elsewhere; quick
runs add `-quick`). Stops both servers and their rule workers at the end, on errors and on
Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules_pipeline as rp  # noqa: E402  (the server, tenant, login flows and /proc helpers)

TARGET_MS = 2.0
RULES_B = 10
CHUNK = 100  # pairs between two noise readings (and garbage collections)
BLOCK = 50  # consecutive pairs per block in the moving-block bootstrap (~3 s of logins)
FULL = dict(pairs=1500, password_pairs=150, warmup=50, aa_pairs=200, quiet_wait=20.0)
QUICK = dict(pairs=100, password_pairs=20, warmup=10, aa_pairs=40, quiet_wait=4.0)

log = rp.log


class BenchFailure(SystemExit):
    """A login failed or carried the wrong claims: the run stops (and says why)."""


# -- statistics ------------------------------------------------------------------------------


def hodges_lehmann(diffs: list[float]) -> float:
    """One-sample Hodges-Lehmann estimate: the median of all Walsh averages (d_i + d_j) / 2, i <= j."""
    walsh = [(diffs[i] + diffs[j]) / 2 for i in range(len(diffs)) for j in range(i, len(diffs))]
    return rp.pct(walsh, 50)


def lag1_autocorrelation(values: list[float]) -> float:
    """Rank (Spearman) correlation of each pair's difference with the next one's: ~0 if pairs are
    independent, as the bootstrap over pairs assumes; ranks, so a few huge outliers do not decide it."""
    n = len(values)
    if n < 3:
        return float("nan")
    order = sorted(range(n), key=values.__getitem__)
    ranks = [0] * n
    for rank, i in enumerate(order):
        ranks[i] = rank
    x, y = ranks[:-1], ranks[1:]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    var = (sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)) ** 0.5
    return cov / var if var else float("nan")


def pair_indices(rng: random.Random, n: int) -> list[int]:
    """A bootstrap resample of n pairs, each drawn independently."""
    return rng.choices(range(n), k=n)


def block_indices(rng: random.Random, n: int, block: int = BLOCK) -> list[int]:
    """A moving-block bootstrap resample: runs of `block` consecutive pairs, so that the noise
    shared by neighbouring pairs (a burst of other jobs lasting seconds) stays together."""
    block = min(block, n)
    idx: list[int] = []
    while len(idx) < n:
        start = rng.randrange(n - block + 1)
        idx.extend(range(start, start + block))
    return idx[:n]


def bootstrap(a: list[float], b: list[float], resamples: int, seed: int, resample=pair_indices) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of p50(B) - p50(A), p99(B) - p99(A) and median(B - A), over
    `resamples` resamples of the pairs drawn by `resample`."""
    rng = random.Random(seed)
    n = len(a)
    diffs = [y - x for x, y in zip(a, b)]
    stats: dict[str, list[float]] = {"p50_diff": [], "p99_diff": [], "paired_median": []}
    for _ in range(resamples):
        idx = resample(rng, n)
        ra, rb = sorted(a[i] for i in idx), sorted(b[i] for i in idx)
        stats["p50_diff"].append(rp.pct(rb, 50) - rp.pct(ra, 50))
        stats["p99_diff"].append(rp.pct(rb, 99) - rp.pct(ra, 99))
        stats["paired_median"].append(rp.pct([diffs[i] for i in idx], 50))
    return {k: (rp.pct(v, 2.5), rp.pct(v, 97.5)) for k, v in stats.items()}


def verdict(lo: float, hi: float, target: float = TARGET_MS) -> str:
    if hi < target:
        return "met"
    if lo > target:
        return "not met"
    return "not decided"


def side_figures(pairs: list[dict], name: str) -> dict:
    totals = [p[name]["total"] for p in pairs]
    steps = [k for k in pairs[0][name] if k != "total"]
    return {"p50_ms": round(rp.pct(totals, 50), 3), "p90_ms": round(rp.pct(totals, 90), 3), "p99_ms": round(rp.pct(totals, 99), 3),
            "mean_ms": round(sum(totals) / len(totals), 3),
            "steps_p50_ms": {s: round(rp.pct([p[name][s] for p in pairs], 50), 3) for s in steps}}


def summarize_pairs(pairs: list[dict], resamples: int, seed: int) -> dict:
    a = [p["A"]["total"] for p in pairs]
    b = [p["B"]["total"] for p in pairs]
    diffs = [y - x for x, y in zip(a, b)]
    ci = bootstrap(a, b, resamples, seed)
    block_ci = bootstrap(a, b, resamples, seed, block_indices)
    r = lambda x: round(x, 3)  # noqa: E731
    by_order = {first: [p["B"]["total"] - p["A"]["total"] for p in pairs if p["first"] == first] for first in ("A", "B")}
    out = {
        "pairs": len(pairs),
        "A": side_figures(pairs, "A"),
        "B": side_figures(pairs, "B"),
        "p50_diff_ms": r(rp.pct(b, 50) - rp.pct(a, 50)),
        "p50_diff_ci95_ms": [r(x) for x in ci["p50_diff"]],
        "p99_diff_ms": r(rp.pct(b, 99) - rp.pct(a, 99)),
        "p99_diff_ci95_ms": [r(x) for x in ci["p99_diff"]],
        "paired_median_ms": r(rp.pct(diffs, 50)),
        "paired_median_ci95_ms": [r(x) for x in ci["paired_median"]],
        "hodges_lehmann_ms": r(hodges_lehmann(diffs)),
        "paired_median_by_order_ms": {f"{first}_first": {"pairs": len(d), "median": r(rp.pct(d, 50))} for first, d in by_order.items()},
        "lag1_autocorrelation": r(lag1_autocorrelation(diffs)),
        "resamples": resamples,
        # the same intervals from a moving-block bootstrap (honest when neighbouring pairs share noise)
        "block_pairs": min(BLOCK, len(pairs)),
        "block_p50_diff_ci95_ms": [r(x) for x in block_ci["p50_diff"]],
        "block_paired_median_ci95_ms": [r(x) for x in block_ci["paired_median"]],
    }
    out["verdict"] = verdict(*out["p50_diff_ci95_ms"])
    out["block_verdict"] = verdict(*out["block_p50_diff_ci95_ms"])
    return out


# -- the two servers ------------------------------------------------------------------------------


@dataclass
class Side:
    """One server and the browsers that log in to it."""

    name: str  # "A" or "B"
    rules: int  # enabled rules: the rule claims every ID token must carry
    workdir: Path
    server: rp.Server
    tenant: rp.Tenant | None = None
    client: dict = field(default_factory=dict)
    email: str = "bench0@example.com"
    sso_http: httpx.Client | None = None  # holds the SSO session cookie
    pw_http: httpx.Client | None = None  # cleared before every password login
    app_pid: int | None = None
    rule_worker_pids: set[int] = field(default_factory=set)

    def remember_rule_workers(self) -> None:
        if self.server.process is not None:
            app, workers = self.server.worker_pids()
            self.app_pid = self.app_pid or app
            self.rule_worker_pids.update(workers)


def new_side(name: str, rules: int, hash_seed: str) -> Side:
    workdir = Path(tempfile.mkdtemp(prefix=f"bastion-bench-overhead-{name}-"))
    server = rp.Server(workdir)
    server.env["PYTHONHASHSEED"] = hash_seed  # the two processes lay their dicts out alike
    return Side(name=name, rules=rules, workdir=workdir, server=server)


def create_enabled_rules(tenant: rp.Tenant, count: int) -> None:
    for i in range(1, count + 1):
        r = tenant.api("POST", "/rules", json={"name": f"bench-claim-{i}", "script": rp.rule_script(i), "order": i, "enabled": True})
        if r.status_code != 201:
            raise SystemExit(f"could not create rule {i} through the Management API: HTTP {r.status_code} {r.text[:300]}")
        tenant.rule_ids.append(r.json()["id"])
        tenant.enabled.append(True)


def cpu_placement(pin: bool) -> dict | None:
    """With --pin: both servers on the last CPU, the driver on the others (None: the scheduler decides)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None
    return {"servers": cpus[-1:], "driver": cpus[:-1]}


@contextmanager
def affinity(cpus: list[int] | None):
    """This process on `cpus` meanwhile: a server started now inherits it (and so do its rule workers)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def set_up(side: Side, placement: dict | None) -> None:
    """Start the server; one client, one user, and the side's rules, through the Management API."""
    log(f"server {side.name}: starting bastion serve on {side.server.base} ({side.rules} rules; workdir {side.workdir})")
    with affinity(placement and placement["servers"]):
        side.server.start()
    side.tenant = rp.Tenant(side.server)
    side.client = side.tenant.create_client("bench-overhead")
    side.tenant.enable_connection([side.client["client_id"]])
    side.tenant.create_user(side.email)
    create_enabled_rules(side.tenant, side.rules)
    side.sso_http = httpx.Client(base_url=side.server.base, timeout=30)
    side.pw_http = httpx.Client(base_url=side.server.base, timeout=30)
    rp.password_login(side.sso_http, side.client, side.email)  # the SSO session the SSO-reuse logins reuse
    side.remember_rule_workers()


def tear_down(sides: list[Side]) -> None:
    """Stop both servers (their process groups), then any rule worker left, by pid; remove the folders."""
    for side in sides:
        try:
            side.remember_rule_workers()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass
        for http in (side.sso_http, side.pw_http, side.tenant.http if side.tenant else None):
            if http is not None:
                http.close()
        side.server.stop()
        rp.kill_leftover_rule_workers(sorted(side.rule_worker_pids))
        shutil.rmtree(side.workdir, ignore_errors=True)


# -- logins ----------------------------------------------------------------------------------------


class Counter:
    """Logins done so far (for the report and the failure message)."""

    logins = 0
    failures = 0


def login(side: Side, kind: str) -> dict:
    """One login; its step timings in ms. Aborts the run on a failure or a wrong claim count."""
    try:
        if kind == "sso":
            steps, tokens = rp.sso_login(side.sso_http, side.client)
        else:
            steps, tokens = rp.password_login(side.pw_http, side.client, side.email)
    except (rp.LoginFailed, httpx.HTTPError) as error:
        Counter.failures += 1
        raise BenchFailure(f"{kind} login on server {side.name} failed after {Counter.logins} good logins: {error}\n"
                           f"server output:\n{side.server.output()[-1500:]}") from error
    claims = rp.rule_claims(tokens)
    if claims != side.rules:
        Counter.failures += 1
        raise BenchFailure(f"{kind} login on server {side.name}: the ID token carries {claims} rule claims, "
                           f"expected {side.rules} (after {Counter.logins} good logins)")
    Counter.logins += 1
    return steps


def warm_up(sides: list[Side], kind: str, count: int) -> None:
    for _ in range(count):
        for side in sides:
            login(side, kind)


# -- CPU and noise --------------------------------------------------------------------------------


def cpu_snapshot(sides: list[Side]) -> dict:
    return {"t": time.perf_counter(), "machine": rp.machine_busy_seconds(), "driver": rp.self_cpu_seconds(),
            "servers": {s.name: rp.server_cpu_parts(s.server.process.pid, s.app_pid) for s in sides}}


def cpu_window(before: dict, after: dict, logins_per_server: int) -> dict:
    """Per server: CPU ms per login (app worker, rule workers, total) and run-queue wait ms per
    login; for the machine: cores used by the servers, the driver and everything else."""
    wall = after["t"] - before["t"]
    out: dict = {"wall_s": round(wall, 2), "servers": {}}
    servers_s = 0.0
    for name in before["servers"]:
        d = rp.cpu_delta(before["servers"][name], after["servers"][name])
        total = d["app"] + d["main"] + d["rule_workers"]
        servers_s += total
        per = lambda s: round(1000 * s / logins_per_server, 3) if logins_per_server else None  # noqa: E731
        out["servers"][name] = {"app_ms": per(d["app"]), "rule_workers_ms": per(d["rule_workers"]), "main_ms": per(d["main"]),
                                "total_ms": per(total), "runqueue_wait_ms": per(d["runqueue_wait"])}
    driver = after["driver"] - before["driver"]
    machine = after["machine"] - before["machine"]
    out.update({"servers_cores": round(servers_s / wall, 3), "driver_cores": round(driver / wall, 3),
                "other_cores": round((machine - servers_s - driver) / wall, 3)})
    return out


# -- the paired measurement -------------------------------------------------------------------------


GAP_S = 0.0  # --gap-ms: an idle pause before each login, so both logins of a pair start from a quiet machine


def timed_pair(by_name: dict[str, Side], kind: str, i: int, rng: random.Random, t0: float) -> dict:
    """One login on A and one on B, back to back (or each after the same idle gap), in a random order."""
    order = ["A", "B"] if rng.random() < 0.5 else ["B", "A"]
    pair = {"pair": i, "first": order[0], "t_s": round(time.perf_counter() - t0, 3)}
    for name in order:
        if GAP_S:
            time.sleep(GAP_S)
        pair[name] = login(by_name[name], kind)
    return pair


def chunk_noise(start: dict, end: dict, pairs_to: int, pairs_in_chunk: int) -> dict:
    w = cpu_window(start, end, pairs_in_chunk)
    return {"pairs_to": pairs_to, "other_cores": w["other_cores"], "servers_cores": w["servers_cores"],
            "runqueue_wait_ms": {k: v["runqueue_wait_ms"] for k, v in w["servers"].items()}}


def log_progress(kind: str, pairs: list[dict], count: int, other_cores: float) -> None:
    recent = pairs[-CHUNK * 5:]
    median = lambda items, f: rp.pct([f(p) for p in items], 50)  # noqa: E731
    log(f"  {kind}: {len(pairs)}/{count} pairs; median B-A so far {median(pairs, lambda p: p['B']['total'] - p['A']['total']):+.2f} ms; "
        f"other processes {other_cores:.2f} cores (last {len(recent)} pairs: A p50 {median(recent, lambda p: p['A']['total']):.2f}, "
        f"B p50 {median(recent, lambda p: p['B']['total']):.2f})")


def measure_pairs(sides: list[Side], kind: str, count: int, rng: random.Random, t0: float) -> tuple[list[dict], dict, list[dict]]:
    """`count` pairs of logins. Returns the pairs, the CPU over the whole phase and the machine's
    noise per chunk of pairs. The noise readings and garbage collections between chunks are in the
    phase's wall time but in no login."""
    by_name = {s.name: s for s in sides}
    pairs: list[dict] = []
    chunks: list[dict] = []
    gc.collect()
    gc.disable()
    try:
        phase_start = chunk_start = cpu_snapshot(sides)
        for i in range(count):
            pairs.append(timed_pair(by_name, kind, i, rng, t0))
            if len(pairs) % CHUNK == 0 or len(pairs) == count:
                done_before = chunks[-1]["pairs_to"] if chunks else 0
                chunks.append(chunk_noise(chunk_start, cpu_snapshot(sides), len(pairs), len(pairs) - done_before))
                if len(pairs) % (CHUNK * 5) == 0:
                    log_progress(kind, pairs, count, chunks[-1]["other_cores"])
                gc.collect()
                chunk_start = cpu_snapshot(sides)
        phase = cpu_window(phase_start, cpu_snapshot(sides), count)
    finally:
        gc.enable()
    return pairs, phase, chunks


def noise_summary(chunks: list[dict]) -> dict:
    other = [c["other_cores"] for c in chunks]
    return {"chunks": len(chunks), "other_cores_min": round(min(other), 3), "other_cores_median": round(rp.pct(other, 50), 3),
            "other_cores_max": round(max(other), 3), "noisy_chunks": sum(1 for o in other if o > 0.15)}


def run_phase(sides: list[Side], kind: str, count: int, p: dict, rng: random.Random, t0: float, label: str) -> dict:
    log(f"{label}: {count} pairs of {kind} logins, alternating A/B in random order")
    pairs, cpu, chunks = measure_pairs(sides, kind, count, rng, t0)
    s = summary = summarize_pairs(pairs, p["resamples"], p["seed"])
    log(f"  {label}: p50 A {s['A']['p50_ms']:.2f} ms, B {s['B']['p50_ms']:.2f} ms, diff {s['p50_diff_ms']:+.2f} "
        f"[{s['p50_diff_ci95_ms'][0]:+.2f}, {s['p50_diff_ci95_ms'][1]:+.2f}], paired median {s['paired_median_ms']:+.2f}; "
        f"other processes {cpu['other_cores']:.2f} cores")
    return {"kind": kind, "summary": summary, "cpu": cpu, "noise": noise_summary(chunks), "chunks": chunks, "samples": pairs}


def disable_rules(side: Side) -> None:
    """For the A/A check: B's rules switched off through the Management API (the server's tenant
    cache is invalidated by the change); a login confirms it."""
    side.tenant.set_rule_count(0)
    side.rules = 0
    for _ in range(50):
        _, tokens = rp.sso_login(side.sso_http, side.client)
        if rp.rule_claims(tokens) == 0:
            return
        time.sleep(0.2)  # a stale tenant cache entry: wait for it
    raise SystemExit(f"server {side.name} kept running its rules after they were disabled")


# -- the run --------------------------------------------------------------------------------------------


def run(p: dict) -> dict:
    started = time.perf_counter()
    result: dict = {"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": p["mode"],
                    "parameters": {k: v for k, v in p.items() if k != "mode"}, "machine": rp.machine_facts(),
                    "rule_script_example": rp.rule_script(1), "target_ms": TARGET_MS}
    rng = random.Random(p["seed"])
    hash_seed = str(rng.randrange(2**32))
    sides = [new_side("A", 0, hash_seed), new_side("B", RULES_B, hash_seed)]
    placement = result["cpu_placement"] = cpu_placement(p["pin"])
    try:
        for side in sides:
            set_up(side, placement)
        if placement:
            os.sched_setaffinity(0, placement["driver"])
            log(f"pinned: both servers on CPU {placement['servers']}, the driver on CPU {placement['driver']}")
        result["setup_s"] = round(time.perf_counter() - started, 1)
        log(f"warming up: {p['warmup']} SSO-reuse and {max(5, p['warmup'] // 5)} password logins per server (discarded)")
        warm_up(sides, "sso", p["warmup"])
        warm_up(sides, "password", max(5, p["warmup"] // 5))
        for side in sides:
            side.remember_rule_workers()
        result["quiet_check"] = rp.wait_quiet(p["quiet_wait"])
        result["sso"] = run_phase(sides, "sso", p["pairs"], p, rng, started, "SSO-reuse")
        result["password"] = run_phase(sides, "password", p["password_pairs"], p, rng, started, "password")
        if p["aa_pairs"]:
            disable_rules(sides[1])
            warm_up(sides, "sso", 10)
            result["aa"] = run_phase(sides, "sso", p["aa_pairs"], p, rng, started, "A/A check (B's rules disabled)")
        for side in sides:
            side.remember_rule_workers()
        result["rule_worker_pids"] = {s.name: sorted(s.rule_worker_pids) for s in sides}
    finally:
        tear_down(sides)
    result["logins"] = Counter.logins
    result["failures"] = Counter.failures
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result


# -- the report --------------------------------------------------------------------------------------------


def _ci(values: list[float]) -> str:
    return f"[{values[0]:+.2f}, {values[1]:+.2f}]"


def _latency_table(phase: dict) -> list[str]:
    s = phase["summary"]
    steps = list(s["A"]["steps_p50_ms"])
    lines = ["| server | rules | logins | p50 ms | p90 ms | p99 ms | mean ms | p50 per step ms |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, rules in (("A", 0), ("B", RULES_B)):
        r = s[name]
        lines.append(f"| {name} | {rules} | {s['pairs']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | "
                     + ", ".join(f"{k} {r['steps_p50_ms'][k]:.2f}" for k in steps) + " |")
    return lines


def _difference_table(s: dict) -> list[str]:
    return [
        f"| estimate of what B adds | ms | 95% CI, pairs resampled | 95% CI, blocks of {s['block_pairs']} pairs resampled |",
        "|---|---:|---:|---:|",
        f"| p50(B) − p50(A) | {s['p50_diff_ms']:+.2f} | {_ci(s['p50_diff_ci95_ms'])} | {_ci(s['block_p50_diff_ci95_ms'])} |",
        f"| median of paired differences (B − A per pair) | {s['paired_median_ms']:+.2f} | {_ci(s['paired_median_ci95_ms'])} | "
        f"{_ci(s['block_paired_median_ci95_ms'])} |",
        f"| Hodges–Lehmann (paired) | {s['hodges_lehmann_ms']:+.2f} | — | — |",
        f"| p99(B) − p99(A) | {s['p99_diff_ms']:+.2f} | {_ci(s['p99_diff_ci95_ms'])} | — |",
    ]


def _cpu_table(phase: dict) -> list[str]:
    c = phase["cpu"]["servers"]
    lines = ["| server | app worker CPU ms | rule workers CPU ms | granian main ms | total CPU ms | run-queue wait ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in ("A", "B"):
        r = c[name]
        lines.append(f"| {name} | {r['app_ms']:.2f} | {r['rule_workers_ms']:.3f} | {r['main_ms']:.3f} | {r['total_ms']:.2f} | {r['runqueue_wait_ms']:.2f} |")
    lines.append(f"| B − A | {c['B']['app_ms'] - c['A']['app_ms']:+.2f} | {c['B']['rule_workers_ms'] - c['A']['rule_workers_ms']:+.3f} | "
                 f"{c['B']['main_ms'] - c['A']['main_ms']:+.3f} | {c['B']['total_ms'] - c['A']['total_ms']:+.2f} | "
                 f"{c['B']['runqueue_wait_ms'] - c['A']['runqueue_wait_ms']:+.2f} |")
    return lines


def _noise_line(phase: dict) -> str:
    n, c = phase["noise"], phase["cpu"]
    return (f"over the phase ({c['wall_s']:.0f} s): servers {c['servers_cores']:.2f} cores, driver {c['driver_cores']:.2f}, "
            f"other processes {c['other_cores']:.2f} cores; per chunk of {CHUNK} pairs: other processes min {n['other_cores_min']:.2f}, "
            f"median {n['other_cores_median']:.2f}, max {n['other_cores_max']:.2f} cores; "
            f"{n['noisy_chunks']}/{n['chunks']} chunks above 0.15 cores")


def _independence(rho: float, n: int) -> str:
    if abs(rho) < 2 / n ** 0.5:
        return "indistinguishable from 0: the pairs behave as independent, as the bootstrap over pairs assumes"
    return ("NOT 0: neighbouring pairs share noise, so the interval from resampling single pairs is too narrow; "
            "the block bootstrap's is the honest one")


def _phase_section(title: str, phase: dict) -> list[str]:
    s = phase["summary"]
    order = s["paired_median_by_order_ms"]
    return [f"## {title}", "", *_latency_table(phase), "", *_difference_table(s), "",
            f"Paired median by order inside the pair: A first {order['A_first']['median']:+.2f} ms ({order['A_first']['pairs']} pairs), "
            f"B first {order['B_first']['median']:+.2f} ms ({order['B_first']['pairs']} pairs). Lag-1 rank autocorrelation of the "
            f"paired differences: {s['lag1_autocorrelation']:+.3f} ({_independence(s['lag1_autocorrelation'], s['pairs'])}).", "",
            "Server CPU per login over the phase (schedstat; app worker + its rule workers + granian main; run-queue wait = "
            "time the server was ready to run but waited for a CPU):", "", *_cpu_table(phase), "",
            f"Machine: {_noise_line(phase)}.", ""]


def _verdict_lines(result: dict) -> list[str]:
    lines = []
    for kind, label in (("sso", "SSO-reuse login"), ("password", "password login")):
        s = result[kind]["summary"]
        v = s["verdict"]
        word = {"met": "**met**", "not met": "**NOT met**", "not decided": "**not decided** (the interval straddles 2 ms)"}[v]
        lines.append(f"- {label} ({s['pairs']} pairs): 10 trivial rules add {s['p50_diff_ms']:+.2f} ms at p50, 95% CI "
                     f"{_ci(s['p50_diff_ci95_ms'])} (paired median {s['paired_median_ms']:+.2f} {_ci(s['paired_median_ci95_ms'])}): "
                     f"target {word}. With the block bootstrap: {_ci(s['block_p50_diff_ci95_ms'])}, {s['block_verdict']}.")
    return lines


def report(result: dict) -> str:
    m, p, sso = result["machine"], result["parameters"], result["sso"]["summary"]
    head = {"met": "MET", "not met": "NOT MET", "not decided": "NOT DECIDED"}[sso["verdict"]]
    q = result["quiet_check"]
    lines = [
        f"# Rules overhead, side by side — {result['started_utc']} ({result['mode']} run)", "",
        f"Produced by `bench/rules_overhead.py{' --quick' if result['mode'] == 'quick' else ''}` "
        f"({p['pairs']} SSO-reuse pairs, {p['password_pairs']} password pairs, {p['aa_pairs']} A/A pairs, seed {p['seed']}); "
        "raw per-login samples in the `.json` file of the same name.", "",
        f"**Target \"10 trivial rules add < 2 ms at p50\" (SSO-reuse logins): {head}.** "
        f"p50(B) − p50(A) = {sso['p50_diff_ms']:+.2f} ms, 95% CI {_ci(sso['p50_diff_ci95_ms'])} (pairs resampled; "
        f"blocks of {sso['block_pairs']} pairs resampled: {_ci(sso['block_p50_diff_ci95_ms'])}, {sso['block_verdict']}).", "",
        *_verdict_lines(result), "",
        "## Machine", "",
        f"- {m['nproc']} cores ({m['cpu_model']}), {m['platform']}; load average at start {' '.join(m['loadavg_start'])}",
        f"- Python {m['python']}, granian {m['granian']}, SQLAlchemy {m['sqlalchemy']}, httpx {m['httpx']}, argon2-cffi {m['argon2-cffi']}",
        f"- code: git {m['git_commit']}{' + uncommitted changes under src/' if m['src_uncommitted_changes'] else ''}",
        f"- quiet check before measuring: other processes used {q['other_cores_before']} cores (waited {q['waited_s']} s)"
        f"{'' if q['quiet'] else ' — NOT quiet'}",
        f"- SSO-reuse phase: {_noise_line(result['sso'])}",
        f"- password phase: {_noise_line(result['password'])}",
        f"- {result['logins']} logins in all, {result['failures']} failed; whole run {result['elapsed_s']} s", "",
        "## Method", "",
        "Two `bastion serve` processes run at the same time (granian, 1 worker, default rule workers; each with its own "
        "temporary folder, SQLite database and loopback port; same settings and PYTHONHASHSEED"
        + (f"; both pinned to CPU {result['cpu_placement']['servers']}, the driver to CPU {result['cpu_placement']['driver']}"
           if result.get("cpu_placement") else "; no CPU pinning") + "). Each has one client and one "
        f"user, created through the Management API. Server **A** has no rules; server **B** has {RULES_B} enabled rules, "
        "created through the Management API with `enabled: true`, each trivial:", "",
        "```python", result["rule_script_example"].rstrip(), "```", "",
        f"- Warm-up: {p['warmup']} SSO-reuse logins and a few password logins per server, discarded.",
        "- Measurement in **pairs**: one login on A and one on B "
        + (f"each after an idle pause of {p['gap_ms']:g} ms" if p.get("gap_ms") else "back to back")
        + ", the order inside each pair drawn at random, "
        "one login at a time from this script's process (httpx, keep-alive). Whatever the shared machine does hits A and B "
        "alike. The driver's garbage collector is paused while timing and run between chunks of "
        f"{CHUNK} pairs, where the noise is also read.",
        "- SSO-reuse login: `/authorize` with the session cookie → code → `/oauth/token` with PKCE (no password hash; the rules "
        "run). Password login: fresh cookie jar, `/authorize` → `/u/login` → POST credentials → code → token (argon2id each time).",
        f"- Every ID token is checked to carry exactly 0 (A) or {RULES_B} (B) rule claims; a failure aborts the run.",
        f"- 95% intervals: percentile bootstrap, {p['resamples']} resamples of whole pairs (the verdict's), and the same "
        f"from a moving-block bootstrap (runs of {BLOCK} consecutive pairs, ~3 s, resampled), which stays honest when "
        "neighbouring pairs share noise (the lag-1 autocorrelation below tells). Hodges–Lehmann = median of the "
        "Walsh averages of the paired differences.",
        "- CPU: `/proc/<pid>/task/*/schedstat` of each server's app worker, its rule workers and granian's main process, "
        "before and after each phase; 'other processes' = machine busy time (/proc/stat) − both servers − the driver.",
        "- A/A check: at the end B's rules are disabled (Management API) and more SSO-reuse pairs are measured; what is left "
        "is the offset between the two server instances, which the A/B difference also contains.",
        f"- Verdict: met if the upper bound of the 95% CI of p50(B) − p50(A) is below {TARGET_MS:g} ms, not met if its lower "
        "bound is above, otherwise not decided.", "",
        *_phase_section("SSO-reuse logins (the main measurement)", result["sso"]),
        *_phase_section("Password logins (argon2id each time)", result["password"]),
    ]
    if "aa" in result:
        aa = result["aa"]["summary"]
        lines += [f"## A/A check: B with its rules disabled ({aa['pairs']} SSO-reuse pairs)", "",
                  f"p50 A {aa['A']['p50_ms']:.2f} ms, B {aa['B']['p50_ms']:.2f} ms; p50(B) − p50(A) = {aa['p50_diff_ms']:+.2f} ms "
                  f"{_ci(aa['p50_diff_ci95_ms'])}; paired median {aa['paired_median_ms']:+.2f} {_ci(aa['paired_median_ci95_ms'])}; "
                  f"server CPU per login A {result['aa']['cpu']['servers']['A']['total_ms']:.2f} ms, "
                  f"B {result['aa']['cpu']['servers']['B']['total_ms']:.2f} ms. Machine: {_noise_line(result['aa'])}.", "",
                  "An interval that contains 0 means the two instances are interchangeable and the A/B difference is the rules'; "
                  "otherwise read the A/B difference together with this offset.", ""]
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 SSO pairs, 20 password pairs (< 1 min)")
    parser.add_argument("--pairs", type=int, help=f"SSO-reuse login pairs (default {FULL['pairs']}, quick {QUICK['pairs']})")
    parser.add_argument("--password-pairs", type=int, help=f"password login pairs (default {FULL['password_pairs']}, quick {QUICK['password_pairs']})")
    parser.add_argument("--warmup", type=int, help=f"SSO-reuse warm-up logins per server (default {FULL['warmup']})")
    parser.add_argument("--aa-pairs", type=int, help=f"A/A check pairs, 0 to skip (default {FULL['aa_pairs']}, quick {QUICK['aa_pairs']})")
    parser.add_argument("--pin", action="store_true", help="pin both servers (and their rule workers) to one CPU and the driver to the others")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="idle pause before each login (default 0: back to back)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (pair order, bootstrap); default: drawn and reported")
    parser.add_argument("--out", type=Path, default=rp.RESULTS, help="where to write the report (default bench/results)")
    return parser.parse_args()


def parameters(args: argparse.Namespace) -> dict:
    global GAP_S
    GAP_S = max(args.gap_ms, 0.0) / 1000
    p = dict(QUICK if args.quick else FULL, mode="quick" if args.quick else "full", resamples=args.resamples, pin=args.pin, gap_ms=args.gap_ms,
             seed=args.seed if args.seed is not None else random.randrange(10**6))
    for key in ("pairs", "password_pairs", "warmup", "aa_pairs"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    if p["pairs"] < 10 or p["password_pairs"] < 2:
        raise SystemExit("--pairs must be >= 10 and --password-pairs >= 2")
    return p


def _terminate(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through run()'s finally: both servers are stopped


def main() -> int:
    args = parse_args()
    p = parameters(args)
    for signum in (signal.SIGINT, signal.SIGTERM):  # (SIGINT too: a job started in the background ignores it)
        signal.signal(signum, _terminate)
    try:
        result = run(p)
    except KeyboardInterrupt:
        log("interrupted; both servers and their rule workers were stopped")
        return 130
    args.out.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    stem = f"{date}-rules-overhead{'-quick' if args.quick else ''}"
    md, js = args.out / f"{stem}.md", args.out / f"{stem}.json"
    rp.keep_earlier_report(md, js)
    text = report(result)
    md.write_text(text)
    js.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(text)
    log(f"wrote {md} and {js} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
