"""Enrich the ID token with TowerData's profile of the user's verified email address.

What it does
    When the user's email is verified, calls TowerData's Personalization API
    (``GET {TOWERDATA_API_URL}/v5/td?email=...&api_key=...``) and, on HTTP 200, puts its
    JSON answer (demographics: age, gender, location... as your TowerData plan returns)
    in the ID token as ``<CLAIMS_NAMESPACE>towerdata``. The call is awaited, at most
    ``TOWERDATA_TIMEOUT_SECONDS``; if TowerData fails, times out or answers another
    status, the login goes on without the claim (the reason is printed to the execution
    record, never the key). Nothing is saved.

Replaces the Auth0 use case
    "Track new leads in Salesforce with TowerData", rule 1 - Auth0 docs: monitoring/
    guides/track-leads-salesforce, template ``get-towerdata-profile``: if the email is
    verified, ``GET https://api.towerdata.com/v5/td?email&api_key``, on 200 set
    ``context.idToken['https://example.com/towerdata']``. Followed by
    ``salesforce_lead.py``, this is the whole use case.

Configuration (api.configuration)
    TOWERDATA_API_KEY          required. Your TowerData API key (a secret: it travels
                               in the query, as TowerData requires; Bastion's execution
                               records never show a URL's query).
    CLAIMS_NAMESPACE           required. A URL you control, e.g. ``https://example.com/``.
    TOWERDATA_API_URL          optional. Default ``https://api.towerdata.com``.
    TOWERDATA_TIMEOUT_SECONDS  optional. 0.1 to 15. Default 5.

Adapt
    Every login calls TowerData (and is billed): to call it once, save the answer in
    ``user_metadata`` and skip the call when it is there (as ``fullcontact_enrichment.py``
    does). Keep only the fields the application needs: an ID token is sent to the
    browser.
"""

DEFAULT_API_URL = "https://api.towerdata.com"
CLAIM = "towerdata"


def _timeout(api, key, default):
    value = float(api.configuration.get(key, "").strip() or default)
    if not 0.1 <= value <= 15:
        raise ValueError(f"{key} must be between 0.1 and 15 seconds")
    return value


async def rule(user, context, api):
    if not user.email or user.email_verified is not True:
        return
    api_key = api.configuration["TOWERDATA_API_KEY"].strip()
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"
    base = api.configuration.get("TOWERDATA_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    timeout = _timeout(api, "TOWERDATA_TIMEOUT_SECONDS", 5)
    try:
        response = await api.http.get(f"{base}/v5/td", params={"email": user.email, "api_key": api_key},
                                      timeout=timeout)
        if response.status_code != 200:
            print(f"TowerData answered HTTP {response.status_code}; no {CLAIM} claim")
            return
        profile = response.json()
    except Exception as error:  # enrichment is optional: the login goes on without it
        print(f"TowerData failed ({type(error).__name__}: {error}); no {CLAIM} claim")
        return
    context.id_token[namespace + CLAIM] = profile
