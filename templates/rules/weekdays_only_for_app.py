"""Allow one application only on weekdays.

What it does
    For the configured application (matched by ``client_id`` or name, exactly), the
    login is denied with ``error=unauthorized`` ("This app is only available during the
    week.") when today, in the configured time zone offset, is a weekend day
    (Saturday and Sunday unless configured otherwise). Other applications are not
    affected. Rules also run on the refresh-token and password grants, so tokens
    cannot be renewed at the weekend either.

Replaces the Auth0 use case
    "Sample Use Cases: Rules with Authorization" - allow access only on weekdays for a
    specific application. Auth0 docs: authorization/concepts/sample-use-cases-rules
    (template ``access-on-weekdays-only-for-an-app``), which compares
    ``context.clientName`` and ``new Date().getDay()`` in the server's time zone.

Configuration (api.configuration)
    WEEKDAYS_ONLY_CLIENT_ID     the application's client_id (preferred).
    WEEKDAYS_ONLY_CLIENT_NAME   or its name, exactly as registered (Auth0's sample used
                                the name). At least one is required; either matching
                                makes the rule apply.
    WEEKDAYS_UTC_OFFSET_HOURS   optional, default ``0``. The offset from UTC, in hours,
                                of the time zone whose calendar decides the day, e.g.
                                ``1``, ``-5``, ``5.5``; between -12 and +14.
    WEEKDAYS_WEEKEND_DAYS       optional, default ``saturday,sunday``. The days on which
                                the application is closed, as English day names or
                                their first three letters (``fri,sat`` where the
                                weekend is Friday and Saturday).

Adapt
    A fixed offset does not follow daylight-saving time: set the offset you want the
    rule to use all year, or update it when the clocks change. Public holidays are not
    known to the rule; add them as a list of dates if you need them.
"""

import datetime

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _split(value):
    return [item for item in value.replace(",", " ").split() if item]


def _weekend_days(value):
    days = set()
    for name in _split(value.lower()):
        matches = [number for number, day in enumerate(DAY_NAMES) if name in (day, day[:3])]
        if not matches:
            raise ValueError(f"WEEKDAYS_WEEKEND_DAYS: unknown day {name!r}")
        days.add(matches[0])
    return days


def _is_target_app(context, api):
    client_id = api.configuration.get("WEEKDAYS_ONLY_CLIENT_ID", "").strip()
    client_name = api.configuration.get("WEEKDAYS_ONLY_CLIENT_NAME", "").strip()
    if not client_id and not client_name:
        raise ValueError("set WEEKDAYS_ONLY_CLIENT_ID or WEEKDAYS_ONLY_CLIENT_NAME")
    return (client_id and context.client_id == client_id) or (client_name and context.client_name == client_name)


def rule(user, context, api):
    if not _is_target_app(context, api):
        return

    offset_hours = float(api.configuration.get("WEEKDAYS_UTC_OFFSET_HOURS", "0") or "0")
    if not -12 <= offset_hours <= 14:
        raise ValueError("WEEKDAYS_UTC_OFFSET_HOURS must be between -12 and 14")
    weekend = _weekend_days(api.configuration.get("WEEKDAYS_WEEKEND_DAYS", "") or "saturday,sunday")

    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    today = datetime.datetime.now(zone).weekday()  # Monday is 0
    if today in weekend:
        raise UnauthorizedError("This app is only available during the week.")
