"""Auth0's own Python SDK, unmodified, drives Bastion's Management API over TLS on loopback.

auth0-python 6.x builds `https://{domain}/api/v2` and gets its token from `https://{domain}/oauth/token`
(client credentials, audience `https://{domain}/api/v2/`), so Bastion is served over TLS with a
self-signed certificate for 127.0.0.1 that the SDK trusts through `SSL_CERT_FILE`. After every
change the SDK makes, the state is read back through a second, plain HTTP client: the SDK not
raising proves nothing by itself.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from auth0.management import ManagementClient
from auth0.management.core.api_error import ApiError

from conftest import MGMT_ID, MGMT_SECRET

from tests.certificates import self_signed_certificate

pytestmark = pytest.mark.e2e

DATABASE = "Username-Password-Authentication"
PASSWORD = "Sdk-Correct-Horse-7"
RULE_SCRIPT = '''def rule(user, context, api):
    context.id_token["https://example.com/source"] = "sdk"
    return user, context
'''


@dataclass
class Tenant:
    """The SDK pointed at one TLS server, the requests it sent, and a plain client to read the state back."""

    sdk: ManagementClient
    http: httpx.Client
    sent: list[httpx.Request] = field(default_factory=list)

    def read(self, path: str, **params) -> dict | list:
        response = self.http.get(f"/api/v2{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def status(self, path: str) -> int:
        return self.http.get(f"/api/v2{path}").status_code

    def sent_to(self, path: str, method: str = "GET") -> list[dict[str, list[str]]]:
        """The query strings of the requests the SDK sent to `path`."""
        return [parse_qs(urlsplit(str(r.url)).query) for r in self.sent
                if r.method == method and r.url.path == f"/api/v2{path}"]


@pytest.fixture
def tenant(live_server, database_url, tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    server = live_server(database_url, tls=(cert, key))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the SDK's token provider builds its own httpx client
    trust = ssl.create_default_context(cafile=str(cert))
    sent: list[httpx.Request] = []
    sdk_http = httpx.Client(verify=trust, timeout=30, event_hooks={"request": [sent.append]})
    sdk = ManagementClient(domain=f"127.0.0.1:{server.port}", client_id=MGMT_ID, client_secret=MGMT_SECRET,
                           httpx_client=sdk_http)
    with server.management_http() as http:
        yield Tenant(sdk=sdk, http=http, sent=sent)
    sdk_http.close()


def test_users_are_created_listed_searched_updated_and_linked(tenant: Tenant):
    created = []
    for n in range(120):
        user = tenant.sdk.users.create(
            connection=DATABASE, email=f"load{n:03d}@example.com", password=PASSWORD, email_verified=True,
            user_metadata={"team": "blue" if n % 3 == 0 else "red"}, app_metadata={"n": n},
        )
        created.append(user.user_id)
    assert len(set(created)) == 120

    # Listing: the SDK follows `page` until an empty page; 120 users at 50 a page is three pages and one empty one.
    tenant.sent.clear()
    listed = [u.user_id for u in tenant.sdk.users.list(per_page=50)]
    assert sorted(listed) == sorted(created)
    pages = [int(q["page"][0]) for q in tenant.sent_to("/users")]
    assert pages == sorted(set(pages)) and len(pages) <= 4, pages

    # Search (search engine v3, Lucene syntax), compared with the state read back.
    tenant.sent.clear()
    blue = {u.email for u in tenant.sdk.users.list(q='user_metadata.team:"blue" AND email:load01*', search_engine="v3")}
    assert blue == {f"load{n:03d}@example.com" for n in range(10, 20) if n % 3 == 0}
    assert all(q["q"] == ['user_metadata.team:"blue" AND email:load01*'] for q in tenant.sent_to("/users"))
    by_email = tenant.sdk.users.list_users_by_email(email="load007@example.com")
    assert [u.user_id for u in by_email] == [created[7]]

    # Update: metadata merges, the change is visible to a plain GET.
    tenant.sdk.users.update(created[0], app_metadata={"plan": "gold"}, user_metadata={"team": None}, blocked=True)
    stored = tenant.read(f"/users/{created[0]}")
    assert stored["app_metadata"] == {"n": 0, "plan": "gold"}
    assert "team" not in stored.get("user_metadata", {})
    assert stored["blocked"] is True

    # Link the second user into the first, then unlink it: both answers are lists of identities.
    secondary = created[1].split("|", 1)[1]
    linked = tenant.sdk.users.identities.link(created[0], provider="auth0", user_id=secondary)
    assert {i.user_id for i in linked} == {created[0].split("|", 1)[1], secondary}
    assert tenant.status(f"/users/{created[1]}") == 404
    assert len(tenant.read(f"/users/{created[0]}")["identities"]) == 2
    remaining = tenant.sdk.users.identities.delete(created[0], "auth0", secondary)
    assert [i.user_id for i in remaining] == [created[0].split("|", 1)[1]]
    assert tenant.read(f"/users/{created[1]}")["email"] == "load001@example.com"

    tenant.sdk.users.delete(created[2])
    assert tenant.status(f"/users/{created[2]}") == 404
    assert tenant.read("/users", include_totals="true", per_page=1)["total"] == 119


def test_rules_and_rules_configs(tenant: Tenant):
    rule = tenant.sdk.rules.create(name="sdk-claim", script=RULE_SCRIPT, order=5, enabled=True)
    assert tenant.read(f"/rules/{rule.id}")["script"] == RULE_SCRIPT
    assert [r.name for r in tenant.sdk.rules.list()] == ["sdk-claim"]
    assert tenant.sdk.rules.get(rule.id).order == 5

    with pytest.raises(ApiError) as conflict:
        tenant.sdk.rules.create(name="same-order", script=RULE_SCRIPT, order=5, enabled=True)
    assert conflict.value.status_code == 409 and conflict.value.body["errorCode"] == "rule_conflict"
    with pytest.raises(ApiError) as invalid:
        tenant.sdk.rules.create(name="broken", script="def rule(user, context, api):\n    return (", order=6)
    assert invalid.value.status_code == 400 and "line" in invalid.value.body["message"]

    tenant.sdk.rules.update(rule.id, enabled=False, order=7)
    stored = tenant.read(f"/rules/{rule.id}")
    assert (stored["enabled"], stored["order"]) == (False, 7)

    answer = tenant.sdk.rules_configs.set("SLACK_URL", value="https://hooks.example/T000")
    assert (answer.key, answer.value) == ("SLACK_URL", "https://hooks.example/T000")
    assert [c.key for c in tenant.sdk.rules_configs.list()] == ["SLACK_URL"]
    assert tenant.read("/rules-configs") == [{"key": "SLACK_URL"}]  # values are write-only
    tenant.sdk.rules_configs.delete("SLACK_URL")
    assert tenant.read("/rules-configs") == []

    tenant.sdk.rules.delete(rule.id)
    assert tenant.status(f"/rules/{rule.id}") == 404


def test_roles_with_permissions_and_users(tenant: Tenant):
    tenant.sdk.resource_servers.create(identifier="https://orders.example", name="Orders",
                                       scopes=[{"value": "read:orders"}, {"value": "write:orders"}])
    user = tenant.sdk.users.create(connection=DATABASE, email="admin@example.com", password=PASSWORD)
    role = tenant.sdk.roles.create(name="Order Admin", description="Manages orders")
    tenant.sdk.roles.permissions.add(role.id, permissions=[
        {"resource_server_identifier": "https://orders.example", "permission_name": "read:orders"},
        {"resource_server_identifier": "https://orders.example", "permission_name": "write:orders"},
    ])
    tenant.sdk.roles.users.assign(role.id, users=[user.user_id])

    assert [r.name for r in tenant.sdk.roles.list()] == ["Order Admin"]
    assert {p["permission_name"] for p in tenant.read(f"/roles/{role.id}/permissions")} == {"read:orders", "write:orders"}
    assert [m["user_id"] for m in tenant.read(f"/roles/{role.id}/users")] == [user.user_id]
    assert [r.name for r in tenant.sdk.users.roles.list(user.user_id)] == ["Order Admin"]
    assert sorted(p.permission_name for p in tenant.sdk.users.permissions.list(user.user_id)) == ["read:orders", "write:orders"]

    tenant.sdk.roles.update(role.id, description="Reads and writes orders")
    assert tenant.read(f"/roles/{role.id}")["description"] == "Reads and writes orders"
    tenant.sdk.users.roles.delete(user.user_id, roles=[role.id])
    assert tenant.read(f"/users/{user.user_id}/roles") == []
    tenant.sdk.roles.delete(role.id)
    assert tenant.status(f"/roles/{role.id}") == 404


def test_clients_resource_servers_and_connections(tenant: Tenant):
    client = tenant.sdk.clients.create(name="Web App", app_type="regular_web", callbacks=["https://app.example/cb"])
    assert client.client_secret
    tenant.sdk.clients.update(client.client_id, callbacks=["https://app.example/callback"], allowed_logout_urls=["https://app.example/"])
    stored = tenant.read(f"/clients/{client.client_id}")
    assert (stored["callbacks"], stored["allowed_logout_urls"]) == (["https://app.example/callback"], ["https://app.example/"])
    assert "Web App" in {c.name for c in tenant.sdk.clients.list()}

    api = tenant.sdk.resource_servers.create(identifier="https://billing.example", name="Billing",
                                             scopes=[{"value": "read:invoices", "description": "Read invoices"}])
    tenant.sdk.resource_servers.update(api.id, token_lifetime=600, enforce_policies=True, token_dialect="access_token_authz")
    stored = tenant.read(f"/resource-servers/{api.id}")
    assert (stored["token_lifetime"], stored["enforce_policies"], stored["token_dialect"]) == (600, True, "access_token_authz")
    assert "https://billing.example" in {r.identifier for r in tenant.sdk.resource_servers.list()}

    connection = tenant.sdk.connections.create(name="partners", strategy="auth0", enabled_clients=[client.client_id])
    tenant.sent.clear()
    assert {c.name for c in tenant.sdk.connections.list(strategy=["auth0"])} == {DATABASE, "partners"}
    assert all("take" in q for q in tenant.sent_to("/connections"))  # checkpoint paging, as the SDK asks
    tenant.sdk.connections.update(connection.id, options={"requires_username": True})
    stored = tenant.read(f"/connections/{connection.id}")
    assert stored["options"]["requires_username"] is True and stored["enabled_clients"] == [client.client_id]

    tenant.sdk.connections.delete(connection.id)
    tenant.sdk.resource_servers.delete(api.id)
    tenant.sdk.clients.delete(client.client_id)
    assert [tenant.status(p) for p in (f"/connections/{connection.id}", f"/resource-servers/{api.id}",
                                       f"/clients/{client.client_id}")] == [404, 404, 404]


def test_tenant_settings(tenant: Tenant):
    before = tenant.sdk.tenants.settings.get()
    assert before.session_lifetime == tenant.read("/tenants/settings")["session_lifetime"]
    answer = tenant.sdk.tenants.settings.update(friendly_name="Orders Inc", session_lifetime_in_minutes=90,
                                                default_directory=DATABASE, allowed_logout_urls=["https://app.example/"])
    assert answer.friendly_name == "Orders Inc"
    stored = tenant.read("/tenants/settings")
    assert (stored["friendly_name"], stored["session_lifetime_in_minutes"], stored["session_lifetime"]) == ("Orders Inc", 90, 1.5)
    assert (stored["default_directory"], stored["allowed_logout_urls"]) == (DATABASE, ["https://app.example/"])
    assert tenant.sdk.tenants.settings.get().friendly_name == "Orders Inc"
