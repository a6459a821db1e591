"""Auth0's user search (`q`, `sort`, `search_engine` of GET /api/v2/users; docs/management-api.md,
"User search"), through the real Management API on SQLite and PostgreSQL, then the parser alone.

Every HTTP test seeds the same fifteen users (`USERS`), one of them a linked secondary that
no search may list, and asserts exactly which users, in which order, a query answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus

import pytest
from sqlalchemy import update

from bastion.management.user_search import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    MAX_TERMS,
    And,
    Exists,
    InvalidQuery,
    MatchAll,
    Not,
    Or,
    Range,
    Term,
    parse_query,
    query_condition,
    user_search_condition,
)
from bastion.storage import users as user_store
from bastion.storage.records import Identity
from bastion.storage.tables import UserRow
from bastion.tenant.bootstrap import DEFAULT_CONNECTION

pytestmark = pytest.mark.postgres

PARTNERS = "Partners"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@dataclass
class Seed:
    key: str  # u01..u15; the user id is auth0|<key> unless `user_id` says otherwise
    created: str
    email: str | None
    name: str
    connection: str = DEFAULT_CONNECTION
    user_id: str | None = None
    provider: str = "auth0"
    social: bool = False
    logins: int = 0
    last_login: str | None = None
    updated: str | None = None
    linked_to: str | None = None
    profile: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.user_id or f"auth0|{self.key}"


USERS = [
    Seed("u01", "2024-01-01T00:00:00", "alice@example.com", "Alice Smith", logins=5, last_login="2024-03-10T12:00:00",
         profile=dict(given_name="Alice", family_name="Smith", nickname="alice", username="alice", email_verified=True,
                      last_ip="10.0.0.1",
                      app_metadata={"plan": "gold", "roles": ["admin", "editor"], "level": 3, "beta": True, "sub": {"tier": "a"}},
                      user_metadata={"lang": "fr", "theme": "dark"})),
    Seed("u02", "2024-01-15T09:00:00", "bob@example.com", "Bob Stone",
         profile=dict(nickname="bob", app_metadata={"plan": "free", "level": 1, "beta": False, "roles": []},
                      user_metadata={"lang": "en"})),
    Seed("u03", "2024-02-01T10:00:00", "carol@example.org", "Carol Jones", connection=PARTNERS, logins=12,
         last_login="2024-04-01T08:30:00", profile=dict(email_verified=True, app_metadata={"plan": "gold", "level": "3"})),
    Seed("u04", "2024-02-20T00:00:00", "dave@example.org", "Dave Smithson", logins=100, last_login="2023-12-31T23:59:59",
         profile=dict(blocked=True, app_metadata={"roles": ["viewer"]})),
    Seed("u05", "2024-03-01T00:00:00", "erin@test.io", "Erin O'Brien", logins=200,
         profile=dict(phone_number="+15551234", phone_verified=True, app_metadata={"plan": None})),
    Seed("u06", "2024-03-15T00:00:00", "frank@gmail.com", "Frank Green", connection="google-oauth2",
         user_id="google-oauth2|1066", provider="google-oauth2", social=True, logins=150, last_login="2024-02-02T00:00:00",
         profile=dict(email_verified=True, app_metadata={"score": 2.5})),
    Seed("u07", "2024-04-01T00:00:00", "grace@example.com", "grace hopper", logins=1,
         profile=dict(nickname="Amazing Grace", username="ghopper", user_metadata={"prefs": {"fontSize": 13}})),
    Seed("u08", "2024-04-15T00:00:00", "heidi@example.com", "50% off_sale", logins=2),
    Seed("u09", "2024-04-30T23:59:59", "ivan@example.com", "50x offXsale"),
    Seed("u10", "2024-05-01T00:00:00", "judy@example.com", "Judy Smith", connection=PARTNERS, logins=3,
         profile=dict(given_name="Judy", family_name="Smith", app_metadata={"plan": "silver"})),
    Seed("u11", "2024-05-15T00:00:00", "mallory@evil.test", "x' OR '1'='1"),
    Seed("u12", "2024-06-01T00:00:00", "pat@example.com", "Pat Primary", logins=4, profile=dict(email_verified=True)),
    Seed("u13", "2024-06-02T00:00:00", "pat.work@example.com", "Patricia Work", connection=PARTNERS, logins=7,
         linked_to="auth0|u12"),
    Seed("u14", "2024-06-15T00:00:00", None, "nomail", profile=dict(username="nomail")),
    Seed("u15", "2024-07-01T00:00:00", "trent@example.com", "Trent Ng", logins=9, last_login="2024-12-31T10:00:00",
         updated="2024-12-01T00:00:00", profile=dict(app_metadata={"tags": ["a", 1, True]})),
]
LISTED = [s.key for s in USERS if s.linked_to is None]  # in creation order: the default order
ID_TO_KEY = {s.id: s.key for s in USERS}


def everyone_but(*keys: str) -> list[str]:
    return [k for k in LISTED if k not in keys]


async def seed(bastion) -> None:
    response = await bastion.management("POST", "/connections", json={"name": PARTNERS, "strategy": "auth0"})
    assert response.status_code == 201, response.text
    async with bastion.services.database.transaction() as session:
        for s in USERS:
            external_id = s.id.split("|", 1)[1]
            await user_store.insert_user(
                session, user_id=s.id,
                identity=Identity(provider=s.provider, connection=s.connection, external_id=external_id, is_social=s.social,
                                  profile_data={}),
                connection=s.connection, email=s.email, name=s.name, logins_count=s.logins, **s.profile,
            )
            created = utc(s.created)
            await session.execute(
                update(UserRow).where(UserRow.user_id == s.id).values(
                    created_at=created, updated_at=utc(s.updated) if s.updated else created + timedelta(hours=1),
                    last_login=utc(s.last_login) if s.last_login else None,
                )
            )
        for s in USERS:
            if s.linked_to:
                await user_store.set_linked_to(session, user_id=s.id, primary_id=s.linked_to)


class Search:
    """GET /api/v2/users with one management token."""

    def __init__(self, bastion, token: str):
        self.bastion = bastion
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, **params):
        return await self.bastion.http.get("/api/v2/users", params=params, headers=self.headers)

    async def keys(self, q: str | None = None, **params) -> list[str]:
        if q is not None:
            params["q"] = q
        response = await self.get(**params)
        assert response.status_code == 200, (q, response.text)
        return [ID_TO_KEY[u["user_id"]] for u in response.json()]

    async def error(self, q: str | None = None, **params) -> str:
        if q is not None:
            params["q"] = q
        response = await self.get(**params)
        assert response.status_code == 400, (q, response.status_code, response.text)
        body = response.json()
        assert set(body) == {"statusCode", "error", "message", "errorCode"}, body
        assert body["statusCode"] == 400 and body["error"] == HTTPStatus(400).phrase
        assert body["errorCode"] == "invalid_query_string", body
        return body["message"]


@pytest.fixture
async def search(bastion) -> Search:
    await seed(bastion)
    return Search(bastion, await bastion.management_token())


async def check(search: Search, cases: list[tuple[str, list[str]]]) -> None:
    for q, expected in cases:
        assert await search.keys(q, search_engine="v3") == expected, q


# -- field:value -------------------------------------------------------------------------------


async def test_exact_values_with_auth0s_letter_case_rules(search):
    """Normalized fields (email, name, given_name, family_name, nickname) ignore case; others count it;
    a value matches the whole field (v3 does not split fields into words)."""
    await check(search, [
        ('email:"ALICE@example.com"', ["u01"]),
        ("email:alice@example.com", ["u01"]),
        ('name:"alice smith"', ["u01"]),
        ("name:alice", []),
        ("given_name:ALICE", ["u01"]),
        ("family_name:smith", ["u01", "u10"]),
        ('nickname:"amazing grace"', ["u07"]),
        ("username:ghopper", ["u07"]),
        ("username:GHOPPER", []),
        ('user_id:"auth0|u03"', ["u03"]),
        ("user_id:auth0|u03", ["u03"]),
        ("user_id:AUTH0|u03", []),
        ('phone_number:"+15551234"', ["u05"]),
        ("last_ip:10.0.0.1", ["u01"]),
        ('name:"Erin O\'Brien"', ["u05"]),
        (r"name:Erin\ O'Brien", ["u05"]),
    ])


async def test_booleans(search):
    await check(search, [
        ("email_verified:true", ["u01", "u03", "u06", "u12"]),
        ("email_verified:false", everyone_but("u01", "u03", "u06", "u12")),
        ("blocked:true", ["u04"]),
        ("phone_verified:true", ["u05"]),
    ])


async def test_email_domain(search):
    await check(search, [
        ("email.domain:example.org", ["u03", "u04"]),
        ("email.domain:EXAMPLE.ORG", ["u03", "u04"]),
        ("email.domain:test.io", ["u05"]),
        ("email.domain:example", []),
        ("email.domain:exa*", everyone_but("u05", "u06", "u11", "u14")),
    ])


async def test_bare_terms_search_the_profile_text_fields_but_not_metadata(search):
    await check(search, [
        ("alice@example.com", ["u01"]),
        ("ghopper", ["u07"]),
        ('"Grace Hopper"', ["u07"]),
        ("smith*", ["u01", "u10"]),  # family_name
        ("auth0|u05", ["u05"]),
        ("fr", []),  # user_metadata.lang of u01
        ("gold", []),  # app_metadata.plan of u01 and u03
    ])


# -- wildcards ---------------------------------------------------------------------------------


async def test_wildcards(search):
    await check(search, [
        ("name:alice*", ["u01"]),
        ("name:ALI*", ["u01"]),
        ("name:*smith", ["u01", "u10"]),
        ("name:*smith*", ["u01", "u04", "u10"]),
        ("name:alice*smith", ["u01"]),
        ("email:*@example.org", ["u03", "u04"]),
        ("user_id:auth0*", everyone_but("u06")),
        ("username:gho*", ["u07"]),
        ("username:GHO*", []),
        ("identities.connection:Part*", ["u03", "u10", "u12"]),
    ])


async def test_like_metacharacters_in_values_are_literal(search):
    """% and _ are LIKE's wildcards: a value holding them must match them literally."""
    await check(search, [
        ("name:50%*", ["u08"]),  # not u09 "50x offXsale"
        ("name:*off_sale", ["u08"]),
        ("name:%*", []),
        ('name:"50% off_sale"', ["u08"]),
        ("name:50x*", ["u09"]),
    ])


