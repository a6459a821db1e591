"""The outbox: an email or a rule's queued request is kept until delivered, retried with backoff,
never sent twice, and never makes a login wait. Against a real SMTP server (aiosmtpd) that goes
down and comes back, and a real HTTP server that fails, recovers or hangs."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select

from bastion.outbox import Outbox
from bastion.storage import deliveries as delivery_store
from bastion.storage.tables import DeliveryRow
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import Bastion, add_rule
from http_receiver import Receiver
from smtp_server import SmtpServer, free_port

FAST_RETRIES = {"outbox_retry_base": 0.05, "outbox_retry_max": 0.2}


def rule(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Bounded poll for a condition the background delivery makes true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "the condition did not become true in time"
        await asyncio.sleep(0.02)


async def deliveries(app: Bastion) -> list:
    async with app.services.database.reader() as session:
        return (await delivery_store.list_deliveries(session, page=0, per_page=50)).items


async def one_delivery(app: Bastion):
    [delivery] = await deliveries(app)
    return delivery


async def request_reset(app: Bastion, client: dict) -> None:
    response = await app.http.post("/dbconnections/change_password", json={
        "client_id": client["client_id"], "connection": DEFAULT_CONNECTION, "email": "alice@example.com"})
    assert response.status_code == 200


@pytest.fixture
def vendor():
    server = Receiver()
    yield server
    server.close()


# -- email ---------------------------------------------------------------------------


@pytest.mark.postgres
async def test_an_email_waits_for_the_smtp_server_and_arrives_once(bastion_with, database_url):
    smtp = SmtpServer(free_port())  # not started: the SMTP server is down
    async with bastion_with(database_url=database_url, background=True, smtp_host="127.0.0.1", smtp_port=smtp.port,
                            **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await request_reset(app, client)

        async def failed_twice() -> bool:
            delivery = await one_delivery(app)
            return delivery.attempts >= 2 and delivery.state == "pending"

        await eventually(failed_twice)
        delivery = await one_delivery(app)
        assert "could not be reached" in delivery.last_error and delivery.completed_at is None

        smtp.start()
        try:
            await smtp.wait_for(1)

            async def sent() -> bool:
                return (await one_delivery(app)).state == "sent"

            await eventually(sent)
            attempts = (await one_delivery(app)).attempts
            await asyncio.sleep(0.5)  # several retry periods: nothing more may arrive
            assert len(smtp.messages) == 1 and smtp.messages[0]["Subject"] == "Reset your password"
            assert (await one_delivery(app)).attempts == attempts
        finally:
            smtp.stop()


async def test_a_refusing_smtp_server_gets_the_email_when_it_accepts_again(bastion_with, smtp_server):
    smtp_server.refuse = True
    async with bastion_with(background=True, smtp_host="127.0.0.1", smtp_port=smtp_server.port, **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await request_reset(app, client)

        async def refused() -> bool:
            return (await one_delivery(app)).last_status == 451

        await eventually(refused)
        smtp_server.refuse = False
        await smtp_server.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(smtp_server.messages) == 1


async def test_an_email_that_never_goes_fails_visibly_and_can_be_retried(bastion_with, smtp_server):
    smtp_server.refuse = True
    async with bastion_with(background=True, smtp_host="127.0.0.1", smtp_port=smtp_server.port, outbox_max_attempts=2,
                            **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await request_reset(app, client)

        async def failed() -> bool:
            return (await one_delivery(app)).state == "failed"

        await eventually(failed)
        delivery = (await app.management("GET", "/deliveries", params={"state": "failed"})).json()
        assert [d["id"] for d in delivery] == [(await one_delivery(app)).id]
        assert delivery[0]["attempts"] == 2 and delivery[0]["last_status"] == 451
        assert delivery[0]["to"] == "alice@example.com" and delivery[0]["subject"] == "Reset your password"
        assert "ticket" not in json.dumps(delivery)  # the link (a credential) is in the sealed payload only

        [given_up] = (await app.management("GET", "/logs", params={"q": "type:fn"})).json()  # Auth0's code, streamed too
        assert given_up["description"].startswith("The reset_email email could not be sent")
        assert given_up["details"]["delivery_id"] == delivery[0]["id"] and given_up["user_name"] == "alice@example.com"

        smtp_server.refuse = False
        retried = await app.management("POST", f"/deliveries/{delivery[0]['id']}/retry")
        assert retried.status_code == 200 and retried.json()["state"] == "pending"
        await smtp_server.wait_for(1)
        again = await app.management("POST", f"/deliveries/{delivery[0]['id']}/retry")
        assert again.status_code == 409


async def test_two_processes_deliver_each_email_once(bastion_with, postgres_url, smtp_server):
    async with bastion_with(database_url=postgres_url, smtp_host="127.0.0.1", smtp_port=smtp_server.port) as app:
        client = await app.create_client()
        for n in range(6):
            await app.create_user(email=f"user{n}@example.com")
        # Two outboxes on one database, as two server processes have; no one-shot attempt in between.
        services = app.services
        twins = [Outbox(settings=services.settings, database=services.database, sealer=services.sealer,
                        mailer=services.mailer, wake=lambda: None) for _ in range(2)]
        async with services.database.transaction() as session:
            for n in range(6):
                await services.outbox.email(session, to=f"user{n}@example.com", subject=f"Hello {n}", text="hi", source="test")
        await asyncio.gather(*(twin.run_once() for twin in twins))
        await asyncio.gather(*(twin.drain() for twin in twins))
        await asyncio.gather(*(twin.close() for twin in twins))
        await smtp_server.wait_for(6)
        await asyncio.sleep(0.3)
        assert sorted(m["Subject"] for m in smtp_server.messages) == [f"Hello {n}" for n in range(6)]
        assert all(d.state == "sent" and d.attempts == 1 for d in await deliveries(app))


async def test_payloads_are_sealed_at_rest(bastion_with, smtp_server):
    async with bastion_with(smtp_host="127.0.0.1", smtp_port=smtp_server.port) as app:
        async with app.services.database.transaction() as session:
            await app.services.outbox.email(session, to="carol@example.com", subject="Code", text="secret body 4242",
                                            source="test")
        async with app.services.database.reader() as session:
            stored = (await session.execute(select(DeliveryRow.payload_sealed))).scalar_one()
        assert stored.startswith("v1.") and "4242" not in stored and "carol" not in stored


# -- rules' queued requests ----------------------------------------------------------


@pytest.mark.postgres
async def test_a_queued_request_is_retried_until_the_vendor_takes_it_once(bastion_with, database_url, vendor):
    vendor.statuses = [500, 503]
    async with bastion_with(database_url=database_url, background=True, rules_http_allow_private=True, **FAST_RETRIES) as app:
        client = await app.create_client()
        alice = await app.create_user()
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                await api.http.queue("POST", "{vendor.url}/v1/track?key=abc", json={{"userId": user.user_id}},
                                     headers={{"Authorization": "Basic " + api.configuration.get("KEY", "k")}})
        '''))
        tokens = await app.code_tokens(client)
        assert "access_token" in tokens

        async def delivered() -> bool:
            return (await one_delivery(app)).state == "sent"

        await eventually(delivered)
        assert [r["status"] for r in vendor.requests] == [500, 503, 200]
        assert all(json.loads(r["body"]) == {"userId": alice["user_id"]} for r in vendor.requests)
        assert {r["path"] for r in vendor.requests} == {"/v1/track?key=abc"}
        assert {r["headers"]["Authorization"] for r in vendor.requests} == {"Basic k"}

        [login] = (await app.management("GET", "/logs", params={"q": "type:s"})).json()
        record = (await app.management("GET", f"/rules-executions/{login['details']['rules_execution_id']}")).json()
        [effect] = record["effects"]
        assert effect["type"] == "http.queued" and effect["url"] == f"{vendor.url}/v1/track"  # no query: keys go there
        [delivery] = record["deliveries"]
        assert delivery["id"] == effect["delivery_id"] and delivery["state"] == "sent"
        assert delivery["attempts"] == 3 and delivery["last_status"] == 200


async def test_a_client_error_is_not_retried(bastion_with, vendor):
    vendor.statuses = [401]
    async with bastion_with(background=True, rules_http_allow_private=True, **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                await api.http.queue("POST", "{vendor.url}/events", json={{}})
        '''))
        await app.code_tokens(client)

        async def failed() -> bool:
            return (await one_delivery(app)).state == "failed"

        await eventually(failed)
        delivery = await one_delivery(app)
        assert delivery.attempts == 1 and delivery.last_status == 401 and len(vendor.requests) == 1


async def test_a_hanging_vendor_delays_no_login_and_no_other_delivery(bastion_with, vendor, smtp_server):
    vendor.blocked.set()
    async with bastion_with(background=True, rules_http_allow_private=True, rules_queued_request_timeout=5,
                            smtp_host="127.0.0.1", smtp_port=smtp_server.port, **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                await api.http.queue("POST", "{vendor.url}/queued", json={{}})
                try:
                    await api.http.post("{vendor.url}/awaited", json={{}}, timeout=1)
                except Exception as error:
                    print("the enrichment service did not answer:", error)
        '''))
        tokens = await app.code_tokens(client)  # both requests are still held by the vendor
        assert "access_token" in tokens and not vendor.released.is_set()

        # The queued request hangs in its attempt; an email queued after it goes out meanwhile.
        async with app.services.database.transaction() as session:
            await app.services.outbox.email(session, to="ops@example.com", subject="Meanwhile", text="x", source="test")
        [message] = await smtp_server.wait_for(1)
        assert message["Subject"] == "Meanwhile"
        request = next(d for d in await deliveries(app) if d.kind == "http")
        assert request.state == "sending" and not vendor.released.is_set()

        vendor.blocked.clear()
        vendor.released.set()

        async def delivered() -> bool:
            return all(d.state == "sent" for d in await deliveries(app))

        await eventually(delivered)
        async with app.services.database.reader() as session:
            from bastion.storage import rules as rule_store

            [execution] = (await rule_store.list_rule_executions(session, page=0, per_page=5)).items
        [awaited] = [e for e in execution.effects if e["type"] == "http"]
        # The vendor accepts and then holds the request, so this is a ReadTimeout; on a loaded machine the
        # event loop may not even finish the loopback connect within the second, which is a ConnectTimeout.
        assert awaited.pop("error") in {"ReadTimeout", "ConnectTimeout"}
        assert awaited == {"type": "http", "method": "POST", "url": f"{vendor.url}/awaited", "status": None,
                           "performed": True}
        assert "the enrichment service did not answer" in execution.rules[0]["logs"][0]


async def test_a_request_queued_before_a_denial_still_goes_out_as_in_auth0(bastion_with, vendor):
    # A rule that records the refused attempt (or sends the verification email a later rule's
    # "verify your email first" denial asks for) needs what it queued to go out: it is committed
    # when queued, as Auth0's rule's request left when the rule made it.
    async with bastion_with(background=True, rules_http_allow_private=True, **FAST_RETRIES) as app:
        client = await app.create_client()
        await app.create_user()
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                await api.http.queue("POST", "{vendor.url}/refused-login", json={{"user": user.user_id}})
                raise UnauthorizedError("please verify your email first")
        '''))
        response = await app.login(client)
        assert "error=unauthorized" in response.headers["location"]

        async def delivered() -> bool:
            return [d.state for d in await deliveries(app)] == ["sent"]

        await eventually(delivered)
        assert [r["path"] for r in vendor.requests] == ["/refused-login"]
        [log] = (await app.management("GET", "/logs", params={"q": "type:f"})).json()
        record = (await app.management("GET", f"/rules-executions/{log['details']['rules_execution_id']}")).json()
        assert [(d["kind"], d["state"]) for d in record["deliveries"]] == [("http", "sent")]


async def test_a_dry_run_records_the_queued_request_without_queueing_it(bastion, vendor):
    await bastion.create_user()
    rule_id = await add_rule(bastion, rule(f'''
        async def rule(user, context, api):
            await api.http.queue("POST", "https://8.8.8.8/v1/track", json={{}})
            await api.email.send(to=user.email, subject="Hi", html="<p>Hello</p>")
    '''))
    answer = await bastion.management("POST", f"/rules/{rule_id}/try", json={"user": {"email": "x@example.com", "user_id": "auth0|x"}})
    assert answer.status_code == 200, answer.text
    effects = answer.json()["effects"]
    assert [(e["type"], e["performed"], e["delivery_id"]) for e in effects] == [("http.queued", False, None), ("email", False, None)]
    assert await deliveries(bastion) == []


async def test_configuration_values_never_reach_the_execution_record(bastion_with, vendor):
    secret = "sk_live_0123456789abcdef"
    async with bastion_with(rules_http_allow_private=True) as app:
        client = await app.create_client()
        await app.create_user()
        put = await app.management("PUT", "/rules-configs/VENDOR_KEY", json={"value": secret})
        assert put.status_code == 200
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                key = api.configuration["VENDOR_KEY"]
                print("calling with", key)
                await api.http.queue("POST", "{vendor.url}/v1/" + key + "?api_key=" + key, json={{}})
                raise UnauthorizedError("refused for " + key)
        '''))
        response = await app.login(client)
        assert "refused+for+%5Bredacted%5D" in response.headers["location"]
        [log] = (await app.management("GET", "/logs", params={"q": "type:f"})).json()
        record = await app.management("GET", f"/rules-executions/{log['details']['rules_execution_id']}")
        assert record.status_code == 200 and record.json()["effects"]
        assert secret not in record.text and secret not in json.dumps(log)
        assert "calling with [redacted]" in record.json()["rules"][0]["logs"]


async def test_the_janitor_removes_delivered_entries_and_keeps_failed_ones_for_a_month(bastion):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from bastion.storage.janitor import purge_expired

    async with bastion.services.database.transaction() as session:
        for n in range(4):
            await bastion.services.outbox.email(session, to="a@example.com", subject=f"m{n}", text="x", source="test",
                                                id=f"eml_{n}")
    now = datetime.now(timezone.utc)
    ages = {"eml_0": ("sent", timedelta(days=3)), "eml_1": ("sent", timedelta(hours=1)),
            "eml_2": ("failed", timedelta(days=3)), "eml_3": ("failed", timedelta(days=40))}
    async with bastion.services.database.transaction() as session:
        for id, (state, age) in ages.items():
            await session.execute(update(DeliveryRow).where(DeliveryRow.id == id).values(state=state, completed_at=now - age))
    async with bastion.services.database.transaction() as session:
        counts = await purge_expired(session)
    assert counts["deliveries"] == 2
    assert sorted(d.id for d in await deliveries(bastion)) == ["eml_1", "eml_2"]


def test_the_outbox_commands_list_and_retry(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bastion.cli import main

    monkeypatch.setenv("BASTION_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("BASTION_SMTP_HOST", "127.0.0.1")
    runner = CliRunner()
    assert runner.invoke(main, ["migrate"]).exit_code == 0

    async def failed_entry(services):
        async with services.database.transaction() as session:
            entry = await services.outbox.email(session, to="a@example.com", subject="Hello", text="x", source="test")
        async with services.database.transaction() as session:
            await session.execute(DeliveryRow.__table__.update().values(state="failed", attempts=12, last_error="refused"))
        return entry.id

    from bastion.cli import _run

    entry_id = _run(failed_entry)
    listed = runner.invoke(main, ["outbox", "list", "--state", "failed"])
    assert listed.exit_code == 0, listed.output
    assert f"{entry_id}  failed  12/12  a@example.com: Hello  (refused)" in listed.output
    retried = runner.invoke(main, ["outbox", "retry", entry_id])
    assert retried.exit_code == 0 and "pending again" in retried.output
    assert "pending" in runner.invoke(main, ["outbox", "list"]).output
    again = runner.invoke(main, ["outbox", "retry", entry_id])
    assert again.exit_code != 0 and "no failed entry" in again.output


def test_public_configuration_keys_stay_readable_but_their_secrets_do_not():
    from bastion.rules.redaction import Redaction, secret_values

    configuration = {"VENDOR_KEY": "sk_live_0123456789", "VENDOR_API_URL": "https://user:hunter22@api.vendor.test/v1?api_key=qwerty123",
                     "CLAIMS_NAMESPACE": "https://example.com/", "AZURE_AD_DOMAIN": "example.com", "FLAG": "true"}
    redaction = Redaction(secret_values(configuration))
    shown = redaction.apply({"line": "POST https://api.vendor.test/v1 as alice@example.com with sk_live_0123456789",
                             "url": "https://user:hunter22@api.vendor.test/v1?api_key=qwerty123", "flag": ["true"]})
    assert shown == {"line": "POST https://api.vendor.test/v1 as alice@example.com with [redacted]",
                     "url": "https://user:[redacted]@api.vendor.test/v1?api_key=[redacted]", "flag": ["true"]}


def test_a_key_that_names_a_secret_stays_secret_whatever_its_ending():
    from bastion.rules.redaction import Redaction, secret_values

    webhook = "https://hooks.slack.com/services/T0AAAA/B0BBBB/x7Yk2mQp9LzR4vWc"
    configuration = {"SLACK_WEBHOOK_URL": webhook, "SIGNING_KEY_ID": "kid-7f3a9b", "KEEN_API_URL": "https://api.keen.io"}
    shown = Redaction(secret_values(configuration)).apply(f"POST {webhook} signed by kid-7f3a9b, then https://api.keen.io")
    assert shown == "POST [redacted] signed by [redacted], then https://api.keen.io"


async def test_queued_requests_obey_the_operators_host_allow_list(bastion_with, vendor):
    async with bastion_with(rules_http_allowed_hosts=["api.segment.io"], rules_http_allow_private=True) as app:
        client = await app.create_client()
        await app.create_user()
        await add_rule(app, rule(f'''
            async def rule(user, context, api):
                await api.http.queue("POST", "{vendor.url}/collect", json={{}})
        '''))
        response = await app.login(client)
        assert "error=access_denied" in response.headers["location"]  # the rule failed: closed
        [execution] = (await app.management("GET", "/logs", params={"q": "type:f"})).json()
        record = (await app.management("GET", f"/rules-executions/{execution['details']['rules_execution_id']}")).json()
        assert "127.0.0.1 is not in BASTION_RULES_HTTP_ALLOWED_HOSTS" in record["rules"][0]["error"]
        assert record["deliveries"] == [] and vendor.requests == []


async def test_an_entry_whose_payload_cannot_be_opened_fails_at_once(bastion_with, smtp_server):
    from sqlalchemy import update

    async with bastion_with(smtp_host="127.0.0.1", smtp_port=smtp_server.port) as app:
        async with app.services.database.transaction() as session:
            entry = await app.services.outbox.email(session, to="a@example.com", subject="Hi", text="x", source="test")
            await session.execute(update(DeliveryRow).where(DeliveryRow.id == entry.id).values(payload_sealed="v1.garbage"))
        await app.services.outbox.run_once()
        await app.services.outbox.drain()
        delivery = await one_delivery(app)
        assert delivery.state == "failed" and delivery.attempts == 1 and "cannot be opened" in delivery.last_error
        assert smtp_server.messages == []
