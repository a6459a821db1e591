"""Groups (the Authorization Extension's model) on both databases: the Management API
(/api/v2/groups and /users/{id}/groups), nesting and its cycles, roles through groups,
mappings of upstream groups, cascades, scopes, and `user_authorization`, the one-query answer
the login gives rules as user.groups, user.roles and user.permissions (docs/access-control.md).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import event, func, select, update

from bastion.storage.group_tables import GroupMappingRow, GroupMemberRow, GroupNestedRow, GroupRoleRow
from bastion.storage.groups import Authorization, user_authorization
from bastion.storage.tables import IdentityRow
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from test_management_api import assert_error, bearer, user_path

pytestmark = pytest.mark.postgres

API = "https://api.test"


# -- helpers ---------------------------------------------------------------------------


async def create_group(bastion, name: str = "Engineering", description: str | None = "Builds things") -> dict:
    body = {"name": name, **({"description": description} if description is not None else {})}
    response = await bastion.management("POST", "/groups", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def create_role(bastion, name: str, *permissions: str) -> dict:
    response = await bastion.management("POST", "/roles", json={"name": name})
    assert response.status_code == 200, response.text
    role = response.json()
    if permissions:
        body = {"permissions": [{"resource_server_identifier": API, "permission_name": p} for p in permissions]}
        added = await bastion.management("POST", f"/roles/{role['id']}/permissions", json=body)
        assert added.status_code == 201, added.text
    return role


async def change(bastion, method: str, path: str, ids: list, status: int = 204):
    response = await bastion.management(method, path, json=ids)
    assert response.status_code == status, response.text
    return response


async def listing(bastion, path: str, **params) -> list | dict:
    response = await bastion.management("GET", path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def authorization(bastion, user: dict, connection: str | None = DEFAULT_CONNECTION, upstream=None) -> Authorization:
    async with bastion.services.database.reader() as session:
        return await user_authorization(session, user_id=user["user_id"], connection=connection, upstream_groups=upstream)


async def count_rows(bastion, table, **where) -> int:
    async with bastion.services.database.reader() as session:
        statement = select(func.count()).select_from(table)
        for column, value in where.items():
            statement = statement.where(getattr(table, column) == value)
        return await session.scalar(statement)


# -- groups --------------------------------------------------------------------------------


async def test_create_get_patch_and_delete_a_group(bastion):
    group = await create_group(bastion)
    assert set(group) == {"id", "name", "description"}
    assert group["id"].startswith("grp_") and len(group["id"]) == 20
    assert (group["name"], group["description"]) == ("Engineering", "Builds things")
    assert await listing(bastion, f"/groups/{group['id']}") == group

    bare = await create_group(bastion, "Support", description=None)
    assert bare == {"id": bare["id"], "name": "Support"}

    patched = await bastion.management("PATCH", f"/groups/{group['id']}", json={"name": "R&D", "description": "Researches"})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {"id": group["id"], "name": "R&D", "description": "Researches"}
    assert (await bastion.management("PATCH", f"/groups/{group['id']}", json={"description": "Still"})).json()["name"] == "R&D"

    deleted = await bastion.management("DELETE", f"/groups/{group['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        assert_error(await bastion.management(method, f"/groups/{group['id']}", json=body), 404, "inexistent_group")


async def test_group_names_are_unique_and_bodies_validated(bastion):
    await create_group(bastion, "Engineering")
    other = await create_group(bastion, "Support")
    assert_error(await bastion.management("POST", "/groups", json={"name": "Engineering"}), 409, "conflict")
    assert_error(await bastion.management("PATCH", f"/groups/{other['id']}", json={"name": "Engineering"}), 409, "conflict")
    assert (await bastion.management("PATCH", f"/groups/{other['id']}", json={"name": "Support"})).status_code == 200

    assert "name" in assert_error(await bastion.management("POST", "/groups", json={"description": "x"}), 400, "invalid_body")["message"]
    assert_error(await bastion.management("POST", "/groups", json={"name": ""}), 400, "invalid_body")
    assert_error(await bastion.management("PATCH", f"/groups/{other['id']}", json={"name": None}), 400, "invalid_body")


async def test_groups_are_listed_by_name_with_pages_totals_and_name_filter(bastion):
    for name in ("Support", "Admins", "site-ADMINS", "Engineering"):
        await create_group(bastion, name)
    assert [g["name"] for g in await listing(bastion, "/groups")] == ["Admins", "Engineering", "Support", "site-ADMINS"]

    first = await listing(bastion, "/groups", per_page=3, page=0, include_totals="true")
    second = await listing(bastion, "/groups", per_page=3, page=1, include_totals="true")
    assert set(first) == {"groups", "start", "limit", "total"}
    assert (first["start"], first["limit"], first["total"], len(first["groups"])) == (0, 3, 4, 3)
    assert (second["start"], [g["name"] for g in second["groups"]]) == (3, ["site-ADMINS"])

    filtered = await listing(bastion, "/groups", name_filter="admin")
    assert [g["name"] for g in filtered] == ["Admins", "site-ADMINS"]
    assert await listing(bastion, "/groups", name_filter="%") == []


# -- members --------------------------------------------------------------------------------


async def test_members_are_added_listed_paged_and_removed(bastion):
    group = await create_group(bastion)
    users = [await bastion.create_user(f"user{i}@example.com") for i in range(3)]
    ids = sorted(u["user_id"] for u in users)
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [u["user_id"] for u in users])
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [users[0]["user_id"]])  # again: no error, no duplicate

    members = await listing(bastion, f"/groups/{group['id']}/members")
    assert [m["user_id"] for m in members] == ids
    assert set(members[0]) == {"user_id", "email", "name", "picture"}
    paged = await listing(bastion, f"/groups/{group['id']}/members", per_page=2, page=1, include_totals="true")
    assert (paged["start"], paged["limit"], paged["total"], [m["user_id"] for m in paged["users"]]) == (2, 2, 3, ids[2:])
    checkpoint = await listing(bastion, f"/groups/{group['id']}/members", take=2)
    assert [m["user_id"] for m in checkpoint["users"]] == ids[:2] and checkpoint["next"] == "2"

    await change(bastion, "DELETE", f"/groups/{group['id']}/members", [ids[0], "auth0|nobody"])
    assert [m["user_id"] for m in await listing(bastion, f"/groups/{group['id']}/members")] == ids[1:]


async def test_adding_an_unknown_user_is_404_and_adds_nobody(bastion):
    group = await create_group(bastion)
    alice = await bastion.create_user()
    unknown = await bastion.management("PATCH", f"/groups/{group['id']}/members", json=[alice["user_id"], "auth0|nobody"])
    assert_error(unknown, 404, "inexistent_user")
    assert await listing(bastion, f"/groups/{group['id']}/members") == []
    assert_error(await bastion.management("PATCH", "/groups/grp_nope/members", json=[alice["user_id"]]), 404, "inexistent_group")
    assert_error(await bastion.management("GET", "/groups/grp_nope/members"), 404, "inexistent_group")
    for body in ([], {"users": [alice["user_id"]]}, [""], ["x" * 129], [alice["user_id"]] * 1001):
        assert_error(await bastion.management("PATCH", f"/groups/{group['id']}/members", json=body), 400, "invalid_body")


# -- nesting -----------------------------------------------------------------------------------


async def test_nested_groups_members_are_members_of_the_parent(bastion):
    company, engineering, tools = [await create_group(bastion, n) for n in ("Company", "Engineering", "Internal Tools")]
    alice, bob, carol = [await bastion.create_user(f"{n}@example.com") for n in ("alice", "bob", "carol")]
    await change(bastion, "PATCH", f"/groups/{company['id']}/nested", [engineering["id"]])
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/nested", [tools["id"]])
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/nested", [tools["id"]])  # again: kept once
    await change(bastion, "PATCH", f"/groups/{company['id']}/members", [alice["user_id"]])
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/members", [bob["user_id"]])
    await change(bastion, "PATCH", f"/groups/{tools['id']}/members", [carol["user_id"], bob["user_id"]])

    assert await listing(bastion, f"/groups/{company['id']}/nested") == [engineering]
    assert await listing(bastion, f"/groups/{engineering['id']}/nested") == [tools]
    assert [m["user_id"] for m in await listing(bastion, f"/groups/{company['id']}/members")] == [alice["user_id"]]

    nested = await listing(bastion, f"/groups/{company['id']}/members/nested")
    expected = sorted([(alice["user_id"], "Company"), (bob["user_id"], "Engineering"), (bob["user_id"], "Internal Tools"),
                       (carol["user_id"], "Internal Tools")])
    assert [(n["user"]["user_id"], n["group"]["name"]) for n in nested] == expected
    [alice_entry] = [n for n in nested if n["user"]["user_id"] == alice["user_id"]]
    assert alice_entry["group"] == company and set(alice_entry["user"]) == {"user_id", "email", "name", "picture"}
    paged = await listing(bastion, f"/groups/{company['id']}/members/nested", per_page=3, include_totals="true")
    assert (paged["total"], len(paged["nested"])) == (4, 3)
    leaf = await listing(bastion, f"/groups/{tools['id']}/members/nested")
    assert sorted(n["user"]["user_id"] for n in leaf) == sorted([bob["user_id"], carol["user_id"]])

    for user, groups in ((alice, ["Company"]), (bob, ["Company", "Engineering", "Internal Tools"]),
                         (carol, ["Company", "Engineering", "Internal Tools"])):
        assert (await authorization(bastion, user)).groups == groups

    await change(bastion, "DELETE", f"/groups/{company['id']}/nested", [engineering["id"]])
    assert await listing(bastion, f"/groups/{company['id']}/nested") == []
    assert (await authorization(bastion, carol)).groups == ["Engineering", "Internal Tools"]


async def test_nesting_that_would_make_a_cycle_is_refused(bastion):
    a, b, c = [await create_group(bastion, n) for n in ("A", "B", "C")]
    await change(bastion, "PATCH", f"/groups/{a['id']}/nested", [b["id"]])
    await change(bastion, "PATCH", f"/groups/{b['id']}/nested", [c["id"]])

    assert_error(await bastion.management("PATCH", f"/groups/{a['id']}/nested", json=[a["id"]]), 409, "conflict")
    direct = assert_error(await bastion.management("PATCH", f"/groups/{b['id']}/nested", json=[a["id"]]), 409, "conflict")
    assert a["id"] in direct["message"]
    assert_error(await bastion.management("PATCH", f"/groups/{c['id']}/nested", json=[a["id"]]), 409, "conflict")
    # A refused body stores nothing, not even its acceptable part.
    d = await create_group(bastion, "D")
    assert_error(await bastion.management("PATCH", f"/groups/{c['id']}/nested", json=[d["id"], b["id"]]), 409, "conflict")
    assert await listing(bastion, f"/groups/{c['id']}/nested") == []
    assert await count_rows(bastion, GroupNestedRow) == 2

    # Diamonds are not cycles: A > B > C and A > C, D > C.
    await change(bastion, "PATCH", f"/groups/{a['id']}/nested", [c["id"]])
    await change(bastion, "PATCH", f"/groups/{d['id']}/nested", [c["id"]])
    assert_error(await bastion.management("PATCH", f"/groups/{a['id']}/nested", json=["grp_nope"]), 404, "inexistent_group")


async def test_racing_nestings_cannot_make_a_cycle(bastion):
    """Two transactions nest A in B and B in A. Each checks for a cycle after its own write,
    and a second nesting cannot write until the first one's transaction has ended (SQLite's
    write lock; PostgreSQL's advisory lock): the second sees the first and refuses."""
    from sqlalchemy import text

    from bastion.storage import groups as group_store

    a, b = await create_group(bastion, "A"), await create_group(bastion, "B")
    database = bastion.services.database
    with pytest.raises(group_store.GroupCycle):
        async with database.transaction() as second:
            await group_store.get_group(second, id=a["id"])  # the second transaction is under way
            async with database.transaction() as first:
                await group_store.add_nested_groups(first, group_id=a["id"], nested_group_ids=[b["id"]])
                if not database.is_sqlite:  # until it ends, the first holds the lock every nesting takes
                    async with database.transaction() as third:
                        lock = text("SELECT pg_try_advisory_xact_lock(:key)")
                        assert await third.scalar(lock, {"key": group_store._NESTING_LOCK}) is False
            await group_store.add_nested_groups(second, group_id=b["id"], nested_group_ids=[a["id"]])
    assert await count_rows(bastion, GroupNestedRow) == 1
    assert await listing(bastion, f"/groups/{a['id']}/nested") == [b]


