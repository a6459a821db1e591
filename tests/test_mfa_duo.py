"""Duo's Universal Prompt (provider "duo") against a local HTTPS server speaking Duo's protocol.

The fake Duo (`FakeDuo`) implements what duo_universal calls, and checks it as Duo does:

    POST /oauth/v1/health_check   form: client_id, client_assertion (JWT HS512 signed with skey)
    GET  /oauth/v1/authorize      query: response_type, client_id, request (JWT HS512: client_id,
                                  state, redirect_uri, duo_uname, ...), nonce; "approves" and
                                  redirects to redirect_uri with duo_code and state
    POST /oauth/v1/token          query: grant_type, code, redirect_uri, client_assertion...;
                                  answers an id_token (HS512, skey) with preferred_username,
                                  nonce and auth_result

It runs on 127.0.0.1 with a certificate from a test CA; BASTION_DUO_CA_FILE points at that CA
and the rule's host is `localhost:<port>`. (duo_universal 2.x uses /oauth/v1/authorize; the fake
also answers /oauth/v2/authorize.)
"""

from __future__ import annotations

import http.server
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from bastion.keys.jose import public_keyset, verify_jwt
from bastion.oidc.grants import s256

from conftest import ISSUER, add_rule, query_of
from tests.certificates import ca_and_server_certificate

IKEY = "DIWJ8X6AEYOR5OMC6TQ1"  # Duo client ids are 20 characters
SKEY = "Zh5eGmUq9zpfQnyUIu5OhPvcsHX3MHVcRPwZBvdt"  # and secrets 40
CALLBACK = f"{ISSUER}/u/mfa/duo/callback"

# Duo's secrets are 40 characters, shorter than PyJWT recommends for HS512; that is Duo's protocol.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


# -- the fake Duo ---------------------------------------------------------------------------