async def test_suffix_wildcards_need_three_characters(search):
    assert "3 other characters" in await search.error("name:*th")
    assert "3 other characters" in await search.error("name:a*h")
    assert await search.keys("name:*ith") == ["u01", "u10"]


# -- boolean operators -------------------------------------------------------------------------


async def test_and_or_not_and_parentheses(search):
    verified = ["u01", "u03", "u06", "u12"]
    await check(search, [
        ("email:alice@example.com OR email:bob@example.com", ["u01", "u02"]),
        ('email:("alice@example.com" OR "bob@example.com")', ["u01", "u02"]),
        ("email_verified:true AND logins_count:[10 TO *]", ["u03", "u06"]),
        ("email_verified:true && logins_count:[10 TO *]", ["u03", "u06"]),
        ("email_verified:true || blocked:true", ["u01", "u03", "u04", "u06", "u12"]),
        ("email_verified:true AND NOT identities.connection:google-oauth2", ["u01", "u03", "u12"]),
        ("NOT email_verified:true", everyone_but(*verified)),
        ("!email_verified:true", everyone_but(*verified)),
        ("(name:alice* OR name:bob*) AND email_verified:true", ["u01"]),
        ("((email_verified:true))", verified),
        # AND binds tighter than OR: verified OR (bob AND never logged in)
        ("email_verified:true OR name:bob* AND logins_count:0", ["u01", "u02", "u03", "u06", "u12"]),
        ("(email_verified:true OR name:bob*) AND logins_count:0", ["u02"]),
    ])


