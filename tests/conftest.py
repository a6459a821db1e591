"""Shared fixtures. Every test builds its own app on its own database.

- `database_url`: a fresh SQLite file; tests marked `postgres` run a second time on
  a fresh database of the PostgreSQL server at 127.0.0.1:5432 (BASTION_TEST_POSTGRES
  to change it).
- `bastion`: a `Bastion` harness: the ASGI app behind an httpx client, its services,
  and helpers to get a management token, create clients and users, and log in.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from bastion.app import create_app
from bastion.demo import seed_demo
from bastion.oidc.grants import s256
from bastion.services import Services, build_services
from bastion.settings import load_settings
from bastion.tenant.bootstrap import DEFAULT_CONNECTION, enable_connection_for_client, prepare

POSTGRES_ADMIN = os.environ.get("BASTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ISSUER = "https://bastion.test"
MGMT_ID = "test-management-client"
MGMT_SECRET = "test-management-secret-0123456789"
PASSWORD = "Correct-Horse-9"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _postgres_database() -> tuple[str, str]:
    name = f"bastion_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin = urlsplit(POSTGRES_ADMIN)
    return name, f"postgresql+psycopg://{admin.netloc}/{name}"


def _drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path: Path):
    """Parametrised over both databases; use `sqlite_url` for SQLite-only tests."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
        return
    name, url = _postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"


@pytest.fixture
def postgres_url():
    name, url = _postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


def form_field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in page"
    return match.group(1).replace("&amp;", "&")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Bastion:
    """One app on one database, and the calls most tests need."""

    services: Services
    http: httpx.AsyncClient

    @property
    def settings(self):
        return self.services.settings

    async def management_token(self, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
                "audience": self.settings.management_audience}
        if scope:
            data["scope"] = scope
        response = await self.http.post("/oauth/token", data=data)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    async def management(self, method: str, path: str, *, headers: dict | None = None, **kwargs) -> httpx.Response:
        token = await self.management_token()
        headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        return await self.http.request(method, f"/api/v2{path}", headers=headers, **kwargs)

    async def create_client(self, **fields) -> dict:
        body = {"name": "Test App", "app_type": "regular_web", "callbacks": ["https://app.test/callback"],
                "allowed_logout_urls": ["https://app.test/logged-out"],
                "grant_types": ["authorization_code", "refresh_token", "password",
                                "http://auth0.com/oauth/grant-type/password-realm", "client_credentials"], **fields}
        response = await self.management("POST", "/clients", json=body)
        assert response.status_code == 201, response.text
        client = response.json()
        async with self.services.database.transaction() as session:
            await enable_connection_for_client(session, connection_name=DEFAULT_CONNECTION, client_id=client["client_id"])
        self.services.tenant.invalidate()
        return client

    async def create_api(self, identifier: str = "https://api.test", **fields) -> dict:
        body = {"identifier": identifier, "name": "Test API",
                "scopes": [{"value": "read:things", "description": "Read"}, {"value": "write:things", "description": "Write"}],
                **fields}
        response = await self.management("POST", "/resource-servers", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def create_user(self, email: str = "alice@example.com", password: str = PASSWORD, **fields) -> dict:
        response = await self.management(
            "POST", "/users", json={"connection": DEFAULT_CONNECTION, "email": email, "password": password, **fields}
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def authorize(self, client: dict, **params) -> httpx.Response:
        query = {"client_id": client["client_id"], "response_type": "code", "redirect_uri": client["callbacks"][0],
                 "scope": "openid profile email", "state": "st-" + secrets.token_hex(4), **params}
        return await self.http.get("/authorize", params={k: v for k, v in query.items() if v is not None})

    async def login(self, client: dict, email: str = "alice@example.com", password: str = PASSWORD, **params) -> httpx.Response:
        """Run /authorize and the login form; returns the final redirect to the client."""
        response = await self.authorize(client, **params)
        assert response.status_code == 302, response.text
        if not response.headers["location"].startswith("/u/login"):
            return response
        page = await self.http.get(response.headers["location"])
        assert page.status_code == 200, page.text
        return await self.http.post(
            response.headers["location"],
            data={"state": form_field(page.text, "state"), "csrf_token": form_field(page.text, "csrf_token"),
                  "username": email, "password": password},
        )

    async def code_tokens(self, client: dict, *, verifier: str | None = None, **params) -> dict:
        """A full code flow (with PKCE) ending in the token response."""
        verifier = verifier or secrets.token_urlsafe(48)
        response = await self.login(client, code_challenge=s256(verifier), code_challenge_method="S256", **params)
        assert response.status_code == 302, response.text
        code = query_of(response.headers["location"])["code"]
        tokens = await self.http.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": client["callbacks"][0],
            "code_verifier": verifier, "client_id": client["client_id"], "client_secret": client.get("client_secret", ""),
        })
        assert tokens.status_code == 200, tokens.text
        return tokens.json()


