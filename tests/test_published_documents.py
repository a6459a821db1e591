"""Discovery and JWKS, answered at the app's edge (oidc/documents.py): the same answers as the
routes give, HEAD included; other methods and failures still go through the routes."""

from __future__ import annotations

import httpx

from bastion.keys.jose import public_keyset


async def test_discovery_and_jwks_answer_get_and_head(bastion):
    discovery = await bastion.http.get("/.well-known/openid-configuration", params={"ignored": "1"})
    assert discovery.status_code == 200
    assert discovery.headers["content-type"] == "application/json"
    assert discovery.headers["cache-control"] == "public, max-age=300"
    assert discovery.json()["jwks_uri"] == f"{bastion.settings.issuer}/.well-known/jwks.json"
    assert int(discovery.headers["content-length"]) == len(discovery.content)

    head = await bastion.http.head("/.well-known/openid-configuration")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == discovery.headers["content-length"]

    jwks = await bastion.http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.headers["cache-control"] == "public, max-age=60"
    kids = {key["kid"] for key in jwks.json()["keys"]}
    assert kids and public_keyset(jwks.json()["keys"])
    assert (await bastion.http.head("/.well-known/jwks.json")).content == b""


async def test_a_rotated_key_is_published(bastion):
    before = {key["kid"] for key in (await bastion.http.get("/.well-known/jwks.json")).json()["keys"]}
    new_kid = await bastion.services.keyring.rotate("RS256")
    after = {key["kid"] for key in (await bastion.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert new_kid in after and new_kid not in before


async def test_other_methods_reach_the_routes(bastion):
    response = await bastion.http.post("/.well-known/jwks.json", content=b"")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"


async def test_a_keyring_failure_is_answered_as_a_server_error(bastion, monkeypatch):
    async def broken():
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(bastion.services.keyring, "jwks_json", broken)
    # Starlette re-raises after answering (so the server logs it): read the answer the client gets.
    transport = httpx.ASGITransport(app=bastion.http._transport.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=bastion.settings.issuer) as http:
        response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "Internal error"}
