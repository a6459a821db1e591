"""Log streams: the Management API (Auth0's shapes and errors) and delivery to real local HTTP
receivers (webhook, Segment, Splunk HEC) by the poller, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from bastion.log_streams.delivery import LogStreamDelivery, failing_for, retry_delay
from bastion.services import build_services
from bastion.storage.tables import LogEventRow, LogStreamRow
from conftest import PASSWORD
from http_receiver import Receiver
from test_management_api import realm_login

pytestmark = pytest.mark.postgres

SIGNING_SECRET = "whsec-0123456789abcdef"
AUTHORIZATION = "Bearer receiver-token-123456"


@pytest.fixture
def receiver():
    peer = Receiver(error_body=b'{"error": "boom ' + AUTHORIZATION.encode() + b'"}')
    yield peer
    peer.close()


def _items(request: dict) -> list[dict]:
    """The {"log_id", "data"} items of a webhook request, whatever its content format."""
    text = request["body"].decode()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line]


def _verify_signature(request: dict, secret: str) -> bool:
    """What a receiver does (docs/log-streams.md)."""
    fields = dict(part.split("=", 1) for part in request["headers"]["X-Bastion-Signature"].split(","))
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300


async def _create_stream(bastion, **body) -> dict:
    response = await bastion.management("POST", "/log-streams", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _webhook(receiver: Receiver, content_format: str = "JSONARRAY", **sink) -> dict:
    return {"httpEndpoint": receiver.url + "/logs", "httpContentType": "application/json",
            "httpContentFormat": content_format, **sink}


async def _deliver_all(job: LogStreamDelivery, *, rounds: int = 20) -> None:
    for _ in range(rounds):
        if await job.run_once() > 0:
            return


async def _delivery(bastion, stream: dict) -> dict:
    response = await bastion.management("GET", f"/log-streams/{stream['id']}")
    assert response.status_code == 200, response.text
    return response.json()["delivery"]


async def _stored_stream(bastion, stream_id: str):
    async with bastion.services.database.reader() as session:
        return await session.get(LogStreamRow, stream_id)


# -- the Management API --------------------------------------------------------------


async def test_crud_in_auth0_shapes(bastion, receiver):
    created = await _create_stream(bastion, name="SIEM", type="http", sink=_webhook(
        receiver, httpAuthorization=AUTHORIZATION, httpCustomHeaders=[{"header": "X-Tenant", "value": "acme"}],
        httpSigningSecret=SIGNING_SECRET,
    ), filters=[{"type": "category", "name": "auth.login.success"}])
    assert created["id"].startswith("lst_")
    assert {k: created[k] for k in ("name", "type", "status", "isPriority", "filters")} == {
        "name": "SIEM", "type": "http", "status": "active", "isPriority": False,
        "filters": [{"type": "category", "name": "auth.login.success"}],
    }
    assert created["sink"]["httpAuthorization"] == AUTHORIZATION and created["sink"]["httpContentFormat"] == "JSONARRAY"
    assert created["delivery"] == {"state": "idle", "failures": 0, "last_error": None, "last_attempt_at": None,
                                   "last_success_at": None, "next_attempt_at": None, "pending": 0}
    row = await _stored_stream(bastion, created["id"])
    assert AUTHORIZATION not in row.sink_sealed and SIGNING_SECRET not in row.sink_sealed  # sealed at rest

    segment = await _create_stream(bastion, type="segment", sink={"segmentWriteKey": "write-key-1234"})
    listed = (await bastion.management("GET", "/log-streams")).json()
    assert [s["id"] for s in listed] == [created["id"], segment["id"]]
    assert (await bastion.management("GET", f"/log-streams/{segment['id']}")).json()["sink"] == {"segmentWriteKey": "write-key-1234"}

    # an exported stream sent back as is (auth0-deploy-cli): `id`, `type` and `delivery` are ignored
    exported = (await bastion.management("GET", f"/log-streams/{created['id']}")).json()
    exported["name"] = "SIEM (renamed)"
    patched = await bastion.management("PATCH", f"/log-streams/{created['id']}", json=exported)
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "SIEM (renamed)" and patched.json()["sink"]["httpSigningSecret"] == SIGNING_SECRET

    paused = await bastion.management("PATCH", f"/log-streams/{created['id']}", json={"status": "paused"})
    assert paused.json()["status"] == "paused"
    merged = await bastion.management("PATCH", f"/log-streams/{created['id']}", json={"sink": {"httpAuthorization": None}})
    assert "httpAuthorization" not in merged.json()["sink"] and merged.json()["sink"]["httpEndpoint"] == receiver.url + "/logs"

    assert (await bastion.management("DELETE", f"/log-streams/{segment['id']}")).status_code == 204
    gone = await bastion.management("GET", f"/log-streams/{segment['id']}")
    assert gone.status_code == 404 and gone.json()["errorCode"] == "inexistent_log_stream"
    assert (await bastion.management("PATCH", "/log-streams/lst_nope", json={"name": "x"})).status_code == 404
    assert (await bastion.management("DELETE", "/log-streams/lst_nope")).status_code == 404

    async with bastion.services.database.reader() as session:
        audits = (await session.scalars(select(LogEventRow.description).where(LogEventRow.type == "sapi"))).all()
    assert {"Create a log stream", "Update a log stream", "Delete a log stream"} <= set(audits)


@pytest.mark.parametrize("body, message", [
    ({"type": "eventbridge", "sink": {}}, "No enum match"),
    ({"type": "http", "sink": {"httpContentFormat": "JSONARRAY"}}, "Missing required property: httpEndpoint"),
    ({"type": "http", "sink": {"httpEndpoint": "ftp://example.com"}}, "http or https URL"),
    ({"type": "http", "sink": {"httpEndpoint": "https://example.com", "httpContentFormat": "XML"}}, "No enum match"),
    ({"type": "http", "sink": {"httpEndpoint": "https://example.com", "httpSigningSecret": "short"}}, "at least 16"),
    ({"type": "http", "sink": {"httpEndpoint": "https://example.com",
                               "httpCustomHeaders": [{"header": "Authorization", "value": "x"}]}}, "Header not allowed"),
    ({"type": "http", "sink": {"httpEndpoint": "https://example.com", "segmentWriteKey": "k"}}, "Additional properties"),
    ({"type": "segment", "sink": {}}, "Missing required property: segmentWriteKey"),
    ({"type": "splunk", "sink": {"splunkDomain": "splunk.example.com", "splunkToken": "t", "splunkPort": "http"}}, "port"),
    ({"type": "http", "sink": {"httpEndpoint": "https://example.com"}, "filters": [{"type": "category", "name": "auth.nope"}]},
     "No enum match"),
])
async def test_invalid_streams_are_refused_with_auth0_errors(bastion_sqlite, body, message):
    response = await bastion_sqlite.management("POST", "/log-streams", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "invalid_body" and message in response.json()["message"]


async def test_type_cannot_change_and_status_is_one_of_auth0s(bastion_sqlite, receiver):
    stream = await _create_stream(bastion_sqlite, type="http", sink=_webhook(receiver))
    response = await bastion_sqlite.management("PATCH", f"/log-streams/{stream['id']}", json={"type": "segment"})
    assert response.status_code == 400 and "type" in response.json()["message"]
    response = await bastion_sqlite.management("PATCH", f"/log-streams/{stream['id']}", json={"status": "stopped"})
    assert response.status_code == 400 and response.json()["statusCode"] == 400
    response = await bastion_sqlite.management("PATCH", f"/log-streams/{stream['id']}", json={"status": "suspended"})
    assert response.status_code == 200 and response.json()["status"] == "suspended"


async def test_pii_config_is_refused_rather_than_ignored(bastion_sqlite, receiver):
    pii = {"log_fields": ["email"], "method": "mask"}
    response = await bastion_sqlite.management("POST", "/log-streams", json={"type": "http", "sink": _webhook(receiver),
                                                                             "pii_config": pii})
    assert response.status_code == 400 and "pii_config" in response.json()["message"]
    stream = await _create_stream(bastion_sqlite, type="http", sink=_webhook(receiver), pii_config=None)
    response = await bastion_sqlite.management("PATCH", f"/log-streams/{stream['id']}", json={"pii_config": pii})
    assert response.status_code == 400 and "pii_config" in response.json()["message"]


async def test_scopes(bastion_sqlite, receiver):
    token = await bastion_sqlite.management_token(scope="read:log_streams")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await bastion_sqlite.http.get("/api/v2/log-streams", headers=headers)).status_code == 200
    refused = await bastion_sqlite.http.post("/api/v2/log-streams", headers=headers, json={"type": "http", "sink": _webhook(receiver)})
    assert refused.status_code == 403 and refused.json()["errorCode"] == "insufficient_scope"
    assert (await bastion_sqlite.http.get("/api/v2/log-streams")).status_code == 401


# -- delivery ------------------------------------------------------------------------


@pytest.mark.parametrize("content_format", ["JSONARRAY", "JSONLINES", "JSONOBJECT"])
async def test_webhook_delivery_is_authorized_signed_filtered_and_in_order(bastion, receiver, content_format):
    client = await bastion.create_client()
    await bastion.create_user()
    stream = await _create_stream(bastion, type="http", sink=_webhook(
        receiver, content_format, httpAuthorization=AUTHORIZATION, httpSigningSecret=SIGNING_SECRET,
        httpCustomHeaders=[{"header": "X-Tenant", "value": "acme"}],
    ), filters=[{"type": "category", "name": "auth.token_exchange.success"}, {"type": "category", "name": "auth.login.fail"}])
    assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403
    assert (await realm_login(bastion, client)).status_code == 200
    await bastion.management("PATCH", f"/log-streams/{stream['id']}", json={"name": "renamed"})  # a sapi event: filtered out
    assert (await realm_login(bastion, client)).status_code == 200

    await _deliver_all(LogStreamDelivery(bastion.services))

    expected_requests = 3 if content_format == "JSONOBJECT" else 1
    assert len(receiver.requests) == expected_requests
    for request in receiver.requests:
        assert request["path"] == "/logs"
        assert request["headers"]["Authorization"] == AUTHORIZATION
        assert request["headers"]["X-Tenant"] == "acme" and request["headers"]["Content-Type"] == "application/json"
        assert _verify_signature(request, SIGNING_SECRET)
        assert not _verify_signature({**request, "body": request["body"] + b" "}, SIGNING_SECRET)
    items = [item for request in receiver.requests for item in _items(request)]
    assert [item["data"]["type"] for item in items] == ["fp", "sepft", "sepft"]
    assert all(item["log_id"] == item["data"]["log_id"] for item in items)
    assert items[0]["data"]["client_id"] == client["client_id"] and items[0]["data"]["user_name"] == "alice@example.com"
    if content_format == "JSONARRAY":
        assert receiver.requests[0]["body"].startswith(b"[")

    delivery = await _delivery(bastion, stream)
    assert delivery["state"] == "ok" and delivery["pending"] == 0 and delivery["last_success_at"]


async def test_events_before_a_stream_exists_are_not_sent(bastion, receiver):
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await realm_login(bastion, client)).status_code == 200
    await _create_stream(bastion, type="http", sink=_webhook(receiver))
    await _deliver_all(LogStreamDelivery(bastion.services))
    assert receiver.requests == []


async def test_start_from_delivers_the_events_logged_since_then(bastion, receiver):
    client = await bastion.create_client()
    await bastion.create_user()
    async with bastion.services.database.transaction() as session:  # an event of yesterday
        await session.execute(insert(LogEventRow).values(
            log_id="90020261125000000000000000000000000000000000000000000001", type="s",
            date=datetime.now(timezone.utc) - timedelta(days=1), details={}))
    assert (await realm_login(bastion, client)).status_code == 200
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    await _create_stream(bastion, type="http", sink=_webhook(receiver), startFrom=since,
                         filters=[{"type": "category", "name": "auth.token_exchange.success"},
                                  {"type": "category", "name": "auth.login.success"}])
    await _deliver_all(LogStreamDelivery(bastion.services))
    items = [item for request in receiver.requests for item in _items(request)]
    assert [item["data"]["type"] for item in items] == ["sepft"]  # the login of the last hour, not the older one
    assert items[0]["data"]["hostname"] == "bastion.test"  # Auth0's tenant domain: the issuer's host

    for nonsense in ("yesterday", 1732665600, "0001-01-01T00:00:00+05:00"):
        refused = await bastion.management("POST", "/log-streams", json={"type": "http", "sink": _webhook(receiver),
                                                                         "startFrom": nonsense})
        assert refused.status_code == 400 and "startFrom" in refused.json()["message"], nonsense


async def test_filters_select_the_codes_auth0_puts_in_each_category(bastion_sqlite, receiver):
    codes = ["sv", "svr", "srrt", "scp", "fv", "gd_enrollment_complete", "limit_wc", "mfar", "s"]
    streams = {}
    for category in ("user.success", "user.fail", "user.notification", "system.notification", "other"):
        streams[category] = await _create_stream(bastion_sqlite, type="http", name=category, filters=[
            {"type": "category", "name": category}], sink=_webhook(receiver, httpCustomHeaders=[{"header": "X-Category", "value": category}]))
    async with bastion_sqlite.services.database.transaction() as session:
        for n, code in enumerate(codes):
            await session.execute(insert(LogEventRow).values(
                log_id=f"900{n:053d}", type=code, date=datetime.now(timezone.utc), details={}))
    await _deliver_all(LogStreamDelivery(bastion_sqlite.services))
    received = {category: [] for category in streams}
    for request in receiver.requests:
        received[request["headers"]["X-Category"]] += [item["data"]["type"] for item in _items(request)]
    assert received == {
        "user.success": ["sv", "svr", "srrt", "scp"],
        "user.fail": ["fv"],
        "user.notification": ["gd_enrollment_complete"],
        "system.notification": ["limit_wc"],
        "other": ["mfar"],
    }


async def test_segment_batch_with_identify_and_track(bastion_with, database_url, receiver):
    async with bastion_with(database_url=database_url, segment_api_url=receiver.url) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await _create_stream(bastion, type="segment", sink={"segmentWriteKey": "seg-write-key-42"},
                             filters=[{"type": "category", "name": "auth.login.success"},
                                      {"type": "category", "name": "auth.login.fail"}])
        assert (await bastion.login(client, password="Wrong-Password-1")).status_code == 400  # the form again: fp
        assert (await bastion.login(client)).status_code == 302
        await _deliver_all(LogStreamDelivery(bastion.services))

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/v1/batch"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"seg-write-key-42:").decode()
    batch = json.loads(request["body"])["batch"]
    assert [(m["type"], m.get("event")) for m in batch] == [
        ("track", "Failed Login (Incorrect Password)"), ("identify", None), ("track", "Success Login"),
    ]
    failed, identify, login = batch
    assert identify["userId"] == login["userId"] and identify["traits"]["email"] == "alice@example.com"
    assert login["messageId"] == login["properties"]["log_id"] and failed["messageId"] == failed["properties"]["log_id"]
    assert identify["messageId"] != login["messageId"]
    assert login["timestamp"] == login["properties"]["date"] and login["properties"]["type"] == "s"


async def test_splunk_http_event_collector(bastion, receiver):
    client = await bastion.create_client()
    await bastion.create_user()
    await _create_stream(bastion, type="splunk", sink={
        "splunkDomain": "http://127.0.0.1", "splunkPort": str(receiver.port), "splunkToken": "hec-token-0000", "splunkSecure": False,
    }, filters=[{"type": "category", "name": "auth.token_exchange.success"}])
    assert (await realm_login(bastion, client)).status_code == 200
    assert (await realm_login(bastion, client)).status_code == 200
    await _deliver_all(LogStreamDelivery(bastion.services))

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/services/collector/event"
    assert request["headers"]["Authorization"] == "Splunk hec-token-0000"
    decoder, text, events = json.JSONDecoder(), request["body"].decode(), []
    while text:
        event, end = decoder.raw_decode(text)
        events.append(event)
        text = text[end:].lstrip()
    assert [e["event"]["type"] for e in events] == ["sepft", "sepft"]
    assert all(e["host"] == "bastion.test" and e["source"] == "bastion" and isinstance(e["time"], float) for e in events)
    assert events[0]["event"]["log_id"] != events[1]["event"]["log_id"]


async def test_a_failing_receiver_gets_everything_in_order_after_retries(bastion_with, database_url, receiver):
    # The first retry waits 1.5 s: long enough that the next look surely comes before it, even on a busy machine
    # (CI has stalled the event loop for over 0.3 s).
    async with bastion_with(database_url=database_url, log_stream_retry_base=1.5, log_stream_retry_cap=1.5) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        stream = await _create_stream(bastion, type="http", sink=_webhook(receiver, httpAuthorization=AUTHORIZATION),
                                      filters=[{"type": "category", "name": "auth.token_exchange.success"}])
        for _ in range(3):
            assert (await realm_login(bastion, client)).status_code == 200
        job = LogStreamDelivery(bastion.services)
        receiver.statuses = [500, 503]

        await job.run_once()
        delivery = await _delivery(bastion, stream)
        assert delivery["state"] == "failing" and delivery["failures"] == 1 and delivery["pending"] == 3
        assert "HTTP 500" in delivery["last_error"] and AUTHORIZATION not in delivery["last_error"]
        assert delivery["next_attempt_at"] is not None
        assert await job.run_once() <= 1.5  # nothing due before the retry time
        assert len(receiver.requests) == 1
        await asyncio.sleep(1.55)
        await job.run_once()
        assert len(receiver.requests) == 2
        delivery = await _delivery(bastion, stream)
        assert delivery["failures"] == 2 and "HTTP 503" in delivery["last_error"]

        assert (await realm_login(bastion, client)).status_code == 200  # a fourth event, while failing
        deadline = time.monotonic() + 10
        while (await _delivery(bastion, stream))["pending"] and time.monotonic() < deadline:
            await asyncio.sleep(await job.run_once())
        delivery = await _delivery(bastion, stream)
        assert delivery == {**delivery, "state": "ok", "failures": 0, "pending": 0, "next_attempt_at": None}

    assert len(receiver.requests) == 3
    attempts = [[item["log_id"] for item in _items(request)] for request in receiver.requests]
    assert attempts[0] == attempts[1] and len(attempts[0]) == 3  # the same batch, again
    assert attempts[2] == attempts[0] + attempts[2][3:] and len(attempts[2]) == 4  # nothing lost, in log order
    assert attempts[2] == sorted(attempts[2])  # log ids start with the time in ms


async def test_a_stream_failing_too_long_is_suspended_until_resumed(bastion_with, database_url, receiver):
    settings = dict(log_stream_retry_base=0.02, log_stream_retry_cap=0.05, log_stream_suspend_after=0.2)
    async with bastion_with(database_url=database_url, **settings) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        stream = await _create_stream(bastion, type="http", sink=_webhook(receiver))
        assert (await realm_login(bastion, client)).status_code == 200
        job = LogStreamDelivery(bastion.services)
        receiver.statuses = [500] * 1000

        deadline = time.monotonic() + 15
        while (await _stored_stream(bastion, stream["id"])).status == "active" and time.monotonic() < deadline:
            await asyncio.sleep(await job.run_once())
        suspended = (await bastion.management("GET", f"/log-streams/{stream['id']}")).json()
        assert suspended["status"] == "suspended" and suspended["delivery"]["state"] == "failing"
        assert suspended["delivery"]["failures"] == 6  # 0.02 + 0.04 + 0.05 + 0.05 + 0.05 >= 0.2
        tries = len(receiver.requests)
        await job.run_once()
        assert len(receiver.requests) == tries  # suspended: nothing is sent

        receiver.statuses = []
        resumed = await bastion.management("PATCH", f"/log-streams/{stream['id']}", json={"status": "active"})
        assert resumed.json()["status"] == "active" and resumed.json()["delivery"]["failures"] == 0
        await _deliver_all(job)
        assert (await _delivery(bastion, stream))["pending"] == 0
    assert len(receiver.requests) == tries + 1


def test_backoff_and_suspension_arithmetic():
    assert [retry_delay(n, base=5, cap=300) for n in (1, 2, 3, 7, 8, 100)] == [5, 10, 20, 300, 300, 300]
    assert failing_for(1, base=5, cap=300) == 0
    assert failing_for(4, base=5, cap=300) == 5 + 10 + 20
    assert failing_for(10, base=5, cap=300) == 5 + 10 + 20 + 40 + 80 + 160 + 300 * 3


async def test_a_paused_stream_sends_nothing_and_resumes_where_it_stopped(bastion, receiver):
    client = await bastion.create_client()
    await bastion.create_user()
    stream = await _create_stream(bastion, type="http", sink=_webhook(receiver),
                                  filters=[{"type": "category", "name": "auth.token_exchange.success"}])
    job = LogStreamDelivery(bastion.services)
    assert (await realm_login(bastion, client)).status_code == 200
    await _deliver_all(job)
    assert len(receiver.requests) == 1

    await bastion.management("PATCH", f"/log-streams/{stream['id']}", json={"status": "paused"})
    assert (await realm_login(bastion, client)).status_code == 200
    assert (await realm_login(bastion, client)).status_code == 200
    await _deliver_all(job)
    assert len(receiver.requests) == 1
    assert (await _delivery(bastion, stream))["pending"] == 2

    await bastion.management("PATCH", f"/log-streams/{stream['id']}", json={"status": "active"})
    await _deliver_all(job)
    assert len(receiver.requests) == 2
    first, second = (_items(r) for r in receiver.requests)
    assert len(second) == 2 and first[0]["log_id"] < second[0]["log_id"] < second[1]["log_id"]


async def test_a_hanging_receiver_never_delays_a_login(bastion_with, database_url, receiver):
    """The poller runs in the background; the login only writes its log event."""
    async with bastion_with(database_url=database_url, background=True, log_stream_poll_interval=0.05,
                            log_stream_request_timeout=30) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await _create_stream(bastion, type="http", sink=_webhook(receiver),
                             filters=[{"type": "category", "name": "auth.token_exchange.success"}])
        receiver.blocked.set()
        assert (await realm_login(bastion, client)).status_code == 200
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(receiver.requests) == 1  # the poller sent the first login's event, and the receiver holds it

        started = time.monotonic()
        assert (await realm_login(bastion, client)).status_code == 200  # while the receiver still hangs
        assert time.monotonic() - started < 5
        assert not receiver.released.is_set() and len(receiver.requests) == 1

        receiver.released.set()
        receiver.blocked.clear()
        deadline = time.monotonic() + 10
        while sum(len(_items(r)) for r in receiver.requests) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert [item["data"]["type"] for r in receiver.requests for item in _items(r)] == ["sepft", "sepft"]


async def test_two_processes_deliver_each_event_once(bastion_with, database_url, receiver, tmp_path):
    async with bastion_with(database_url=database_url, log_stream_batch_size=2) as bastion:
        client = await bastion.create_client()
        await bastion.create_user()
        await _create_stream(bastion, type="http", sink=_webhook(receiver, "JSONLINES"),
                             filters=[{"type": "category", "name": "auth.token_exchange.success"}])
        for _ in range(7):
            assert (await realm_login(bastion, client)).status_code == 200
        other_process = build_services(bastion.settings)
        try:
            jobs = [LogStreamDelivery(bastion.services), LogStreamDelivery(other_process)]
            for _ in range(10):
                await asyncio.gather(*(job.run_once() for job in jobs))
        finally:
            await other_process.close()
        async with bastion.services.database.reader() as session:
            statement = select(LogEventRow.log_id).where(LogEventRow.type == "sepft").order_by(LogEventRow.seq)
            expected = (await session.scalars(statement)).all()
    delivered = [item["log_id"] for request in receiver.requests for item in _items(request)]
    assert delivered == list(expected) and len(delivered) == 7  # each once, in order
    assert all(len(_items(r)) <= 2 for r in receiver.requests)


async def test_a_gap_in_the_log_is_waited_for_until_it_settles(bastion_with, database_url, receiver):
    """A seq taken by a transaction not yet committed must not be skipped; one long missing is."""
    async with bastion_with(database_url=database_url, log_stream_gap_grace=60) as bastion:
        stream = await _create_stream(bastion, type="http", sink=_webhook(receiver))
        job = LogStreamDelivery(bastion.services)
        position = (await _stored_stream(bastion, stream["id"])).position
        now = datetime.now(timezone.utc)

        async def write(seq: int, log_id: str, date: datetime) -> None:
            async with bastion.services.database.transaction() as session:
                await session.execute(insert(LogEventRow).values(seq=seq, log_id=log_id, date=date, type="s", details={}))

        await write(position + 2, "evt-2", now)  # seq position+1 is "still being committed"
        await _deliver_all(job)
        assert receiver.requests == []
        await write(position + 1, "evt-1", now)  # it commits late
        await _deliver_all(job)
        assert [item["log_id"] for item in _items(receiver.requests[0])] == ["evt-1", "evt-2"]

        await write(position + 4, "evt-4", now - timedelta(seconds=120))  # position+3 rolled back long ago
        await _deliver_all(job)
        assert [item["log_id"] for item in _items(receiver.requests[1])] == ["evt-4"]
        assert (await _stored_stream(bastion, stream["id"])).position == position + 4


async def test_an_unreachable_receiver_is_a_failure_whose_error_names_no_secret(bastion_sqlite):
    bastion = bastion_sqlite
    client = await bastion.create_client()
    await bastion.create_user()
    closed = Receiver()
    closed.close()  # nothing listens there any more
    endpoint = f"{closed.url}/hooks/T0001/B0002/secret-path-4242?key=query-secret-99"
    stream = await _create_stream(bastion, type="http", sink={"httpEndpoint": endpoint, "httpAuthorization": AUTHORIZATION})
    assert (await realm_login(bastion, client)).status_code == 200
    await LogStreamDelivery(bastion.services).run_once()
    delivery = await _delivery(bastion, stream)
    assert delivery["state"] == "failing" and delivery["last_error"].startswith("Could not reach the receiver")
    assert not any(secret in delivery["last_error"] for secret in ("secret-path-4242", "query-secret-99", AUTHORIZATION))


def test_every_event_bastion_logs_has_a_segment_event_name_and_a_category():
    from bastion.events import EventType
    from bastion.log_streams.categories import CATEGORIZED_TYPES, type_name

    codes = [value for name, value in vars(EventType).items() if name.isupper()]
    assert codes and [code for code in codes if type_name(code) == code] == []  # Auth0's names, never the raw code
    uncategorized = {code for code in codes if code not in CATEGORIZED_TYPES}
    assert uncategorized == {"mfar", "gd_auth_succeed", "gd_auth_failed", "gd_recovery_succeed", "gd_recovery_failed"}