def test_settings(database_url: str, tmp_path: Path, **overrides):
    values = dict(
        issuer=ISSUER, database_url=database_url, secret_key="test-master-key-" + "x" * 32, var_dir=tmp_path / "var",
        bootstrap_client_id=MGMT_ID, bootstrap_client_secret=MGMT_SECRET, cache_ttl=0.0,
    )
    return load_settings(**{**values, **overrides})


test_settings.__test__ = False  # a helper, not a test


async def _harness(url: str, tmp_path: Path, *, background: bool = False, **overrides) -> AsyncIterator[Bastion]:
    """`background=True` starts the process's pollers (outbox, log streams) as the app's lifespan does."""
    settings = test_settings(url, tmp_path, **overrides)
    services = build_services(settings)
    await prepare(services)
    app = create_app(settings, services)
    if background:
        services.background.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)), base_url=ISSUER) as http:
        yield Bastion(services, http)
    await services.close()


@pytest.fixture
async def bastion(database_url: str, tmp_path: Path) -> AsyncIterator[Bastion]:
    """The app on SQLite and, for tests marked postgres, on PostgreSQL too."""
    async for harness in _harness(database_url, tmp_path):
        yield harness


@pytest.fixture
async def bastion_sqlite(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Bastion]:
    async for harness in _harness(sqlite_url, tmp_path):
        yield harness


@pytest.fixture
async def bastion_with(tmp_path: Path):
    """A factory: `async with bastion_with(rules_timeout=2) as b:` builds an app on a new SQLite database with other
    settings; `bastion_with(database_url=..., background=True)` picks the database and starts the pollers."""
    from contextlib import asynccontextmanager
    from itertools import count

    numbers = count()

    @asynccontextmanager
    async def build(database_url: str | None = None, **overrides):
        folder = tmp_path / f"app{next(numbers)}"
        folder.mkdir()
        async for harness in _harness(database_url or f"sqlite+aiosqlite:///{folder / 'bastion.db'}", folder, **overrides):
            yield harness

    return build


class HttpPeer:
    """A real HTTP server on loopback that records requests and answers what a test sets."""

    def __init__(self):
        import http.server
        import json as jsonlib
        import threading

        peer = self
        self.requests: list[dict] = []
        self.responses: dict[str, tuple[int, object]] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    parsed = jsonlib.loads(body) if body else None
                except ValueError:
                    parsed = None
                path = self.path.split("?")[0]
                peer.requests.append({"method": self.command, "path": path, "query": self.path.partition("?")[2],
                                      "headers": dict(self.headers), "body": body, "json": parsed})
                status, payload = peer.responses.get(path, (200, {}))
                data = jsonlib.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def respond(self, path: str, status: int, payload: object) -> None:
        self.responses[path] = (status, payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on a free loopback port; point `smtp_host`/`smtp_port` at it."""
    from smtp_server import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def http_peer():
    peer = HttpPeer()
    yield peer
    peer.close()


async def add_rule(bastion: Bastion, script: str, *, order: int | None = None, name: str | None = None, enabled: bool = True) -> str:
    """Store a rule directly (the Management API has its own tests) and return its id."""
    from bastion.security.handles import new_id
    from bastion.storage import rules as rule_store

    async with bastion.services.database.transaction() as session:
        if order is None:
            order = (await rule_store.max_rule_order(session, stage="login_success") or 0) + 1
        rule = await rule_store.insert_rule(
            session, id=new_id("rul_"), name=name or f"rule {order}", script=script, order=order, enabled=enabled,
            stage="login_success", language="python",
        )
    bastion.services.tenant.invalidate()
    return rule.id


__all__ = ["Bastion", "form_field", "query_of", "seed_demo", "add_rule", "PASSWORD", "ISSUER"]