@dataclass
class FakeDuo:
    """Duo's Universal Prompt endpoints; `result` is what the next prompt answers ("allow" or "deny")."""

    ca_file: Path
    host: str = ""
    result: str = "allow"
    answer_username: str | None = None  # answer for another user than asked (a forged result)
    health: list[dict] = field(default_factory=list)
    authorizations: list[dict] = field(default_factory=list)
    exchanges: list[dict] = field(default_factory=list)
    codes: dict[str, dict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def _assertion(self, token: str, endpoint: str) -> dict:
        claims = jwt.decode(token, SKEY, algorithms=["HS512"], audience=f"https://{self.host}{endpoint}", issuer=IKEY,
                            options={"require": ["exp", "jti", "sub"]})
        assert claims["sub"] == IKEY
        return claims

    def health_check(self, form: dict) -> tuple[int, dict]:
        self._assertion(form["client_assertion"], "/oauth/v1/health_check")
        assert form["client_id"] == IKEY
        self.health.append(form)
        return 200, {"stat": "OK", "response": {"timestamp": int(time.time())}}

    def authorize(self, query: dict) -> str:
        assert query["response_type"] == "code" and query["client_id"] == IKEY
        request = jwt.decode(query["request"], SKEY, algorithms=["HS512"], audience=f"https://{self.host}", issuer=IKEY)
        assert request["client_id"] == IKEY and request["response_type"] == "code" and request["scope"] == "openid"
        assert 16 <= len(request["state"]) <= 1024 and request["duo_uname"]
        self.authorizations.append({**request, "nonce": query.get("nonce")})
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"username": request["duo_uname"], "nonce": query.get("nonce"), "redirect_uri": request["redirect_uri"],
                            "result": self.result}
        return f"{request['redirect_uri']}?{urlencode({'duo_code': code, 'state': request['state']})}"

    def token(self, query: dict) -> tuple[int, dict]:
        self._assertion(query["client_assertion"], "/oauth/v1/token")
        assert query["grant_type"] == "authorization_code" and query["client_id"] == IKEY
        assert query["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        grant = self.codes.pop(query["code"], None)
        if grant is None or grant["redirect_uri"] != query["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "The authorization code is not valid"}
        self.exchanges.append(query)
        now = int(time.time())
        allowed = grant["result"] == "allow"
        id_token = jwt.encode({
            "iss": f"https://{self.host}/oauth/v1/token", "aud": IKEY, "sub": grant["username"], "iat": now, "exp": now + 300,
            "auth_time": now, "preferred_username": self.answer_username or grant["username"], "nonce": grant["nonce"],
            "auth_result": {"result": grant["result"], "status": "allow" if allowed else "deny",
                            "status_msg": "Login Successful" if allowed else "Login denied"},
            "auth_context": {"factor": "duo_push", "result": grant["result"]},
        }, SKEY, algorithm="HS512")
        return 200, {"id_token": id_token, "access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 3600}


def serve_duo(duo: FakeDuo, cert: Path, key: Path) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict | None = None, location: str | None = None) -> None:
            data = json.dumps(payload or {}).encode()
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            path, _, query_string = self.path.partition("?")
            query = {k: v[0] for k, v in parse_qs(query_string).items()}
            length = int(self.headers.get("content-length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()} if length else {}
            try:
                if self.command == "POST" and path == "/oauth/v1/health_check":
                    self._send(*duo.health_check(form))
                elif self.command == "GET" and path in ("/oauth/v1/authorize", "/oauth/v2/authorize"):
                    self._send(302, location=duo.authorize(query))
                elif self.command == "POST" and path == "/oauth/v1/token":
                    self._send(*duo.token({**query, **form}))
                else:
                    self._send(404, {"stat": "FAIL", "message": "not found"})
            except (AssertionError, KeyError, jwt.InvalidTokenError) as error:
                duo.errors.append(f"{self.command} {path}: {error!r}")
                self._send(400, {"stat": "FAIL", "code": 40002, "message": "Invalid request"})

        do_GET = do_POST = _handle

        def log_message(self, *args):
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    duo.host = f"localhost:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def duo(tmp_path: Path):
    ca, cert, key = ca_and_server_certificate(tmp_path, "duo")
    fake = FakeDuo(ca_file=ca)
    server = serve_duo(fake, cert, key)
    yield fake
    server.shutdown()
    server.server_close()
    assert not fake.errors, fake.errors  # Bastion spoke Duo's protocol as duo_universal does


# -- driving a login ---------------------------------------------------------------------


def duo_rule(host: str, **extra) -> str:
    settings = {"provider": "duo", "ikey": IKEY, "skey": SKEY, "host": host, **extra}
    return f"async def rule(user, context, api):\n    context.multifactor = {settings!r}\n"


@dataclass
class Login:
    verifier: str
    state: str


async def start_login(bastion, client, **params) -> tuple[Login, httpx.Response]:
    """Authorize with PKCE and post the password; returns the login and the response after it."""
    login = Login(verifier=secrets.token_urlsafe(48), state="")
    response = await bastion.login(client, code_challenge=s256(login.verifier), code_challenge_method="S256", **params)
    assert response.status_code == 302, response.text
    return login, response


async def to_duo(bastion, response: httpx.Response) -> str:
    """From /u/mfa to Duo's prompt; returns the URL the browser is sent to."""
    location = response.headers["location"]
    assert location.startswith("/u/mfa?state="), location
    response = await bastion.http.get(location)
    assert response.status_code == 303 and response.headers["location"].startswith("/u/mfa/duo?state="), response.text
    response = await bastion.http.get(response.headers["location"])
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def through_duo(duo: FakeDuo, url: str) -> str:
    """The browser at Duo's prompt: Duo answers with a redirect to Bastion's callback."""
    assert url.startswith(f"https://{duo.host}/oauth/v1/authorize?"), url
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(duo.ca_file))) as browser:
        response = await browser.get(url)
    assert response.status_code == 302, response.text
    callback = response.headers["location"]
    assert callback.startswith(CALLBACK + "?"), callback
    return callback


async def redeem(bastion, client, login: Login, location: str) -> dict:
    """The application's side: the code at its redirect URI, exchanged for tokens."""
    assert location.startswith(client["callbacks"][0]), location
    tokens = await bastion.http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": query_of(location)["code"], "redirect_uri": client["callbacks"][0],
        "code_verifier": login.verifier, "client_id": client["client_id"], "client_secret": client["client_secret"],
    })
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


