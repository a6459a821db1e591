"""/api/v2/logs: Auth0's log search (`q`: field:value terms joined by AND, date ranges) and its
checkpoint paging (`from` = a log_id, `take`), on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.test_management_api import realm_login

pytestmark = pytest.mark.postgres


async def logs(bastion, **params):
    response = await bastion.management("GET", "/logs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_search_combines_fields_with_and_and_quoted_values(bastion):
    client = await bastion.create_client(name="Payroll App")
    other = await bastion.create_client(name="Other")
    alice = await bastion.create_user("alice@example.com")
    await bastion.create_user("bob@example.com")
    assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403
    assert (await realm_login(bastion, client)).status_code == 200
    assert (await realm_login(bastion, other, password="Wrong-Password-1")).status_code == 403
    assert (await realm_login(bastion, client, username="bob@example.com", password="Wrong-Password-1")).status_code == 403

    found = await logs(bastion, q=f'type:fp AND client_id:{client["client_id"]} AND user_id:"{alice["user_id"]}"')
    assert [(e["type"], e["client_id"], e["user_id"]) for e in found] == [("fp", client["client_id"], alice["user_id"])]
    by_connection = await logs(bastion, q='connection:"Username-Password-Authentication" type:fp')  # a space is AND too
    assert len(by_connection) == 3 and {e["type"] for e in by_connection} == {"fp"}
    bob_events = await logs(bastion, q="user_name:bob@example.com")
    assert [e["type"] for e in bob_events] == ["fp"] and bob_events[0]["user_id"] != alice["user_id"]
    assert await logs(bastion, q="type:fp AND ip:198.51.100.1") == []


async def test_search_by_date_range(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await realm_login(bastion, client)).status_code == 200
    today = datetime.now(timezone.utc).date()
    assert [e["type"] for e in await logs(bastion, q=f"type:sepft AND date:[{today.isoformat()} TO *]")] == ["sepft"]
    assert await logs(bastion, q=f"date:[* TO {(today - timedelta(days=1)).isoformat()}]") == []
    assert len(await logs(bastion, q=f"date:[{today.isoformat()} TO {today.isoformat()}]")) >= 1


@pytest.mark.parametrize("query, message", [
    ("user.email:x", "Unsupported search"),
    ("description:boom", "Unsupported search field: description"),
    ("type:s OR type:f", "Unsupported search"),
    ("date:2026-01-01", "date:[FROM TO TO]"),
    ("date:[yesterday TO *]", "Invalid date"),
    ("type:s AND type:f", "once"),
])
async def test_unsupported_searches_are_a_clear_400(bastion, query, message):
    response = await bastion.management("GET", "/logs", params={"q": query})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "invalid_query_string" and message in body["message"], body


async def test_checkpoint_paging_walks_forward_from_a_log_id(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    for _ in range(5):
        assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403
    newest_first = await logs(bastion, q="type:fp")
    assert len(newest_first) == 5
    oldest = newest_first[-1]["log_id"]
    # From the oldest: the next ones, oldest first, `take` at a time, until none is left.
    seen, cursor = [], oldest
    while True:
        batch = await logs(bastion, q="type:fp", **{"from": cursor, "take": 2})
        if not batch:
            break
        seen.extend(e["log_id"] for e in batch)
        cursor = batch[-1]["log_id"]
    assert seen == [e["log_id"] for e in reversed(newest_first[:-1])]
    # `take` alone: the newest ones.
    assert [e["log_id"] for e in await logs(bastion, q="type:fp", take=3)] == [e["log_id"] for e in newest_first[:3]]
    unknown = await bastion.management("GET", "/logs", params={"from": "0000000000000000nope", "take": 2})
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["message"]
