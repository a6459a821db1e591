"""The wire format of each sink type: the HTTP requests one batch of log events becomes.

Each request says which events it carries (`through_seq`, the last one's place in the log), so
when one request of several fails, the events of the requests before it still count as sent.

    http     POST httpEndpoint; Auth0's items {"log_id", "data": <log>}: a JSON array (JSONARRAY),
             one per line (JSONLINES) or one request per event (JSONOBJECT); the Authorization
             and custom headers of the sink; X-Bastion-Signature when httpSigningSecret is set
    segment  POST {segment_api_url}/v1/batch, the write key as the Basic username: `track` per
             event, plus `identify` for logins and signups; messageId = log_id (Segment dedups)
    splunk   POST {scheme}://{splunkDomain}:{splunkPort}/services/collector/event, header
             `Authorization: Splunk <token>`, body = concatenated HEC event objects
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bastion.events import EventType, log_json
from bastion.log_streams.categories import type_name
from bastion.storage.log_streams import SequencedEvent

__all__ = ["OutgoingRequest", "build_requests", "requests_per_batch", "signature_header", "splunk_url", "SIGNATURE_HEADER"]

SIGNATURE_HEADER = "X-Bastion-Signature"
_USER_AGENT = "Bastion-LogStreams/1"
# Logins and signups also tell Segment who the user is.
_IDENTIFYING_TYPES = {EventType.SUCCESS_LOGIN, EventType.SUCCESS_SIGNUP}


@dataclass(frozen=True)
class OutgoingRequest:
    url: str
    body: bytes
    through_seq: int  # the log seq of the last event this request carries
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    signing_secret: str | None = field(default=None, repr=False)  # signed when sent: the signature's time is the send time

    def headers_to_send(self) -> dict[str, str]:
        if not self.signing_secret:
            return dict(self.headers)
        return {**self.headers, SIGNATURE_HEADER: signature_header(self.signing_secret, self.body)}


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>` (docs/log-streams.md)."""
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={mac}"


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _http(sink: dict, events: list[SequencedEvent], *, host: str, **_options) -> list[OutgoingRequest]:
    items = [(e.seq, {"log_id": e.event.log_id, "data": log_json(e.event, hostname=host)}) for e in events]
    content_format = sink.get("httpContentFormat", "JSONLINES")
    if content_format == "JSONOBJECT":
        bodies = [(seq, _json(item)) for seq, item in items]
    elif content_format == "JSONARRAY":
        bodies = [(items[-1][0], _json([item for _, item in items]))]
    else:
        bodies = [(items[-1][0], b"\n".join(_json(item) for _, item in items))]
    requests = []
    for through_seq, body in bodies:
        headers = {"Content-Type": sink.get("httpContentType", "application/json"), "User-Agent": _USER_AGENT}
        for entry in sink.get("httpCustomHeaders", []):
            headers[entry["header"]] = entry["value"]
        if sink.get("httpAuthorization"):
            headers["Authorization"] = sink["httpAuthorization"]
        requests.append(OutgoingRequest(url=sink["httpEndpoint"], body=body, through_seq=through_seq, headers=headers,
                                        signing_secret=sink.get("httpSigningSecret")))
    return requests


def _segment_messages(event: SequencedEvent, host: str) -> list[dict]:
    log = log_json(event.event, hostname=host)
    who = {"userId": event.event.user_id} if event.event.user_id else {"anonymousId": event.event.client_id or "bastion"}
    timestamp = log["date"]
    messages = []
    if event.event.type in _IDENTIFYING_TYPES and event.event.user_id:
        traits = {"user_name": event.event.user_name} if event.event.user_name else {}
        if event.event.user_name and "@" in event.event.user_name:
            traits["email"] = event.event.user_name
        messages.append({"type": "identify", **who, "traits": traits, "timestamp": timestamp,
                         "messageId": f"{event.event.log_id}-identify"})
    messages.append({"type": "track", **who, "event": type_name(event.event.type), "properties": log,
                     "timestamp": timestamp, "messageId": event.event.log_id})
    return messages


def _segment(sink: dict, events: list[SequencedEvent], *, segment_api_url: str, host: str, **_options) -> list[OutgoingRequest]:
    body = _json({"batch": [message for e in events for message in _segment_messages(e, host)]})
    credentials = base64.b64encode(f"{sink['segmentWriteKey']}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}", "User-Agent": _USER_AGENT}
    return [OutgoingRequest(url=segment_api_url.rstrip("/") + "/v1/batch", body=body, through_seq=events[-1].seq, headers=headers)]


def splunk_url(sink: dict) -> str:
    domain = sink["splunkDomain"]
    if "://" in domain:
        parts = urlsplit(domain)
        scheme, host = parts.scheme, parts.hostname
    else:
        scheme, host = "https", domain
    return f"{scheme}://{host}:{sink['splunkPort']}/services/collector/event"


def _splunk(sink: dict, events: list[SequencedEvent], *, host: str, **_options) -> list[OutgoingRequest]:
    body = b"".join(
        _json({"time": round(e.event.date.timestamp(), 3), "host": host, "source": "bastion", "sourcetype": "auth0",
               "event": log_json(e.event, hostname=host)})
        for e in events
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Splunk {sink['splunkToken']}", "User-Agent": _USER_AGENT}
    return [OutgoingRequest(url=splunk_url(sink), body=body, through_seq=events[-1].seq, headers=headers,
                            verify_tls=bool(sink.get("splunkSecure")))]


_BUILDERS = {"http": _http, "segment": _segment, "splunk": _splunk}


def build_requests(
    stream_type: str, sink: dict, events: list[SequencedEvent], *, segment_api_url: str, host: str,
) -> list[OutgoingRequest]:
    """The requests that deliver `events` (in log order) to a stream's sink, in the order to send them."""
    if not events:
        return []
    return _BUILDERS[stream_type](sink, events, segment_api_url=segment_api_url, host=host)


def requests_per_batch(stream_type: str, sink: dict, batch_size: int) -> int:
    """The most requests one batch can take (it bounds how long a delivery may hold its lease)."""
    return batch_size if stream_type == "http" and sink.get("httpContentFormat") == "JSONOBJECT" else 1
