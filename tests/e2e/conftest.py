"""End-to-end fixtures: real `bastion serve` processes, and the `bastion` CLI with the same environment.

- `live_server`: a factory; `live_server(database_url)` starts `bastion serve` on a free
  loopback port and returns a `LiveServer` once it answers discovery. Every server a
  test starts is stopped (its whole process group) at teardown.
- `LiveServer.cli(*args)`: runs `bastion ...` with the server's environment, returns stdout.
- `browser_client()`: an httpx client that keeps cookies and does not follow redirects.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import MGMT_ID, MGMT_SECRET

BASTION = Path(sys.executable).parent / "bastion"
START_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_environment() -> dict[str, str]:
    """The parent's environment without any BASTION_* setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}


def run_cli(env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT) -> str:
    """Run `bastion *args` with `env`; fails the test (with the output) unless it exits 0. Returns stdout."""
    result = subprocess.run(
        [str(BASTION), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, (
        f"`bastion {' '.join(args)}` exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


@dataclass
class LiveServer:
    """One running `bastion serve` process."""

    port: int
    scheme: str
    issuer: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    cafile: Path | None = None

    @property
    def base_url(self) -> str:
        """Where this process listens (may differ from the issuer when servers share one)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"

    def verify(self) -> ssl.SSLContext | bool:
        """What httpx should verify this server's certificate with."""
        if self.cafile is None:
            return True
        return ssl.create_default_context(cafile=str(self.cafile))

    def cli(self, *args: str) -> str:
        return run_cli(self.env, *args)

    def management_http(self) -> httpx.Client:
        """An httpx client for this server's Management API, with a token of the bootstrap client."""
        response = httpx.post(self.url("/oauth/token"), verify=self.verify(), data={
            "grant_type": "client_credentials", "client_id": MGMT_ID, "client_secret": MGMT_SECRET,
            "audience": self.issuer.rstrip("/") + "/api/v2/",
        })
        assert response.status_code == 200, response.text
        return httpx.Client(base_url=self.base_url, verify=self.verify(), timeout=30,
                            headers={"Authorization": f"Bearer {response.json()['access_token']}"})

    def discovery(self) -> dict:
        with httpx.Client(verify=self.verify(), timeout=10) as http:
            response = http.get(self.url("/.well-known/openid-configuration"))
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers are in the same process group; make sure none is left behind.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_until_ready(server: LiveServer, deadline: float) -> None:
    last_error = "no attempt"
    url = server.url("/.well-known/openid-configuration")
    verify = server.verify()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"bastion serve exited with {server.process.returncode} before answering {url}\n"
                f"--- server output\n{server.output()}"
            )
        try:
            response = httpx.get(url, verify=verify, timeout=2)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as error:
            last_error = repr(error)
        time.sleep(0.1)
    raise AssertionError(
        f"bastion serve did not answer {url} within {START_TIMEOUT:.0f} s (last: {last_error})\n"
        f"--- server output\n{server.output()}"
    )


@pytest.fixture
def secret_key() -> str:
    """The master key of this test's servers (all servers of one test share it)."""
    return "e2e-master-key-" + secrets.token_urlsafe(32)


StartServer = Callable[..., LiveServer]


@pytest.fixture
def live_server(tmp_path: Path, secret_key: str) -> Iterator[StartServer]:
    """A factory: `live_server(database_url, *, tls=(cert, key), issuer=..., port=..., workers=1, env={...})`."""
    servers: list[LiveServer] = []

    def start(
        database_url: str,
        *,
        tls: tuple[Path, Path] | None = None,
        issuer: str | None = None,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> LiveServer:
        port = port or free_port()
        scheme = "https" if tls else "http"
        issuer = issuer or f"{scheme}://127.0.0.1:{port}"
        name = f"server-{len(servers)}-{port}"
        var_dir = tmp_path / name / "var"
        var_dir.mkdir(parents=True)
        environment = {
            **_clean_environment(),
            "BASTION_ISSUER": issuer,
            "BASTION_DATABASE_URL": database_url,
            "BASTION_SECRET_KEY": secret_key,
            "BASTION_VAR_DIR": str(var_dir),
            "BASTION_BOOTSTRAP_CLIENT_ID": MGMT_ID,
            "BASTION_BOOTSTRAP_CLIENT_SECRET": MGMT_SECRET,
            "BASTION_DEMO": "true",
            "BASTION_CACHE_TTL": "0.5",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        args = [str(BASTION), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=tmp_path,
            )
        server = LiveServer(port=port, scheme=scheme, issuer=issuer, env=environment, process=process,
                            log_path=log_path, cafile=tls[0] if tls else None)
        servers.append(server)
        _wait_until_ready(server, time.monotonic() + START_TIMEOUT)
        return server

    yield start

    for server in reversed(servers):
        server.stop()


# -- helpers shared by the e2e tests ------------------------------------------


def browser_client(**kwargs) -> httpx.Client:
    """An httpx 'browser': keeps cookies, never follows redirects (tests read Location themselves)."""
    return httpx.Client(follow_redirects=False, timeout=15, **kwargs)


def hidden_field(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', html)
    assert match, f"no hidden {name} field in the page:\n{html[:2000]}"
    return match.group(1).replace("&amp;", "&").replace("&#34;", '"').replace("&#39;", "'")


def query_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def submit_login(http: httpx.Client, base_url: str, login_location: str, username: str, password: str) -> httpx.Response:
    """GET the /u/login page at `base_url`, then POST its form with the credentials. Returns the POST's response."""
    path = urlsplit(login_location)
    login_path = path.path + (f"?{path.query}" if path.query else "")
    assert path.path == "/u/login", f"expected a redirect to /u/login, got {login_location}"
    page = http.get(base_url + login_path)
    assert page.status_code == 200, page.text
    assert 'id="username"' in page.text and 'id="password"' in page.text
    return http.post(
        base_url + login_path,
        data={"state": hidden_field(page.text, "state"), "csrf_token": hidden_field(page.text, "csrf_token"),
              "username": username, "password": password},
    )


def poll(check: Callable[[], object], *, timeout: float, interval: float = 0.1, message: str = "") -> object:
    """Call `check` until it returns something truthy, for at most `timeout` seconds; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {message} (last: {last!r})")
        time.sleep(interval)