async def test_terms_side_by_side_follow_lucene_default_or_with_plus_and_minus(search):
    await check(search, [
        ("email:alice@example.com email:bob@example.com", ["u01", "u02"]),
        ("+email_verified:true -connection:Partners", ["u01", "u06", "u12"]),
        ("email_verified:true -connection:Partners", ["u01", "u06", "u12"]),
        ("-blocked:false", ["u04"]),
        ("-email_verified:true -logins_count:0", ["u04", "u05", "u07", "u08", "u10", "u15"]),
        ("+name:alice* +email_verified:true", ["u01"]),
        ("+name:alice* email:bob@example.com", ["u01"]),  # Lucene: beside a required term, the others are optional
        ("name:bob* (NOT email_verified:false)", ["u01", "u02", "u03", "u06", "u12"]),  # a group is one alternative
    ])


async def test_not_includes_users_missing_the_field(search):
    """SQL's NULL must not leak: NOT given_name:alice is every user but Alice, given name or not."""
    await check(search, [
        ("NOT given_name:alice", everyone_but("u01")),
        ("NOT last_login:[2024-01-01 TO *]", ["u02", "u04", "u05", "u07", "u08", "u09", "u10", "u11", "u12", "u14"]),
        ("NOT app_metadata.plan:gold", everyone_but("u01", "u03")),
    ])


