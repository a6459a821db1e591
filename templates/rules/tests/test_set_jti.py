"""The access token's jti: set_jti.py gives each token a random UUID (version 4)."""

import uuid

RULE = "../set_jti.py"


def test_each_login_gets_its_own_uuid4_jti(rule_runner):
    first = rule_runner.run(RULE)
    refresh = rule_runner.run(RULE, protocol="oauth2-refresh-token")

    for result in (first, refresh):
        assert uuid.UUID(result.jti).version == 4
        assert str(uuid.UUID(result.jti)) == result.jti  # the canonical form
    assert first.jti != refresh.jti


def test_without_the_rule_there_is_no_rule_jti(rule_runner):
    """The kit's check that the jti comes from the rule, not from elsewhere."""
    assert rule_runner.run(script="def rule(user, context, api):\n    pass\n").jti is None