async def id_claims(bastion, tokens: dict) -> dict:
    jwks = public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])
    return verify_jwt(tokens["id_token"], jwks)[1]


@pytest.fixture
async def duo_bastion(bastion_with, duo):
    async with bastion_with(duo_ca_file=str(duo.ca_file)) as bastion:
        yield bastion


# -- the tests ------------------------------------------------------------------------------


async def test_duo_approval_completes_the_login_with_mfa(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    user = await bastion.create_user()
    await add_rule(bastion, duo_rule(duo.host))

    login, response = await start_login(bastion, client, nonce="n-duo")
    url = await to_duo(bastion, response)
    assert len(duo.health) == 1  # Duo's health is checked before the browser is sent there
    callback = await through_duo(duo, url)
    request = duo.authorizations[0]
    assert request["duo_uname"] == "alice@example.com" and request["redirect_uri"] == CALLBACK
    assert request["nonce"] and request["exp"] > time.time()

    response = await bastion.http.get(callback)
    assert response.status_code == 302, response.text
    assert len(duo.exchanges) == 1 and duo.exchanges[0]["redirect_uri"] == CALLBACK
    # Remembered for 30 days (Auth0: Duo prompts once per 30 days when allowed).
    remember = [c for c in response.headers.get_list("set-cookie") if c.startswith("bastion_mfa=")]
    assert remember and "Max-Age=2592000" in remember[0]
    claims = await id_claims(bastion, await redeem(bastion, client, login, response.headers["location"]))
    assert claims["sub"] == user["user_id"] and claims["amr"] == ["mfa"] and claims["nonce"] == "n-duo"

    # The callback works once: a replay is refused and issues nothing.
    replay = await bastion.http.get(callback)
    assert replay.status_code == 400 and "location" not in replay.headers
    assert len(duo.exchanges) == 1


async def test_duo_denial_fails_the_login_and_issues_nothing(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, duo_rule(duo.host))
    duo.result = "deny"

    _login, response = await start_login(bastion, client)
    mfa_location = response.headers["location"]
    callback = await through_duo(duo, await to_duo(bastion, response))
    denied = await bastion.http.get(callback)
    assert denied.status_code == 403 and "location" not in denied.headers
    assert "not approved in Duo" in denied.text and 'id="retry-duo"' in denied.text
    assert len(duo.exchanges) == 1

    # Each new try is counted; the fifth denial ends the login: access_denied to the app, no code.
    state = query_of(mfa_location)["state"]
    for attempt in range(2, 6):
        start = await bastion.http.get("/u/mfa/duo", params={"state": state})
        assert start.status_code == 303, start.text
        answer = await bastion.http.get(await through_duo(duo, start.headers["location"]))
        if attempt < 5:
            assert answer.status_code == 403 and "location" not in answer.headers
    assert answer.status_code == 302
    params = query_of(answer.headers["location"])
    assert answer.headers["location"].startswith(client["callbacks"][0])
    assert params["error"] == "access_denied" and "code" not in params
    # The login is over: Duo cannot be started for it again.
    assert (await bastion.http.get("/u/mfa/duo", params={"state": state})).status_code == 400


async def test_unreachable_duo_fails_closed_with_a_page(bastion_with, duo):
    closed = httpx_free_port()
    async with bastion_with(duo_ca_file=str(duo.ca_file)) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, duo_rule(f"localhost:{closed}"))
        _login, response = await start_login(bastion, client)
        response = await bastion.http.get(response.headers["location"])
        page = await bastion.http.get(response.headers["location"])
    assert page.status_code == 503 and "location" not in page.headers
    assert "Duo is unavailable" in page.text and "cannot continue" in page.text


