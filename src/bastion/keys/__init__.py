"""Signing keys: generation, sealing at rest, rotation, the JWKS, and JWT signing."""