# -- roles through groups -------------------------------------------------------------------------


async def test_group_roles_are_added_listed_and_removed(bastion):
    group = await create_group(bastion)
    editor, reader = await create_role(bastion, "Editor"), await create_role(bastion, "Reader")
    await change(bastion, "PATCH", f"/groups/{group['id']}/roles", [reader["id"], editor["id"]])
    await change(bastion, "PATCH", f"/groups/{group['id']}/roles", [editor["id"]])
    assert await listing(bastion, f"/groups/{group['id']}/roles") == [editor, reader]
    paged = await listing(bastion, f"/groups/{group['id']}/roles", per_page=1, page=1, include_totals="true")
    assert (paged["roles"], paged["total"]) == ([reader], 2)

    assert_error(await bastion.management("PATCH", f"/groups/{group['id']}/roles", json=["rol_nope"]), 404, "inexistent_role")
    await change(bastion, "DELETE", f"/groups/{group['id']}/roles", [editor["id"]])
    assert await listing(bastion, f"/groups/{group['id']}/roles") == [reader]


async def test_user_authorization_gathers_groups_roles_and_permissions(bastion):
    await bastion.create_api(scopes=[{"value": v} for v in ("read:things", "write:things", "delete:things", "audit:things")])
    admin = await create_role(bastion, "Admin", "delete:things")
    editor = await create_role(bastion, "Editor", "write:things", "read:things")
    auditor = await create_role(bastion, "Auditor", "audit:things", "read:things")
    await create_role(bastion, "Unused", "delete:things")
    company, engineering = await create_group(bastion, "Company"), await create_group(bastion, "Engineering")
    await change(bastion, "PATCH", f"/groups/{company['id']}/nested", [engineering["id"]])
    await change(bastion, "PATCH", f"/groups/{company['id']}/roles", [auditor["id"]])
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/roles", [editor["id"]])
    alice, bob = await bastion.create_user(), await bastion.create_user("bob@example.com")
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/members", [alice["user_id"]])
    assert (await bastion.management("POST", user_path(alice["user_id"]) + "/roles", json={"roles": [admin["id"]]})).status_code == 204
    direct = {"permissions": [{"resource_server_identifier": API, "permission_name": "read:things"}]}
    assert (await bastion.management("POST", user_path(bob["user_id"]) + "/permissions", json=direct)).status_code == 201

    assert await authorization(bastion, alice) == Authorization(
        groups=["Company", "Engineering"],
        roles=["Admin", "Auditor", "Editor"],  # her own, and those of her group and of its parent
        permissions=["audit:things", "delete:things", "read:things", "write:things"],
    )
    assert await authorization(bastion, bob) == Authorization(groups=[], roles=[], permissions=["read:things"])
    assert await authorization(bastion, {"user_id": "auth0|nobody"}) == Authorization([], [], [])