async def test_exists_and_match_all(search):
    await check(search, [
        ("_exists_:email", everyone_but("u14")),
        ("NOT _exists_:email", ["u14"]),
        ("email:*", everyone_but("u14")),
        ("_exists_:last_login", ["u01", "u03", "u04", "u06", "u15"]),
        ("_exists_:given_name", ["u01", "u10"]),
        ("email_verified:false OR NOT _exists_:email_verified", everyone_but("u01", "u03", "u06", "u12")),
        ("*:*", LISTED),
        ("*", LISTED),
    ])
    assert await search.keys("") == LISTED
    assert await search.keys() == LISTED


# -- ranges ------------------------------------------------------------------------------------


async def test_logins_count_values_and_ranges(search):
    await check(search, [
        ("logins_count:0", ["u02", "u09", "u11", "u14"]),
        ("logins_count:[100 TO 200]", ["u04", "u05", "u06"]),
        ("logins_count:{100 TO 200}", ["u06"]),
        ("logins_count:[100 TO 200}", ["u04", "u06"]),
        ("logins_count:{100 TO *]", ["u05", "u06"]),
        ("logins_count:[* TO 2]", ["u02", "u07", "u08", "u09", "u11", "u14"]),
        ("logins_count:[* TO *]", LISTED),
    ])


async def test_date_values_and_ranges(search):
    april = ["u07", "u08", "u09"]
    await check(search, [
        ("created_at:[2024-04-01 TO 2024-04-30]", april),  # a bare end date includes its whole day
        ("created_at:[2024-04-01 TO 2024-05-01}", april),
        ("created_at:[2024-04-01 TO 2024-05-01]", [*april, "u10"]),
        ("created_at:{2024-03 TO 2024-04]", april),  # after March, up to the end of April
        ("created_at:2024-04", april),
        ("created_at:2024-04-30", ["u09"]),
        ("created_at:[2024-06-15 TO *]", ["u14", "u15"]),
        ('created_at:"2024-05-01T00:00:00Z"', ["u10"]),
        ("created_at:2024-05-01T00:00:00Z", ["u10"]),
        ('created_at:["2024-04-30T23:00:00+00:00" TO "2024-05-01T02:00:00+02:00"]', ["u09", "u10"]),
        ('created_at:{"2024-04-30T23:59:59Z" TO *]', everyone_but("u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09")),
        ("last_login:[* TO 2023-12-31]", ["u04"]),
        ("last_login:[2024 TO *]", ["u01", "u03", "u06", "u15"]),
        ("last_login:{2024-03-10T12:00:00Z TO 2024-04-01T08:30:00Z]", ["u03"]),
        ("updated_at:[2024-11-01 TO *]", ["u15"]),
    ])


