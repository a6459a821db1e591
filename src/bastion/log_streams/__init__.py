"""Log streams (Auth0's /api/v2/log-streams): the tenant log delivered to webhooks, Segment and
Splunk by a background poller (docs/log-streams.md).

    categories.py  Auth0's filter categories -> the event type codes Bastion emits; type names
    config.py      checking a stream's sink and filters as the Management API receives them
    sinks.py       the wire format of each sink type: the HTTP requests one batch becomes
    delivery.py    the poller: lease a due stream, read its next events, send, record the outcome
"""