async def test_user_authorization_is_one_query(bastion):
    group = await create_group(bastion)
    alice = await bastion.create_user()
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [alice["user_id"]])
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    engine = bastion.services.database.engine.sync_engine
    async with bastion.services.database.reader() as session:
        await session.connection()  # the connection itself (and SQLite's pragmas) are not the lookup
        event.listen(engine, "before_cursor_execute", record)
        try:
            found = await user_authorization(session, user_id=alice["user_id"], connection="corp", upstream_groups=["a", "b"])
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert found.groups == ["Engineering"]
    assert len(statements) == 1, statements


# -- mappings ------------------------------------------------------------------------------------------


async def test_mappings_are_added_listed_and_removed(bastion):
    group = await create_group(bastion)
    added = await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[
        {"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"},
        {"connectionName": DEFAULT_CONNECTION, "groupName": "Builders"},
    ])
    assert added.status_code == 201, added.text
    mappings = added.json()
    assert [(m["connectionName"], m["groupName"]) for m in mappings] == [(DEFAULT_CONNECTION, "Builders"), (DEFAULT_CONNECTION, "Engineers")]
    assert all(set(m) == {"id", "connectionName", "groupName"} and m["id"].startswith("gmp_") for m in mappings)
    again = await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[{"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"}])
    assert again.json() == mappings  # kept once, with its id
    assert await listing(bastion, f"/groups/{group['id']}/mappings") == mappings

    unknown = await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[{"connectionName": "corp-ad", "groupName": "x"}])
    assert "corp-ad" in assert_error(unknown, 400, "invalid_body")["message"]
    assert_error(await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[{"groupName": "x"}]), 400, "invalid_body")

    await change(bastion, "DELETE", f"/groups/{group['id']}/mappings", [mappings[0]["id"]])
    assert await listing(bastion, f"/groups/{group['id']}/mappings") == mappings[1:]
    await change(bastion, "DELETE", f"/groups/{group['id']}/mappings", [{"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"}])
    assert await listing(bastion, f"/groups/{group['id']}/mappings") == []