# -- identities --------------------------------------------------------------------------------


async def test_identity_fields_match_every_identity_the_user_shows(search):
    """Through the identities: Pat (u12) shows the Partners identity of its linked secondary."""
    await check(search, [
        ("identities.connection:Partners", ["u03", "u10", "u12"]),
        (f'identities.connection:"{DEFAULT_CONNECTION}"', everyone_but("u03", "u06", "u10")),
        ("connection:Partners", ["u03", "u10"]),  # Bastion's `connection`: the user's own connection
        ("identities.provider:google-oauth2", ["u06"]),
        ("identities.isSocial:true", ["u06"]),
        ("identities.isSocial:false", everyone_but("u06")),
        ("identities.user_id:1066", ["u06"]),
        ("identities.user_id:u13", ["u12"]),
    ])


async def test_a_linked_secondary_is_never_listed(search):
    await check(search, [
        ('email:"pat.work@example.com"', []),
        ('name:"Patricia Work"', []),
        ("logins_count:7", []),
        ("created_at:2024-06-02", []),
        ("user_id:auth0|u13", []),
    ])


# -- metadata ----------------------------------------------------------------------------------


async def test_metadata_values_by_type(search):
    await check(search, [
        ("app_metadata.plan:gold", ["u01", "u03"]),
        ('app_metadata.plan:"gold"', ["u01", "u03"]),
        ("app_metadata.plan:Gold", []),  # metadata counts letter case
        ("app_metadata.beta:true", ["u01"]),
        ("app_metadata.beta:false", ["u02"]),
        ("app_metadata.level:3", ["u01", "u03"]),  # the number 3 and the string "3"
        ("app_metadata.level:1", ["u02"]),
        ("app_metadata.score:2.5", ["u06"]),
        ("app_metadata.sub.tier:a", ["u01"]),
        ("app_metadata.sub:a", []),  # an object is not its members' values
        ("user_metadata.lang:fr", ["u01"]),
        ("user_metadata.prefs.fontSize:13", ["u07"]),
        ("user_metadata.missing:x", []),
    ])


async def test_metadata_arrays_match_any_element(search):
    await check(search, [
        ("app_metadata.roles:admin", ["u01"]),
        ("app_metadata.roles:editor", ["u01"]),
        ("app_metadata.roles:viewer", ["u04"]),
        ("app_metadata.tags:a", ["u15"]),
        ("app_metadata.tags:1", ["u15"]),
        ("app_metadata.tags:true", ["u15"]),
    ])


async def test_metadata_exists_wildcards_and_ranges(search):
    await check(search, [
        ("_exists_:app_metadata.plan", ["u01", "u02", "u03", "u10"]),  # u05's plan is null
        ("_exists_:app_metadata.roles", ["u01", "u04"]),  # u02's roles is an empty array
        ("_exists_:app_metadata.sub", ["u01"]),
        ("_exists_:user_metadata.prefs.fontSize", ["u07"]),
        ("NOT _exists_:app_metadata.plan", everyone_but("u01", "u02", "u03", "u10")),
        ("app_metadata.plan:go*", ["u01", "u03"]),
        ("app_metadata.plan:*ver", ["u10"]),
        ("app_metadata.plan:GO*", []),
        ("app_metadata.level:[2 TO *]", ["u01"]),  # numbers only: not u03's string "3"
        ("app_metadata.level:{1 TO 3}", []),
        ("app_metadata.score:[2 TO 3]", ["u06"]),
    ])


