"""Create a Salesforce Lead for each new user, once.

What it does
    Unless the user has ``app_metadata.recordedAsLead``, gets an access token from
    Salesforce (``POST {SALESFORCE_LOGIN_URL}/services/oauth2/token``, the OAuth
    username-password flow: ``grant_type=password`` with the connected app's
    ``client_id``/``client_secret`` and an integration user's ``username``/``password``),
    then creates the Lead (``POST {instance_url}/services/data/{SALESFORCE_API_VERSION}/
    sobjects/Lead`` with ``Authorization: Bearer <token>`` and ``{"LastName": name or
    email, "Company": "Web channel signups", "Email": email, "LeadSource": "Web"}``) and,
    only once Salesforce answered that it created it (HTTP 2xx), saves
    ``app_metadata.recordedAsLead = true``. Both calls are awaited, together at most
    ``SALESFORCE_TIMEOUT_SECONDS``. If either fails (a refused token, an error answer, a
    timeout, the network), the rule prints why (never a secret) and the login goes on
    without the flag: the next login tries again.

Replaces the Auth0 use case
    "Track new leads in Salesforce" (with TowerData, rule 2) and "Track sign-ups in
    Salesforce with MixPanel and FullContact" (rule 3) - Auth0 docs: monitoring/guides/
    track-leads-salesforce and track-signups-salesforce, template
    ``creates-lead-salesforce``: skip if ``recordedAsLead``, password-grant token, POST
    the Lead, and set the flag in ``createLead``'s success callback only; a failure never
    fails the login. Its Slack alert on failure is replaced by the execution record (the
    rule's output). Auth0's sample used API version v20.0, which Salesforce has retired:
    the default here is a current one.

Configuration (api.configuration)
    SALESFORCE_CLIENT_ID       required. The connected app's consumer key.
    SALESFORCE_CLIENT_SECRET   required. Its consumer secret.
    SALESFORCE_USERNAME        required. The integration user.
    SALESFORCE_PASSWORD        required. Its password followed by its security token
                               (Salesforce's rule for this flow).
    SALESFORCE_LOGIN_URL       optional. Default ``https://login.salesforce.com``
                               (``https://test.salesforce.com`` for a sandbox).
    SALESFORCE_API_VERSION     optional. Default ``v60.0``.
    SALESFORCE_COMPANY         optional. The Lead's Company. Default ``Web channel signups``.
    SALESFORCE_TIMEOUT_SECONDS optional. 0.1 to 15. Default 5. The two calls share it: a
                               login waits that long for Salesforce at most, inside the
                               rules' own deadline (BASTION_RULES_TIMEOUT, 20 s).

Adapt
    Map more fields in ``_lead`` (Lead's required fields are LastName and Company). A Lead
    creation that times out may still have been made by Salesforce: the next login then
    creates a second one (as Auth0's rule would); use a Salesforce duplicate rule on Email
    if that matters. The Lead is not queued in the outbox on purpose: the flag must say
    that the Lead exists, and a queued request can still fail for good after the login.
    Salesforce discourages the username-password flow; a JWT bearer flow needs RS256,
    which ``api.jwt`` does not sign.
"""

import time

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
DEFAULT_API_VERSION = "v60.0"
DEFAULT_COMPANY = "Web channel signups"


def _timeout(api, key, default):
    value = float(api.configuration.get(key, "").strip() or default)
    if not 0.1 <= value <= 15:
        raise ValueError(f"{key} must be between 0.1 and 15 seconds")
    return value


def _lead(user, api):
    lead = {
        "LastName": user.name or user.email or user.user_id,
        "Company": api.configuration.get("SALESFORCE_COMPANY", "").strip() or DEFAULT_COMPANY,
        "LeadSource": "Web",
    }
    if user.email:
        lead["Email"] = user.email
    return lead


async def _token(api, timeout):
    """(access_token, instance_url), or None when Salesforce would not give one (printed)."""
    login_url = api.configuration.get("SALESFORCE_LOGIN_URL", "").strip().rstrip("/") or DEFAULT_LOGIN_URL
    form = {
        "grant_type": "password",
        "client_id": api.configuration["SALESFORCE_CLIENT_ID"].strip(),
        "client_secret": api.configuration["SALESFORCE_CLIENT_SECRET"].strip(),
        "username": api.configuration["SALESFORCE_USERNAME"].strip(),
        "password": api.configuration["SALESFORCE_PASSWORD"],
    }
    try:
        response = await api.http.post(f"{login_url}/services/oauth2/token", data=form, timeout=timeout)
        body = response.json() if response.text else {}
    except Exception as error:
        print(f"Salesforce token request failed ({type(error).__name__}: {error}); no Lead this time")
        return None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        print(f"Salesforce token request answered HTTP {response.status_code} ({error}); no Lead this time")
        return None
    token, instance_url = body.get("access_token"), body.get("instance_url")
    if not isinstance(token, str) or not isinstance(instance_url, str) or not instance_url:
        print("Salesforce's token answer has no access_token or instance_url; no Lead this time")
        return None
    return token, instance_url.rstrip("/")


def _lead_error(response):
    """Salesforce's errorCode(s) from an error answer (a list of {message, errorCode})."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, list):
        codes = [item.get("errorCode") for item in body if isinstance(item, dict) and item.get("errorCode")]
        return ", ".join(codes) or None
    return body.get("error") if isinstance(body, dict) else None


async def _create_lead(user, api, token, instance_url, timeout):
    """True once Salesforce answered that it created the Lead; else prints why and gives False."""
    version = api.configuration.get("SALESFORCE_API_VERSION", "").strip() or DEFAULT_API_VERSION
    try:
        response = await api.http.post(f"{instance_url}/services/data/{version}/sobjects/Lead",
                                       headers={"Authorization": f"Bearer {token}"}, json=_lead(user, api),
                                       timeout=timeout)
    except Exception as error:
        print(f"Salesforce Lead creation failed ({type(error).__name__}: {error}); the next login tries again")
        return False
    if not response.ok:
        print(f"Salesforce Lead creation answered HTTP {response.status_code} ({_lead_error(response)}); "
              "the next login tries again")
        return False
    return True


async def rule(user, context, api):
    if user.app_metadata.get("recordedAsLead") is True:
        return
    budget = _timeout(api, "SALESFORCE_TIMEOUT_SECONDS", 5)  # an invalid value fails the login closed
    deadline = time.monotonic() + budget  # both calls together: the login waits this long at most
    got = await _token(api, budget)
    if got is None:
        return
    token, instance_url = got
    left = round(deadline - time.monotonic(), 3)
    if left < 0.1:
        print("Salesforce's token answer used up SALESFORCE_TIMEOUT_SECONDS; the next login creates the Lead")
        return
    if await _create_lead(user, api, token, instance_url, left):
        await api.users.update_app_metadata(user.user_id, {"recordedAsLead": True})
