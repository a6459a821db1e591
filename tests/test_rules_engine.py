"""The rules engine: the contract rules see, ordering, outcome application, effects, and isolation.

Rules are stored directly (tests/test_rules_admin.py covers the Management API); every
login here is a real one through the code flow or the token endpoint.
"""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from bastion.keys.jose import public_keyset, verify_jwt
from bastion.rules.outcome import outcome_from
from bastion.rules.validation import RuleScriptError, check_script
from bastion.storage import rules as rule_store
from bastion.storage import users as user_store

from conftest import PASSWORD, add_rule, query_of

REALM = "http://auth0.com/oauth/grant-type/password-realm"


def rule(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


async def claims_of(bastion, token: str) -> dict:
    keys = public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])
    return verify_jwt(token, keys)[1]


async def password_login(bastion, client, email="alice@example.com", password=PASSWORD, **extra):
    return await bastion.http.post("/oauth/token", data={
        "grant_type": REALM, "realm": "Username-Password-Authentication", "username": email, "password": password,
        "client_id": client["client_id"], "client_secret": client["client_secret"], "scope": "openid profile email", **extra})


# -- outcome and validation (no worker) -----------------------------------------


def test_outcome_applies_claims_scopes_jti_and_reports_reserved_claims():
    outcome = outcome_from(
        {"jti": "abc", "given_name": "Al", "email": "a@example.com"},
        {"id_token": {"https://example.com/roles": ["admin"], "sub": "evil"},
         "access_token": {"scope": "read:a read:b", "email": "a@example.com", "iss": "evil"}},
    )
    assert outcome.id_token_claims == {"https://example.com/roles": ["admin"]}
    assert outcome.access_token_claims == {"email": "a@example.com"}
    assert outcome.scopes == ["read:a", "read:b"] and outcome.jti == "abc"
    assert outcome.profile["given_name"] == "Al"
    assert any("'sub'" in w for w in outcome.warnings) and any("'iss'" in w for w in outcome.warnings)
    assert outcome_from({}, {"access_token": {"scope": ["x", "x", "y"]}}).scopes == ["x", "y"]


@pytest.mark.parametrize("script, message, line", [
    ("def rule(user, context, api)\n    pass\n", "syntax error", 1),
    ("def other(user, context, api):\n    pass\n", "must define", None),
    ("def rule(user, context):\n    pass\n", "exactly three arguments", 1),
    ("import json\nimport subprocess\ndef rule(user, context, api):\n    pass\n", "'subprocess' is not allowed", 2),
    ("def rule(user, context, api):\n    from os import path\n", "'os' is not allowed", 2),
    ("def rule(user, context, api):\n    x = 1\n    open('/etc/passwd')\n", "'open' is not available", 3),
    ("def rule(user, context, api):\n    ().__class__.__base__.__subclasses__()\n", "'__subclasses__'", 2),
])
def test_a_bad_script_is_refused_naming_its_line(script, message, line):
    with pytest.raises(RuleScriptError) as refused:
        check_script(script)
    assert message in str(refused.value) and refused.value.line == line


def test_a_good_script_passes():
    check_script(rule('''
        import re, json, datetime, ipaddress, hashlib, hmac, base64, uuid
        from urllib.parse import urlencode
        from bastion.rules import UnauthorizedError

        async def rule(user, context, api):
            if not user.email_verified:
                raise UnauthorizedError("verify your email first")
    '''))


# -- running in logins ----------------------------------------------------------


async def test_rules_run_in_order_and_each_sees_the_previous_changes(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.id_token["https://example.com/steps"] = ["second"] + context.id_token.get("https://example.com/steps", [])
    '''), order=20)
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            user.favourite = "teal"
            context.id_token["https://example.com/steps"] = ["first"]
    '''), order=10)
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.id_token["https://example.com/colour"] = user.favourite
    '''), order=30)
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            raise UnauthorizedError("disabled rules never run")
    '''), order=40, enabled=False)
    tokens = await bastion.code_tokens(client)
    claims = await claims_of(bastion, tokens["id_token"])
    assert claims["https://example.com/steps"] == ["second", "first"]
    assert claims["https://example.com/colour"] == "teal"


