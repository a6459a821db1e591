"""Auth0's RBAC in the Management API: roles, their permissions and users, a user's roles and
permissions (with their sources), the APIs' RBAC settings, on both databases.

Shapes and status codes are Auth0's (docs/access-control.md): a role is {id, name, description};
creating a role answers 200, deleting one 200; totals are {<collection>, start, limit, total}.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from bastion.storage.tables import UserPermissionRow, UserRoleRow

from test_management_api import assert_error, bearer, user_path

pytestmark = pytest.mark.postgres

API = "https://api.test"


# -- helpers ---------------------------------------------------------------


async def create_role(bastion, name: str = "Editor", description: str | None = "Edits things") -> dict:
    body = {"name": name, **({"description": description} if description is not None else {})}
    response = await bastion.management("POST", "/roles", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def perms(*names: str, api: str = API) -> dict:
    return {"permissions": [{"resource_server_identifier": api, "permission_name": n} for n in names]}


async def add_role_permissions(bastion, role: dict, *names: str) -> None:
    response = await bastion.management("POST", f"/roles/{role['id']}/permissions", json=perms(*names))
    assert response.status_code == 201, response.text


async def give_roles(bastion, user: dict, *roles: dict) -> None:
    response = await bastion.management("POST", user_path(user["user_id"]) + "/roles", json={"roles": [r["id"] for r in roles]})
    assert response.status_code == 204, response.text


async def role_permission_names(bastion, role: dict) -> list[str]:
    response = await bastion.management("GET", f"/roles/{role['id']}/permissions")
    assert response.status_code == 200, response.text
    return [p["permission_name"] for p in response.json()]


async def user_permissions(bastion, user: dict) -> list[dict]:
    response = await bastion.management("GET", user_path(user["user_id"]) + "/permissions")
    assert response.status_code == 200, response.text
    return response.json()


# -- roles -------------------------------------------------------------------


async def test_create_role_answers_200_with_auth0s_role(bastion):
    role = await create_role(bastion)
    assert set(role) == {"id", "name", "description"}
    assert role["id"].startswith("rol_") and len(role["id"]) == 20
    assert (role["name"], role["description"]) == ("Editor", "Edits things")
    assert (await bastion.management("GET", f"/roles/{role['id']}")).json() == role


async def test_role_without_description_has_none(bastion):
    role = await create_role(bastion, "Reader", description=None)
    assert role == {"id": role["id"], "name": "Reader"}


async def test_patch_role_then_delete_it(bastion):
    role = await create_role(bastion)
    patched = await bastion.management("PATCH", f"/roles/{role['id']}", json={"name": "Author", "description": "Writes"})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {"id": role["id"], "name": "Author", "description": "Writes"}
    assert (await bastion.management("GET", f"/roles/{role['id']}")).json()["name"] == "Author"

    deleted = await bastion.management("DELETE", f"/roles/{role['id']}")
    assert deleted.status_code == 200 and deleted.content == b""
    assert_error(await bastion.management("GET", f"/roles/{role['id']}"), 404, "inexistent_role")
    assert_error(await bastion.management("DELETE", f"/roles/{role['id']}"), 404, "inexistent_role")
    assert_error(await bastion.management("PATCH", f"/roles/{role['id']}", json={"name": "x"}), 404, "inexistent_role")


async def test_duplicate_role_name_is_409(bastion):
    await create_role(bastion, "Editor")
    other = await create_role(bastion, "Reader")
    assert_error(await bastion.management("POST", "/roles", json={"name": "Editor"}), 409, "conflict")
    assert_error(await bastion.management("PATCH", f"/roles/{other['id']}", json={"name": "Editor"}), 409, "conflict")
    same = await bastion.management("PATCH", f"/roles/{other['id']}", json={"name": "Reader", "description": "Reads"})
    assert same.status_code == 200, same.text


async def test_role_body_is_validated(bastion):
    body = assert_error(await bastion.management("POST", "/roles", json={"description": "no name"}), 400, "invalid_body")
    assert "name" in body["message"]
    assert_error(await bastion.management("POST", "/roles", json={"name": ""}), 400, "invalid_body")
    role = await create_role(bastion)
    assert_error(await bastion.management("PATCH", f"/roles/{role['id']}", json={"name": None}), 400, "invalid_body")


async def test_roles_are_listed_by_name_with_pages_totals_and_name_filter(bastion):
    for name in ("Reader", "Admin", "site-ADMIN", "Editor"):
        await create_role(bastion, name)
    listing = await bastion.management("GET", "/roles")
    assert [r["name"] for r in listing.json()] == ["Admin", "Editor", "Reader", "site-ADMIN"]

    first = (await bastion.management("GET", "/roles", params={"per_page": 3, "page": 0, "include_totals": "true"})).json()
    second = (await bastion.management("GET", "/roles", params={"per_page": 3, "page": 1, "include_totals": "true"})).json()
    assert set(first) == {"roles", "start", "limit", "total"}
    assert (first["start"], first["limit"], first["total"], len(first["roles"])) == (0, 3, 4, 3)
    assert (second["start"], second["total"], [r["name"] for r in second["roles"]]) == (3, 4, ["site-ADMIN"])

    filtered = await bastion.management("GET", "/roles", params={"name_filter": "admin", "include_totals": "true"})
    assert [r["name"] for r in filtered.json()["roles"]] == ["Admin", "site-ADMIN"] and filtered.json()["total"] == 2
    wildcard = await bastion.management("GET", "/roles", params={"name_filter": "%"})
    assert wildcard.json() == []


# -- the permissions a role grants ---------------------------------------------


async def test_role_permissions_are_added_listed_and_removed(bastion):
    await bastion.create_api()
    role = await create_role(bastion)
    await add_role_permissions(bastion, role, "write:things", "read:things")
    await add_role_permissions(bastion, role, "read:things")  # again: no error, no duplicate

    listing = await bastion.management("GET", f"/roles/{role['id']}/permissions")
    assert listing.json() == [
        {"resource_server_identifier": API, "permission_name": "read:things", "resource_server_name": "Test API", "description": "Read"},
        {"resource_server_identifier": API, "permission_name": "write:things", "resource_server_name": "Test API", "description": "Write"},
    ]
    paged = (await bastion.management("GET", f"/roles/{role['id']}/permissions",
                                      params={"per_page": 1, "page": 1, "include_totals": "true"})).json()
    assert set(paged) == {"permissions", "start", "limit", "total"}
    assert (paged["start"], paged["limit"], paged["total"]) == (1, 1, 2)
    assert [p["permission_name"] for p in paged["permissions"]] == ["write:things"]

    removed = await bastion.management("DELETE", f"/roles/{role['id']}/permissions", json=perms("write:things"))
    assert removed.status_code == 200, removed.text
    assert await role_permission_names(bastion, role) == ["read:things"]


async def test_a_permission_must_be_a_scope_of_its_api(bastion):
    await bastion.create_api()
    role = await create_role(bastion)
    body = assert_error(
        await bastion.management("POST", f"/roles/{role['id']}/permissions", json=perms("read:things", "delete:things")),
        400, "invalid_body",
    )
    assert "delete:things" in body["message"] and API in body["message"]
    assert await role_permission_names(bastion, role) == []  # nothing of a refused body is kept

    unknown_api = await bastion.management("POST", f"/roles/{role['id']}/permissions", json=perms("read:things", api="https://nope.test"))
    assert "https://nope.test" in assert_error(unknown_api, 400, "invalid_body")["message"]
    management_api = await bastion.management(
        "POST", f"/roles/{role['id']}/permissions", json=perms("read:users", api=bastion.settings.management_audience)
    )
    assert_error(management_api, 400, "invalid_body")
    assert_error(await bastion.management("POST", f"/roles/{role['id']}/permissions", json={"permissions": []}), 400, "invalid_body")
    assert_error(await bastion.management("POST", "/roles/rol_nope/permissions", json=perms("read:things")), 404, "inexistent_role")


async def test_removing_a_scope_from_the_api_or_the_api_removes_the_permissions(bastion):
    api = await bastion.create_api()
    role = await create_role(bastion)
    user = await bastion.create_user()
    await add_role_permissions(bastion, role, "read:things", "write:things")
    await give_roles(bastion, user, role)
    assert (await bastion.management("POST", user_path(user["user_id"]) + "/permissions", json=perms("write:things"))).status_code == 201

    patched = await bastion.management("PATCH", f"/resource-servers/{api['id']}", json={"scopes": [{"value": "read:things"}]})
    assert patched.status_code == 200, patched.text
    assert await role_permission_names(bastion, role) == ["read:things"]
    assert [p["permission_name"] for p in await user_permissions(bastion, user)] == ["read:things"]

    assert (await bastion.management("DELETE", f"/resource-servers/{api['id']}")).status_code == 204
    assert await role_permission_names(bastion, role) == []
    assert await user_permissions(bastion, user) == []


# -- a role's users ----------------------------------------------------------------


async def test_users_are_assigned_to_a_role_and_listed_with_offsets_and_checkpoints(bastion):
    role = await create_role(bastion)
    users = [await bastion.create_user(f"user{i}@example.com") for i in range(3)]
    assigned = await bastion.management("POST", f"/roles/{role['id']}/users", json={"users": [u["user_id"] for u in users]})
    assert assigned.status_code == 200, assigned.text
    again = await bastion.management("POST", f"/roles/{role['id']}/users", json={"users": [users[0]["user_id"]]})
    assert again.status_code == 200, again.text

    listing = (await bastion.management("GET", f"/roles/{role['id']}/users")).json()
    assert sorted(u["user_id"] for u in listing) == sorted(u["user_id"] for u in users)
    assert {u["email"] for u in listing} == {f"user{i}@example.com" for i in range(3)}
    assert set(listing[0]) <= {"user_id", "email", "name", "picture"}

    totals = (await bastion.management("GET", f"/roles/{role['id']}/users", params={"per_page": 2, "include_totals": "true"})).json()
    assert set(totals) == {"users", "start", "limit", "total"} and (totals["total"], len(totals["users"])) == (3, 2)

    first = (await bastion.management("GET", f"/roles/{role['id']}/users", params={"take": 2})).json()
    assert len(first["users"]) == 2 and first["next"]
    rest = (await bastion.management("GET", f"/roles/{role['id']}/users", params={"take": 2, "from": first["next"]})).json()
    assert len(rest["users"]) == 1 and "next" not in rest
    assert {u["user_id"] for u in first["users"] + rest["users"]} == {u["user_id"] for u in users}


async def test_assigning_an_unknown_user_to_a_role_is_404_and_assigns_nobody(bastion):
    role = await create_role(bastion)
    alice = await bastion.create_user()
    response = await bastion.management("POST", f"/roles/{role['id']}/users", json={"users": [alice["user_id"], "auth0|nobody"]})
    assert_error(response, 404, "inexistent_user")
    assert (await bastion.management("GET", f"/roles/{role['id']}/users")).json() == []
    assert_error(await bastion.management("GET", "/roles/rol_nope/users"), 404, "inexistent_role")


# -- a user's roles and permissions -----------------------------------------------------


async def test_user_roles_are_assigned_listed_and_removed(bastion):
    editor, reader = await create_role(bastion, "Editor"), await create_role(bastion, "Reader", description=None)
    user = await bastion.create_user()
    await give_roles(bastion, user, reader, editor)
    await give_roles(bastion, user, editor)  # again: kept once

    listing = await bastion.management("GET", user_path(user["user_id"]) + "/roles")
    assert listing.json() == [editor, reader]
    totals = (await bastion.management("GET", user_path(user["user_id"]) + "/roles", params={"include_totals": "true"})).json()
    assert totals == {"roles": [editor, reader], "start": 0, "limit": 50, "total": 2}

    removed = await bastion.management("DELETE", user_path(user["user_id"]) + "/roles", json={"roles": [editor["id"]]})
    assert removed.status_code == 204, removed.text
    assert (await bastion.management("GET", user_path(user["user_id"]) + "/roles")).json() == [reader]


async def test_unknown_role_or_user_is_404(bastion):
    role = await create_role(bastion)
    user = await bastion.create_user()
    assert_error(await bastion.management("POST", user_path(user["user_id"]) + "/roles", json={"roles": [role["id"], "rol_nope"]}),
                 404, "inexistent_role")
    assert (await bastion.management("GET", user_path(user["user_id"]) + "/roles")).json() == []
    nobody = "/users/" + quote("auth0|nobody", safe="")
    assert_error(await bastion.management("GET", nobody + "/roles"), 404, "inexistent_user")
    assert_error(await bastion.management("POST", nobody + "/roles", json={"roles": [role["id"]]}), 404, "inexistent_user")
    assert_error(await bastion.management("GET", nobody + "/permissions"), 404, "inexistent_user")
    assert_error(await bastion.management("POST", nobody + "/permissions", json=perms("read:things")), 404, "inexistent_user")


async def test_user_permissions_list_direct_and_role_permissions_with_their_sources(bastion):
    await bastion.create_api()
    editor, reader = await create_role(bastion, "Editor"), await create_role(bastion, "Reader")
    await add_role_permissions(bastion, editor, "write:things")
    await add_role_permissions(bastion, reader, "read:things")
    user = await bastion.create_user()
    await give_roles(bastion, user, editor, reader)
    direct = await bastion.management("POST", user_path(user["user_id"]) + "/permissions", json=perms("read:things"))
    assert direct.status_code == 201, direct.text

    assert await user_permissions(bastion, user) == [
        {"resource_server_identifier": API, "permission_name": "read:things", "resource_server_name": "Test API", "description": "Read",
         "sources": [{"source_id": "", "source_name": "", "source_type": "DIRECT"},
                     {"source_id": reader["id"], "source_name": "Reader", "source_type": "ROLE"}]},
        {"resource_server_identifier": API, "permission_name": "write:things", "resource_server_name": "Test API", "description": "Write",
         "sources": [{"source_id": editor["id"], "source_name": "Editor", "source_type": "ROLE"}]},
    ]
    paged = (await bastion.management("GET", user_path(user["user_id"]) + "/permissions",
                                      params={"per_page": 1, "page": 1, "include_totals": "true"})).json()
    assert (paged["start"], paged["limit"], paged["total"]) == (1, 1, 2) and set(paged) == {"permissions", "start", "limit", "total"}
    assert [p["permission_name"] for p in paged["permissions"]] == ["write:things"]

    # Removing the direct assignment leaves what the role gives.
    removed = await bastion.management("DELETE", user_path(user["user_id"]) + "/permissions", json=perms("read:things", "write:things"))
    assert removed.status_code == 204, removed.text
    [read, write] = await user_permissions(bastion, user)
    assert read["sources"] == [{"source_id": reader["id"], "source_name": "Reader", "source_type": "ROLE"}]
    assert write["sources"] == [{"source_id": editor["id"], "source_name": "Editor", "source_type": "ROLE"}]


async def test_user_permission_must_be_a_scope_of_its_api(bastion):
    await bastion.create_api()
    user = await bastion.create_user()
    body = assert_error(await bastion.management("POST", user_path(user["user_id"]) + "/permissions", json=perms("admin:things")),
                        400, "invalid_body")
    assert "admin:things" in body["message"]
    assert await user_permissions(bastion, user) == []


# -- cascades --------------------------------------------------------------------------


async def test_deleting_a_role_takes_it_and_its_permissions_from_its_users(bastion):
    await bastion.create_api()
    editor, reader = await create_role(bastion, "Editor"), await create_role(bastion, "Reader")
    await add_role_permissions(bastion, editor, "write:things", "read:things")
    await add_role_permissions(bastion, reader, "read:things")
    user = await bastion.create_user()
    await give_roles(bastion, user, editor, reader)

    assert (await bastion.management("DELETE", f"/roles/{editor['id']}")).status_code == 200
    assert (await bastion.management("GET", user_path(user["user_id"]) + "/roles")).json() == [reader]
    [read] = await user_permissions(bastion, user)
    assert read["permission_name"] == "read:things"
    assert read["sources"] == [{"source_id": reader["id"], "source_name": "Reader", "source_type": "ROLE"}]


async def test_deleting_a_user_deletes_their_roles_and_permissions(bastion):
    await bastion.create_api()
    role = await create_role(bastion)
    alice, bob = await bastion.create_user("alice@example.com"), await bastion.create_user("bob@example.com")
    await give_roles(bastion, alice, role)
    await give_roles(bastion, bob, role)
    assert (await bastion.management("POST", user_path(alice["user_id"]) + "/permissions", json=perms("read:things"))).status_code == 201

    assert (await bastion.management("DELETE", user_path(alice["user_id"]))).status_code == 204
    members = (await bastion.management("GET", f"/roles/{role['id']}/users")).json()
    assert [m["user_id"] for m in members] == [bob["user_id"]]
    async with bastion.services.database.reader() as session:
        for table in (UserRoleRow, UserPermissionRow):
            left = await session.scalar(select(func.count()).select_from(table).where(table.user_id == alice["user_id"]))
            assert left == 0, table.__tablename__


# -- the APIs' RBAC settings -------------------------------------------------------------


async def test_resource_server_rbac_settings_are_set_returned_and_changed(bastion):
    plain = await bastion.create_api("https://plain.test")
    assert (plain["enforce_policies"], plain["token_dialect"]) == (False, "access_token")

    api = await bastion.create_api(enforce_policies=True, token_dialect="access_token_authz")
    assert (api["enforce_policies"], api["token_dialect"]) == (True, "access_token_authz")
    assert (await bastion.management("GET", f"/resource-servers/{api['id']}")).json() == api

    patched = await bastion.management("PATCH", f"/resource-servers/{api['id']}", json={"enforce_policies": False, "token_dialect": "access_token"})
    assert patched.status_code == 200, patched.text
    stored = (await bastion.management("GET", f"/resource-servers/{api['id']}")).json()
    assert (stored["enforce_policies"], stored["token_dialect"]) == (False, "access_token")

    wrong = await bastion.management("PATCH", f"/resource-servers/{api['id']}", json={"token_dialect": "opaque"})
    assert "token_dialect" in assert_error(wrong, 400, "invalid_body")["message"]


# -- scopes -------------------------------------------------------------------------------


async def test_management_api_defines_the_role_scopes(bastion):
    listing = (await bastion.management("GET", "/resource-servers")).json()
    [system] = [a for a in listing if a["is_system"]]
    assert {"read:roles", "create:roles", "update:roles", "delete:roles"} <= {s["value"] for s in system["scopes"]}


@pytest.mark.parametrize("method, path, body, granted, expected", [
    ("GET", "/roles", None, "read:users", "read:roles"),
    ("POST", "/roles", {"name": "x"}, "read:roles", "create:roles"),
    ("GET", "/roles/{role}", None, "update:roles", "read:roles"),
    ("PATCH", "/roles/{role}", {"name": "y"}, "read:roles", "update:roles"),
    ("DELETE", "/roles/{role}", None, "update:roles", "delete:roles"),
    ("GET", "/roles/{role}/permissions", None, "read:users", "read:roles"),
    ("POST", "/roles/{role}/permissions", perms("read:things"), "read:roles", "update:roles"),
    ("DELETE", "/roles/{role}/permissions", perms("read:things"), "read:roles", "update:roles"),
    ("GET", "/roles/{role}/users", None, "read:roles", "read:users,read:roles"),
    ("GET", "/roles/{role}/users", None, "read:users", "read:users,read:roles"),
    ("POST", "/roles/{role}/users", {"users": ["{user}"]}, "update:users", "update:roles"),
    ("GET", "/users/{user}/roles", None, "read:users", "read:users,read:roles"),
    ("POST", "/users/{user}/roles", {"roles": ["{role}"]}, "update:roles", "update:users"),
    ("DELETE", "/users/{user}/roles", {"roles": ["{role}"]}, "update:roles", "update:users"),
    ("GET", "/users/{user}/permissions", None, "read:roles", "read:users"),
    ("POST", "/users/{user}/permissions", perms("read:things"), "update:roles", "update:users"),
    ("DELETE", "/users/{user}/permissions", perms("read:things"), "update:roles", "update:users"),
])
async def test_each_endpoint_needs_its_scope(bastion, method, path, body, granted, expected):
    await bastion.create_api()
    role = await create_role(bastion)
    user = await bastion.create_user()
    fill = {"{role}": role["id"], "{user}": quote(user["user_id"], safe="")}
    for key, value in fill.items():
        path = path.replace(key, value)
    if body and "users" in body:
        body = {"users": [user["user_id"]]}
    if body and "roles" in body:
        body = {"roles": [role["id"]]}
    token = await bastion.management_token(scope=granted)
    response = await bastion.http.request(method, f"/api/v2{path}", headers=bearer(token), json=body)
    message = assert_error(response, 403, "insufficient_scope")["message"]
    assert expected in message

    allowed = await bastion.management_token(scope=" ".join(expected.split(",")))
    answered = await bastion.http.request(method, f"/api/v2{path}", headers=bearer(allowed), json=body)
    assert answered.status_code in (200, 201, 204), answered.text
