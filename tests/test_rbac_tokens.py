"""Auth0's RBAC in the tokens, on both databases (docs/access-control.md):

- an API with `enforce_policies` gives a user only the requested scopes the user holds as
  permissions (directly or through roles), in the code flow and the password and refresh
  grants; OIDC scopes are not permissions; a rule's `context.access_token["scope"]` still
  applies after; client-credentials tokens are not affected;
- the `access_token_authz` dialect adds a `permissions` claim with all the user's
  permissions on the API, whatever was requested;
- rules see the user's role names in `context.authorization.roles`.
"""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import event

from bastion.keys.jose import public_keyset, verify_jwt

from conftest import PASSWORD, add_rule
from test_management_api import user_path

pytestmark = pytest.mark.postgres

API = "https://api.test"
ALL = "openid profile read:things write:things"


# -- helpers ---------------------------------------------------------------


async def claims_of(bastion, token: str) -> dict:
    keys = public_keyset((await bastion.http.get("/.well-known/jwks.json")).json()["keys"])
    return verify_jwt(token, keys)[1]


async def setup(bastion, *, role_permissions=("read:things",), direct=(), **api_settings) -> tuple[dict, dict, dict]:
    """A client, the API (with `api_settings`), and alice holding `role_permissions` through the
    role Reader and `direct` permissions of her own. Returns (client, user, role)."""
    client = await bastion.create_client()
    await bastion.create_api(allow_offline_access=True, **api_settings)
    user = await bastion.create_user()
    role = (await bastion.management("POST", "/roles", json={"name": "Reader"})).json()
    if role_permissions:
        await set_role_permissions(bastion, role, "POST", *role_permissions)
    assert (await bastion.management("POST", user_path(user["user_id"]) + "/roles", json={"roles": [role["id"]]})).status_code == 204
    if direct:
        response = await bastion.management("POST", user_path(user["user_id"]) + "/permissions", json=_perms(*direct))
        assert response.status_code == 201, response.text
    return client, user, role


def _perms(*names: str) -> dict:
    return {"permissions": [{"resource_server_identifier": API, "permission_name": n} for n in names]}


async def set_role_permissions(bastion, role: dict, method: str, *names: str) -> None:
    response = await bastion.management(method, f"/roles/{role['id']}/permissions", json=_perms(*names))
    assert response.status_code in (200, 201), response.text


async def password_grant(bastion, client: dict, scope: str = ALL, **extra) -> dict:
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "password", "username": "alice@example.com", "password": PASSWORD, "audience": API, "scope": scope,
        "client_id": client["client_id"], "client_secret": client["client_secret"], **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def refresh(bastion, client: dict, refresh_token: str) -> dict:
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert response.status_code == 200, response.text
    return response.json()


