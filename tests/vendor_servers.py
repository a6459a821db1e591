"""A local stand-in for the vendors the integration rule templates call, for tests.

`VendorServer` is a real HTTP server (ThreadingHTTPServer on 127.0.0.1, a free port) that
implements the documented API surface each template uses, with the vendors' paths, methods,
authentication and answers (success and error shapes), keyed by the credentials in
`server.keys` (random per server):

    Keen            POST /3.0/projects/{project_id}/events/{collection}
                    `Authorization: <write key>`; 201 {"created": true}; no key or a wrong
                    one 401 {"error_code": "InvalidApiKeyError"}; unknown project 404
    Segment         POST /v1/track, /v1/identify; HTTP basic auth, the write key as user
                    name; 200 {"success": true}; no or wrong key 401; no userId/anonymousId
                    (or no event for track) 400
    Splunk HEC      POST /services/collector/event; `Authorization: Splunk <token>`;
                    200 {"text": "Success", "code": 0}; no token 401 (code 2), a wrong one
                    403 (code 4), a body that is not JSON 400 (code 6), no `event` 400 (code 12)
    TowerData       GET /v5/td?email=&api_key=; 200 with the profile of `towerdata_profiles`
                    (or {} for an address it does not know, as TowerData); no or wrong
                    key 401; no email 400
    Salesforce      POST /services/oauth2/token (form, grant_type=password): 200 {access_token,
                    instance_url (this server), id, token_type, issued_at, signature}; a
                    wrong client 400 invalid_client_id / invalid_client, wrong user or
                    password 400 invalid_grant. POST /services/data/vNN.N/sobjects/Lead with
                    a token it issued: 201 {"id": "00Q...", "success": true, "errors": []};
                    another token 401 [{"errorCode": "INVALID_SESSION_ID"}]; no LastName or
                    Company 400 [{"errorCode": "REQUIRED_FIELD_MISSING"}]
    Mixpanel        GET /track/?data=<base64 JSON event or list of events>: the legacy
                    ingestion endpoint's 200 with body "1" (recorded) or "0" (bad data, no
                    or unknown project token: the token identifies, it does not authorize)
    FullContact     POST /v3/person.enrich {"email"}; `Authorization: Bearer <key>`; 200 with
                    the person of `fullcontact_people` (with `details`); unknown person 404;
                    no or wrong key 401; no query field 400
    Azure AD        POST /{tenant}/oauth2/v2.0/token (form, client_credentials, scope
                    https://graph.microsoft.com/.default): 200 {token_type, expires_in,
                    access_token}; unknown tenant 400 invalid_request (AADSTS90002), unknown
                    client 400 unauthorized_client, wrong secret 401 invalid_client, another
                    scope 400 invalid_scope
    Graph           Bearer token from the Azure AD endpoint above, else 401
                    InvalidAuthenticationToken. POST /v1.0/users (201, the created user's
                    default properties; missing required properties or a duplicate UPN
                    400 Request_BadRequest), GET /v1.0/subscribedSkus ({"value": azure_skus}),
                    POST /v1.0/users/{id}/assignLicense (200 the user; unknown user 404,
                    no usageLocation or an unknown skuId 400)

Every request is recorded (`requests`, `seen(path)`): method, path, query, headers (lower-case
names), raw body, JSON, form, and the status answered. A test can script failures:
`fail(path, status, times=N)` answers `status` to the next N requests of that path (then
the vendor's normal answer), and `hang(path)` makes requests to that path block until
`release(path)` (or `close()`). `wait_for(path, n)` polls (bounded) until n requests
to a path were answered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.server
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["VendorKeys", "VendorRequest", "VendorServer"]

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass
class VendorKeys:
    keen_project_id: str = field(default_factory=lambda: secrets.token_hex(12))
    keen_write_key: str = field(default_factory=lambda: "keen-" + secrets.token_urlsafe(24))
    segment_write_key: str = field(default_factory=lambda: "seg-" + secrets.token_urlsafe(24))
    splunk_hec_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    towerdata_api_key: str = field(default_factory=lambda: "td-" + secrets.token_urlsafe(24))
    salesforce_client_id: str = field(default_factory=lambda: "3MVG9" + secrets.token_urlsafe(30))
    salesforce_client_secret: str = field(default_factory=lambda: "sfsec-" + secrets.token_urlsafe(24))
    salesforce_username: str = "integration@example.com"
    salesforce_password: str = field(default_factory=lambda: "sfpw-" + secrets.token_urlsafe(12) + "TOKEN" + secrets.token_hex(8))
    mixpanel_token: str = field(default_factory=lambda: secrets.token_hex(16))
    fullcontact_api_key: str = field(default_factory=lambda: "fc-" + secrets.token_urlsafe(24))
    azure_tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    azure_client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    azure_client_secret: str = field(default_factory=lambda: "az~" + secrets.token_urlsafe(30))

    def secrets(self) -> list[str]:
        """The values a test must never find in an execution record (the Mixpanel token and the
        Keen project id identify rather than authenticate, but are kept out too)."""
        return [self.keen_write_key, self.segment_write_key, self.splunk_hec_token, self.towerdata_api_key,
                self.salesforce_client_secret, self.salesforce_password, self.fullcontact_api_key,
                self.azure_client_secret, self.mixpanel_token]


@dataclass
class VendorRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any = None
    form: dict[str, str] | None = None
    status: int | None = None  # what the server answered (None while it hangs)


class _Answer(Exception):
    def __init__(self, status: int, body: Any, content_type: str = "application/json"):
        self.status, self.body, self.content_type = status, body, content_type


class VendorServer:
    def __init__(self, keys: VendorKeys | None = None):
        self.keys = keys or VendorKeys()
        self.requests: list[VendorRequest] = []
        self.towerdata_profiles: dict[str, dict] = {}
        self.fullcontact_people: dict[str, dict] = {}
        self.azure_skus: list[dict] = [
            {"capabilityStatus": "Enabled", "consumedUnits": 3, "skuId": str(uuid.uuid4()), "skuPartNumber": "O365_BUSINESS",
             "appliesTo": "User", "prepaidUnits": {"enabled": 25, "suspended": 0, "warning": 0}, "servicePlans": []},
            {"capabilityStatus": "Enabled", "consumedUnits": 0, "skuId": str(uuid.uuid4()), "skuPartNumber": "EMS",
             "appliesTo": "User", "prepaidUnits": {"enabled": 10, "suspended": 0, "warning": 0}, "servicePlans": []},
        ]
        self.salesforce_tokens: set[str] = set()
        self.leads: list[dict] = []
        self.graph_tokens: set[str] = set()
        self.graph_users: dict[str, dict] = {}
        self._failures: dict[str, list[tuple[int, Any]]] = {}
        self._hangs: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

        vendor = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so no handler thread waits on an idle keep-alive
            # connection of a client (the outbox's pool) when the server stops.
            timeout = 30

            def _handle(self):
                vendor._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # close() never waits for a handler thread
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- what a test tells it -------------------------------------------------------

    def fail(self, path: str, status: int, *, times: int = 1, body: Any = None) -> None:
        """Answer `status` (with `body`, default a generic error) to the next `times` requests to `path`."""
        with self._lock:
            self._failures.setdefault(path, []).extend([(status, body if body is not None else {"error": "scripted"})] * times)

    def hang(self, path: str) -> None:
        """Requests to `path` block (unanswered) until `release(path)`."""
        with self._lock:
            self._hangs[path] = threading.Event()

    def release(self, path: str) -> None:
        with self._lock:
            event = self._hangs.pop(path, None)
        if event is not None:
            event.set()

    def seen(self, path: str | None = None, *, prefix: str | None = None) -> list[VendorRequest]:
        with self._lock:
            return [r for r in self.requests
                    if (path is None or r.path == path) and (prefix is None or r.path.startswith(prefix))]

    async def wait_for(self, path: str, count: int, *, timeout: float = 10.0, status: int | None = None) -> list[VendorRequest]:
        """Bounded poll until `count` requests to `path` were answered (with `status`, if given)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            answered = [r for r in self.seen(path) if r.status is not None and (status is None or r.status == status)]
            if len(answered) >= count or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        assert len(answered) >= count, f"expected {count} answered request(s) to {path}, got {self.seen(path)}"
        return answered

    async def wait_until_hanging(self, path: str, *, timeout: float = 10.0) -> VendorRequest:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            pending = [r for r in self.seen(path) if r.status is None]
            if pending:
                return pending[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no request to {path} is hanging: {self.seen(path)}")

    def close(self) -> None:
        with self._lock:
            events, self._hangs = list(self._hangs.values()), {}
        for event in events:
            event.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving --------------------------------------------------------------------

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = VendorRequest(method=handler.command, path=parts.path,
                                query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                                headers=headers, body=body)
        content_type = headers.get("content-type", "")
        if body and "json" in content_type:
            try:
                request.json = json.loads(body)
            except ValueError:
                pass
        if body and "application/x-www-form-urlencoded" in content_type:
            request.form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.requests.append(request)
            hang = self._hangs.get(request.path)
            scripted = self._failures.get(request.path)
            failure = scripted.pop(0) if scripted else None
        if hang is not None:
            hang.wait(timeout=60)
        if failure is not None:
            answer = _Answer(*failure)
        else:
            try:
                self._route(request)
                answer = _Answer(500, {"error": "no answer"})
            except _Answer as given:
                answer = given
        if isinstance(answer.body, (bytes, str)):
            data = answer.body.encode() if isinstance(answer.body, str) else answer.body
        else:
            data = json.dumps(answer.body).encode()
        request.status = answer.status
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", answer.content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (a timeout) while the request hung
            pass

    def _route(self, r: VendorRequest) -> None:
        path = r.path
        routes = [
            ("POST", r"/3\.0/projects/([^/]+)/events/([^/]+)", self._keen),
            ("POST", r"/v1/(track|identify)", self._segment),
            ("POST", r"/services/collector/event(?:/1\.0)?", self._splunk),
            ("GET", r"/v5/td", self._towerdata),
            ("POST", r"/services/oauth2/token", self._salesforce_token),
            ("POST", r"/services/data/v\d+\.\d+/sobjects/Lead", self._salesforce_lead),
            ("GET", r"/track/?", self._mixpanel),
            ("POST", r"/v3/person\.enrich", self._fullcontact),
            ("POST", r"/([^/]+)/oauth2/v2\.0/token", self._azure_token),
            ("POST", r"/v1\.0/users", self._graph_create_user),
            ("GET", r"/v1\.0/subscribedSkus", self._graph_skus),
            ("POST", r"/v1\.0/users/([^/]+)/assignLicense", self._graph_assign_license),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                if r.method != method:
                    raise _Answer(405, {"error": "method not allowed"})
                handler(r, *match.groups())
        raise _Answer(404, {"error": "not found"})

    # -- Keen -----------------------------------------------------------------------

    def _keen(self, r: VendorRequest, project: str, collection: str) -> None:
        if r.headers.get("authorization") != self.keys.keen_write_key:
            raise _Answer(401, {"message": "The API key you provided is invalid.", "error_code": "InvalidApiKeyError"})
        if project != self.keys.keen_project_id:
            raise _Answer(404, {"message": f"Project {project} not found.", "error_code": "ResourceNotFoundError"})
        if not isinstance(r.json, dict):
            raise _Answer(400, {"message": "The event body must be a JSON object.", "error_code": "InvalidEventError"})
        raise _Answer(201, {"created": True})

    # -- Segment --------------------------------------------------------------------

    def _segment(self, r: VendorRequest, call: str) -> None:
        scheme, _, credentials = r.headers.get("authorization", "").partition(" ")
        try:
            user, _, _password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        if scheme != "Basic" or user != self.keys.segment_write_key:
            raise _Answer(401, {"success": False, "message": "Invalid write key"})
        message = r.json
        if not isinstance(message, dict) or not (message.get("userId") or message.get("anonymousId")):
            raise _Answer(400, {"success": False, "message": "userId or anonymousId is required"})
        if call == "track" and not message.get("event"):
            raise _Answer(400, {"success": False, "message": "event is required"})
        raise _Answer(200, {"success": True})

    # -- Splunk HEC -----------------------------------------------------------------

    def _splunk(self, r: VendorRequest) -> None:
        scheme, _, token = r.headers.get("authorization", "").partition(" ")
        if not token:
            raise _Answer(401, {"text": "Token is required", "code": 2})
        if scheme != "Splunk" or token != self.keys.splunk_hec_token:
            raise _Answer(403, {"text": "Invalid token", "code": 4})
        if r.json is None:
            raise _Answer(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
        if not isinstance(r.json, dict) or r.json.get("event") in (None, "", {}):
            raise _Answer(400, {"text": "Event field is required", "code": 12, "invalid-event-number": 0})
        raise _Answer(200, {"text": "Success", "code": 0})

    # -- TowerData ------------------------------------------------------------------

    def _towerdata(self, r: VendorRequest) -> None:
        if r.query.get("api_key") != self.keys.towerdata_api_key:
            raise _Answer(401, {"status_code": 401, "error_message": "Invalid API key"})
        email = r.query.get("email")
        if not email or "@" not in email:
            raise _Answer(400, {"status_code": 400, "error_message": "Invalid email address"})
        raise _Answer(200, self.towerdata_profiles.get(email.lower(), {}))

    # -- Salesforce -----------------------------------------------------------------

    def _salesforce_token(self, r: VendorRequest) -> None:
        form = r.form or {}
        if form.get("grant_type") != "password":
            raise _Answer(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        if form.get("client_id") != self.keys.salesforce_client_id:
            raise _Answer(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
        if form.get("client_secret") != self.keys.salesforce_client_secret:
            raise _Answer(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        if form.get("username") != self.keys.salesforce_username or form.get("password") != self.keys.salesforce_password:
            raise _Answer(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        token = "00D5g000000AbCd!" + secrets.token_urlsafe(40)
        with self._lock:
            self.salesforce_tokens.add(token)
        raise _Answer(200, {
            "access_token": token, "instance_url": self.url, "token_type": "Bearer",
            "id": f"{self.url}/id/00D5g000000AbCdEAF/0055g00000XyZ12AAB",
            "issued_at": "1700000000000", "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
        })

    def _salesforce_lead(self, r: VendorRequest) -> None:
        scheme, _, token = r.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.salesforce_tokens:
            raise _Answer(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        if not isinstance(r.json, dict):
            raise _Answer(400, [{"message": "The request body is not JSON", "errorCode": "JSON_PARSER_ERROR"}])
        missing = [name for name in ("LastName", "Company") if not r.json.get(name)]
        if missing:
            raise _Answer(400, [{"message": f"Required fields are missing: {missing}", "errorCode": "REQUIRED_FIELD_MISSING",
                                 "fields": missing}])
        lead_id = "00Q5g00000" + secrets.token_hex(4).upper()
        with self._lock:
            self.leads.append({"Id": lead_id, **r.json})
        raise _Answer(201, {"id": lead_id, "success": True, "errors": []})

    # -- Mixpanel -------------------------------------------------------------------

    def _mixpanel(self, r: VendorRequest) -> None:
        try:
            events = json.loads(base64.b64decode(r.query.get("data", ""), validate=True))
        except (binascii.Error, ValueError):
            raise _Answer(200, "0", "text/plain") from None
        events = events if isinstance(events, list) else [events]
        ok = all(isinstance(e, dict) and e.get("event") and isinstance(e.get("properties"), dict)
                 and e["properties"].get("token") == self.keys.mixpanel_token for e in events)
        raise _Answer(200, "1" if ok else "0", "text/plain")

    # -- FullContact ----------------------------------------------------------------

    def _fullcontact(self, r: VendorRequest) -> None:
        scheme, _, key = r.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or key != self.keys.fullcontact_api_key:
            raise _Answer(401, {"status": 401, "message": "401 Access Denied! Invalid authentication credentials"})
        query = r.json if isinstance(r.json, dict) else {}
        email = query.get("email")
        if not email:
            raise _Answer(400, {"status": 400, "message": "Query must contain a valid email, phone or profile"})
        person = self.fullcontact_people.get(email.lower())
        if person is None:
            raise _Answer(404, {"status": 404, "message": "Profile not found"})
        raise _Answer(200, person)

    # -- Azure AD and Microsoft Graph -----------------------------------------------

    def _azure_token(self, r: VendorRequest, tenant: str) -> None:
        form = r.form or {}
        if tenant != self.keys.azure_tenant:
            raise _Answer(400, {"error": "invalid_request", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
        if form.get("grant_type") != "client_credentials":
            raise _Answer(400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"})
        if form.get("client_id") != self.keys.azure_client_id:
            raise _Answer(400, {"error": "unauthorized_client",
                                "error_description": "AADSTS700016: Application was not found in the directory."})
        if form.get("client_secret") != self.keys.azure_client_secret:
            raise _Answer(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        if form.get("scope") != GRAPH_SCOPE:
            raise _Answer(400, {"error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid."})
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(48)
        with self._lock:
            self.graph_tokens.add(token)
        raise _Answer(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    def _graph_auth(self, r: VendorRequest) -> None:
        scheme, _, token = r.headers.get("authorization", "").partition(" ")
        if not token:
            raise _Answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}})
        if scheme != "Bearer" or token not in self.graph_tokens:
            raise _Answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure."}})

    @staticmethod
    def _bad_request(message: str) -> _Answer:
        return _Answer(400, {"error": {"code": "Request_BadRequest", "message": message}})

    def _graph_create_user(self, r: VendorRequest) -> None:
        self._graph_auth(r)
        body = r.json if isinstance(r.json, dict) else {}
        for name in ("accountEnabled", "displayName", "mailNickname", "userPrincipalName"):
            if body.get(name) in (None, ""):
                raise self._bad_request(f"Invalid value specified for property '{name}' of resource 'User'.")
        if not (body.get("passwordProfile") or {}).get("password"):
            raise self._bad_request("Invalid value specified for property 'passwordProfile' of resource 'User'.")
        with self._lock:
            if any(u["userPrincipalName"].lower() == body["userPrincipalName"].lower() for u in self.graph_users.values()):
                raise self._bad_request("Another object with the same value for property userPrincipalName already exists.")
            user_id = str(uuid.uuid4())
            self.graph_users[user_id] = {**body, "id": user_id, "assignedLicenses": []}
        raise _Answer(201, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity", "id": user_id,
            "businessPhones": [], "displayName": body["displayName"], "givenName": None, "jobTitle": None, "mail": None,
            "mobilePhone": None, "officeLocation": None, "preferredLanguage": None, "surname": None,
            "userPrincipalName": body["userPrincipalName"],
        })

    def _graph_skus(self, r: VendorRequest) -> None:
        self._graph_auth(r)
        raise _Answer(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus", "value": self.azure_skus})

    def _graph_assign_license(self, r: VendorRequest, user_id: str) -> None:
        self._graph_auth(r)
        user = self.graph_users.get(user_id)
        if user is None:
            raise _Answer(404, {"error": {"code": "Request_ResourceNotFound",
                                          "message": f"Resource '{user_id}' does not exist or one of its queried reference-property objects are not present."}})
        body = r.json if isinstance(r.json, dict) else {}
        if not isinstance(body.get("addLicenses"), list) or not isinstance(body.get("removeLicenses"), list):
            raise self._bad_request("addLicenses and removeLicenses are required.")
        if not user.get("usageLocation"):
            raise self._bad_request("License assignment cannot be done for user with invalid usage location.")
        known = {s["skuId"] for s in self.azure_skus}
        for license in body["addLicenses"]:
            if license.get("skuId") not in known:
                raise self._bad_request(f"License {license.get('skuId')} does not correspond to a valid company License.")
        with self._lock:
            user["assignedLicenses"] = [*user["assignedLicenses"], *body["addLicenses"]]
        raise _Answer(200, {"id": user_id, "userPrincipalName": user["userPrincipalName"], "displayName": user["displayName"]})
