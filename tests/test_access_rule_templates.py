"""The access-control rule templates (authorization_extension, delegated_admin_roles), each
proven through real logins: the users' groups and roles are set up through the Management API
(/api/v2/groups, /roles), the template is installed as a rule, and an OpenID Connect relying
party (tests/test_rule_templates.py) logs in and verifies the tokens before reading their claims.

The rules read `user.groups`, `user.roles` and `user.permissions`, which the login fills from
`bastion.storage.groups.user_authorization` (docs/access-control.md, "Groups").
"""

from __future__ import annotations

from test_management_api import user_path
from test_rule_templates import API, NS, RelyingParty, configure, denied, executions, install, user_json

AUTHZ_API = "urn:auth0-authz-api"
DA_NS = "https://admin.example.com/"
DA_CLAIM = DA_NS + "auth0-delegated-admin"


# -- setting users up through the Management API ------------------------------------------------


async def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def create_role(bastion, name: str, *permissions: str) -> dict:
    role = await ok(await bastion.management("POST", "/roles", json={"name": name}))
    if permissions:
        body = {"permissions": [{"resource_server_identifier": API, "permission_name": p} for p in permissions]}
        await ok(await bastion.management("POST", f"/roles/{role['id']}/permissions", json=body), 201)
    return role


async def create_group(bastion, name: str, *, roles=(), members=(), nested=()) -> dict:
    group = await ok(await bastion.management("POST", "/groups", json={"name": name}), 201)
    for part, ids in (("roles", [r["id"] for r in roles]), ("members", [u["user_id"] for u in members]),
                      ("nested", [g["id"] for g in nested])):
        if ids:
            await ok(await bastion.management("PATCH", f"/groups/{group['id']}/{part}", json=ids), 204)
    return group


async def company(bastion) -> dict:
    """Alice is in Internal Tools, nested in Engineering (role Editor), nested in Company (role
    Reader); she also has the role Admin herself. Bob is in no group and has no role."""
    await bastion.create_api(scopes=[{"value": v} for v in ("read:things", "write:things", "delete:things")])
    reader = await create_role(bastion, "Reader", "read:things")
    editor = await create_role(bastion, "Editor", "write:things", "read:things")
    admin = await create_role(bastion, "Admin", "delete:things")
    alice = await bastion.create_user()
    bob = await bastion.create_user("bob@example.com")
    tools = await create_group(bastion, "Internal Tools", members=[alice])
    engineering = await create_group(bastion, "Engineering", roles=[editor], nested=[tools])
    await create_group(bastion, "Company", roles=[reader], nested=[engineering])
    await ok(await bastion.management("POST", user_path(alice["user_id"]) + "/roles", json={"roles": [admin["id"]]}), 204)
    return {"alice": alice, "bob": bob, "editor": editor}


ALICE_GROUPS = ["Company", "Engineering", "Internal Tools"]
ALICE_ROLES = ["Admin", "Editor", "Reader"]
ALICE_PERMISSIONS = ["delete:things", "read:things", "write:things"]


# -- authorization_extension -------------------------------------------------------------------------


async def test_authorization_extension_puts_groups_roles_and_permissions_into_both_tokens(bastion):
    client = await bastion.create_client()
    await company(bastion)
    await install(bastion, "authorization_extension", AUTHZ_NAMESPACE="https://example.com")
    rp = RelyingParty(bastion, client)

    login = await rp.login(audience=API)
    for claims in (login.id_claims, login.access_claims):
        assert claims[NS + "groups"] == ALICE_GROUPS
        assert claims[NS + "roles"] == ALICE_ROLES
        assert claims[NS + "permissions"] == ALICE_PERMISSIONS
        assert "groups" not in claims and "roles" not in claims

    bob = await rp.password(email="bob@example.com", audience=API)  # the password grant too
    for claims in (bob.id_claims, bob.access_claims):
        assert (claims[NS + "groups"], claims[NS + "roles"], claims[NS + "permissions"]) == ([], [], [])


