"""Auth0's Management API v2 (/api/v2) as Bastion implements it, on both databases.

Auth0's tools (auth0-python, auth0-deploy-cli) rely on these exact shapes: the
error body {statusCode, error, message, errorCode}, the user and client objects,
the list bodies (bare array, `include_totals`, checkpoint `take`/`from`), and the
effect of each change on the token endpoint.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import quote

import httpx

from bastion.tenant.bootstrap import DEFAULT_CONNECTION

from conftest import PASSWORD

REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"
API = "https://api.test"
NEW_PASSWORD = "Battery-Staple-42"


# -- helpers ---------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, error_code: str | None = None) -> dict:
    """An Auth0 error body: exactly statusCode, error, message (and errorCode when set); never a trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    expected_keys = {"statusCode", "error", "message"} | ({"errorCode"} if "errorCode" in body else set())
    assert set(body) == expected_keys, body
    assert body["statusCode"] == status
    assert body["error"] == HTTPStatus(status).phrase
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    if error_code is not None:
        assert body.get("errorCode") == error_code, body
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_path(user_id: str) -> str:
    return "/users/" + quote(user_id, safe="")


async def realm_login(bastion, client: dict, username: str = "alice@example.com", password: str = PASSWORD, **extra) -> httpx.Response:
    """The password-realm grant against the default database connection."""
    return await bastion.http.post("/oauth/token", data={
        "grant_type": REALM_GRANT, "realm": DEFAULT_CONNECTION, "username": username, "password": password,
        "client_id": client["client_id"], "client_secret": client["client_secret"], "scope": "openid", **extra,
    })


async def client_credentials(bastion, client_id: str, secret: str, audience: str = API, scope: str | None = None) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "audience": audience}
    if scope is not None:
        data["scope"] = scope
    return await bastion.http.post("/oauth/token", data=data)


async def machine_client(bastion, name: str = "Backend") -> dict:
    response = await bastion.management("POST", "/clients", json={"name": name, "app_type": "non_interactive"})
    assert response.status_code == 201, response.text
    return response.json()


async def grant(bastion, client_id: str, audience: str = API, scope: list[str] | None = None) -> httpx.Response:
    return await bastion.management("POST", "/client-grants", json={
        "client_id": client_id, "audience": audience, "scope": scope if scope is not None else ["read:things"],
    })


async def system_api(bastion) -> dict:
    listing = await bastion.management("GET", "/resource-servers")
    assert listing.status_code == 200, listing.text
    [api] = [a for a in listing.json() if a["is_system"]]
    return api


# -- authentication ----------------------------------------------------------


async def test_no_token_is_401_missing_authentication(bastion):
    response = await bastion.http.get("/api/v2/users")
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Missing authentication"}


async def test_garbage_token_is_401(bastion):
    response = await bastion.http.get("/api/v2/users", headers=bearer("not.a.jwt"))
    assert_error(response, 401)


async def test_token_for_another_audience_is_401(bastion):
    client = await bastion.create_client()
    await bastion.create_user()
    tokens = await realm_login(bastion, client)
    assert tokens.status_code == 200, tokens.text

    response = await bastion.http.get("/api/v2/users", headers=bearer(tokens.json()["access_token"]))
    assert_error(response, 401)


async def test_token_with_too_few_scopes_is_403_insufficient_scope(bastion):
    token = await bastion.management_token(scope="read:users")
    response = await bastion.http.post(
        "/api/v2/users", headers=bearer(token),
        json={"connection": DEFAULT_CONNECTION, "email": "bob@example.com", "password": PASSWORD},
    )
    assert_error(response, 403, "insufficient_scope")


async def test_end_user_cannot_obtain_management_api_access(bastion):
    """A user's own login must never yield admin scopes of the Management API (Auth0 grants users none of them)."""
    client = await bastion.create_client()
    await bastion.create_user()
    tokens = await realm_login(bastion, client, audience=bastion.settings.management_audience,
                               scope="openid read:users delete:users")
    if tokens.status_code == 200:
        assert not {"read:users", "delete:users"} & set(tokens.json()["scope"].split())
        listing = await bastion.http.get("/api/v2/users", headers=bearer(tokens.json()["access_token"]))
        assert listing.status_code in (401, 403)
    else:
        assert tokens.status_code == 403


# -- users -------------------------------------------------------------------


