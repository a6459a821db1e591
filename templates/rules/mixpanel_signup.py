"""Record each sign-up as a "Sign Up" event in Mixpanel, without making the login wait.

What it does
    On a user's first login (``context.stats["logins_count"]`` is 1), queues
    ``GET {MIXPANEL_API_URL}/track/?data=<base64 of JSON>``, Mixpanel's ingestion
    endpoint, with the event ``{"event": "Sign Up", "properties": {"distinct_id":
    user_id, "token": MIXPANEL_TOKEN, "application": client name, "time": seconds,
    "$insert_id": ...}}`` (``$insert_id`` lets Mixpanel drop a duplicate, ``time`` keeps
    the login's time if the delivery is late). ``api.http.queue`` returns at once:
    Bastion's outbox sends it beside the login and retries it while Mixpanel answers 5xx
    or 429 or does not answer. Later logins, token refreshes and the second run after a
    rule's redirect send nothing.

Replaces the Auth0 use case
    "Track sign-ups in Salesforce with MixPanel and FullContact", rule 1 - Auth0 docs:
    monitoring/guides/track-signups-salesforce, template ``mixpanel-track-event``:
    ``GET http://api.mixpanel.com/track/?data=<base64 JSON {event, properties:
    {distinct_id, token, application}}>``, fire-and-forget. With
    ``fullcontact_enrichment.py`` and ``salesforce_lead.py`` (in that order) this is the
    whole use case.

Configuration (api.configuration)
    MIXPANEL_TOKEN    required. The project token (it identifies the project; Mixpanel
                      does not treat it as a secret, but keep it in configuration).
    MIXPANEL_EVENT    optional. The event name. Default ``Sign Up``.
    MIXPANEL_API_URL  optional. Default ``https://api.mixpanel.com`` (EU residency:
                      ``https://api-eu.mixpanel.com``).

Adapt
    The legacy ``/track`` endpoint answers ``1`` or ``0`` with HTTP 200: an event it
    refuses (an unknown token) still counts as delivered in the outbox. Check Mixpanel's
    Live View after setting this up. Add properties (the connection, the sign-up's IP
    as ``ip``) as your reports need.
"""

import base64
import json
import time
import uuid

DEFAULT_API_URL = "https://api.mixpanel.com"
SKIPPED_PROTOCOLS = ("oauth2-refresh-token", "redirect-callback")


async def rule(user, context, api):
    if context.protocol in SKIPPED_PROTOCOLS or (context.stats.get("logins_count") or 0) > 1:
        return
    token = api.configuration["MIXPANEL_TOKEN"].strip()
    event = api.configuration.get("MIXPANEL_EVENT", "").strip() or "Sign Up"
    base = api.configuration.get("MIXPANEL_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    payload = {
        "event": event,
        "properties": {
            "distinct_id": user.user_id,
            "token": token,
            "application": context.client_name,
            "time": int(time.time()),
            "$insert_id": uuid.uuid4().hex,
        },
    }
    data = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    await api.http.queue("GET", f"{base}/track/", params={"data": data})
