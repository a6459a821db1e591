"""Auth0's deploy CLI (npm `auth0-deploy-cli`, unmodified) imports and exports a tenant against Bastion.

The tool is installed from tests/tools/package-lock.json by `make test`. It always talks https, so
Bastion is served over TLS with a self-signed certificate for 127.0.0.1 that node trusts through
`NODE_EXTRA_CA_CERTS`. The tenant directory `auth0_tenant/` is in deploy-cli's directory layout:
rules (Python scripts in `.js` files: deploy-cli only reads them), rules configuration, a client,
an API, a role with permissions on it, and the tenant settings (`tenant.json`, whose session
lifetimes in hours deploy-cli sends as minutes).

What is proven, reading the state back each time (the tool's exit code proves nothing):
- the import creates exactly what the files say, and the imported rules, configuration, API and
  role take part in a real login;
- a second import of the same directory changes nothing;
- the export gives back every field of every input file, and the exported directory is a fixed
  point: importing it changes nothing and exporting again writes the same bytes.
Rules configuration values are write-only in Auth0's API, so deploy-cli exports no values; that
part of the round trip is checked through a login instead.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import MGMT_ID, MGMT_SECRET

from tests.certificates import self_signed_certificate

from .conftest import _clean_environment

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
A0DEPLOY = ROOT / "tests" / "tools" / "node_modules" / ".bin" / "a0deploy"
TENANT = Path(__file__).parent / "auth0_tenant"
TYPES = ["rules", "rulesConfigs", "clients", "resourceServers", "roles", "tenant"]
DEPLOY_TIMEOUT = 180
PASSWORD = "Deploy-Cli-Horse-3"


class DeployCli:
    def __init__(self, server, cert: Path, workdir: Path):
        self.server, self.cert, self.workdir = server, cert, workdir

    def run(self, *args: str) -> str:
        assert A0DEPLOY.exists(), f"{A0DEPLOY} is missing: `make test` installs it (npm ci in tests/tools)"
        env = {
            **_clean_environment(),
            "NODE_EXTRA_CA_CERTS": str(self.cert),
            "AUTH0_DOMAIN": f"127.0.0.1:{self.server.port}",
            "AUTH0_CLIENT_ID": MGMT_ID,
            "AUTH0_CLIENT_SECRET": MGMT_SECRET,
            "AUTH0_INCLUDED_ONLY": json.dumps(TYPES),
            "AUTH0_ALLOW_DELETE": "false",
        }
        result = subprocess.run([str(A0DEPLOY), *args], env=env, cwd=self.workdir, capture_output=True, text=True,
                                timeout=DEPLOY_TIMEOUT, stdin=subprocess.DEVNULL)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "error" not in output.lower(), f"a0deploy {' '.join(args)}:\n{output}"
        return output

    def import_(self, directory: Path) -> str:
        return self.run("import", "--input_file", str(directory))

    def export(self, directory: Path) -> str:
        return self.run("export", "--format", "directory", "--output_folder", str(directory))


@pytest.fixture
def deployment(live_server, sqlite_url, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    server = live_server(sqlite_url, tls=(cert, key))
    with server.management_http() as http:
        yield DeployCli(server, cert, tmp_path), http


def _get(http: httpx.Client, path: str, **params):
    response = http.get(f"/api/v2{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def tenant_state(http: httpx.Client) -> dict:
    """Everything the six types hold, as the Management API answers it (ids and secrets included)."""
    roles = _get(http, "/roles")
    return {
        "rules": _get(http, "/rules"),
        "rules_configs": _get(http, "/rules-configs"),
        "clients": _get(http, "/clients"),
        "resource_servers": _get(http, "/resource-servers"),
        "roles": roles,
        "role_permissions": {r["id"]: _get(http, f"/roles/{r['id']}/permissions") for r in roles},
        "tenant_settings": _get(http, "/tenants/settings"),
    }


def _jwks(http: httpx.Client) -> KeySet:
    return KeySet.import_key_set(http.get("/.well-known/jwks.json").json())


def read_tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def _exported_file(exported: Path, source: Path) -> Path:
    """deploy-cli names exported files after the object's name, not after the input file."""
    relative = source.relative_to(TENANT)
    if source.suffix == ".json" and relative.parts[0] not in ("rules", "tenant.json"):
        name = json.loads(source.read_text())["name"]
        return exported / relative.parts[0] / f"{name}.json"
    return exported / relative