async def test_create_user_returns_the_auth0_user_shape(bastion):
    response = await bastion.management("POST", "/users", json={
        "connection": DEFAULT_CONNECTION, "email": "Alice@Example.com", "password": PASSWORD,
        "user_metadata": {"theme": "dark"}, "app_metadata": {"plan": "pro"},
    })
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["user_id"].startswith("auth0|")
    assert user["email"] == "alice@example.com" and user["email_verified"] is False
    assert user["identities"] == [{"connection": DEFAULT_CONNECTION, "user_id": user["user_id"].removeprefix("auth0|"),
                                   "provider": "auth0", "isSocial": False}]
    assert user["user_metadata"] == {"theme": "dark"} and user["app_metadata"] == {"plan": "pro"}
    assert user["created_at"].endswith("Z") and user["logins_count"] == 0
    assert "password" not in user and "password_hash" not in user


async def test_user_name_and_nickname_of_300_characters_are_accepted(bastion):
    """The body schema (like Auth0) allows 300 characters: the database must store them, not fail with a 500."""
    user = await bastion.create_user(name="N" * 300, nickname="k" * 300)
    stored = await bastion.management("GET", user_path(user["user_id"]))
    assert stored.json()["name"] == "N" * 300 and stored.json()["nickname"] == "k" * 300


async def test_get_user_by_url_encoded_id(bastion):
    created = await bastion.create_user()
    response = await bastion.management("GET", user_path(created["user_id"]))
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == created["user_id"]
    assert response.json()["email"] == "alice@example.com"


async def test_unknown_user_is_404_inexistent_user(bastion):
    response = await bastion.management("GET", "/users/auth0%7Cxyz")
    assert_error(response, 404, "inexistent_user")


async def test_patch_metadata_merges_top_level_keys(bastion):
    user = await bastion.create_user(app_metadata={"plan": "free", "roles": ["a"]}, user_metadata={"lang": "fr"})
    response = await bastion.management("PATCH", user_path(user["user_id"]), json={
        "app_metadata": {"plan": "pro", "roles": ["b"]}, "user_metadata": {"theme": "dark"},
    })
    assert response.status_code == 200, response.text
    assert response.json()["app_metadata"] == {"plan": "pro", "roles": ["b"]}
    assert response.json()["user_metadata"] == {"lang": "fr", "theme": "dark"}


async def test_patch_metadata_null_removes_a_key(bastion):
    user = await bastion.create_user(user_metadata={"lang": "fr", "theme": "dark"})
    response = await bastion.management("PATCH", user_path(user["user_id"]), json={"user_metadata": {"theme": None}})
    assert response.status_code == 200, response.text
    assert response.json()["user_metadata"] == {"lang": "fr"}
    stored = await bastion.management("GET", user_path(user["user_id"]))
    assert stored.json()["user_metadata"] == {"lang": "fr"}


async def test_patch_metadata_empty_object_clears_it(bastion):
    user = await bastion.create_user(app_metadata={"plan": "pro", "roles": ["admin"]})
    response = await bastion.management("PATCH", user_path(user["user_id"]), json={"app_metadata": {}})
    assert response.status_code == 200, response.text
    assert response.json()["app_metadata"] == {}


