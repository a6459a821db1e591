#!/usr/bin/env python
"""The load generator of bench/suite.py for multi-step flows, in a process of its own.

Reads one JSON line on stdin:
    {"base": "http://127.0.0.1:PORT", "kind": "login" | "refresh", "client": {...}, "emails": [...],
     "audience": "...", "max_seconds": 120}
and starts one asyncio task per email (each its own httpx client, one keep-alive connection,
its own user):

- login:   the full authorization-code login, back to back: GET /authorize -> GET /u/login ->
           POST credentials (argon2id) -> code -> POST /oauth/token with PKCE (fresh cookie jar
           each time; bench/rules_pipeline.py's `apassword_login`).
- refresh: one such login with `offline_access` (and the audience), then the refresh-token grant
           back to back. Refresh tokens rotate and a reused one revokes its family, so every task
           keeps its own chain: each response's new refresh token is the next request's.

Prints {"ready": ...} once every task is prepared, then runs until it reads a line on stdin (or
stdin closes, or max_seconds pass), then prints {"done": [[t_start, t_end, rule_claims], ...],
"errors": [...]} (time.monotonic(), the same clock as the parent's) and exits.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules_pipeline as rp  # noqa: E402


async def offline_login(http: httpx.AsyncClient, client: dict, email: str, audience: str | None) -> dict:
    """rules_pipeline's password login, asking for `openid offline_access` (and an API)."""
    http.cookies.clear()
    verifier, challenge = rp.pkce()
    state = secrets.token_urlsafe(8)
    params = {**rp.authorize_params(client, challenge, state), "scope": "openid profile email offline_access"}
    if audience:
        params["audience"] = audience
    r = await http.get("/authorize", params=params)
    if r.status_code != 302 or not r.headers["location"].startswith("/u/login"):
        raise rp.LoginFailed(f"/authorize: HTTP {r.status_code} {r.headers.get('location')}")
    login_path = r.headers["location"]
    page = await http.get(login_path)
    fields = rp.hidden_fields(page.text)
    r = await http.post(login_path, data={**fields, "username": email, "password": rp.PASSWORD})
    code = rp._code_from(r, state)
    r = await http.post("/oauth/token", data=rp.token_form(client, code, verifier))
    if r.status_code != 200 or "refresh_token" not in r.json():
        raise rp.LoginFailed(f"/oauth/token: HTTP {r.status_code} {r.text[:200]}")
    return r.json()


async def refresh_once(http: httpx.AsyncClient, client: dict, refresh_token: str) -> dict:
    r = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                              "client_id": client["client_id"], "client_secret": client["client_secret"]})
    if r.status_code != 200:
        raise rp.LoginFailed(f"refresh: HTTP {r.status_code} {r.text[:200]}")
    body = r.json()
    if "refresh_token" not in body:
        raise rp.LoginFailed("refresh: no new refresh token in the response")
    return body


async def main() -> None:
    config = json.loads(sys.stdin.readline())
    kind, client, audience = config["kind"], config["client"], config.get("audience")
    deadline = time.monotonic() + float(config.get("max_seconds", 120))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    https = [httpx.AsyncClient(base_url=config["base"], timeout=30, limits=limits) for _ in config["emails"]]
    done: list[tuple[float, float, int]] = []
    errors: list[str] = []
    stop = asyncio.Event()
    chains: list[str | None] = [None] * len(https)

    async def prepare(i: int) -> None:
        if kind == "refresh":
            chains[i] = (await offline_login(https[i], client, config["emails"][i], audience))["refresh_token"]
        else:  # one login, not counted (connections open, caches warm)
            await rp.apassword_login(https[i], client, config["emails"][i])

    async def loop(i: int) -> None:
        http, email = https[i], config["emails"][i]
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                if kind == "refresh":
                    body = await refresh_once(http, client, chains[i])
                    chains[i] = body["refresh_token"]
                else:
                    body = await rp.apassword_login(http, client, email)
            except (rp.LoginFailed, httpx.HTTPError, KeyError, ValueError) as error:
                errors.append(f"{type(error).__name__}: {str(error)[:200]}")
                if len(errors) > 200:
                    stop.set()
                    return
                if kind == "refresh":  # a broken chain: start a new family
                    try:
                        chains[i] = (await offline_login(http, client, email, audience))["refresh_token"]
                    except (rp.LoginFailed, httpx.HTTPError, KeyError, ValueError):
                        await asyncio.sleep(0.1)
                continue
            done.append((t0, time.monotonic(), rp.rule_claims(body) if "id_token" in body else -1))

    t_prep = time.monotonic()
    await asyncio.gather(*(prepare(i) for i in range(len(https))))
    print(json.dumps({"ready": True, "prepare_s": round(time.monotonic() - t_prep, 3)}), flush=True)
    tasks = [asyncio.create_task(loop(i)) for i in range(len(https))]
    reader = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.wait([reader, *tasks], timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for http in https:
        await http.aclose()
    print(json.dumps({"done": done, "errors": errors[:20], "error_count": len(errors)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    import os

    os._exit(0)  # the stdin reader thread may still be blocked on readline
