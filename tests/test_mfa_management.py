"""The Management API's MFA endpoints, as Auth0's tools call them:

    GET    /api/v2/users/{id}/enrollments                                       read:users
    DELETE /api/v2/users/{id}/authenticators                                    delete:guardian_enrollments
    POST   /api/v2/users/{id}/multifactor/actions/invalidate-remember-browser   update:users
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bastion.login.flow import REMEMBER_COOKIE
from bastion.login.sso import BROWSER_COOKIE
from bastion.security.handles import digest, new_handle
from bastion.storage import authenticators

from conftest import add_rule, query_of

pytestmark = pytest.mark.postgres

MFA_RULE = 'async def rule(user, context, api):\n    context.multifactor = {"provider": "any"}\n'


async def _add_factor(bastion, user_id: str, id: str, type: str, *, confirmed: bool = True, used: bool = False) -> None:
    async with bastion.services.database.transaction() as session:
        await authenticators.insert_authenticator(
            session, id=id, user_id=user_id, type=type, name={"otp": "Authenticator app"}.get(type, "Security key"),
            secret_sealed=None, secret_digest=None, credential={}, confirmed=confirmed,
        )
        if used:
            await authenticators.use_authenticator(session, id=id)


async def test_enrollments_lists_confirmed_factors_in_auth0s_shape(bastion):
    user = await bastion.create_user()
    await _add_factor(bastion, user["user_id"], "totp|dev_0000000000000001", "otp", used=True)
    await _add_factor(bastion, user["user_id"], "webauthn-roaming|dev_0000000000000002", "webauthn-roaming")
    await _add_factor(bastion, user["user_id"], "webauthn-platform|dev_0000000000000003", "webauthn-platform", confirmed=False)
    await _add_factor(bastion, user["user_id"], "recovery-code|dev_0000000000000004", "recovery-code")

    response = await bastion.management("GET", f"/users/{user['user_id']}/enrollments")
    assert response.status_code == 200, response.text
    enrollments = response.json()
    assert [e["id"] for e in enrollments] == ["totp|dev_0000000000000001", "webauthn-roaming|dev_0000000000000002"]
    otp, key = enrollments
    assert otp["status"] == "confirmed" and otp["type"] == "authenticator" and otp["auth_method"] == "authenticator"
    assert key["type"] == "webauthn-roaming" and key["name"] == "Security key"
    assert datetime.fromisoformat(otp["enrolled_at"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
    assert otp["enrolled_at"].endswith("Z") and otp["last_auth"].endswith("Z")
    assert "last_auth" not in key

    assert (await bastion.management("GET", "/users/auth0|nobody/enrollments")).status_code == 404


async def test_the_endpoints_need_their_scopes(bastion):
    user = await bastion.create_user()
    token = await bastion.management_token(scope="read:clients")
    headers = {"Authorization": f"Bearer {token}"}
    calls = [
        ("GET", f"/api/v2/users/{user['user_id']}/enrollments"),
        ("DELETE", f"/api/v2/users/{user['user_id']}/authenticators"),
        ("POST", f"/api/v2/users/{user['user_id']}/multifactor/actions/invalidate-remember-browser"),
    ]
    for method, path in calls:
        response = await bastion.http.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert (await bastion.http.request(method, path)).status_code == 401


async def test_deleting_all_authenticators_makes_the_next_mfa_login_enrol(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    await add_rule(bastion, MFA_RULE)
    await _add_factor(bastion, user["user_id"], "totp|dev_0000000000000001", "otp")
    await _add_factor(bastion, user["user_id"], "recovery-code|dev_0000000000000002", "recovery-code")

    response = await bastion.login(client)
    challenge = await bastion.http.get(response.headers["location"])
    assert challenge.status_code == 200 and 'action="/u/mfa/otp' in challenge.text  # challenged, not offered enrolment

    token = await bastion.management_token(scope="delete:guardian_enrollments")
    deleted = await bastion.http.delete(f"/api/v2/users/{user['user_id']}/authenticators", headers={"Authorization": f"Bearer {token}"})
    assert deleted.status_code == 204 and deleted.content == b""
    async with bastion.services.database.reader() as session:
        assert await authenticators.list_authenticators(session, user_id=user["user_id"], confirmed_only=False) == []
    assert (await bastion.management("GET", f"/users/{user['user_id']}/enrollments")).json() == []

    response = await bastion.login(client, prompt="login")
    page = await bastion.http.get(response.headers["location"])
    assert page.status_code == 200 and 'id="enroll-otp"' in page.text and 'id="enroll-webauthn"' in page.text

    assert (await bastion.management("DELETE", "/users/auth0|nobody/authenticators")).status_code == 404


async def test_invalidating_remembered_browsers_asks_for_mfa_again(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    await add_rule(bastion, MFA_RULE)

    response = await bastion.login(client)
    assert response.headers["location"].startswith("/u/mfa?state=")
    # This browser passed MFA before and was remembered (remember.py's cookie and row).
    handle = new_handle(24)
    async with bastion.services.database.transaction() as session:
        await authenticators.remember_browser(
            session, handle_digest=digest(handle), user_id=user["user_id"],
            browser_digest=digest(bastion.http.cookies[BROWSER_COOKIE]),
            expires_at=datetime.now(timezone.utc) + timedelta(days=30),
        )
    bastion.http.cookies.set(REMEMBER_COOKIE, handle, domain="bastion.test")

    response = await bastion.login(client, prompt="login")
    assert response.headers["location"].startswith(client["callbacks"][0])  # no second factor asked
    assert "code" in query_of(response.headers["location"])

    invalidated = await bastion.management("POST", f"/users/{user['user_id']}/multifactor/actions/invalidate-remember-browser")
    assert invalidated.status_code == 204 and invalidated.content == b""
    async with bastion.services.database.reader() as session:
        assert not await authenticators.is_browser_remembered(
            session, handle_digest=digest(handle), user_id=user["user_id"], browser_digest=digest(bastion.http.cookies[BROWSER_COOKIE])
        )

    response = await bastion.login(client, prompt="login")
    assert response.headers["location"].startswith("/u/mfa?state=")

    missing = await bastion.management("POST", "/users/auth0|nobody/multifactor/actions/invalidate-remember-browser")
    assert missing.status_code == 404
