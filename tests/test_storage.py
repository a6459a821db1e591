"""Storage on both databases: migrations, and the repository guarantees other code relies on."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bastion.security.handles import digest
from bastion.storage import authorization_codes, login_attempts, log_events, refresh_tokens
from bastion.storage import users as user_store
from bastion.storage.migrate import migrate, pending_migrations
from bastion.storage.tables import Base
from bastion.tenant.bootstrap import DEFAULT_CONNECTION
from bastion.tenant.users import UserConflict, apply_user_patch, create_database_user, merge_metadata

from conftest import PASSWORD


async def test_migrations_are_all_applied_and_match_the_models(bastion):
    database = bastion.services.database
    assert await pending_migrations(database) == []
    await migrate(database)  # idempotent

    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": False}), Base.metadata)

    async with database.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_users_are_unique_per_connection_and_email_is_case_insensitive(bastion):
    async with bastion.services.database.transaction() as session:
        user = await create_database_user(session, connection=DEFAULT_CONNECTION, email="Bob@Example.com", password=PASSWORD)
    assert user.email == "bob@example.com" and user.user_id.startswith("auth0|")
    assert [(i.provider, i.connection) for i in user.identities] == [("auth0", DEFAULT_CONNECTION)]
    with pytest.raises(UserConflict):
        async with bastion.services.database.transaction() as session:
            await create_database_user(session, connection=DEFAULT_CONNECTION, email="BOB@example.com", password=PASSWORD)
    async with bastion.services.database.reader() as session:
        found = await user_store.find_user_by_login(session, connection=DEFAULT_CONNECTION, login="bOb@example.COM")
    assert found is not None and found.user_id == user.user_id


async def test_metadata_merge_follows_auth0_patch_semantics(bastion):
    assert merge_metadata({"a": 1, "b": {"x": 1}}, {"b": {"y": 2}, "c": 3}) == {"a": 1, "b": {"y": 2}, "c": 3}
    assert merge_metadata({"a": 1, "b": 2}, {"a": None}) == {"b": 2}
    assert merge_metadata({"a": 1}, {}) == {}
    async with bastion.services.database.transaction() as session:
        user = await create_database_user(session, connection=DEFAULT_CONNECTION, email="m@example.com", password=PASSWORD,
                                          app_metadata={"plan": "free", "roles": ["a"]})
        updated = await apply_user_patch(session, user=user, patch={"app_metadata": {"plan": "pro", "roles": None}})
    assert updated.app_metadata == {"plan": "pro"}


async def test_login_counts_are_atomic_under_concurrency(bastion):
    async with bastion.services.database.transaction() as session:
        user = await create_database_user(session, connection=DEFAULT_CONNECTION, email="c@example.com", password=PASSWORD)

    async def one_login():
        async with bastion.services.database.transaction() as session:
            await user_store.record_login(session, user_id=user.user_id, ip="198.51.100.1")

    await asyncio.gather(*(one_login() for _ in range(8)))
    async with bastion.services.database.reader() as session:
        assert (await user_store.get_user(session, user_id=user.user_id)).logins_count == 8


async def test_an_authorization_code_is_consumed_once(bastion):
    async with bastion.services.database.transaction() as session:
        await authorization_codes.insert_authorization_code(
            session, code_digest=digest("the-code"), client_id="c", user_id="u", redirect_uri="https://x/cb", grant={},
            code_challenge=None, code_challenge_method=None, expires_at=datetime.now(timezone.utc) + timedelta(minutes=5),
        )
    async with bastion.services.database.transaction() as session:
        first, first_use = await authorization_codes.consume_authorization_code(session, code_digest=digest("the-code"), family_id="f1")
    async with bastion.services.database.transaction() as session:
        again, second_use = await authorization_codes.consume_authorization_code(session, code_digest=digest("the-code"), family_id="f2")
    assert first_use and not second_use
    assert again.refresh_family_id == "f1"  # a replay names the family the first exchange started
    async with bastion.services.database.transaction() as session:
        missing, used = await authorization_codes.consume_authorization_code(session, code_digest=digest("other"), family_id="f3")
    assert missing is None and not used


async def test_a_refresh_token_rotates_once_and_its_family_can_be_revoked(bastion):
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    async with bastion.services.database.transaction() as session:
        for value in ("rt-1", "rt-2"):
            await refresh_tokens.insert_refresh_token(session, token_digest=digest(value), family_id="fam", client_id="c",
                                                      user_id="u", grant={}, expires_at=expires)
    async with bastion.services.database.transaction() as session:
        assert await refresh_tokens.use_refresh_token(session, token_digest=digest("rt-1"))
        assert not await refresh_tokens.use_refresh_token(session, token_digest=digest("rt-1"))
        assert await refresh_tokens.revoke_refresh_family(session, family_id="fam") == 2
        assert not await refresh_tokens.use_refresh_token(session, token_digest=digest("rt-2"))


async def test_brute_force_counter_blocks_at_the_limit_per_user_and_ip(bastion):
    async with bastion.services.database.transaction() as session:
        results = [await login_attempts.record_failure(session, user_id="u1", ip="198.51.100.9", max_attempts=3) for _ in range(3)]
        assert results == [False, False, True]
        assert await login_attempts.failures(session, user_id="u1", ip="198.51.100.9") == (3, True)
        assert await login_attempts.failures(session, user_id="u1", ip="198.51.100.10") == (0, False)
        await login_attempts.clear_user_blocks(session, user_id="u1")
        assert await login_attempts.failures(session, user_id="u1", ip="198.51.100.9") == (0, False)


async def test_log_events_are_listed_newest_first_with_totals(bastion):
    async with bastion.services.database.transaction() as session:
        for kind in ("s", "f", "fp"):
            await log_events.insert_log_event(session, type=kind, description=kind, user_id="u-logs")
    async with bastion.services.database.reader() as session:
        page = await log_events.list_log_events(session, page=0, per_page=2, user_id="u-logs")
    assert [e.type for e in page.items] == ["fp", "f"] and page.total == 3


async def test_the_janitor_deletes_only_what_expired_long_ago(bastion):
    from bastion.storage.janitor import purge_expired

    now = datetime.now(timezone.utc)
    async with bastion.services.database.transaction() as session:
        for value, expires in (("old", now - timedelta(days=3)), ("fresh", now + timedelta(minutes=5))):
            await authorization_codes.insert_authorization_code(
                session, code_digest=digest(value), client_id="c", user_id="u", redirect_uri="https://x/cb", grant={},
                code_challenge=None, code_challenge_method=None, expires_at=expires,
            )
    async with bastion.services.database.transaction() as session:
        counts = await purge_expired(session)
    assert counts["authorization_codes"] == 1
    async with bastion.services.database.transaction() as session:
        _, fresh_first_use = await authorization_codes.consume_authorization_code(session, code_digest=digest("fresh"), family_id="f")
        gone, _ = await authorization_codes.consume_authorization_code(session, code_digest=digest("old"), family_id="g")
    assert fresh_first_use and gone is None


async def test_the_janitor_deletes_expired_one_time_codes_and_keeps_live_ones(bastion):
    from bastion.storage import one_time_codes
    from bastion.storage.janitor import purge_expired

    now = datetime.now(timezone.utc)
    async with bastion.services.database.transaction() as session:
        for code_id, expires in (("old-code", now - timedelta(days=3)), ("live-code", now + timedelta(minutes=5))):
            await one_time_codes.insert_code(
                session, id=code_id, purpose="passwordless", connection="email", recipient="a@example.com", client_id="c",
                code_digest=digest(code_id), data={}, expires_at=expires,
            )
    async with bastion.services.database.transaction() as session:
        counts = await purge_expired(session)
    assert counts["one_time_codes"] == 1 and counts["mfa_remembered_browsers"] == 0
    async with bastion.services.database.reader() as session:
        assert await one_time_codes.get_code(session, id="old-code") is None
        assert (await one_time_codes.get_code(session, id="live-code")).recipient == "a@example.com"
