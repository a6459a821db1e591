"""The Management API's OpenAPI document, and a bounded schemathesis run against it.

A real `bastion serve` process; schemathesis (its command line, `st`) reads
`/api/v2/openapi.json`, generates requests for every operation (documented examples and
fuzzed values, a fixed seed so a failure can be replayed) and checks that none answers a
5xx. The rate limit is off for this server, so 429s do not hide what the API does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from conftest import MGMT_ID, MGMT_SECRET

ST = Path(sys.executable).parent / "st"


def test_openapi_document_lists_the_management_api(live_server, sqlite_url):
    server = live_server(sqlite_url)
    document = httpx.get(server.url("/api/v2/openapi.json"), timeout=10).json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/clients", "/users", "/roles", "/rules", "/rules-configs/{key}", "/logs", "/resource-servers", "/connections"):
        assert path in paths, path


def test_schemathesis_finds_no_server_error(live_server, sqlite_url, tmp_path):
    server = live_server(sqlite_url, env={"BASTION_MANAGEMENT_RATE_LIMIT": "0"})
    token = httpx.post(server.url("/oauth/token"), data={
        "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
        "audience": f"{server.issuer}/api/v2/",
    }, timeout=10).json()["access_token"]
    run = subprocess.run(
        [str(ST), "run", server.url("/api/v2/openapi.json"), "--url", server.url("/api/v2"),
         "--header", f"Authorization: Bearer {token}", "--checks", "not_a_server_error",
         "--phases", "examples,fuzzing", "--max-examples", "15", "--seed", "20261126", "--workers", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout  # it really ran the operations
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