async def test_deleting_a_connection_deletes_its_mappings(bastion):
    """A connection created later under the same name must not inherit the old one's mappings."""
    group = await create_group(bastion)
    created = await bastion.management("POST", "/connections", json={"name": "corp-db", "strategy": "auth0"})
    assert created.status_code == 201, created.text
    added = await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[
        {"connectionName": "corp-db", "groupName": "Admins"}, {"connectionName": DEFAULT_CONNECTION, "groupName": "Staff"}])
    assert added.status_code == 201, added.text
    assert (await bastion.management("DELETE", f"/connections/{created.json()['id']}")).status_code == 204
    assert (await bastion.management("POST", "/connections", json={"name": "corp-db", "strategy": "auth0"})).status_code == 201
    assert [(m["connectionName"], m["groupName"]) for m in await listing(bastion, f"/groups/{group['id']}/mappings")] == [
        (DEFAULT_CONNECTION, "Staff")]


async def test_mapped_upstream_groups_make_members_for_their_connection_only(bastion):
    await bastion.create_api()
    reader = await create_role(bastion, "Reader", "read:things")
    company, engineering = await create_group(bastion, "Company"), await create_group(bastion, "Engineering")
    await change(bastion, "PATCH", f"/groups/{company['id']}/nested", [engineering["id"]])
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/roles", [reader["id"]])
    response = await bastion.management("POST", f"/groups/{engineering['id']}/mappings",
                                        json=[{"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"}])
    assert response.status_code == 201, response.text
    alice = await bastion.create_user()

    mapped = await authorization(bastion, alice, upstream=["Sales", "Engineers", 7, None])
    assert mapped == Authorization(groups=["Company", "Engineering"], roles=["Reader"], permissions=["read:things"])
    assert (await authorization(bastion, alice, upstream=["engineers"])).groups == []  # names compare exactly
    assert (await authorization(bastion, alice, connection="other-connection", upstream=["Engineers"])).groups == []
    assert (await authorization(bastion, alice, upstream=None)).groups == []
    assert (await authorization(bastion, alice, connection=None, upstream=["Engineers"])).groups == []
    assert (await authorization(bastion, alice, upstream="Engineers")).groups == []  # a list, not a string


