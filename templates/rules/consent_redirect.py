"""Ask each user to accept your terms on a consent page you host, once, and remember it.

What it does
    A user whose ``user_metadata`` does not hold ``consentGiven: true`` is sent, after
    all rules have run, to your consent page (``CONSENT_FORM_URL``) with one added
    query parameter, Bastion's signed ``state``. The page shows the terms and sends the
    browser back to ``https://<your Bastion>/continue?state=<that state>``, normally by
    a form POST carrying ``confirm=yes`` (accepted) or anything else (declined); a GET
    with ``?confirm=yes`` in the query works too. Every rule then runs again with
    ``context.protocol == "redirect-callback"``, and this rule:

    - on ``confirm=yes``, saves ``consentGiven: true`` and ``consentTimestamp`` (the
      time of the answer in milliseconds since the epoch, as Auth0's ``Date.now()``)
      in ``user_metadata`` with ``api.users.update_user_metadata``; the login
      completes and later logins are not redirected any more;
    - otherwise denies the login: the application receives
      ``error=unauthorized&error_description=User did not consent!``. The user is
      asked again at the next login.

    Logins that cannot show a page are never redirected: the password and
    refresh-token grants (back channel) and silent authentication (``prompt=none``).
    A user who has not consented is denied there (``error=unauthorized``, "Consent
    required: sign in to the application to accept the terms."), so no token is
    issued without consent; the application then sends the user to an interactive
    login, which asks.

Replaces the Auth0 use case
    "Update user profile metadata with user consent choice" and "redirect users to a
    consent page hosted by a third party" - Auth0 docs:
    compliance/gdpr/features-aiding-compliance/user-consent/track-consent-with-lock
    (option 3, "redirect to another page") and the ``redirect-rules/simple`` sample,
    whose form posts ``confirm=yes`` to ``/continue``; the redirect checks are those of
    ``@auth0/rule-utilities``' ``canRedirect``.

Configuration (api.configuration)
    CONSENT_FORM_URL  required (for users who have not consented yet). The absolute
                      URL of your consent page, e.g. ``https://consent.example.com/terms``.
                      Bastion appends ``state``; keep the page's own parameters there.

Adapt
    Your page must know where to send the browser back: configure your Bastion's
    address in the page itself. Do not take the return address from a query
    parameter (Auth0's sample passed ``auth0_domain``, which makes the page an open
    redirect). The page never needs to know who the user is; if it must (to show
    personalised terms), pass a token made with ``api.redirect.encode_token`` in the
    URL, never the user's details in clear. Over plain http (development) Bastion's
    browser cookie is ``SameSite=Lax``, so a form POST back to ``/continue`` works only
    from the same site (another port of the same host is fine); over https the cookie
    is ``SameSite=None`` and any site can post back.
    To ask again when your terms change, store a version with the consent
    (``consentVersion``) and compare it with a configured one instead of testing
    ``consentGiven`` alone. The answer is kept in ``user_metadata`` as in Auth0's
    sample: it is the user's own statement. Make this rule the only one that
    redirects, or order it before the others that do: a login redirects once, and a
    rule that finds ``context.redirect`` already set cannot ask, so a user who has not
    consented is denied.
"""

import time

NOT_INTERACTIVE = {
    "oauth2-resource-owner",
    "oauth2-resource-owner-jwt-bearer",
    "oauth2-password",
    "oauth2-refresh-token",
    "oauth2-token-exchange",
    "delegation",
}


def _can_redirect(context):
    """Auth0's canRedirect: a browser is there to follow, and no other rule redirects."""
    return (
        context.protocol not in NOT_INTERACTIVE
        and context.protocol != "redirect-callback"
        and context.request.query.get("prompt") != "none"
        and not context.redirect
    )


async def rule(user, context, api):
    if user.user_metadata.get("consentGiven") is True:
        return

    if context.protocol == "redirect-callback":
        answer = context.request.body.get("confirm") or context.request.query.get("confirm")
        if answer != "yes":
            raise UnauthorizedError("User did not consent!")
        await api.users.update_user_metadata(
            user.user_id, {"consentGiven": True, "consentTimestamp": int(time.time() * 1000)}
        )
        return

    if not _can_redirect(context):
        raise UnauthorizedError("Consent required: sign in to the application to accept the terms.")

    url = api.configuration.get("CONSENT_FORM_URL", "").strip()
    if not url.startswith(("https://", "http://")):
        raise ValueError("CONSENT_FORM_URL must be the absolute URL of the consent page")
    context.redirect = {"url": url}
