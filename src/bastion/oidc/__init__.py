"""OpenID Connect / OAuth 2.0 on Auth0's paths: authorize, token, userinfo, discovery, JWKS, revocation, logout."""
