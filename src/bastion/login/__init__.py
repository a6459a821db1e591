"""The login: one resumable transaction from an authorization request to a result.

Protocols (`oidc/`, later `saml/`) hand in an `AuthorizationRequest` and take a
`LoginResult` out; the steps in between are written down in `pipeline.py`.
"""