async def test_rules_see_the_auth0_user_and_context(bastion):
    client = await bastion.create_client(client_metadata={"tier": "gold"})
    user = await bastion.create_user(app_metadata={"plan": "pro"})
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            seen = {
                "user_id": user.user_id, "email": user.email, "plan": user.app_metadata["plan"],
                "identity": [user.identities[0].provider, user.identities[0].connection],
                "logins": user.logins_count, "stats": context.stats.logins_count,
                "client": [context.client_id, context.client_name, context.client_metadata.get("tier")],
                "connection": [context.connection, context.connection_strategy],
                "protocol": context.protocol, "ip": context.request.ip,
                "query_scope": context.request.query.get("scope"), "has_state": "state" in context.request.query,
                "methods": [m["name"] for m in context.authentication.methods],
                "session": bool(context.session_id), "tenant": context.tenant,
            }
            context.id_token["https://example.com/seen"] = seen
    '''))
    tokens = await bastion.code_tokens(client)
    seen = (await claims_of(bastion, tokens["id_token"]))["https://example.com/seen"]
    assert seen == {
        "user_id": user["user_id"], "email": "alice@example.com", "plan": "pro",
        "identity": ["auth0", "Username-Password-Authentication"], "logins": 1, "stats": 1,
        "client": [client["client_id"], "Test App", "gold"], "connection": ["Username-Password-Authentication", "auth0"],
        "protocol": "oidc-basic-profile", "ip": "203.0.113.7", "query_scope": "openid profile email", "has_state": True,
        "methods": ["pwd"], "session": True, "tenant": "bastion.test",
    }


async def test_outcome_reaches_both_tokens_with_replaced_scopes_jti_and_profile(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.access_token["https://example.com/email"] = user.email
            context.access_token["scope"] = ["openid", "read:things"]
            context.id_token["https://example.com/plan"] = "pro"
            context.id_token["iss"] = "https://evil.test/"
            user.jti = "jti-from-rule"
            user.given_name = "Set By Rule"
    '''))
    tokens = await bastion.code_tokens(client, audience="https://api.test", scope="openid profile write:things")
    access = await claims_of(bastion, tokens["access_token"])
    identity = await claims_of(bastion, tokens["id_token"])
    assert access["scope"] == "openid read:things" and tokens["scope"] == "openid read:things"
    assert access["https://example.com/email"] == "alice@example.com" and access["jti"] == "jti-from-rule"
    assert identity["https://example.com/plan"] == "pro" and identity["given_name"] == "Set By Rule"
    assert identity["iss"] == "https://bastion.test/"
    executions = await _executions(bastion)
    assert any("reserved claim" in w for w in executions[0].warnings)


async def _executions(bastion):
    async with bastion.services.database.reader() as session:
        return (await rule_store.list_rule_executions(session, page=0, per_page=10)).items


async def test_unauthorized_error_reaches_the_application_with_its_state(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            if user.app_metadata.get("flagged"):
                return
            raise UnauthorizedError("Access to this app is restricted.")
    '''))
    response = await bastion.login(client, state="keep-me")
    assert response.status_code == 302
    assert query_of(response.headers["location"]) == {
        "error": "unauthorized", "error_description": "Access to this app is restricted.", "state": "keep-me"}
    logs = (await bastion.management("GET", "/logs?q=type:f")).json()
    assert logs and logs[0]["description"] == "Access to this app is restricted."
    assert logs[0]["details"]["rules_execution_id"].startswith("exe_")


async def test_the_unauthorized_error_code_is_configurable(bastion_with):
    async with bastion_with(rules_unauthorized_error="access_denied") as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, rule('def rule(user, context, api):\n    raise UnauthorizedError("nope")\n'))
        response = await bastion.login(client)
        assert query_of(response.headers["location"])["error"] == "access_denied"


async def test_any_other_failure_is_access_denied_with_a_generic_message_and_the_traceback_in_the_record(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            secret = "do-not-leak"
            return {}["missing"]
    '''), name="Broken rule")
    response = await bastion.login(client)
    params = query_of(response.headers["location"])
    assert params["error"] == "access_denied" and "missing" not in params["error_description"]
    record = (await _executions(bastion))[0]
    assert record.outcome == "error" and "KeyError" in record.rules[0]["traceback"]
    assert "<rule Broken rule>, line 3" in record.rules[0]["traceback"]