async def test_authorization_extension_claims_and_tokens_are_configurable(bastion):
    client = await bastion.create_client()
    await company(bastion)
    await install(bastion, "authorization_extension", AUTHZ_NAMESPACE=NS, AUTHZ_CLAIMS="roles, permissions",
                  AUTHZ_TOKENS="access_token")
    login = await RelyingParty(bastion, client).login(audience=API)
    assert not any(name.startswith(NS) for name in login.id_claims)
    assert NS + "groups" not in login.access_claims
    assert (login.access_claims[NS + "roles"], login.access_claims[NS + "permissions"]) == (ALICE_ROLES, ALICE_PERMISSIONS)


async def test_authorization_extension_follows_group_changes_at_the_next_login(bastion):
    client = await bastion.create_client()
    people = await company(bastion)
    await install(bastion, "authorization_extension", AUTHZ_NAMESPACE=NS, AUTHZ_CLAIMS="groups roles")
    rp = RelyingParty(bastion, client)
    support = await create_group(bastion, "Support", roles=[people["editor"]], members=[people["bob"]])

    bob = await rp.login(email="bob@example.com")
    assert (bob.id_claims[NS + "groups"], bob.id_claims[NS + "roles"]) == (["Support"], ["Editor"])

    await ok(await bastion.management("DELETE", f"/groups/{support['id']}"), 204)
    bob = await rp.login(email="bob@example.com")
    assert (bob.id_claims[NS + "groups"], bob.id_claims[NS + "roles"]) == ([], [])


async def test_authorization_extension_requires_one_of_the_applications_required_roles(bastion):
    protected = await bastion.create_client(name="Expenses", client_metadata={"required_roles": "Editor, Approver"})
    open_app = await bastion.create_client(name="Wiki")
    await company(bastion)
    await install(bastion, "authorization_extension")
    rp = RelyingParty(bastion, protected)

    assert (await rp.login()).id_claims["email"] == "alice@example.com"  # Editor, through her groups
    message = "You do not have the required role to access Expenses"
    denied(await rp.login(email="bob@example.com"), message)
    denied(await rp.password(email="bob@example.com"), message)
    assert (await RelyingParty(bastion, open_app).login(email="bob@example.com")).id_claims["email"] == "bob@example.com"


async def test_authorization_extension_denies_end_users_the_extension_api(bastion):
    client = await bastion.create_client()
    await bastion.create_api(AUTHZ_API, name="Authorization Extension API")
    await bastion.create_api("https://authz.example.com", name="Our authorization API")
    await bastion.create_user()
    await install(bastion, "authorization_extension")
    rp = RelyingParty(bastion, client)

    denied(await rp.login(audience=AUTHZ_API), "no_end_users")
    denied(await rp.password(audience=AUTHZ_API), "no_end_users")
    assert (await rp.login(audience="https://authz.example.com")).token  # another API is fine
    assert (await rp.login()).token  # no audience at all is fine

    await configure(bastion, AUTHZ_API_AUDIENCE="https://authz.example.com")
    denied(await rp.login(audience="https://authz.example.com"), "no_end_users")


async def test_authorization_extension_persists_into_app_metadata_only_when_changed(bastion):
    client = await bastion.create_client()
    people = await company(bastion)
    await ok(await bastion.management("PATCH", user_path(people["alice"]["user_id"]), json={"app_metadata": {"plan": "pro"}}))
    await install(bastion, "authorization_extension", AUTHZ_PERSIST="true")
    rp = RelyingParty(bastion, client)

    await rp.login()
    stored = (await user_json(bastion, people["alice"]["user_id"]))["app_metadata"]
    assert stored == {"plan": "pro", "authorization": {"groups": ALICE_GROUPS, "roles": ALICE_ROLES, "permissions": ALICE_PERMISSIONS}}
    assert [e["type"] for e in (await executions(bastion))[0].effects] == ["users.update_app_metadata"]

    await rp.login()  # nothing changed: no second write
    assert (await executions(bastion))[0].effects == []