# -- sort and paging ---------------------------------------------------------------------------


async def test_sort(search):
    assert await search.keys(sort="logins_count:-1") == [
        "u05", "u06", "u04", "u03", "u15", "u01", "u12", "u10", "u08", "u07", "u14", "u11", "u09", "u02",
    ]
    assert await search.keys("logins_count:[1 TO 5]", sort="logins_count:1") == ["u07", "u08", "u10", "u12", "u01"]
    assert await search.keys(sort="last_login:1") == [
        "u04", "u06", "u01", "u03", "u15", "u02", "u05", "u07", "u08", "u09", "u10", "u11", "u12", "u14",
    ]
    assert await search.keys(sort="last_login:-1") == [
        "u15", "u03", "u01", "u06", "u04", "u14", "u12", "u11", "u10", "u09", "u08", "u07", "u05", "u02",
    ]
    assert await search.keys("email.domain:example.org", sort="email:-1") == ["u04", "u03"]
    assert await search.keys("email.domain:example.org", sort="email:1") == ["u03", "u04"]
    assert await search.keys(sort="created_at:-1") == list(reversed(LISTED))
    assert await search.keys(sort="user_id:1") == sorted(LISTED, key=lambda k: next(s.id for s in USERS if s.key == k))
    assert "field:1" in await search.error(sort="created_at:2")
    assert "field:1" in await search.error(sort="created_at")
    assert "not supported" in await search.error(sort="app_metadata.plan:1")
    assert "sortable fields" in await search.error(sort="password_hash:1")


async def test_paging_and_totals_count_only_the_matching_users(search):
    example_com = ["u01", "u02", "u07", "u08", "u09", "u10", "u12", "u15"]
    assert await search.keys("email.domain:example.com") == example_com
    pages = []
    for page in range(4):
        response = await search.get(q="email.domain:example.com", page=page, per_page=3, include_totals="true")
        assert response.status_code == 200, response.text
        pages.append(response.json())
    assert [(p["start"], p["limit"], p["length"], p["total"]) for p in pages] == [(0, 3, 3, 8), (3, 3, 3, 8), (6, 3, 2, 8), (9, 3, 0, 8)]
    assert [ID_TO_KEY[u["user_id"]] for p in pages for u in p["users"]] == example_com
    unfiltered = await search.get(per_page=1, include_totals="true")
    assert unfiltered.json()["total"] == len(LISTED)
    sorted_page = await search.get(q="email.domain:example.com", sort="logins_count:-1", page=0, per_page=2, include_totals="true")
    assert [ID_TO_KEY[u["user_id"]] for u in sorted_page.json()["users"]] == ["u15", "u01"]
    assert sorted_page.json()["total"] == 8


# -- search_engine, errors and injection ---------------------------------------------------


async def test_search_engine_v3_only_as_auth0(search):
    assert await search.keys("email:bob@example.com", search_engine="v3") == ["u02"]
    assert await search.keys("email:bob@example.com") == ["u02"]
    assert await search.error("email:bob@example.com", search_engine="v1") == "You are not allowed to use search_engine=v1."
    assert await search.error("email:bob@example.com", search_engine="v2") == "You are not allowed to use search_engine=v2."
    assert "v3" in await search.error("email:bob@example.com", search_engine="v4")


