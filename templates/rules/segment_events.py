"""Record sign-ups and logins in Segment (HTTP Tracking API), without making the login wait.

What it does
    On every login, queues ``POST {SEGMENT_API_URL}/v1/track`` (HTTP basic auth: the
    write key as user name, an empty password) with the event ``"Signed up"`` on the
    user's first login (``context.stats["logins_count"]`` is 1) and ``"Logged In"``
    afterwards: ``userId``, ``properties`` ``{clientName, clientID, connection,
    protocol}``, ``context`` ``{ip, userAgent}``, the login's ``timestamp`` and a
    ``messageId`` (Segment drops a message it already has, so a retried delivery is
    counted once). On sign-up it first queues ``POST /v1/identify`` with ``traits``
    ``{email, name, created_at, logins_count}``. ``api.http.queue`` returns at once:
    Bastion's outbox sends the requests beside the login and retries them while Segment
    answers 5xx or 429 or does not answer; the execution record shows their fate. Token
    refreshes, delegation and the second run after a rule's redirect
    (``redirect-callback``) are not logins and send nothing.

Replaces the Auth0 use case
    "Record sign-ups and logins in Segment" - Auth0 docs: monitoring/
    sending-events-to-segmentio (``analytics-node``: ``identify`` with traits, ``track``
    ``Logged In`` with ``clientName, clientID, connection``) and the template
    ``send-events-segmentio`` (``POST https://api.segment.io/v1/track`` with basic auth,
    ``Signed up`` when ``loginsCount <= 1``, skip ``delegation``, fire-and-forget).

Configuration (api.configuration)
    SEGMENT_WRITE_KEY  required. The source's write key (a secret: never in code).
    SEGMENT_API_URL    optional. Default ``https://api.segment.io`` (for the EU
                       workspace, ``https://events.eu1.segmentapis.com``).

Adapt
    Rename the events to your tracking plan (``SIGNED_UP``, ``LOGGED_IN``). Traits are
    personal data: send only what your Segment destinations need.
"""

import base64
import uuid
from datetime import datetime, timezone

DEFAULT_API_URL = "https://api.segment.io"
SIGNED_UP = "Signed up"
LOGGED_IN = "Logged In"
SKIPPED_PROTOCOLS = ("delegation", "oauth2-refresh-token", "redirect-callback")


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def rule(user, context, api):
    if context.protocol in SKIPPED_PROTOCOLS:
        return
    write_key = api.configuration["SEGMENT_WRITE_KEY"].strip()
    base = api.configuration.get("SEGMENT_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    headers = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    logins = context.stats.get("logins_count") or 0
    signed_up = logins <= 1
    segment_context = {"ip": context.request.ip, "userAgent": context.request.user_agent}
    timestamp = _now()

    if signed_up:
        await api.http.queue("POST", f"{base}/v1/identify", headers=headers, json={
            "userId": user.user_id,
            "traits": {"email": user.email, "name": user.name, "created_at": user.created_at, "logins_count": logins},
            "context": segment_context,
            "timestamp": timestamp,
            "messageId": str(uuid.uuid4()),
        })
    await api.http.queue("POST", f"{base}/v1/track", headers=headers, json={
        "userId": user.user_id,
        "event": SIGNED_UP if signed_up else LOGGED_IN,
        "properties": {
            "clientName": context.client_name,
            "clientID": context.client_id,
            "connection": context.connection,
            "protocol": context.protocol,
        },
        "context": segment_context,
        "timestamp": timestamp,
        "messageId": str(uuid.uuid4()),
    })