# -- a user's groups ---------------------------------------------------------------------------------------


async def test_user_groups_direct_and_calculated(bastion):
    company, engineering, support, mapped = [await create_group(bastion, n) for n in ("Company", "Engineering", "Support", "Mapped")]
    await change(bastion, "PATCH", f"/groups/{company['id']}/nested", [engineering["id"], mapped["id"]])
    response = await bastion.management("POST", f"/groups/{mapped['id']}/mappings",
                                        json=[{"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"}])
    assert response.status_code == 201
    alice = await bastion.create_user()
    await change(bastion, "PATCH", f"/groups/{engineering['id']}/members", [alice["user_id"]])
    await change(bastion, "PATCH", f"/groups/{support['id']}/members", [alice["user_id"]])
    path = user_path(alice["user_id"]) + "/groups"

    # The route lives in the groups router; /users/{id} of the users router does not swallow it.
    assert await listing(bastion, path) == [engineering, support]
    assert await listing(bastion, path, calculate="true") == [company, engineering, support]
    paged = await listing(bastion, path, calculate="true", per_page=2, page=1, include_totals="true")
    assert (paged["groups"], paged["start"], paged["total"]) == ([support], 2, 3)

    # The upstream groups an identity reported at its last login count in the calculation.
    async with bastion.services.database.transaction() as session:
        await session.execute(update(IdentityRow).where(IdentityRow.user_id == alice["user_id"])
                              .values(profile_data={"groups": ["Engineers", 3]}))
    assert [g["name"] for g in await listing(bastion, path, calculate="true")] == ["Company", "Engineering", "Mapped", "Support"]
    assert_error(await bastion.management("GET", user_path("auth0|nobody") + "/groups"), 404, "inexistent_user")