async def test_print_and_logging_are_captured_per_rule(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        import logging
        def rule(user, context, api):
            print("hello", user.email)
            logging.getLogger("mine").warning("careful %s", 42)
    '''))
    await bastion.code_tokens(client)
    record = (await _executions(bastion))[0]
    assert record.rules[0]["logs"] == ["hello alice@example.com", "WARNING: careful 42"]
    assert record.rules[0]["duration_ms"] >= 0 and record.outcome == "ok"


async def test_rules_run_on_the_password_and_refresh_grants_but_never_for_client_credentials(bastion):
    client = await bastion.create_client()
    await bastion.create_api()
    await bastion.management("POST", "/client-grants", json={"client_id": client["client_id"], "audience": "https://api.test", "scope": []})
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.access_token["https://example.com/protocol"] = context.protocol
            context.id_token["https://example.com/protocol"] = context.protocol
            if context.protocol == "oauth2-refresh-token" and user.app_metadata.get("no_refresh"):
                raise UnauthorizedError("refresh is off for you")
    '''))
    login = await password_login(bastion, client, scope="openid offline_access")
    assert login.status_code == 200
    assert (await claims_of(bastion, login.json()["id_token"]))["https://example.com/protocol"] == "oauth2-resource-owner"
    refreshed = await bastion.http.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": login.json()["refresh_token"],
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert (await claims_of(bastion, refreshed.json()["access_token"]))["https://example.com/protocol"] == "oauth2-refresh-token"
    m2m = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "audience": "https://api.test",
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert "https://example.com/protocol" not in await claims_of(bastion, m2m.json()["access_token"])

    user = (await bastion.management("GET", "/users-by-email?email=alice@example.com")).json()[0]
    await bastion.management("PATCH", f"/users/{user['user_id']}", json={"app_metadata": {"no_refresh": True}})
    denied = await bastion.http.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"],
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert denied.status_code == 401 and denied.json() == {"error": "unauthorized", "error_description": "refresh is off for you"}


async def test_a_denying_rule_on_the_password_grant_is_a_json_error(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('def rule(user, context, api):\n    raise UnauthorizedError("no password logins")\n'))
    response = await password_login(bastion, client)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "error_description": "no password logins"}


# -- effects ------------------------------------------------------------------


async def test_metadata_updates_are_persisted_merged_and_visible_to_later_rules(bastion):
    client = await bastion.create_client()
    created = await bastion.create_user(app_metadata={"keep": 1, "drop": 2})
    await add_rule(bastion, rule('''
        async def rule(user, context, api):
            await api.users.update_app_metadata(user.user_id, {"roles": ["reader"], "drop": None})
            await api.users.update_user_metadata(user.user_id, {"colour": "teal"})
    '''), order=1)
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.id_token["https://example.com/meta"] = [user.app_metadata, user.user_metadata]
    '''), order=2)
    tokens = await bastion.code_tokens(client)
    assert (await claims_of(bastion, tokens["id_token"]))["https://example.com/meta"] == [
        {"keep": 1, "roles": ["reader"]}, {"colour": "teal"}]
    async with bastion.services.database.reader() as session:
        stored = await user_store.get_user(session, user_id=created["user_id"])
    assert stored.app_metadata == {"keep": 1, "roles": ["reader"]} and stored.user_metadata == {"colour": "teal"}
    effects = (await _executions(bastion))[0].effects
    assert [e["type"] for e in effects] == ["users.update_app_metadata", "users.update_user_metadata"]


async def test_rules_cannot_update_another_users_metadata(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    victim = await bastion.create_user(email="victim@example.com")
    await add_rule(bastion, rule(f'''
        async def rule(user, context, api):
            await api.users.update_app_metadata("{victim['user_id']}", {{"admin": True}})
    '''))
    response = await bastion.login(client)
    assert query_of(response.headers["location"])["error"] == "access_denied"
    assert (await bastion.management("GET", f"/users/{victim['user_id']}")).json()["app_metadata"] == {}


async def test_http_to_loopback_is_refused_unless_allowed(bastion_with, http_peer):
    script = rule(f'''
        async def rule(user, context, api):
            response = await api.http.post("{http_peer.url}/hook", json={{"user": user.user_id}}, headers={{"X-Key": api.configuration.get("KEY", "")}})
            context.id_token["https://example.com/status"] = response.status_code
            context.id_token["https://example.com/body"] = response.json()
    ''')
    async with bastion_with() as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, script)
        refused = await bastion.login(client)
        assert query_of(refused.headers["location"])["error"] == "access_denied"
        assert http_peer.requests == []
        record = (await _executions(bastion))[0]
        assert "private or local address" in record.rules[0]["error"]
    async with bastion_with(rules_http_allow_private=True) as bastion:
        client = await bastion.create_client()
        user = await bastion.create_user()
        await add_rule(bastion, script)
        http_peer.respond("/hook", 201, {"ok": True})
        tokens = await bastion.code_tokens(client)
        claims = await claims_of(bastion, tokens["id_token"])
        assert claims["https://example.com/status"] == 201 and claims["https://example.com/body"] == {"ok": True}
        assert http_peer.requests[0]["path"] == "/hook" and http_peer.requests[0]["json"] == {"user": user["user_id"]}


async def test_an_allow_list_limits_the_hosts_rules_may_call(bastion_with, http_peer):
    async with bastion_with(rules_http_allow_private=True, rules_http_allowed_hosts=["api.example.com"]) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, rule(f'''
            async def rule(user, context, api):
                await api.http.get("{http_peer.url}/x")
        '''))
        response = await bastion.login(client)
        assert query_of(response.headers["location"])["error"] == "access_denied"
        assert "BASTION_RULES_HTTP_ALLOWED_HOSTS" in (await _executions(bastion))[0].rules[0]["error"]
        assert http_peer.requests == []


async def test_configuration_values_reach_rules_and_cache_persists_within_a_worker(bastion):
    from bastion.tenant.cache import RULE_CONFIG_PURPOSE

    client = await bastion.create_client()
    await bastion.create_user()
    async with bastion.services.database.transaction() as session:
        await rule_store.put_rule_config(session, key="API_KEY", value_sealed=bastion.services.sealer.seal("s3cret", purpose=RULE_CONFIG_PURPOSE))
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.id_token["https://example.com/key"] = api.configuration["API_KEY"]
            try:
                api.configuration["API_KEY"] = "changed"
            except TypeError:
                context.id_token["https://example.com/read_only"] = True
    '''))
    claims = await claims_of(bastion, (await bastion.code_tokens(client))["id_token"])
    assert claims["https://example.com/key"] == "s3cret" and claims["https://example.com/read_only"] is True