async def test_authorization_extension_fails_closed_on_a_bad_configuration(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    rp = RelyingParty(bastion, client)

    await install(bastion, "authorization_extension", AUTHZ_CLAIMS="groups")  # claims without a namespace
    denied(await rp.login(), "", error="access_denied")
    assert "AUTHZ_NAMESPACE" in (await executions(bastion))[0].rules[0]["error"]


async def test_authorization_extension_refuses_unknown_claim_names(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    await install(bastion, "authorization_extension", AUTHZ_NAMESPACE=NS, AUTHZ_CLAIMS="groups teams")
    denied(await RelyingParty(bastion, client).login(), "", error="access_denied")
    assert "teams" in (await executions(bastion))[0].rules[0]["error"]


# -- delegated_admin_roles ----------------------------------------------------------------------------------


async def delegated_admin_setup(bastion) -> tuple[dict, dict]:
    dashboard = await bastion.create_client(name="Delegated Administration Dashboard")
    other = await bastion.create_client(name="Wiki")
    await install(bastion, "delegated_admin_roles", DELEGATED_ADMIN_CLIENT_ID=dashboard["client_id"],
                  DELEGATED_ADMIN_NAMESPACE="https://admin.example.com")
    return dashboard, other


async def test_delegated_admin_roles_come_from_groups(bastion):
    dashboard, _ = await delegated_admin_setup(bastion)
    administrator = await create_role(bastion, "Delegated Admin - Administrator")
    operator = await create_role(bastion, "Delegated Admin - Operator")
    alice = await bastion.create_user()
    it = await create_group(bastion, "IT Department", roles=[administrator])
    await create_group(bastion, "Company", roles=[operator], nested=[it])
    await ok(await bastion.management("PATCH", f"/groups/{it['id']}/members", json=[alice["user_id"]]), 204)

    login = await RelyingParty(bastion, dashboard).login()
    assert login.id_claims[DA_CLAIM] == {"roles": ["Delegated Admin - Administrator", "Delegated Admin - Operator"]}
    assert DA_CLAIM not in login.access_claims


async def test_delegated_admin_roles_come_from_app_metadata_and_others_are_denied(bastion):
    dashboard, other = await delegated_admin_setup(bastion)
    await bastion.create_user(app_metadata={"roles": ["Delegated Admin - Auditor", "Editor", "delegated admin - user",
                                                      "Delegated Admin - User", 7]})
    await bastion.create_user("bob@example.com", app_metadata={"roles": ["Editor"]},
                              user_metadata={"roles": ["Delegated Admin - Administrator"]})
    rp = RelyingParty(bastion, dashboard)

    alice = await rp.login()
    assert alice.id_claims[DA_CLAIM] == {"roles": ["Delegated Admin - User", "Delegated Admin - Auditor"]}

    message = "You do not have permission to access this application."
    denied(await rp.login(email="bob@example.com"), message)  # user_metadata is not a source of roles
    denied(await rp.password(email="bob@example.com"), message)
    elsewhere = await RelyingParty(bastion, other).login(email="bob@example.com")
    assert DA_CLAIM not in elsewhere.id_claims


async def test_delegated_admin_roles_fails_closed_without_configuration(bastion):
    client = await bastion.create_client()
    await bastion.create_user(app_metadata={"roles": ["Delegated Admin - Administrator"]})
    await install(bastion, "delegated_admin_roles", DELEGATED_ADMIN_CLIENT_ID=client["client_id"])
    denied(await RelyingParty(bastion, client).login(), "", error="access_denied")
    assert "DELEGATED_ADMIN_NAMESPACE" in (await executions(bastion))[0].rules[0]["error"]
