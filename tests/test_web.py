"""The HTTP edge helpers (bastion/web.py): the token endpoint's own form parsing, and the host name
rules see, each checked against what Starlette itself gives for the same request."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from bastion.errors import OAuthError
from bastion.web import read_form, read_params, request_hostname


def _request(body: bytes = b"", *, content_type: str = "application/x-www-form-urlencoded", host: str | None = "idp.test") -> Request:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if host is not None:
        headers.append((b"host", host.encode()))
    scope = {"type": "http", "method": "POST", "path": "/oauth/token", "raw_path": b"/oauth/token", "query_string": b"",
             "headers": headers, "scheme": "http", "server": ("10.0.0.5", 8000), "client": ("127.0.0.1", 1234),
             "root_path": "", "http_version": "1.1"}
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


@pytest.mark.parametrize("body", [
    b"grant_type=client_credentials&audience=https%3A%2F%2Fapi.test%2F",
    b"scope=openid+profile&empty=&flag",
    b"name=%C3%A9l%C3%A8ve&raw=\xe9t\xe9",  # UTF-8 escapes, and raw latin-1 bytes
    b"broken=%E9%ZZ&plus=a%2Bb",  # an invalid UTF-8 escape, a bad escape, an escaped plus
    b"",
])
async def test_urlencoded_bodies_parse_as_starlettes_form_parser_does(body):
    ours = await read_params(_request(body))
    starlettes = await read_form(_request(body))
    assert ours == starlettes
    if body.startswith(b"scope"):
        assert ours == {"scope": "openid profile", "empty": "", "flag": ""}


@pytest.mark.parametrize("body, problem", [
    (b"a=1&a=2", "repeated"),
    (b"a=%00", "NUL"),
])
async def test_bad_urlencoded_bodies_are_refused(body, problem):
    with pytest.raises(OAuthError) as error:
        await read_params(_request(body))
    assert error.value.error == "invalid_request" and problem in error.value.description


@pytest.mark.parametrize("host, expected", [
    ("idp.test", "idp.test"),
    ("IdP.Test:8443", "idp.test"),
    ("127.0.0.1:8000", "127.0.0.1"),
    ("[::1]:8000", "::1"),
    ("[2001:DB8::1]", "2001:db8::1"),
])
def test_the_hostname_is_the_host_header_without_port(host, expected):
    request = _request(host=host)
    assert request_hostname(request) == expected == request.url.hostname


def test_without_a_host_header_the_hostname_is_the_servers_address():
    assert request_hostname(_request(host=None)) == "10.0.0.5"
