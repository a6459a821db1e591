"""The Management API's rate limit: Auth0's x-ratelimit-* headers on every answer, and 429 with
Auth0's body once a caller's bucket is empty; other callers are not affected."""

from __future__ import annotations

import time

from bastion.management.rate_limit import RateLimiter


async def test_headers_then_429_then_the_bucket_refills(bastion_with):
    async with bastion_with(management_rate_limit=1.0, management_rate_burst=3) as bastion:
        token = await bastion.management_token()
        headers = {"Authorization": f"Bearer {token}"}
        answers = [await bastion.http.get("/api/v2/clients", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert {a.headers["x-ratelimit-limit"] for a in answers} == {"3"}
        assert int(answers[-1].headers["x-ratelimit-reset"]) >= int(time.time())
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].json() == {
            "statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached", "errorCode": "too_many_requests",
        }
        # An unauthenticated request is refused for what it is, not counted against the caller.
        assert (await bastion.http.get("/api/v2/clients")).status_code == 401


def test_the_bucket_refills_at_the_rate_and_callers_are_separate():
    limiter = RateLimiter(rate=1000.0, burst=2)
    assert [limiter.take("a").allowed for _ in range(3)] == [True, True, False]
    assert limiter.take("b").allowed  # another caller has its own bucket
    time.sleep(0.01)  # 10 ms at 1000/s refills the bucket
    assert limiter.take("a").allowed


async def test_no_limit_when_turned_off(bastion_with):
    async with bastion_with(management_rate_limit=0) as bastion:
        token = await bastion.management_token()
        answers = [await bastion.http.get("/api/v2/clients", headers={"Authorization": f"Bearer {token}"}) for _ in range(5)]
        assert {a.status_code for a in answers} == {200}
        assert "x-ratelimit-limit" not in answers[0].headers