async def test_a_linked_secondary_user_is_no_member_of_its_own(bastion):
    """After account linking (docs/identities.md) the secondary logs in as its primary: it is not
    listed nor added as a member, and its identity's upstream groups count for the primary."""
    group, mapped = await create_group(bastion), await create_group(bastion, "Mapped")
    response = await bastion.management("POST", f"/groups/{mapped['id']}/mappings",
                                        json=[{"connectionName": DEFAULT_CONNECTION, "groupName": "Engineers"}])
    assert response.status_code == 201
    alice, bob = await bastion.create_user(), await bastion.create_user("bob@example.com")
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [alice["user_id"], bob["user_id"]])
    async with bastion.services.database.transaction() as session:
        await session.execute(update(IdentityRow).where(IdentityRow.user_id == bob["user_id"])
                              .values(profile_data={"groups": ["Engineers"]}))
    linked = await bastion.management("POST", user_path(alice["user_id"]) + "/identities",
                                      json={"provider": "auth0", "user_id": bob["identities"][0]["user_id"], "force": True})
    assert linked.status_code == 201, linked.text

    assert [m["user_id"] for m in await listing(bastion, f"/groups/{group['id']}/members")] == [alice["user_id"]]
    assert [n["user"]["user_id"] for n in await listing(bastion, f"/groups/{group['id']}/members/nested")] == [alice["user_id"]]
    assert_error(await bastion.management("PATCH", f"/groups/{group['id']}/members", json=[bob["user_id"]]), 404, "inexistent_user")
    calculated = await listing(bastion, user_path(alice["user_id"]) + "/groups", calculate="true")
    assert [g["name"] for g in calculated] == ["Engineering", "Mapped"]


# -- cascades ------------------------------------------------------------------------------------------------


async def test_deleting_a_group_takes_its_members_nestings_roles_and_mappings(bastion):
    parent, group, child = [await create_group(bastion, n) for n in ("Parent", "Group", "Child")]
    role = await create_role(bastion, "Editor")
    alice = await bastion.create_user()
    await change(bastion, "PATCH", f"/groups/{parent['id']}/nested", [group["id"]])
    await change(bastion, "PATCH", f"/groups/{group['id']}/nested", [child["id"]])
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [alice["user_id"]])
    await change(bastion, "PATCH", f"/groups/{group['id']}/roles", [role["id"]])
    await bastion.management("POST", f"/groups/{group['id']}/mappings", json=[{"connectionName": DEFAULT_CONNECTION, "groupName": "x"}])

    assert (await bastion.management("DELETE", f"/groups/{group['id']}")).status_code == 204
    for table in (GroupMemberRow, GroupRoleRow, GroupMappingRow, GroupNestedRow):
        assert await count_rows(bastion, table) == 0, table.__tablename__
    assert await listing(bastion, f"/groups/{parent['id']}/nested") == []
    assert (await bastion.management("GET", f"/roles/{role['id']}")).status_code == 200  # the role stays
    assert (await authorization(bastion, alice)) == Authorization([], [], [])