# -- isolation ------------------------------------------------------------------

HOSTILE = {
    "infinite loop": "def rule(user, context, api):\n    while True:\n        pass\n",
    "memory bomb": "def rule(user, context, api):\n    hoard = []\n    while True:\n        hoard.append(bytearray(50 * 1024 * 1024))\n",
    "socket": "import asyncio\ndef rule(user, context, api):\n    getattr(asyncio, 'base_events').socket.socket().connect(('127.0.0.1', 5432))\n",
    "file read": "import asyncio\ndef rule(user, context, api):\n    os = getattr(asyncio, 'base_events').os\n    os.read(os.open('/etc/passwd', 0), 100)\n",
    "crash": "import asyncio\ndef rule(user, context, api):\n    getattr(asyncio, 'base_events').os.abort()\n",
    "fork": "import asyncio\ndef rule(user, context, api):\n    getattr(asyncio, 'base_events').os.fork()\n",
    "secrets from the environment": "import asyncio\ndef rule(user, context, api):\n    env = dict(getattr(asyncio, 'base_events').os.environ)\n    if any('SECRET' in k or 'BASTION' in k for k in env):\n        raise UnauthorizedError('found secrets')\n    raise RuntimeError('clean environment')\n",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_hostile_rules_fail_their_login_closed_while_other_logins_are_served(bastion_with, kind):
    hostile = HOSTILE[kind].replace("def rule(user, context, api):\n", "def rule(user, context, api):\n    if user.email != 'mallory@example.com':\n        return\n", 1)
    async with bastion_with(rules_timeout=3, rules_cpu_seconds=2, rules_memory_mb=256) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        mallory = await bastion.create_user(email="mallory@example.com")
        await add_rule(bastion, hostile)
        attack = asyncio.create_task(password_login(bastion, client, email="mallory@example.com"))
        await asyncio.sleep(0)  # the attack takes a worker first
        ordinary = [await password_login(bastion, client) for _ in range(3)]
        assert all(r.status_code == 200 for r in ordinary)
        result = await attack
        assert result.status_code == 403 and result.json()["error"] == "access_denied"
        [record] = [e for e in await _executions(bastion) if e.user_id == mallory["user_id"]]
        assert record.outcome in ("error", "timeout")
        after = await password_login(bastion, client)
        assert after.status_code == 200  # the worker was replaced
        assert bastion.services.rules.pool.sandbox["seccomp"] is True
        assert bastion.services.rules.pool.sandbox["network_namespace"] is True


async def test_the_sandbox_reports_what_it_enforces(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, "def rule(user, context, api):\n    pass\n")
    await bastion.code_tokens(client)
    sandbox = bastion.services.rules.pool.sandbox
    assert sandbox == {"memory_mb": 512, "file_writes": False, "network_namespace": True, "uid": 65534, "seccomp": True}


async def test_redirect_tokens_and_jwt_round_trip_and_refuse_tampering(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            token = api.redirect.encode_token({"step": "consent"}, expires_in=60)
            claims = api.redirect.validate_token(token)
            tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
            try:
                api.redirect.validate_token(tampered)
                refused = False
            except Exception:
                refused = True
            signed = api.jwt.sign({"sub": user.user_id}, "a-shared-secret-of-32-characters!", expires_in=60)
            context.id_token["https://example.com/redirect"] = [claims["step"], claims["sub"] == user.user_id, refused]
            context.id_token["https://example.com/jwt"] = api.jwt.verify(signed, "a-shared-secret-of-32-characters!")["sub"]
            try:
                api.jwt.verify(signed, "another-secret-of-32-characters!!")
            except ValueError:
                context.id_token["https://example.com/jwt_refused"] = True
    '''))
    claims = await claims_of(bastion, (await bastion.code_tokens(client))["id_token"])
    assert claims["https://example.com/redirect"] == ["consent", True, True]
    assert claims["https://example.com/jwt"] == claims["sub"] and claims["https://example.com/jwt_refused"] is True


async def test_rules_send_email_through_the_configured_smtp_server(bastion_with, smtp_server):
    async with bastion_with(smtp_host="127.0.0.1", smtp_port=smtp_server.port) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, rule('''
            async def rule(user, context, api):
                if user.logins_count == 1:
                    await api.email.send(to=user.email, subject="Welcome!", text=f"Hello {user.email}")
        '''))
        await bastion.code_tokens(client)
        [message] = await smtp_server.wait_for(1)
        assert smtp_server.recipients == [["alice@example.com"]]
        assert message["Subject"] == "Welcome!" and message.get_content().strip() == "Hello alice@example.com"
        [effect] = (await _executions(bastion))[0].effects
        assert effect.pop("delivery_id").startswith("eml_")
        assert effect == {"type": "email", "to": "alice@example.com", "subject": "Welcome!", "performed": True}
        assert message["Message-ID"] == f"<{(await _executions(bastion))[0].effects[0]['delivery_id']}@bastion>"


async def test_api_cache_keeps_values_between_logins_on_a_worker(bastion_with):
    async with bastion_with(rules_workers=1) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await add_rule(bastion, rule('''
            def rule(user, context, api):
                seen = api.cache.get("logins", 0)
                api.cache.set("logins", seen + 1, ttl=60)
                api.cache.set("gone", True, ttl=-1)
                context.id_token["https://example.com/cached"] = [seen, api.cache.get("gone", "expired")]
        '''))
        first = await claims_of(bastion, (await bastion.code_tokens(client))["id_token"])
        second = await claims_of(bastion, (await bastion.code_tokens(client))["id_token"])
        assert first["https://example.com/cached"] == [0, "expired"]
        assert second["https://example.com/cached"] == [1, "expired"]


async def test_connection_secrets_never_reach_rules(bastion_sqlite):
    """An sms connection's provider token, client secrets, passwords and keys are left out of the context."""
    from datetime import datetime, timezone

    from bastion.rules.context import RequestInfo, rule_context
    from bastion.storage.records import Connection

    client = await bastion_sqlite.create_client()
    user = await bastion_sqlite.create_user()
    async with bastion_sqlite.services.database.reader() as session:
        stored = await user_store.get_user(session, user_id=user["user_id"])
    connection = Connection(
        id="con_1", name="sms", strategy="sms", enabled_clients=[], is_domain_connection=False, created_at=datetime.now(timezone.utc),
        options={"twilio_sid": "AC1", "twilio_token": "tok", "client_secret": "s", "from": "+15550001111", "api_key": "k", "Password": "p"},
    )
    context = rule_context(
        issuer="https://bastion.test", protocol="oidc-basic-profile", client=await bastion_sqlite.services.tenant.client(client["client_id"]),
        connection=connection, request=RequestInfo(ip="203.0.113.7", user_agent=None, hostname="bastion.test"), user=stored,
        session_id=None, methods=[],
    )
    assert context["connection_options"] == {"twilio_sid": "AC1", "from": "+15550001111"}