def test_import_reimport_and_export_round_trip(deployment, tmp_path):
    cli, http = deployment

    # 1. Import: exactly what the files say.
    cli.import_(TENANT)
    state = tenant_state(http)
    rules = {r["name"]: r for r in state["rules"]}
    assert set(rules) == {"add-plan-claim", "deny-suspended"}
    for name, rule in rules.items():
        spec = json.loads((TENANT / "rules" / f"{name}.json").read_text())
        assert rule["script"] == (TENANT / "rules" / f"{name}.js").read_text()
        assert (rule["order"], rule["enabled"], rule["stage"]) == (spec["order"], spec["enabled"], spec["stage"])
    assert state["rules_configs"] == [{"key": "ALERTS_URL"}]
    portal = next(c for c in state["clients"] if c["name"] == "Orders Portal")
    assert portal["callbacks"] == ["https://portal.example/callback"]
    assert portal["jwt_configuration"]["lifetime_in_seconds"] == 3600
    orders = next(r for r in state["resource_servers"] if r["identifier"] == "https://orders.example")
    assert (orders["enforce_policies"], orders["token_dialect"]) == (True, "access_token_authz")
    assert [r["name"] for r in state["roles"]] == ["Order Admin"]
    role_id = state["roles"][0]["id"]
    assert sorted(p["permission_name"] for p in state["role_permissions"][role_id]) == ["read:orders", "write:orders"]
    settings, wanted = state["tenant_settings"], json.loads((TENANT / "tenant.json").read_text())
    assert {k: settings[k] for k in wanted} == wanted
    assert (settings["session_lifetime_in_minutes"], settings["idle_session_lifetime_in_minutes"]) == (90, 30)

    # The imported pieces work together in a real login: rules and their configuration shape the
    # ID token, the role's permissions reach the access token for the imported API.
    user = http.post("/api/v2/users", json={"connection": "Username-Password-Authentication", "email": "ops@example.com",
                                            "password": PASSWORD, "app_metadata": {"plan": "gold"}}).json()
    database = _get(http, "/connections", name="Username-Password-Authentication")[0]
    enabled = http.patch(f"/api/v2/connections/{database['id']}",
                         json={"enabled_clients": [*database["enabled_clients"], portal["client_id"]]})
    assert enabled.status_code == 200, enabled.text
    assert http.post(f"/api/v2/roles/{role_id}/users", json={"users": [user["user_id"]]}).status_code in (200, 201, 204)
    tokens = http.post("/oauth/token", data={
        "grant_type": "http://auth0.com/oauth/grant-type/password-realm", "realm": "Username-Password-Authentication",
        "username": "ops@example.com", "password": PASSWORD, "scope": "openid", "audience": "https://orders.example",
        "client_id": portal["client_id"], "client_secret": portal["client_secret"],
    })
    assert tokens.status_code == 200, tokens.text
    id_claims = jwt.decode(tokens.json()["id_token"], _jwks(http)).claims
    assert id_claims["https://example.com/plan"] == "gold"
    assert id_claims["https://example.com/alerts"] == "https://alerts.example/hooks/T0001"
    access_claims = jwt.decode(tokens.json()["access_token"], _jwks(http)).claims
    assert sorted(access_claims["permissions"]) == ["read:orders", "write:orders"]
    state = tenant_state(http)  # the role now has a member; nothing else changed

    # 2. A second import of the same files changes nothing.
    cli.import_(TENANT)
    assert tenant_state(http) == state

    # 3. The export gives back every field of every input file.
    exported = tmp_path / "exported"
    cli.export(exported)
    for source in sorted(p for p in TENANT.rglob("*") if p.is_file() and "rules-configs" not in p.parts):
        target = _exported_file(exported, source)
        assert target.exists(), f"{source.relative_to(TENANT)} was not exported (export wrote {sorted(read_tree(exported))})"
        if source.suffix == ".js":
            assert target.read_text() == source.read_text()
            continue
        wanted, got = json.loads(source.read_text()), json.loads(target.read_text())
        assert {k: got.get(k) for k in wanted} == wanted, f"{target.relative_to(exported)}"

    # 4. The exported directory is a fixed point.
    cli.import_(exported)
    assert tenant_state(http) == state
    again = tmp_path / "exported-again"
    cli.export(again)
    assert read_tree(again) == read_tree(exported)
