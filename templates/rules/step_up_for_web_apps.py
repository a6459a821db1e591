"""Step-up authentication for web applications: MFA when the application asks for it.

What it does
    When the authorization request carries
    ``acr_values=http://schemas.openid.net/pape/policies/2007/06/multi-factor`` and
    the user has not passed a second factor in this session yet (no ``mfa`` among
    ``context.authentication.methods``), the rule asks for one, never letting a
    remembered browser skip it (``allow_remember_browser: False``; Bastion also
    ignores remembered browsers whenever an application sends that ``acr_values``).
    A user without a second factor yet enrols one on the spot. The ID token then
    carries ``amr: ["mfa"]`` and ``acr:
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor"``; a later request
    with the same ``acr_values`` in the same SSO session is not challenged again and
    gets both claims too. Requests without that value are left alone.

Replaces the Auth0 use case
    "Require users to authenticate with MFA whenever requested by the web app" - Auth0
    docs: multifactor-authentication/step-up-authentication/step-up-for-web-apps
    (#sample-scenario), and Auth0's rule template
    ``guardian-multifactor-stepup-authentication``, which sets ``context.multifactor =
    {provider: 'any', allowRememberBrowser: false}`` when
    ``context.request.query.acr_values`` is that URI and no ``mfa`` method is in
    ``context.authentication.methods`` yet.

Configuration (api.configuration)
    STEP_UP_WEB_CLIENT_IDS  optional. Comma- or space-separated client_ids whose
                            ``acr_values`` requests are honoured (exact match).
                            Unset: every application.

Adapt
    The application must check the ID token it receives: ``amr`` is a list that
    contains ``"mfa"`` (and ``acr`` is the multi-factor URI) before it shows what
    needed the step-up. Asking with ``acr_values`` proves nothing by itself: for an
    application that is not listed here, or a login a user started with the
    parameter removed, the ID token carries these claims only if the session had
    already passed a second factor. ``acr_values`` is a
    space-separated list; the rule looks for the multi-factor URI among its values
    (Auth0's template compared the whole string).
"""

MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def rule(user, context, api):
    client_ids = _split(api.configuration.get("STEP_UP_WEB_CLIENT_IDS", ""))
    if client_ids and context.client_id not in client_ids:
        return

    if MFA_ACR not in (context.request.query.get("acr_values") or "").split():
        return

    methods = [method.get("name") for method in context.authentication.methods or []]
    if "mfa" not in methods:
        context.multifactor = {"provider": "any", "allow_remember_browser": False}
