"""Enrich the user's profile with FullContact's person data, once, and put it in the ID token.

What it does
    For a user with an email address and no ``user_metadata.fullcontact`` yet, calls
    FullContact's Person Enrich API (``POST {FULLCONTACT_API_URL}/v3/person.enrich``,
    ``Authorization: Bearer <FULLCONTACT_API_KEY>``, ``{"email": ...}``). On HTTP 200 it
    drops the answer's ``details`` (the bulky, plan-dependent part), saves the rest in
    ``user_metadata.fullcontact`` (``api.users.update_user_metadata``: later logins do
    not call again) and sets it as ``<CLAIMS_NAMESPACE>fullcontact`` in the ID token of
    this login. Any failure (no match: 404, a wrong key: 401/403, a timeout) is printed
    to the execution record (never the key) and the login goes on without the data;
    the next login tries again.

Replaces the Auth0 use case
    "Track sign-ups in Salesforce with MixPanel and FullContact", rule 2 - Auth0 docs:
    monitoring/guides/track-signups-salesforce, template ``get-fullcontact-profile``
    (v3 ``person.enrich`` with a Bearer key; skip when there is no email or
    ``user_metadata.fullcontact`` exists; strip ``details``; store it and add
    ``context.idToken['https://example.com/fullcontact']``; errors swallowed). With
    ``mixpanel_signup.py`` before it and ``salesforce_lead.py`` after it, this is the
    whole use case.

Configuration (api.configuration)
    FULLCONTACT_API_KEY          required. Your FullContact API key (a secret).
    CLAIMS_NAMESPACE             required. A URL you control, e.g. ``https://example.com/``.
    FULLCONTACT_API_URL          optional. Default ``https://api.fullcontact.com``.
    FULLCONTACT_TIMEOUT_SECONDS  optional. 0.1 to 15. Default 5: a login waits that long
                                 at most.

Adapt
    The address is not required to be verified (as in Auth0's template): anyone can sign
    up with someone else's address and see that person's data in their ID token. Add
    ``user.email_verified is True`` to the first test unless that is acceptable to you.
    ``user_metadata`` can be changed by the user: treat the stored data as
    self-asserted. A user FullContact does not know (404) is looked up at every login;
    save an empty ``fullcontact`` on 404 to stop that.
"""

DEFAULT_API_URL = "https://api.fullcontact.com"
CLAIM = "fullcontact"


def _timeout(api, key, default):
    value = float(api.configuration.get(key, "").strip() or default)
    if not 0.1 <= value <= 15:
        raise ValueError(f"{key} must be between 0.1 and 15 seconds")
    return value


async def rule(user, context, api):
    if not user.email or user.user_metadata.get("fullcontact") is not None:
        return
    api_key = api.configuration["FULLCONTACT_API_KEY"].strip()
    namespace = api.configuration["CLAIMS_NAMESPACE"].rstrip("/") + "/"
    base = api.configuration.get("FULLCONTACT_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    timeout = _timeout(api, "FULLCONTACT_TIMEOUT_SECONDS", 5)
    try:
        response = await api.http.post(f"{base}/v3/person.enrich", json={"email": user.email},
                                       headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        if response.status_code != 200:
            print(f"FullContact answered HTTP {response.status_code}; no {CLAIM} data")
            return
        person = response.json()
        if not isinstance(person, dict):
            print(f"FullContact's answer is not an object; no {CLAIM} data")
            return
        person.pop("details", None)
        await api.users.update_user_metadata(user.user_id, {CLAIM: person})
    except Exception as error:  # enrichment is optional: the login goes on without it
        print(f"FullContact failed ({type(error).__name__}: {error}); no {CLAIM} data")
        return
    context.id_token[namespace + CLAIM] = person