async def test_patch_password_replaces_the_login_password(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    response = await bastion.management("PATCH", user_path(user["user_id"]), json={"password": NEW_PASSWORD})
    assert response.status_code == 200, response.text
    assert "last_password_reset" in response.json()

    assert (await realm_login(bastion, client, password=NEW_PASSWORD)).status_code == 200
    old = await realm_login(bastion, client, password=PASSWORD)
    assert old.status_code == 403 and old.json()["error"] == "invalid_grant"


async def test_duplicate_email_is_409(bastion):
    await bastion.create_user()
    response = await bastion.management("POST", "/users", json={
        "connection": DEFAULT_CONNECTION, "email": "ALICE@example.com", "password": PASSWORD,
    })
    assert_error(response, 409)


async def test_patch_email_to_a_taken_one_is_409(bastion):
    await bastion.create_user("alice@example.com")
    bob = await bastion.create_user("bob@example.com")
    response = await bastion.management("PATCH", user_path(bob["user_id"]), json={"email": "alice@example.com"})
    assert_error(response, 409)
    assert (await bastion.management("GET", user_path(bob["user_id"]))).json()["email"] == "bob@example.com"


async def test_weak_password_is_400(bastion):
    response = await bastion.management("POST", "/users", json={
        "connection": DEFAULT_CONNECTION, "email": "bob@example.com", "password": "short",
    })
    body = assert_error(response, 400)
    assert "PasswordStrengthError" in body["message"]
    assert (await bastion.management("GET", "/users-by-email", params={"email": "bob@example.com"})).json() == []


async def test_missing_connection_is_400_invalid_body(bastion):
    response = await bastion.management("POST", "/users", json={"email": "bob@example.com", "password": PASSWORD})
    body = assert_error(response, 400, "invalid_body")
    assert "connection" in body["message"]


async def test_delete_user_is_204_then_404(bastion):
    user = await bastion.create_user()
    deleted = await bastion.management("DELETE", user_path(user["user_id"]))
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(await bastion.management("GET", user_path(user["user_id"])), 404, "inexistent_user")
    assert_error(await bastion.management("DELETE", user_path(user["user_id"])), 404, "inexistent_user")


async def test_search_users_by_email_with_search_engine_v3(bastion):
    alice = await bastion.create_user("alice@example.com")
    await bastion.create_user("bob@example.com")
    response = await bastion.management("GET", "/users", params={"q": 'email:"alice@example.com"', "search_engine": "v3"})
    assert response.status_code == 200, response.text
    assert [u["user_id"] for u in response.json()] == [alice["user_id"]]


async def test_users_by_email(bastion):
    alice = await bastion.create_user("alice@example.com")
    await bastion.create_user("bob@example.com")
    response = await bastion.management("GET", "/users-by-email", params={"email": "Alice@Example.com"})
    assert response.status_code == 200, response.text
    assert [u["user_id"] for u in response.json()] == [alice["user_id"]]


async def test_users_pages_with_include_totals(bastion):
    ids = [(await bastion.create_user(f"user{i}@example.com"))["user_id"] for i in range(3)]
    first = await bastion.management("GET", "/users", params={"page": 0, "per_page": 2, "include_totals": "true"})
    second = await bastion.management("GET", "/users", params={"page": 1, "per_page": 2, "include_totals": "true"})
    assert first.status_code == 200 and second.status_code == 200
    one, two = first.json(), second.json()
    assert set(one) == {"users", "start", "limit", "length", "total"}
    assert (one["start"], one["limit"], one["length"], one["total"]) == (0, 2, 2, 3)
    assert (two["start"], two["limit"], two["length"], two["total"]) == (2, 2, 1, 3)
    assert sorted(u["user_id"] for u in one["users"] + two["users"]) == sorted(ids)


async def test_users_page_past_the_end_is_an_empty_list(bastion):
    await bastion.create_user("user0@example.com")
    await bastion.create_user("user1@example.com")
    last = await bastion.management("GET", "/users", params={"page": 0, "per_page": 2})
    beyond = await bastion.management("GET", "/users", params={"page": 1, "per_page": 2})
    assert len(last.json()) == 2
    assert beyond.status_code == 200 and beyond.json() == []


# -- clients -----------------------------------------------------------------


async def test_create_client_returns_id_and_secret(bastion):
    response = await bastion.management("POST", "/clients", json={"name": "Backend", "app_type": "non_interactive"})
    assert response.status_code == 201, response.text
    client = response.json()
    assert client["client_id"] and len(client["client_secret"]) >= 32
    assert client["name"] == "Backend" and client["app_type"] == "non_interactive"
    assert client["grant_types"] == ["client_credentials"]


async def test_list_clients_with_include_totals(bastion):
    created = await machine_client(bastion)
    response = await bastion.management("GET", "/clients", params={"include_totals": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"clients", "start", "limit", "length", "total"}
    assert created["client_id"] in [c["client_id"] for c in body["clients"]]
    assert body["length"] == len(body["clients"]) == body["total"] >= 2


async def test_patch_client_callbacks(bastion):
    client = await bastion.create_client()
    response = await bastion.management("PATCH", f"/clients/{client['client_id']}",
                                        json={"callbacks": ["https://new.test/cb", "https://new.test/cb2"]})
    assert response.status_code == 200, response.text
    assert response.json()["callbacks"] == ["https://new.test/cb", "https://new.test/cb2"]
    stored = await bastion.management("GET", f"/clients/{client['client_id']}")
    assert stored.json()["callbacks"] == ["https://new.test/cb", "https://new.test/cb2"]
    assert stored.json()["allowed_logout_urls"] == client["allowed_logout_urls"]


async def test_patch_client_secret_replaces_the_old_secret(bastion):
    client = await machine_client(bastion)
    await bastion.create_api()
    assert (await grant(bastion, client["client_id"])).status_code == 201
    new_secret = "n" * 20 + "-rotated-secret-0123"
    response = await bastion.management("PATCH", f"/clients/{client['client_id']}", json={"client_secret": new_secret})
    assert response.status_code == 200, response.text

    old = await client_credentials(bastion, client["client_id"], client["client_secret"])
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    new = await client_credentials(bastion, client["client_id"], new_secret)
    assert new.status_code == 200, new.text


async def test_delete_client_is_204_then_404(bastion):
    client = await machine_client(bastion)
    deleted = await bastion.management("DELETE", f"/clients/{client['client_id']}")
    assert deleted.status_code == 204
    assert_error(await bastion.management("GET", f"/clients/{client['client_id']}"), 404, "inexistent_client")
    gone = await client_credentials(bastion, client["client_id"], client["client_secret"])
    assert gone.status_code == 401


async def test_unknown_client_is_404_inexistent_client(bastion):
    assert_error(await bastion.management("GET", "/clients/no-such-client"), 404, "inexistent_client")
    assert_error(await bastion.management("PATCH", "/clients/no-such-client", json={"name": "x"}), 404, "inexistent_client")


async def test_invalid_client_body_is_400_invalid_body(bastion):
    client = await bastion.create_client()
    response = await bastion.management("PATCH", f"/clients/{client['client_id']}", json={"callbacks": ["not a url"]})
    body = assert_error(response, 400, "invalid_body")
    assert "callbacks" in body["message"]
    stored = await bastion.management("GET", f"/clients/{client['client_id']}")
    assert stored.json()["callbacks"] == client["callbacks"]


# -- resource servers --------------------------------------------------------


async def test_create_resource_server(bastion):
    api = await bastion.create_api()
    assert api["id"] and api["identifier"] == API and api["name"] == "Test API"
    assert [s["value"] for s in api["scopes"]] == ["read:things", "write:things"]
    assert api["is_system"] is False


async def test_duplicate_resource_server_identifier_is_409(bastion):
    await bastion.create_api()
    response = await bastion.management("POST", "/resource-servers", json={"identifier": API, "name": "Again"})
    assert_error(response, 409)


async def test_get_resource_server_by_id(bastion):
    api = await bastion.create_api()
    response = await bastion.management("GET", f"/resource-servers/{api['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == api


async def test_get_resource_server_by_url_encoded_identifier(bastion):
    api = await bastion.create_api()
    response = await bastion.management("GET", "/resource-servers/" + quote(API, safe=""))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == api["id"]


async def test_patch_resource_server_scopes(bastion):
    api = await bastion.create_api()
    response = await bastion.management("PATCH", f"/resource-servers/{api['id']}",
                                        json={"scopes": [{"value": "admin:things", "description": "Admin"}]})
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == [{"value": "admin:things", "description": "Admin"}]
    stored = await bastion.management("GET", f"/resource-servers/{api['id']}")
    assert stored.json()["scopes"] == [{"value": "admin:things", "description": "Admin"}]


async def test_management_api_resource_server_cannot_be_deleted(bastion):
    api = await system_api(bastion)
    assert api["identifier"] == bastion.settings.management_audience
    assert_error(await bastion.management("DELETE", f"/resource-servers/{api['id']}"), 403)
    assert (await bastion.management("GET", f"/resource-servers/{api['id']}")).status_code == 200


# -- client grants -----------------------------------------------------------


async def test_client_grant_allows_client_credentials_limited_to_its_scopes(bastion):
    client = await machine_client(bastion)
    await bastion.create_api()
    created = await grant(bastion, client["client_id"], scope=["read:things"])
    assert created.status_code == 201, created.text
    assert created.json()["id"] and created.json()["scope"] == ["read:things"]

    asked = await client_credentials(bastion, client["client_id"], client["client_secret"], scope="read:things write:things")
    assert asked.status_code == 200, asked.text
    assert asked.json()["scope"] == "read:things"
    default = await client_credentials(bastion, client["client_id"], client["client_secret"])
    assert default.status_code == 200 and default.json()["scope"] == "read:things"


async def test_client_credentials_without_a_grant_is_403_access_denied(bastion):
    client = await machine_client(bastion)
    await bastion.create_api()
    response = await client_credentials(bastion, client["client_id"], client["client_secret"])
    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"


async def test_duplicate_client_grant_is_409(bastion):
    client = await machine_client(bastion)
    await bastion.create_api()
    assert (await grant(bastion, client["client_id"])).status_code == 201
    assert_error(await grant(bastion, client["client_id"], scope=["write:things"]), 409)


# -- connections -------------------------------------------------------------


async def test_default_database_connection_exists(bastion):
    response = await bastion.management("GET", "/connections", params={"name": DEFAULT_CONNECTION})
    assert response.status_code == 200, response.text
    [connection] = response.json()
    assert connection["name"] == DEFAULT_CONNECTION and connection["strategy"] == "auth0"


async def test_connections_checkpoint_pagination(bastion):
    created = await bastion.management("POST", "/connections", json={"name": "Other-DB", "strategy": "auth0"})
    assert created.status_code == 201, created.text

    first = await bastion.management("GET", "/connections", params={"take": 1})
    assert first.status_code == 200, first.text
    assert len(first.json()["connections"]) == 1 and first.json()["next"]
    second = await bastion.management("GET", "/connections", params={"take": 1, "from": first.json()["next"]})
    assert second.status_code == 200, second.text
    assert len(second.json()["connections"]) == 1 and "next" not in second.json()
    names = {c["name"] for c in first.json()["connections"] + second.json()["connections"]}
    assert names == {DEFAULT_CONNECTION, "Other-DB"}


async def test_create_connection_with_enabled_clients(bastion):
    client = await bastion.create_client()
    response = await bastion.management("POST", "/connections", json={
        "name": "Partners", "strategy": "auth0", "enabled_clients": [client["client_id"]],
    })
    assert response.status_code == 201, response.text
    connection = response.json()
    assert connection["id"].startswith("con_") and connection["enabled_clients"] == [client["client_id"]]
    assert_error(await bastion.management("POST", "/connections", json={"name": "Partners", "strategy": "auth0"}), 409)


async def test_patch_connection_enabled_clients(bastion):
    client = await bastion.create_client()
    created = (await bastion.management("POST", "/connections", json={"name": "Partners", "strategy": "auth0"})).json()
    response = await bastion.management("PATCH", f"/connections/{created['id']}", json={"enabled_clients": [client["client_id"]]})
    assert response.status_code == 200, response.text
    assert response.json()["enabled_clients"] == [client["client_id"]]
    stored = await bastion.management("GET", f"/connections/{created['id']}")
    assert stored.json()["enabled_clients"] == [client["client_id"]]


async def test_delete_connection_is_204_then_404(bastion):
    created = (await bastion.management("POST", "/connections", json={"name": "Partners", "strategy": "auth0"})).json()
    assert (await bastion.management("DELETE", f"/connections/{created['id']}")).status_code == 204
    assert_error(await bastion.management("GET", f"/connections/{created['id']}"), 404, "inexistent_connection")


# -- logs --------------------------------------------------------------------


async def test_failed_password_login_is_logged_as_fp(bastion):
    client = await bastion.create_client()
    user = await bastion.create_user()
    assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403

    response = await bastion.management("GET", "/logs", params={"search": "type:fp"})
    assert response.status_code == 200, response.text
    [event] = response.json()
    assert event["type"] == "fp" and event["user_id"] == user["user_id"]
    assert event["client_id"] == client["client_id"] and event["connection"] == DEFAULT_CONNECTION
    assert event["log_id"] == event["_id"] and event["date"].endswith("Z")


async def test_logs_search_with_q_as_auth0_python_sends_it(bastion):
    """auth0-python's Logs.search() sends the Lucene query as `q`, not `search`."""
    client = await bastion.create_client()
    await bastion.create_user()
    assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403

    response = await bastion.management("GET", "/logs", params={"q": "type:fp", "include_totals": "true"})
    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["logs"]] == ["fp"]


async def test_user_logs_list_only_that_users_events(bastion):
    client = await bastion.create_client()
    alice = await bastion.create_user("alice@example.com")
    await bastion.create_user("bob@example.com")
    assert (await realm_login(bastion, client, password="Wrong-Password-1")).status_code == 403
    assert (await realm_login(bastion, client)).status_code == 200
    assert (await realm_login(bastion, client, username="bob@example.com", password="Wrong-Password-1")).status_code == 403

    response = await bastion.management("GET", user_path(alice["user_id"]) + "/logs")
    assert response.status_code == 200, response.text
    events = response.json()
    assert [e["type"] for e in events] == ["sepft", "fp"]
    assert {e["user_id"] for e in events} == {alice["user_id"]}


# -- errors ------------------------------------------------------------------


async def test_unknown_path_under_api_v2_is_404_json(bastion):
    response = await bastion.management("GET", "/no-such-resource")
    assert_error(response, 404)


async def test_malformed_json_body_is_400_invalid_body(bastion):
    token = await bastion.management_token()
    response = await bastion.http.post("/api/v2/clients", content=b"{not json",
                                       headers={**bearer(token), "Content-Type": "application/json"})
    assert_error(response, 400, "invalid_body")


async def test_invalid_query_string_is_400_json(bastion):
    response = await bastion.management("GET", "/users", params={"per_page": 1000})
    assert_error(response, 400, "invalid_query_string")
