"""Record sign-ups and logins in Splunk (HTTP Event Collector); a login Splunk did not record fails.

What it does
    On every login, posts to your HEC endpoint (``SPLUNK_HEC_URL``, the full URL of
    ``/services/collector/event``) with ``Authorization: Splunk <SPLUNK_HEC_TOKEN>``:
    ``{"time": seconds, "source": "bastion", "sourcetype": "auth0_activity", "event":
    {"message": "SignUp" | "Login", "application", "clientIP", "protocol", "userName",
    "userId"}}``. The message is ``SignUp`` until the user has ``app_metadata.signedUp``,
    which this rule saves after Splunk accepted the first event. The call is awaited: if
    Splunk cannot be reached within ``SPLUNK_TIMEOUT_SECONDS`` or answers other than 2xx,
    the rule raises and the login fails closed (``access_denied``; the reason is in the
    execution record), as Auth0's documented rule does: every login is on record or does
    not happen. The second run after a rule's redirect (``redirect-callback``) sends
    nothing more.

Replaces the Auth0 use case
    "Record sign-ups and logins in Splunk" - Auth0 docs: monitoring/
    sending-events-to-splunk, template ``splunk-HEC-track-event``. The event's fields are
    Auth0's; ``source`` is ``bastion`` instead of ``auth0`` (configurable), and
    ``sourcetype`` keeps ``auth0_activity`` so searches and dashboards built on it keep
    working.

Configuration (api.configuration)
    SPLUNK_HEC_URL          required. e.g.
                            ``https://splunk.example.com:8088/services/collector/event``.
    SPLUNK_HEC_TOKEN        required. The HEC token (a secret: never in code).
    SPLUNK_SOURCE           optional. Default ``bastion``.
    SPLUNK_SOURCETYPE       optional. Default ``auth0_activity``.
    SPLUNK_TIMEOUT_SECONDS  optional. 0.1 to 15. Default 5: a login waits that long at
                            most for Splunk.

Adapt
    To keep users logging in while Splunk is down, catch the exception and ``print`` it
    instead of raising (or queue the event with ``api.http.queue``, which Bastion retries),
    knowing that logins may then go unrecorded for a while. Token refreshes run rules
    too and are recorded as ``Login`` with protocol ``oauth2-refresh-token``: return
    early on that protocol if you only want interactive logins.
"""

import time

SKIPPED_PROTOCOLS = ("redirect-callback",)


def _timeout(api, key, default):
    value = float(api.configuration.get(key, "").strip() or default)
    if not 0.1 <= value <= 15:
        raise ValueError(f"{key} must be between 0.1 and 15 seconds")
    return value


async def rule(user, context, api):
    if context.protocol in SKIPPED_PROTOCOLS:
        return
    url = api.configuration["SPLUNK_HEC_URL"].strip()
    token = api.configuration["SPLUNK_HEC_TOKEN"].strip()
    signed_up = user.app_metadata.get("signedUp") is True
    body = {
        "time": round(time.time(), 3),
        "source": api.configuration.get("SPLUNK_SOURCE", "").strip() or "bastion",
        "sourcetype": api.configuration.get("SPLUNK_SOURCETYPE", "").strip() or "auth0_activity",
        "event": {
            "message": "Login" if signed_up else "SignUp",
            "application": context.client_name,
            "clientIP": context.request.ip,
            "protocol": context.protocol,
            "userName": user.name,
            "userId": user.user_id,
        },
    }
    response = await api.http.post(url, json=body, headers={"Authorization": f"Splunk {token}"},
                                   timeout=_timeout(api, "SPLUNK_TIMEOUT_SECONDS", 5))
    if not response.ok:
        raise RuntimeError(f"Splunk HEC answered HTTP {response.status_code}")
    if not signed_up:
        await api.users.update_app_metadata(user.user_id, {"signedUp": True})