BAD_QUERIES = [
    ('email:"unterminated', "missing closing"),
    ("(email:a@b.c", "missing ')'"),
    ("email:a@b.c)", "unexpected ')'"),
    ("()", "empty parentheses"),
    ("email:a@b.c OR", "expected a term"),
    ("AND email:a@b.c", "expected a term"),
    ("email:", "expected a value"),
    ("foo:bar", "unknown field 'foo'"),
    ("app_metadata:gold", "name a key"),
    ("connection.name:x", "unknown field"),
    ("name:jo?n", "? wildcard"),
    ("name:jo~", "fuzzy"),
    ("name:jo^2", "boost"),
    ("/jo.*/", "regular expressions"),
    ("name:[a TO b]", "ranges work on"),
    ("[a TO b]", "needs a field"),
    ("logins_count:[1 2]", "'TO'"),
    ("logins_count:[1 TO 2", "']' or '}'"),
    ("logins_count:[1* TO 2]", "open end"),
    ("logins_count:many", "whole number"),
    ("logins_count:1*", "text fields"),
    ("logins_count:99999999999999999999", "whole number"),
    ("email_verified:maybe", "true or false"),
    ("created_at:yesterday", "ISO 8601"),
    ("created_at:[2024-13-01 TO *]", "no valid date"),
    ("created_at:0000-01-01", "no valid date"),
    ("user_metadata.lang:f*", "user_metadata"),
    ("user_metadata.age:[1 TO 2]", "user_metadata"),
    ("app_metadata.plan:[a TO b]", "numbers"),
    ("_exists_:", "expected a value"),
    ("_exists_:(email)", "_exists_"),
    ("_exists_:nope", "unknown field"),
    ("name:x - y", "'-' must be followed"),
    ("*:alice", "'*:'"),
    ("name:a\\", "must escape"),
    ("(" * (MAX_DEPTH + 1) + "email:a@b.c" + ")" * (MAX_DEPTH + 1), "too deeply nested"),
    (" OR ".join(["email:a@b.c"] * (MAX_TERMS + 1)), "too many terms"),
    ("email:a@b.c " * (MAX_QUERY_LENGTH // 12 + 1), "too long"),
]


async def test_bad_queries_are_400_invalid_query_string_saying_what_is_wrong(search):
    for q, fragment in BAD_QUERIES:
        message = await search.error(q)
        assert message.startswith("Invalid query: ") and fragment in message, (q, message)


async def test_sql_looking_values_are_plain_literals(search):
    await check(search, [
        ("name:\"x' OR '1'='1\"", ["u11"]),
        ("name:x' OR name:'1'='1", []),  # three harmless terms, none of them a user's whole name
        ('email:"a@b.c\'; DROP TABLE users; --"', []),
        ('user_id:"\' OR 1=1 --"', []),
        ('app_metadata.plan:"gold\') OR 1=1 --"', []),
        ('identities.connection:"x\' OR \'1\'=\'1"', []),
        ("app_metadata.plan:\\'gold", []),
    ])
    assert await search.keys() == LISTED  # the table is still there, whole


FUZZ_TOKENS = [
    "email:", "name:", "user_id:", "logins_count:", "created_at:", "last_login:", "email_verified:", "app_metadata.plan:",
    "app_metadata.roles:", "user_metadata.lang:", "identities.connection:", "email.domain:", "_exists_:", "*:", "nope:",
    "alice", "gold", "3", "-1", "2.5", "true", "2024-04", "2024-04-30T23:59:59Z", "\"quoted value\"", "\"", "'", "%", "_",
    "*", "**", "ab*", "*abc", "a*b", "?", "~", "^2", "\\", "\\*", "(", ")", "[", "]", "{", "}", " TO ", "AND", "OR", "NOT",
    "&&", "||", "!", "-", "+", ":", "é", "\u00df", "\u202e", "😀", "1e400", "99999999999999999999", " ", " ", " ",
]


async def test_no_query_is_a_server_error(search):
    """Random token soup, straight to the database (the API would rate-limit 500 calls): every
    query is refused as InvalidQuery (the 400) or answers; nothing else may fail (a 500)."""
    import random

    chance = random.Random(20240501)
    outcomes = {"answered": 0, "refused": 0}
    for _ in range(500):
        q = "".join(chance.choice(FUZZ_TOKENS) for _ in range(chance.randint(1, 12)))
        try:
            condition = user_search_condition(q)
        except InvalidQuery:
            outcomes["refused"] += 1
            continue
        async with search.bastion.services.database.reader() as session:
            page = await user_store.list_users(session, page=0, per_page=100, condition=condition)
        assert page.total == len(page.items) <= len(LISTED), q
        outcomes["answered"] += 1
    assert outcomes["answered"] > 50 and outcomes["refused"] > 50, outcomes


async def test_nul_characters_are_refused_not_a_500(search):
    response = await search.get(q="name:a\x00b")
    assert response.status_code == 400 and response.json()["errorCode"] == "invalid_query_string"


# -- the parser alone --------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "tree"), [
    ('email:"a b"', Term("email", ("a b",))),
    ("name:jo*", Term("name", ("jo", ""))),
    ("name:*usa", Term("name", ("", "usa"))),
    ("name:jo**n*", Term("name", ("jo", "n", ""))),
    (r"name:jo\*n", Term("name", ("jo*n",))),
    (r"name:John\ Doe", Term("name", ("John Doe",))),
    ("jane", Term(None, ("jane",))),
    ("a b", Or((Term(None, ("a",)), Term(None, ("b",))))),
    ("a -b", And((Term(None, ("a",)), Not(Term(None, ("b",)))))),
    ("+a b -c", And((Term(None, ("a",)), Not(Term(None, ("c",)))))),
    ("-a -b", Not(Or((Term(None, ("a",)), Term(None, ("b",)))))),
    ("a AND b OR c", Or((And((Term(None, ("a",)), Term(None, ("b",)))), Term(None, ("c",))))),
    ("a OR NOT b", Or((Term(None, ("a",)), Not(Term(None, ("b",)))))),
    ("NOT NOT a", Term(None, ("a",))),
    ("a AND -b", And((Term(None, ("a",)), Not(Term(None, ("b",)))))),
    ("email:(x OR y)", Or((Term("email", ("x",)), Term("email", ("y",))))),
    ("email:(x name:y)", Or((Term("email", ("x",)), Term("name", ("y",))))),
    ("logins_count:{100 TO *]", Range("logins_count", "100", None, False, True)),
    ('created_at:["2024-01-01T10:00:00Z" TO 2024-02]', Range("created_at", "2024-01-01T10:00:00Z", "2024-02", True, True)),
    ("created_at:2024-01-01T10:00:00Z", Term("created_at", ("2024-01-01T10:00:00Z",))),
    ("_exists_:app_metadata.plan", Exists("app_metadata.plan")),
    ("email:*", Exists("email")),
    ("*:*", MatchAll()),
    ("   ", None),
])
def test_parser_builds_the_tree(query, tree):
    assert parse_query(query) == tree


@pytest.mark.parametrize("query", [
    '"open', "(a", "a)", "()", "a OR", "OR a", "a AND", "name:*sa", "name:j?", "a~", "a^2", "[a TO b]",
    "x:[1 TO", "_exists_:", "-", "a\\", "(" * 11 + "a" + ")" * 11, "a " * 3000,
])
def test_parser_refuses(query):
    with pytest.raises(InvalidQuery) as refused:
        parse_query(query)
    assert refused.value.status == 400 and refused.value.error_code == "invalid_query_string"


def test_a_long_chain_of_nots_does_not_exhaust_the_stack():
    assert parse_query("NOT " * 1000 + "a") == Term(None, ("a",))


@pytest.mark.parametrize("query", ["foo:bar", "name:[a TO b]", "logins_count:x", "created_at:2024-02-30", "user_metadata.a:b*"])
def test_translation_refuses_what_a_field_does_not_take(query):
    with pytest.raises(InvalidQuery):
        query_condition(parse_query(query))