def rule(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


# -- the code flow -----------------------------------------------------------


async def test_without_enforce_policies_every_requested_scope_is_granted(bastion):
    client, _, _ = await setup(bastion)
    tokens = await bastion.code_tokens(client, audience=API, scope=ALL)
    access = await claims_of(bastion, tokens["access_token"])
    assert tokens["scope"] == access["scope"] == ALL
    assert "permissions" not in access


async def test_enforce_policies_grants_only_the_scopes_the_user_holds(bastion):
    client, _, _ = await setup(bastion, enforce_policies=True)
    tokens = await bastion.code_tokens(client, audience=API, scope=ALL)
    access = await claims_of(bastion, tokens["access_token"])
    assert tokens["scope"] == access["scope"] == "openid profile read:things"  # OIDC scopes are not permissions
    assert "permissions" not in access
    assert "id_token" in tokens


async def test_enforce_policies_with_no_permission_grants_no_api_scope(bastion):
    client, _, _ = await setup(bastion, role_permissions=(), enforce_policies=True)
    tokens = await bastion.code_tokens(client, audience=API, scope=ALL)
    assert tokens["scope"] == "openid profile"


async def test_access_token_authz_adds_every_permission_whatever_was_requested(bastion):
    client, _, _ = await setup(bastion, direct=("write:things",), enforce_policies=True, token_dialect="access_token_authz")
    tokens = await bastion.code_tokens(client, audience=API, scope="openid read:things")
    access = await claims_of(bastion, tokens["access_token"])
    assert access["scope"] == "openid read:things"
    assert access["permissions"] == ["read:things", "write:things"]
    identity = await claims_of(bastion, tokens["id_token"])
    assert "permissions" not in identity


async def test_access_token_authz_without_permissions_has_an_empty_claim(bastion):
    client, _, _ = await setup(bastion, role_permissions=(), enforce_policies=True, token_dialect="access_token_authz")
    access = await claims_of(bastion, (await bastion.code_tokens(client, audience=API, scope=ALL))["access_token"])
    assert access["permissions"] == [] and access["scope"] == "openid profile"


async def test_access_token_authz_without_enforce_policies_adds_the_claim_and_keeps_the_scopes(bastion):
    client, _, _ = await setup(bastion, token_dialect="access_token_authz")
    access = await claims_of(bastion, (await bastion.code_tokens(client, audience=API, scope=ALL))["access_token"])
    assert access["scope"] == ALL and access["permissions"] == ["read:things"]


async def test_a_rules_scope_still_applies_after_rbac(bastion):
    client, _, _ = await setup(bastion, enforce_policies=True)
    await add_rule(bastion, rule('''
        def rule(user, context, api):
            context.access_token["scope"] = ["openid", "write:things"]
    '''))
    tokens = await bastion.code_tokens(client, audience=API, scope=ALL)
    access = await claims_of(bastion, tokens["access_token"])
    assert tokens["scope"] == access["scope"] == "openid write:things"


# -- the password and refresh grants --------------------------------------------------


async def test_password_grant_applies_rbac_and_the_permissions_claim(bastion):
    client, _, _ = await setup(bastion, enforce_policies=True, token_dialect="access_token_authz")
    tokens = await password_grant(bastion, client)
    access = await claims_of(bastion, tokens["access_token"])
    assert tokens["scope"] == access["scope"] == "openid profile read:things"
    assert access["permissions"] == ["read:things"]


async def test_refresh_reads_the_permissions_again(bastion):
    client, _, role = await setup(bastion, role_permissions=("read:things", "write:things"), enforce_policies=True,
                                  token_dialect="access_token_authz")
    first = await password_grant(bastion, client, scope=ALL + " offline_access")
    assert first["scope"] == ALL + " offline_access"

    await set_role_permissions(bastion, role, "DELETE", "write:things")
    second = await refresh(bastion, client, first["refresh_token"])
    access = await claims_of(bastion, second["access_token"])
    assert second["scope"] == access["scope"] == "openid profile read:things offline_access"
    assert access["permissions"] == ["read:things"]

    # The refresh token keeps its login's scopes: the permission given back is granted again.
    await set_role_permissions(bastion, role, "POST", "write:things")
    third = await refresh(bastion, client, second["refresh_token"])
    access = await claims_of(bastion, third["access_token"])
    assert third["scope"] == ALL + " offline_access"
    assert access["permissions"] == ["read:things", "write:things"]


async def test_refresh_of_a_code_flow_login_applies_rbac(bastion):
    client, user, role = await setup(bastion, enforce_policies=True)
    tokens = await bastion.code_tokens(client, audience=API, scope=ALL + " offline_access")
    assert tokens["scope"] == "openid profile read:things offline_access"
    removed = await bastion.management("DELETE", user_path(user["user_id"]) + "/roles", json={"roles": [role["id"]]})
    assert removed.status_code == 204
    refreshed = await refresh(bastion, client, tokens["refresh_token"])
    assert refreshed["scope"] == "openid profile offline_access"


async def test_client_credentials_tokens_are_not_affected(bastion):
    await setup(bastion, role_permissions=(), enforce_policies=True, token_dialect="access_token_authz")
    machine = (await bastion.management("POST", "/clients", json={"name": "Backend", "app_type": "non_interactive"})).json()
    grant = await bastion.management("POST", "/client-grants", json={
        "client_id": machine["client_id"], "audience": API, "scope": ["read:things", "write:things"]})
    assert grant.status_code == 201, grant.text
    response = await bastion.http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": machine["client_id"], "client_secret": machine["client_secret"], "audience": API})
    assert response.status_code == 200, response.text
    access = await claims_of(bastion, response.json()["access_token"])
    assert access["scope"] == "read:things write:things" and "permissions" not in access


# -- rules see the user's roles ----------------------------------------------------------


ROLES_RULE = rule('''
    def rule(user, context, api):
        context.id_token["https://example.com/roles"] = list(context.authorization.roles)
        context.access_token["https://example.com/roles"] = list(context.authorization["roles"])
''')


async def test_a_rule_reads_the_users_roles_from_context_authorization(bastion):
    client, user, _ = await setup(bastion)
    admin = (await bastion.management("POST", "/roles", json={"name": "Admin"})).json()
    assert (await bastion.management("POST", f"/roles/{admin['id']}/users", json={"users": [user["user_id"]]})).status_code == 200
    await add_rule(bastion, ROLES_RULE)

    tokens = await bastion.code_tokens(client)
    assert (await claims_of(bastion, tokens["id_token"]))["https://example.com/roles"] == ["Admin", "Reader"]
    by_password = await password_grant(bastion, client, scope="openid")
    assert (await claims_of(bastion, by_password["access_token"]))["https://example.com/roles"] == ["Admin", "Reader"]


async def test_a_rule_sees_no_roles_for_a_user_without_any(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await add_rule(bastion, ROLES_RULE)
    tokens = await bastion.code_tokens(client)
    assert (await claims_of(bastion, tokens["id_token"]))["https://example.com/roles"] == []
    await bastion.management("POST", "/roles", json={"name": "Unassigned"})  # the tenant has roles; alice has none
    tokens = await bastion.code_tokens(client)
    assert (await claims_of(bastion, tokens["id_token"]))["https://example.com/roles"] == []


async def test_trying_a_rule_on_a_stored_user_shows_their_roles(bastion):
    _, user, _ = await setup(bastion)
    response = await bastion.management("POST", "/rules/try", json={"user_id": user["user_id"], "rules": []})
    assert response.status_code == 200, response.text
    assert response.json()["context"]["authorization"] == {"roles": ["Reader"]}


# -- what it costs ----------------------------------------------------------------------


class StatementLog:
    """The SQL statements the app runs while the block runs."""

    def __init__(self, bastion):
        self.engine = bastion.services.database.engine.sync_engine
        self.statements: list[str] = []

    def _record(self, _conn, _cursor, statement, *_args):
        self.statements.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def count(self, table: str) -> int:
        return sum(1 for s in self.statements if table in s)


async def test_a_login_reads_permissions_and_roles_in_few_queries_and_only_when_used(bastion):
    client, _, _ = await setup(bastion)
    with StatementLog(bastion) as log:  # no RBAC on the API, no rule: nothing is read
        await password_grant(bastion, client)
    assert log.count("user_permissions") == 0 and log.count("user_roles") == 0

    api = (await bastion.management("GET", "/resource-servers/" + API.replace("/", "%2F"))).json()
    patched = await bastion.management("PATCH", f"/resource-servers/{api['id']}", json={"enforce_policies": True, "token_dialect": "access_token_authz"})
    assert patched.status_code == 200, patched.text
    await add_rule(bastion, ROLES_RULE)
    with StatementLog(bastion) as log:
        tokens = await password_grant(bastion, client)
    # The token's effective permissions: one query; the rules' user.roles/permissions/groups
    # (storage/groups.py user_authorization): one query; context.authorization.roles: one query.
    assert log.count("user_permissions") == 2
    assert log.count("user_roles") == 3
    assert (await claims_of(bastion, tokens["access_token"]))["permissions"] == ["read:things"]
