"""A denial by calendar: weekdays_only_for_app.py closes one application on weekend days.
The tests choose the weekend relative to today, so they pass on any day of the week."""

import datetime

RULE = "../weekdays_only_for_app.py"
APP = "timesheets-client-id"
REFUSED = "This app is only available during the week."
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def days_from_today(*offsets, hours=0.0):
    """Day names `offsets` days after today, in the UTC offset `hours` (today and tomorrow also
    cover a test that runs across midnight)."""
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=hours))).weekday()
    return ",".join(DAYS[(today + offset) % 7] for offset in offsets)


def app_login(make_user, make_context, **fields):
    user = make_user()
    return {"user": user, "context": make_context(user=user, client_id=APP, **fields)}


def test_the_application_is_closed_on_a_weekend_day(rule_runner, make_user, make_context):
    result = rule_runner.run(RULE, **app_login(make_user, make_context),
                             configuration={"WEEKDAYS_ONLY_CLIENT_ID": APP, "WEEKDAYS_WEEKEND_DAYS": days_from_today(0, 1)})

    result.assert_denied(REFUSED)


def test_the_application_is_open_on_other_days_and_other_applications_always(rule_runner, make_user, make_context):
    configuration = {"WEEKDAYS_ONLY_CLIENT_ID": APP, "WEEKDAYS_WEEKEND_DAYS": days_from_today(3, 4)}

    rule_runner.run(RULE, **app_login(make_user, make_context), configuration=configuration).assert_allowed()
    rule_runner.run(RULE, configuration={**configuration, "WEEKDAYS_WEEKEND_DAYS": days_from_today(0, 1)}).assert_allowed()


def test_the_day_is_taken_in_the_configured_time_zone(rule_runner, make_user, make_context):
    """At UTC+14 and UTC-12 the calendars are a day or two apart: each closes on its own today."""
    for hours in (14, -12):
        weekend = ",".join(name[:3] for name in days_from_today(0, hours=hours).split(","))  # three-letter names work too
        result = rule_runner.run(RULE, **app_login(make_user, make_context), configuration={
            "WEEKDAYS_ONLY_CLIENT_ID": APP, "WEEKDAYS_UTC_OFFSET_HOURS": str(hours), "WEEKDAYS_WEEKEND_DAYS": weekend})
        result.assert_denied(REFUSED)


def test_the_refresh_token_grant_is_closed_too_and_the_name_may_identify_the_app(rule_runner, make_user, make_context):
    user = make_user()
    context = make_context("oauth2-refresh-token", user=user, client_name="Timesheets")

    result = rule_runner.run(RULE, user=user, context=context, configuration={
        "WEEKDAYS_ONLY_CLIENT_NAME": "Timesheets", "WEEKDAYS_WEEKEND_DAYS": days_from_today(0, 1)})

    result.assert_denied(REFUSED)


def test_wrong_settings_fail_closed(rule_runner, make_user, make_context):
    login = app_login(make_user, make_context)

    rule_runner.run(RULE).assert_error("set WEEKDAYS_ONLY_CLIENT_ID or WEEKDAYS_ONLY_CLIENT_NAME")
    rule_runner.run(RULE, **login, configuration={"WEEKDAYS_ONLY_CLIENT_ID": APP, "WEEKDAYS_UTC_OFFSET_HOURS": "15"}).assert_error(
        "WEEKDAYS_UTC_OFFSET_HOURS must be between -12 and 14")
    rule_runner.run(RULE, **login, configuration={"WEEKDAYS_ONLY_CLIENT_ID": APP, "WEEKDAYS_WEEKEND_DAYS": "sat,someday"}).assert_error(
        "WEEKDAYS_WEEKEND_DAYS: unknown day 'someday'")