async def test_deleting_a_user_or_a_role_takes_them_from_their_groups(bastion):
    group = await create_group(bastion)
    editor, reader = await create_role(bastion, "Editor"), await create_role(bastion, "Reader")
    alice, bob = await bastion.create_user(), await bastion.create_user("bob@example.com")
    await change(bastion, "PATCH", f"/groups/{group['id']}/members", [alice["user_id"], bob["user_id"]])
    await change(bastion, "PATCH", f"/groups/{group['id']}/roles", [editor["id"], reader["id"]])

    assert (await bastion.management("DELETE", user_path(alice["user_id"]))).status_code == 204
    assert [m["user_id"] for m in await listing(bastion, f"/groups/{group['id']}/members")] == [bob["user_id"]]
    assert await count_rows(bastion, GroupMemberRow, user_id=alice["user_id"]) == 0

    assert (await bastion.management("DELETE", f"/roles/{editor['id']}")).status_code == 200
    assert await listing(bastion, f"/groups/{group['id']}/roles") == [reader]
    assert (await authorization(bastion, bob)).roles == ["Reader"]


# -- scopes ---------------------------------------------------------------------------------------------------


async def test_management_api_defines_the_group_scopes(bastion):
    [system] = [a for a in await listing(bastion, "/resource-servers") if a["is_system"]]
    assert {"read:groups", "create:groups", "update:groups", "delete:groups"} <= {s["value"] for s in system["scopes"]}


ENDPOINTS = [
    # method, path, body, a scope that is not enough, the scopes needed
    ("GET", "/groups", None, "read:users", "read:groups"),
    ("POST", "/groups", {"name": "New"}, "update:groups", "create:groups"),
    ("GET", "/groups/{group}", None, "update:groups", "read:groups"),
    ("PATCH", "/groups/{group}", {"description": "x"}, "read:groups", "update:groups"),
    ("GET", "/groups/{group}/members", None, "read:groups", "read:users,read:groups"),
    ("GET", "/groups/{group}/members/nested", None, "read:users", "read:users,read:groups"),
    ("PATCH", "/groups/{group}/members", ["{user}"], "update:users", "update:groups"),
    ("DELETE", "/groups/{group}/members", ["{user}"], "delete:groups", "update:groups"),
    ("GET", "/groups/{group}/nested", None, "read:users", "read:groups"),
    ("PATCH", "/groups/{group}/nested", ["{other}"], "read:groups", "update:groups"),
    ("DELETE", "/groups/{group}/nested", ["{other}"], "delete:groups", "update:groups"),
    ("GET", "/groups/{group}/roles", None, "read:roles", "read:groups,read:roles"),
    ("PATCH", "/groups/{group}/roles", ["{role}"], "update:roles", "update:groups"),
    ("DELETE", "/groups/{group}/roles", ["{role}"], "update:roles", "update:groups"),
    ("GET", "/groups/{group}/mappings", None, "read:users", "read:groups"),
    ("POST", "/groups/{group}/mappings", [{"connectionName": DEFAULT_CONNECTION, "groupName": "x"}], "create:groups", "update:groups"),
    ("DELETE", "/groups/{group}/mappings", [{"connectionName": DEFAULT_CONNECTION, "groupName": "x"}], "delete:groups", "update:groups"),
    ("GET", "/users/{user}/groups", None, "read:users", "read:users,read:groups"),
    ("DELETE", "/groups/{group}", None, "update:groups", "delete:groups"),
]


async def test_each_endpoint_needs_its_scope(bastion):
    group, other = await create_group(bastion), await create_group(bastion, "Other")
    role = await create_role(bastion, "Editor")
    user = await bastion.create_user()
    fill = {"{group}": group["id"], "{other}": other["id"], "{role}": role["id"]}
    for method, path, body, granted, expected in ENDPOINTS:
        path = path.replace("{user}", quote(user["user_id"], safe=""))
        for key, value in fill.items():
            path = path.replace(key, value)
        if isinstance(body, list):
            body = [fill.get(item, user["user_id"] if item == "{user}" else item) if isinstance(item, str) else item for item in body]
        token = await bastion.management_token(scope=granted)
        refused = await bastion.http.request(method, f"/api/v2{path}", headers=bearer(token), json=body)
        assert expected in assert_error(refused, 403, "insufficient_scope")["message"], (method, path)

        allowed = await bastion.management_token(scope=" ".join(expected.split(",")))
        answered = await bastion.http.request(method, f"/api/v2{path}", headers=bearer(allowed), json=body)
        assert answered.status_code in (200, 201, 204), (method, path, answered.text)
    assert_error(await bastion.http.get("/api/v2/groups"), 401)
