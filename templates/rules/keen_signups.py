"""Record each sign-up as an event in Keen, without making the login wait.

What it does
    On a user's first login (``context.stats["logins_count"]`` is 1), queues
    ``POST {KEEN_API_URL}/3.0/projects/{KEEN_PROJECT_ID}/events/signups`` with the header
    ``Authorization: <KEEN_WRITE_KEY>`` and the event ``{"userId", "name", "ip",
    "keen": {"timestamp"}}`` (the login's time, ISO 8601 UTC, so an event delivered late
    still counts when it happened). ``api.http.queue`` returns at once: Bastion's outbox
    sends the request beside the login and retries it while Keen answers 5xx or 429 or
    does not answer; another 4xx (a wrong key) is given up at once. What became of it
    is in the login's execution record (``deliveries``). Later logins, token refreshes
    and the second run after a rule's redirect (``redirect-callback``) send nothing.

Replaces the Auth0 use case
    "Record sign-ups in Keen" - Auth0 docs: monitoring/sending-events-to-keenio (template
    ``send-events-keenio``): skip when ``context.stats.loginsCount > 1``, post
    ``{userId, name, ip}`` to the ``signups`` collection and call back at once
    (fire-and-forget). Its Slack alert on failure is replaced by the outbox's retries
    and the execution record (and ``GET /api/v2/deliveries`` for entries that failed).

Configuration (api.configuration)
    KEEN_PROJECT_ID        required. The Keen project's id.
    KEEN_WRITE_KEY         required. The project's write key (a secret: never in code).
    KEEN_EVENT_COLLECTION  optional. The event collection. Default ``signups``.
    KEEN_API_URL           optional. Default ``https://api.keen.io``. Bastion's outbound
                           HTTP rules apply (allowed hosts, no private addresses).

Adapt
    Add properties to ``_event`` (the application, the connection) as your dashboards
    need. ``logins_count`` already counts the current login, so a user created by the
    Management API who never logged in counts as signing up at the first login.
"""

from datetime import datetime, timezone
from urllib.parse import quote

DEFAULT_API_URL = "https://api.keen.io"
SKIPPED_PROTOCOLS = ("oauth2-refresh-token", "redirect-callback")


def _event(user, context):
    return {
        "userId": user.user_id,
        "name": user.name,
        "ip": context.request.ip,
        "keen": {"timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")},
    }


async def rule(user, context, api):
    if context.protocol in SKIPPED_PROTOCOLS or (context.stats.get("logins_count") or 0) > 1:
        return
    project = api.configuration["KEEN_PROJECT_ID"].strip()
    write_key = api.configuration["KEEN_WRITE_KEY"].strip()
    collection = api.configuration.get("KEEN_EVENT_COLLECTION", "").strip() or "signups"
    base = api.configuration.get("KEEN_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    url = f"{base}/3.0/projects/{quote(project, safe='')}/events/{quote(collection, safe='')}"
    await api.http.queue("POST", url, headers={"Authorization": write_key}, json=_event(user, context))
