"""The report of bench/suite.py: the targets (met / missed, with the measured ratio) and the markdown."""

from __future__ import annotations

NOISY = 0.15  # cores used by other processes above which a window is called noisy


def _get(d: dict | None, *keys, default=None):
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "missed")


def _fmt(x, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _peer(result: dict, endpoint: str) -> dict | None:
    return next((c for c in _get(result, "peer", "comparisons", default=[]) if c["endpoint"] == endpoint), None)


def targets(result: dict) -> list[dict]:
    out = []
    rsa = _get(result, "ceilings", "rsa2048_sign", "per_core")
    argon = _get(result, "ceilings", "argon2id_verify", "per_core")
    matrix = _get(result, "matrix", "summary", default={})

    # 1. client credentials RS256 >= 80% of the bare RSA-2048 signing rate
    cmp_rs = _peer(result, "token-rs256")
    ours = cmp_rs["bastion"]["per_server_core"] if cmp_rs else _get(matrix, "sqlite-w1/token-rs256", "per_server_core")
    src = "side-by-side run" if cmp_rs else "wrk matrix"
    ratio = round(ours / rsa, 3) if ours and rsa else None
    out.append({"id": "cc-rs256", "target": "client credentials RS256 ≥ 80% of bare RSA-2048 signs per core",
                "measured": f"{_fmt(ours)} req/core vs {_fmt(rsa)} signs/core (SQLite, 1 worker, {src})",
                "ratio": ratio, "threshold": 0.8, "status": _status(None if ratio is None else ratio >= 0.8),
                "note": f"vs the peer: ×{cmp_rs['ratio_per_core']} per core (the target's ≈1.4×)" if cmp_rs else ""})
    # 2. ES256 >= 2x the peer
    c = _peer(result, "token-es256")
    out.append({"id": "cc-es256", "target": "client credentials ES256 ≥ 2× the peer per core",
                "measured": f"{_fmt(c['bastion']['per_server_core'])} vs peer {_fmt(c['peer']['per_server_core'])} req/core" if c else "—",
                "ratio": c["ratio_per_core"] if c else None, "threshold": 2.0,
                "status": _status(None if not c or c["ratio_per_core"] is None else c["ratio_per_core"] >= 2.0), "note": ""})
    # 3. discovery and JWKS >= 2x the peer
    for endpoint in ("discovery", "jwks"):
        c = _peer(result, endpoint)
        out.append({"id": endpoint, "target": f"{'discovery' if endpoint == 'discovery' else 'JWKS'} ≥ 2× the peer per core",
                    "measured": f"{_fmt(c['bastion']['per_server_core'])} vs peer {_fmt(c['peer']['per_server_core'])} req/core" if c else "—",
                    "ratio": c["ratio_per_core"] if c else None, "threshold": 2.0,
                    "status": _status(None if not c or c["ratio_per_core"] is None else c["ratio_per_core"] >= 2.0), "note": ""})
    # 4. authorization-code login with 5 rules >= 90% of argon2id verifications per core
    logins = _get(result, "logins", "summary", default={})
    for config in ("sqlite-w1", "pg-w1"):
        row = logins.get(f"{config}/5")
        if row is None and config != "sqlite-w1":
            continue
        per = row["per_server_core"] if row else None
        ratio = round(per / argon, 3) if per and argon else None
        out.append({"id": f"login-5-rules-{config}", "target": f"authorization-code login, 5 rules ≥ 90% of argon2id verifies per core ({config})",
                    "measured": f"{_fmt(per, 2)} logins/core vs {_fmt(argon)} verifies/core", "ratio": ratio, "threshold": 0.9,
                    "status": _status(None if ratio is None else ratio >= 0.9), "note": ""})
    # 5. 10 trivial rules add < 2 ms at p50
    lat = _get(result, "latency", "sso", "10")
    if lat:
        lo, hi = lat["overhead_p50_ci95_ms"]
        decided = "the 95% interval is below 2 ms" if hi < 2 else "the 95% interval is above 2 ms" if lo > 2 else \
            "not decided by this run: the 95% interval straddles 2 ms"
        out.append({"id": "rules-10-p50", "target": "10 trivial rules add < 2 ms at p50 (SSO-reuse login, SQLite, 1 worker)",
                    "measured": f"{lat['overhead_p50_ms']:+.2f} ms [95% CI {lo:+.2f}, {hi:+.2f}]; p99 {lat['overhead_p99_ms']:+.2f} ms",
                    "ratio": round(lat["overhead_p50_ms"] / 2.0, 3), "threshold": 1.0,
                    "status": _status(lat["overhead_p50_ms"] < 2.0) + ("" if hi < 2 or lo > 2 else " (point estimate; not decided)"),
                    "note": decided})
    else:
        out.append({"id": "rules-10-p50", "target": "10 trivial rules add < 2 ms at p50", "measured": "—", "ratio": None,
                    "threshold": 1.0, "status": "not measured", "note": ""})
    # 6. refresh-token grant with 5 rules >= 400/s per core
    refresh = _get(result, "refresh", "summary", default={})
    for config in ("sqlite-w1", "pg-w1"):
        row = refresh.get(f"{config}/5")
        if row is None and config != "sqlite-w1":
            continue
        per = row["per_server_core"] if row else None
        out.append({"id": f"refresh-5-rules-{config}", "target": f"refresh-token grant, 5 rules ≥ 400/s per core ({config})",
                    "measured": f"{_fmt(per, 1)} per core ({_fmt(row['ops_per_s'] if row else None, 1)}/s on {_fmt(row['server_total_cores'] if row else None, 2)} cores)",
                    "ratio": round(per / 400, 3) if per else None, "threshold": 1.0,
                    "status": _status(None if per is None else per >= 400), "note": ""})
    # 7. two workers >= 1.7x one on the token endpoint (absolute req/s)
    for db, name in (("sqlite", "SQLite"), ("pg", "PostgreSQL")):
        s = _get(result, "matrix", "scaling_token_rs256", db)
        if s is None:
            continue
        out.append({"id": f"workers-{db}", "target": f"2 workers ≥ 1.7× one, client credentials RS256 req/s ({name})",
                    "measured": f"{_fmt(s['w2_rps'])} vs {_fmt(s['w1_rps'])} req/s (per round {s['per_round']})",
                    "ratio": s["ratio"], "threshold": 1.7, "status": _status(s["ratio"] >= 1.7),
                    "note": f"2 workers used {s['w2_server_cores']} cores, wrk {s['w2_loadgen_cores']}, others {s['w2_other_cores']}"})
    return out


# -- markdown ----------------------------------------------------------------------------------------


def _noise(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" + (" ⚠" if x > NOISY else "")


def _phase_noise(result: dict) -> list[tuple[str, float | None, float | None, str]]:
    """(phase, max other cores during its windows, median, quiet-check note)."""
    rows = []

    def add(name, values, q):
        values = [v for v in values if v is not None]
        mx = max(values) if values else None
        med = sorted(values)[len(values) // 2] if values else None
        note = "" if not q else (f"before: {q['other_cores_before']} cores, waited {q['waited_s']} s"
                                 + ("" if q.get("quiet") else ", machine busy"))
        rows.append((name, mx, med, note))

    c = result.get("ceilings") or {}
    add("ceilings", [c.get("other_cores")], c.get("quiet_check"))
    peer_rows = _get(result, "peer", "rows", default=[])
    add("side by side (run-peer.sh)", [r["other_cpu_cores"] for r in peer_rows], None)
    if peer_rows:
        qw = _get(result, "peer", "runs", default=[{}])[0].get("quiet_wait_s")
        rows[-1] = (*rows[-1][:3], f"the harness waits up to QUIET_WAIT={qw} s before each load")
    m = result.get("matrix") or {}
    add("wrk on every deployment", [r["other_cores"] for r in m.get("rows", [])], (m.get("quiet_checks") or [None])[0])
    for key, name in (("logins", "authorization-code logins"), ("refresh", "refresh-token grant")):
        ph = result.get(key) or {}
        add(name, [r["other_cores"] for r in ph.get("segments", [])], ph.get("quiet_check"))
    lat = result.get("latency") or {}
    add("rule pipeline latency", [_get(lat, "cpu", "other_cores")], lat.get("quiet_check"))
    return rows


def _cpu_per_operation(result: dict) -> list[str]:
    """Server CPU per operation (1000 / per-core rate) beside what its known big parts cost alone."""
    c = result.get("ceilings") or {}
    ms = lambda per: None if not per else 1000 / per  # noqa: E731
    matrix = _get(result, "matrix", "summary", default={})
    rows = []
    for endpoint, part, part_name in (("token-rs256", "jwt_rs256_joserfc", "one RS256 JWT signed as Bastion signs it"),
                                      ("token-es256", "jwt_es256_joserfc", "one ES256 JWT signed as Bastion signs it"),
                                      ("discovery", None, ""), ("jwks", None, "")):
        per = _get(matrix, f"sqlite-w1/{endpoint}", "per_server_core")
        if per:
            alone = _get(c, part, "ms_cpu_each") if part else None
            rows.append((f"{endpoint} (wrk)", ms(per), f"{alone:.3f} ms: {part_name}" if alone else ""))
    argon = _get(c, "argon2id_verify", "ms_cpu_each")
    for key, name in (("logins", "authorization-code login"), ("refresh", "refresh-token grant")):
        for rules in (0, 5):
            per = _get(result, key, "summary", f"sqlite-w1/{rules}", "per_server_core")
            if per:
                rows.append((f"{name}, {rules} rules", ms(per), f"{argon:.1f} ms: one argon2id verify, alone" if key == "logins" and argon else ""))
    if not rows:
        return []
    out = ["", "Server CPU per operation on SQLite, 1 worker (1000 ÷ the per-core rate), beside what its largest known part costs "
               "alone in this process:", "", "| operation | server CPU ms each | of which, measured alone |", "|---|---:|---|"]
    out += [f"| {name} | {v:.3f} | {part} |" for name, v, part in rows]
    return out


def report(result: dict) -> str:
    m = result.get("machine", {})
    p = result["parameters"]
    quick = result["mode"] == "quick"
    L: list[str] = [
        f"# Bastion benchmark suite — {result['started_utc']} ({result['mode']} run)", "",
        f"Produced by `{result['command']}` in {result.get('elapsed_s')} s; the raw numbers are in the `.json` file of the same name.",
    ]
    if quick:
        L += ["", "**Quick run: windows of about a second, a smoke test. Do not quote these figures.**"]
    noise = _phase_noise(result)
    noisy = [n for n, mx, _, _ in noise if mx is not None and mx > NOISY]
    L += ["", "## Targets", "",
          "Per server core = requests (or logins) per second divided by the CPU cores the server used (its process "
          "tree, plus its PostgreSQL backends on PostgreSQL), all measured in this one run.", "",
          "| target | measured | ratio | needed | status |", "|---|---|---:|---:|---|"]
    for t in result.get("targets", []):
        ratio = "—" if t["ratio"] is None else f"{t['ratio']:.3f}"
        note = f" — {t['note']}" if t.get("note") else ""
        L.append(f"| {t['target']} | {t['measured']}{note} | {ratio} | {t['threshold']} | **{t['status']}** |")
    L += _cpu_per_operation(result)
    if noisy:
        L += ["", f"**The machine was busy** (other processes above {NOISY} cores) during: {', '.join(noisy)}. "
                  "Ratios measured within one window hold up better than absolute figures; see the noise column of each table."]

    L += ["", "## Machine", "",
          f"- {m.get('nproc')} cores ({m.get('cpu_model')}), {m.get('mem_gib')} GiB, {m.get('platform')}",
          f"- Python {m.get('python')}, granian {m.get('granian')}, SQLAlchemy {m.get('sqlalchemy')}, cryptography {m.get('cryptography')}, "
          f"joserfc {m.get('joserfc')}, argon2-cffi {m.get('argon2-cffi')}, psycopg {m.get('psycopg')}, httpx {m.get('httpx')}",
          f"- PostgreSQL {m.get('postgres') or '— (not used: ' + str(result.get('postgres_skipped')) + ')'}, wrk {m.get('wrk')}, node {m.get('node')}",
          f"- code: {m.get('git_head')} (HEAD; the working tree may differ)",
          f"- load average: {' '.join(m.get('loadavg_start', []))} at start, {' '.join(result.get('loadavg_end', []))} at the end",
          f"- set-up: servers answered after {result.get('server_start_s')} s (started together); seeding took {result.get('seed_s')} s",
          "", "CPU used by other processes (cores) during each phase's measured windows (⚠ above 0.15):", "",
          "| phase | max | median | quiet check before |", "|---|---:|---:|---|"]
    for name, mx, med, note in noise:
        L.append(f"| {name} | {_noise(mx)} | {_noise(med)} | {note} |")
    if result.get("budget_notes"):
        L += [""] + [f"- budget: {n}" for n in result["budget_notes"]]

    L += ["", "## Method", "",
          "Four `bastion serve` processes (granian) run at once on loopback: SQLite with 1 and 2 worker processes "
          "(`--workers`), PostgreSQL (127.0.0.1:5432, a database of their own, dropped at the end) with 1 and 2; default "
          "settings otherwise (2 rule workers per app worker, `BASTION_CACHE_TTL` 5 s). Idle servers use no CPU. Each is seeded "
          "through the Management API with the bootstrap client: an RS256 and an ES256 API (`signing_alg`, "
          "`allow_offline_access`), a machine-to-machine client with client grants on both, browser clients, "
          f"{p['concurrency']} users, and trivial rules, each setting one ID-token claim "
          "(`context.id_token[\"https://bench.bastion.test/rN\"] = N`): on 1-worker servers 10 rules stored disabled and "
          "switched through the Management API (a probe login checks each switch); on 2-worker servers 5 rules enabled "
          "from the start (a switch would reach the other worker only when its cache expires).",
          "",
          "- **CPU accounting**: utime+stime from /proc for the server's process tree (granian main, workers, rule "
          "workers, reaped children), its PostgreSQL backends (`pg_stat_activity` for its database), the load generator "
          "(wrk, or the driver process) and this script; 'other' = the machine's busy time minus all of those.",
          f"- **Ceilings**: this process, one thread, CPU time from `thread_time()`, {p['ceiling_repeats']} interleaved repeats "
          "(median): RSA-2048 PKCS#1 v1.5 and P-256 ECDSA signatures of a 360-byte message (`cryptography`), argon2id "
          "verifications with Bastion's own `PasswordHasher` (bastion/security/passwords.py), and, for reference, a "
          "client-credentials JWT signed the way Bastion signs it (joserfc via bastion.keys.jose).",
          f"- **Side by side**: `../shared/bench/run-peer.sh --also` against the SQLite 1-worker server: panva's oidc-provider "
          f"then Bastion, discovery, JWKS and client credentials RS256, then client credentials with PEER_ALG=ES256; "
          f"wrk, {p['conns']} connections, {p['threads']} thread, DURATION={_get(result, 'peer', 'runs', default=[{}])[0].get('duration_s', p['peer_duration'])} s "
          f"after WARMUP={p['peer_warmup']} s; the audience goes in TOKEN_BODY (the peer ignores that field and uses its "
          "default resource). Per core = req/s ÷ server cores, as the harness reports it.",
          f"- **wrk on every deployment**: the same Lua scripts ({result.get('lua_scripts')}), {p['conns']} keep-alive connections, "
          f"{p['threads']} wrk thread; client credentials RS256 {p['wrk_token_rounds']}× in ABBA order (the 1- vs 2-worker "
          f"ratio), then ES256, discovery, JWKS; {p['wrk_token_s']} s per token load, {p['wrk_get_s']} s per GET load, after "
          f"{p['wrk_warmup']} s warm-up.",
          f"- **Logins**: a separate Python process (bench/suite_driver.py), {p['concurrency']} concurrent clients (one "
          "connection and one user each) doing the full authorization-code login back to back: `/authorize` → `/u/login` → "
          "POST credentials (argon2id) → code → `/oauth/token` with PKCE; 1-worker servers alternate 0 and 5 rules as "
          f"{p['login_pattern_w1']}, {p['login_segment']} s segments; 2-worker servers run 5 rules. Every ID token's rule "
          "claims are counted (a login with the wrong number is reported).",
          f"- **Refresh**: the same driver; each client logs in once with `offline_access` (audience: the RS256 API), then "
          "uses the refresh-token grant back to back, each response's new refresh token being its next request's (tokens "
          f"rotate; a reused one would revoke the family). 5 rules run on every refresh. {p['refresh_segments']} × "
          f"{p['refresh_segment']} s segments per server.",
          f"- **Rule pipeline latency**: bench/rules_pipeline.py's latency phase on the SQLite 1-worker server: "
          f"{_get(result, 'latency', 'parameters', 'rounds', default=p['latency_rounds'])} rounds × (0, 1, 5, 10 rules) × "
          f"{p['latency_sso_per_block']} sequential SSO-reuse logins (`/authorize` with the session cookie → code → token), "
          "configurations interleaved; overhead = p(N) − p(0), 95% interval from a bootstrap over rounds.",
          "- **Targets**: the ratios are computed from figures of this run only."]

    c = result.get("ceilings")
    if c:
        a = c["argon2_parameters"]
        L += ["", "## Ceilings (one thread, in-process)", "",
              f"Other processes used {_noise(c['other_cores'])} cores meanwhile.", "",
              "| operation | per CPU second | CPU ms each | per wall second |", "|---|---:|---:|---:|"]
        for key, name in (("rsa2048_sign", "RSA-2048 signature (cryptography)"), ("p256_sign", "P-256 ECDSA signature (cryptography)"),
                          ("argon2id_verify", f"argon2id verify (Bastion's hasher: m={a['memory_cost_kib']} KiB, t={a['time_cost']}, p={a['parallelism']})"),
                          ("jwt_rs256_joserfc", "RS256 JWT, as Bastion signs it (joserfc)"), ("jwt_es256_joserfc", "ES256 JWT, as Bastion signs it (joserfc)")):
            r = c[key]
            L.append(f"| {name} | {_fmt(r['per_core'])} | {r['ms_cpu_each']:.3f} | {_fmt(r['per_wall_s'])} |")

    peer = result.get("peer") or {}
    if peer.get("comparisons"):
        L += ["", f"## Side by side with the peer (oidc-provider {m.get('oidc_provider') or '?'}, Node.js {m.get('node')}, 1 process) — Bastion on SQLite, 1 worker", "",
              "run-peer.sh measures the peer's three loads, then Bastion's (RS256), then the token endpoint of each with ES256.", "",
              "| endpoint | peer req/s | peer per core | Bastion req/s | Bastion p50 / p99 ms | Bastion server cores | Bastion per core | per-core ratio | other cores (peer / Bastion) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for cmp in peer["comparisons"]:
            pr, br = cmp["peer"], cmp["bastion"]
            L.append(f"| {cmp['endpoint']} | {_fmt(pr['rps'])} | {_fmt(pr['per_server_core'])} | {_fmt(br['rps'])} | "
                     f"{br['p50_ms']:.1f} / {br['p99_ms']:.1f} | {_fmt(br['server_cpu_cores'], 2)} | {_fmt(br['per_server_core'])} | "
                     f"**×{cmp['ratio_per_core']}** | {_noise(pr['other_cpu_cores'])} / {_noise(br['other_cpu_cores'])} |")
        bad = [r for r in peer["rows"] if r["non2xx"] or r["socket_errors"]]
        if bad:
            L.append("")
            L += [f"- ⚠ {r['label']} {r['endpoint']}: {r['non2xx']} non-2xx, {r['socket_errors']} socket errors" for r in bad]
        notes = [n for run in peer.get("runs", []) for n in run.get("stderr", []) if "access_token header" in n]
        if notes:
            L += ["", "Token headers the harness saw (its curl check before each load):", ""] + [f"- `{n.strip()}`" for n in notes]
    elif peer.get("skipped"):
        L += ["", f"## Side by side with the peer", "", f"Skipped: {peer['skipped']}."]

    mx = result.get("matrix")
    if mx:
        L += ["", "## Client credentials, discovery and JWKS on every deployment (wrk)", "",
              "| deployment | endpoint | req/s | p50 ms | p99 ms | server cores (of which PostgreSQL) | per server core | wrk cores | other cores | non-2xx |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mx["rows"]:
            L.append(f"| {r['config']} | {r['endpoint']}{' (round ' + str(r['round'] + 1) + ')' if r['endpoint'] == 'token-rs256' else ''} | "
                     f"{_fmt(r['rps'])} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_total_cores']:.2f} ({r['pg_cores']:.2f}) | "
                     f"{_fmt(r['per_server_core'])} | {r['loadgen_cores']:.2f} | {_noise(r['other_cores'])} | {r['non2xx']} |")
        sc = mx.get("scaling_token_rs256") or {}
        if sc:
            L += ["", "### 1 vs 2 worker processes (client credentials RS256, absolute req/s; rounds in ABBA order)", "",
                  "| database | 1 worker req/s (cores) | 2 workers req/s (cores) | ratio | per round | wrk cores with 2 workers | other cores |",
                  "|---|---:|---:|---:|---|---:|---:|"]
            for db, s in sc.items():
                L.append(f"| {db} | {_fmt(s['w1_rps'])} ({s['w1_server_cores']}) | {_fmt(s['w2_rps'])} ({s['w2_server_cores']}) | "
                         f"**×{s['ratio']}** | {s['per_round']} | {s['w2_loadgen_cores']} | {_noise(s['w2_other_cores'])} |")
            L += ["", "On 2 cores, two workers compete with wrk (and the rest of the machine) for the second core: "
                      "the wrk column says how much of it the load generator took."]

    for key, title, unit in (("logins", "Authorization-code logins (separate driver process, concurrent clients)", "logins"),
                             ("refresh", "Refresh-token grant, 5 rules (each client its own rotating chain)", "refreshes")):
        ph = result.get(key)
        if not ph:
            continue
        L += ["", f"## {title}", "",
              f"| deployment | rules | {unit}/s | p50 / p99 ms | server cores (of which PostgreSQL) | per server core | per Bastion core | driver cores | other cores | wrong claims |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k, r in ph["summary"].items():
            L.append(f"| {r['config']} | {r['rules']} | {_fmt(r['ops_per_s'], 2)} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
                     f"{r['server_total_cores']:.2f} ({r['pg_cores']:.2f}) | **{_fmt(r['per_server_core'], 2)}** | "
                     f"{_fmt(r['per_bastion_core'], 2)} | {r['loadgen_cores']:.2f} | {_noise(r['other_cores'])} | {r['wrong_claims']} |")
        errs = {k: v["error_count"] for k, v in ph["runs"].items() if v["error_count"]}
        stale = {k: v["stale_rule_probes"] for k, v in ph["runs"].items() if v["stale_rule_probes"]}
        L += ["", f"Segments of {ph['segment_s']} s; per-segment figures in the JSON. Failed operations: {errs or 'none'}."
                  + (f" Probe logins that still saw the old rule set after a switch (invalidated again): {stale}." if stale else "")]
        if key == "logins":
            pairs = []
            for config in ("sqlite-w1", "pg-w1"):
                a, b = ph["summary"].get(f"{config}/0"), ph["summary"].get(f"{config}/5")
                if a and b and a["per_server_core"] and b["per_server_core"]:
                    pairs.append(f"{config} ×{b['per_server_core'] / a['per_server_core']:.3f}")
            if pairs:
                L.append(f"5 rules vs none, logins per server core: {', '.join(pairs)}.")

    lat = result.get("latency")
    if lat:
        L += ["", "## Rule pipeline overhead (sequential SSO-reuse logins, SQLite, 1 worker)", "",
              f"Other processes used {_noise(_get(lat, 'cpu', 'other_cores'))} cores during this phase.", "",
              "| rules | n | p50 ms | p99 ms | overhead p50 ms [95% CI] | paired p50 ms | overhead p99 ms | server CPU per login ms |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in ("0", "1", "5", "10"):
            r = lat["sso"][n]
            cpu = _get(lat, "cpu_per_login", n, "total_ms")
            ci = "—" if n == "0" else f"{r['overhead_p50_ms']:+.2f} [{r['overhead_p50_ci95_ms'][0]:+.2f}, {r['overhead_p50_ci95_ms'][1]:+.2f}]"
            L.append(f"| {n} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ci} | "
                     f"{'—' if n == '0' else format(r['overhead_p50_paired_median_ms'], '+.2f')} | "
                     f"{'—' if n == '0' else format(r['overhead_p99_ms'], '+.2f')} | {_fmt(cpu, 2)} |")
        L += ["", "With about a hundred logins per configuration the interval is several ms wide on this shared VM; "
                  "`make bench-rules` (bench/rules_overhead.py) measures this one question with paired logins."]
    return "\n".join(L) + "\n"
