"""A redirect and its return: consent_redirect.py sends users who have not consented to the
consent page, saves their answer when they come back to /continue, and denies where no page can
be shown."""

import time

RULE = "../consent_redirect.py"
FORM = "https://consent.example.com/terms"
CONFIGURATION = {"CONSENT_FORM_URL": FORM}
AUTHORIZE = {"client_id": "my-app-client-id", "response_type": "code", "redirect_uri": "https://app.example.com/callback",
             "scope": "openid profile email", "state": "af0ifjsldkj"}


def test_a_user_without_consent_is_sent_to_the_consent_page(rule_runner):
    result = rule_runner.run(RULE, configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.redirect == {"url": FORM}
    assert result.effects.metadata_updates == []  # nothing is saved before the answer


def test_confirming_on_the_page_saves_the_consent(rule_runner, make_user, make_context):
    user = make_user()
    before = int(time.time() * 1000)

    result = rule_runner.run(RULE, user=user, context=make_context("redirect-callback", user=user, body={"confirm": "yes"}),
                             configuration=CONFIGURATION)

    result.assert_allowed()
    assert result.redirect is None
    (update,) = result.effects.metadata_updates
    assert update.kind == "user_metadata" and update.changes["consentGiven"] is True
    assert before <= update.changes["consentTimestamp"] <= int(time.time() * 1000)  # milliseconds, as Auth0's Date.now()


def test_a_get_with_confirm_in_the_query_is_accepted_too(rule_runner, make_user, make_context):
    user = make_user()

    result = rule_runner.run(RULE, user=user, context=make_context("redirect-callback", user=user, query={"confirm": "yes"}),
                             configuration=CONFIGURATION)

    assert result.stored_user_metadata["consentGiven"] is True


def test_declining_denies_the_login_and_saves_nothing(rule_runner, make_user, make_context):
    user = make_user()

    for body in ({"confirm": "no"}, {}):
        result = rule_runner.run(RULE, user=user, context=make_context("redirect-callback", user=user, body=body),
                                 configuration=CONFIGURATION)
        result.assert_denied("User did not consent!")
        assert result.effects.metadata_updates == []


def test_a_user_who_consented_is_left_alone(rule_runner, make_user):
    result = rule_runner.run(RULE, user=make_user(user_metadata={"consentGiven": True, "consentTimestamp": 1700000000000}))

    result.assert_allowed()  # no CONSENT_FORM_URL needed either
    assert result.redirect is None


def test_logins_that_cannot_show_a_page_are_denied_without_consent(rule_runner, make_user, make_context):
    user = make_user()
    silent = make_context(user=user, query={**AUTHORIZE, "prompt": "none"})

    for run in (dict(protocol="oauth2-resource-owner"), dict(protocol="oauth2-refresh-token"), dict(context=silent)):
        result = rule_runner.run(RULE, user=user, configuration=CONFIGURATION, **run)
        result.assert_denied("Consent required: sign in to the application to accept the terms.")


def test_when_another_rule_already_redirects_the_user_is_denied(rule_runner):
    other = "def rule(user, context, api):\n    context.redirect = {'url': 'https://other.example.com/'}\n"

    result = rule_runner.run([other, RULE], configuration=CONFIGURATION)

    result.assert_denied("Consent required: sign in to the application to accept the terms.")


def test_without_a_consent_page_the_login_fails_closed(rule_runner):
    rule_runner.run(RULE).assert_error("CONSENT_FORM_URL must be the absolute URL of the consent page")
    rule_runner.run(RULE, configuration={"CONSENT_FORM_URL": "/terms"}).assert_error("CONSENT_FORM_URL")