async def test_duo_tls_is_pinned_to_duos_own_cas_by_default(bastion_with, duo):
    """Without BASTION_DUO_CA_FILE, duo_universal's bundled CAs are used: the test server is refused."""
    async with bastion_with() as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, duo_rule(duo.host))
        _login, response = await start_login(bastion, client)
        response = await bastion.http.get(response.headers["location"])
        page = await bastion.http.get(response.headers["location"])
    assert page.status_code == 503 and "Duo is unavailable" in page.text
    assert duo.health == []


async def test_a_result_for_another_user_is_refused(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, duo_rule(duo.host))
    duo.answer_username = "mallory@example.com"
    _login, response = await start_login(bastion, client)
    answer = await bastion.http.get(await through_duo(duo, await to_duo(bastion, response)))
    assert answer.status_code == 502 and "location" not in answer.headers
    assert "could not confirm" in answer.text


async def test_the_callback_only_works_in_the_browser_that_started_the_login(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, duo_rule(duo.host, username="alice.duo"))
    login, response = await start_login(bastion, client)
    callback = await through_duo(duo, await to_duo(bastion, response))
    assert duo.authorizations[0]["duo_uname"] == "alice.duo"  # the rule's username

    cookies = httpx.Cookies(bastion.http.cookies)
    bastion.http.cookies.clear()  # another browser: none of this one's cookies
    stolen = await bastion.http.get(callback)
    bastion.http.cookies = cookies
    assert stolen.status_code == 400 and "location" not in stolen.headers
    assert duo.exchanges == []  # nothing was spent or exchanged for the other browser

    response = await bastion.http.get(callback)
    assert response.status_code == 302
    claims = await id_claims(bastion, await redeem(bastion, client, login, response.headers["location"]))
    assert claims["amr"] == ["mfa"]


async def test_an_unknown_state_or_a_missing_code_issues_nothing(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, duo_rule(duo.host))
    unknown = await bastion.http.get("/u/mfa/duo/callback", params={"state": "x" * 36, "duo_code": "abc"})
    assert unknown.status_code == 400 and "location" not in unknown.headers

    _login, response = await start_login(bastion, client)
    url = await to_duo(bastion, response)
    state = parse_qs(urlsplit(await through_duo(duo, url)).query)["state"][0]
    error = await bastion.http.get("/u/mfa/duo/callback", params={"state": state, "error": "access_denied"})
    assert error.status_code == 403 and "not approved in Duo" in error.text
    assert duo.exchanges == []


async def test_a_remembered_browser_skips_duo_unless_the_rule_forbids_it(duo_bastion, duo):
    bastion = duo_bastion
    client = await bastion.create_client()
    await bastion.create_user()
    rule_id = await add_rule(bastion, duo_rule(duo.host))

    _login, response = await start_login(bastion, client)
    response = await bastion.http.get(await through_duo(duo, await to_duo(bastion, response)))
    assert response.status_code == 302 and "code" in query_of(response.headers["location"])

    # Logging in again (prompt=login) in the same browser: no Duo for 30 days.
    login, response = await start_login(bastion, client, prompt="login")
    assert response.headers["location"].startswith(client["callbacks"][0])
    claims = await id_claims(bastion, await redeem(bastion, client, login, response.headers["location"]))
    assert claims["amr"] == ["mfa"]
    assert len(duo.authorizations) == 1

    # A rule with allow_remember_browser: False prompts every time.
    from bastion.storage import rules as rule_store

    async with bastion.services.database.transaction() as session:
        await rule_store.delete_rule(session, id=rule_id)
    bastion.services.tenant.invalidate()
    await add_rule(bastion, duo_rule(duo.host, allow_remember_browser=False))
    _login, response = await start_login(bastion, client, prompt="login")
    await to_duo(bastion, response)
    assert len(duo.health) == 2


def httpx_free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

