"""Sealing, tickets, CSRF tokens, passwords and settings: the primitives under every flow."""

from __future__ import annotations

import time

import pytest

from bastion.security.csrf import CsrfTokens
from bastion.security.passwords import check_password_policy, hash_password, verify_password
from bastion.security.sealing import Sealer, SealingError
from bastion.security.tickets import InvalidTicket, Tickets
from bastion.settings import load_settings


def test_sealed_values_open_only_with_the_same_key_and_purpose():
    sealer = Sealer("k" * 40)
    sealed = sealer.seal("private key", purpose="signing-key")
    assert "private key" not in sealed
    assert sealer.open(sealed, purpose="signing-key") == b"private key"
    with pytest.raises(SealingError):
        sealer.open(sealed, purpose="client-secret")
    with pytest.raises(SealingError):
        Sealer("j" * 40).open(sealed, purpose="signing-key")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealingError):
        sealer.open(tampered, purpose="signing-key")


def test_tickets_are_signed_per_purpose_and_expire():
    tickets = Tickets("m" * 40)
    ticket = tickets.issue("password-reset", {"sub": "u1"}, ttl=60)
    assert tickets.open("password-reset", ticket)["sub"] == "u1"
    with pytest.raises(InvalidTicket):
        tickets.open("email-verification", ticket)
    with pytest.raises(InvalidTicket):
        tickets.open("password-reset", ticket.replace(".", ".x"))
    expired = tickets.issue("password-reset", {"sub": "u1"}, ttl=-1)
    with pytest.raises(InvalidTicket):
        tickets.open("password-reset", expired)


def test_csrf_tokens_are_bound_to_transaction_and_browser():
    csrf = CsrfTokens("s" * 40)
    token = csrf.issue("txn-1", "browser-a")
    assert csrf.verify(token, "txn-1", "browser-a")
    assert not csrf.verify(token, "txn-1", "browser-b")
    assert not csrf.verify(token, "txn-2", "browser-a")
    assert not csrf.verify(None, "txn-1", "browser-a")


async def test_passwords_are_argon2id_and_verify_in_constant_work():
    stored = await hash_password("Correct-Horse-9")
    assert stored.startswith("$argon2id$")
    assert await verify_password(stored, "Correct-Horse-9")
    assert not await verify_password(stored, "correct-horse-9")
    started = time.perf_counter()
    assert not await verify_password(None, "anything")  # a missing user still costs a hash
    assert time.perf_counter() - started > 0.005


def test_password_policy_names_what_is_missing():
    assert check_password_policy("Correct-Horse-9") is None
    assert "at least 8 characters" in check_password_policy("Ab1!")
    assert "3 of" in check_password_policy("alllowercase")


def test_placeholder_secrets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="placeholder"):
        load_settings(secret_key="changeme", var_dir=tmp_path)
    with pytest.raises(ValueError):
        load_settings(secret_key="k" * 40, bootstrap_client_id="x", bootstrap_client_secret="secret", var_dir=tmp_path)


def test_a_missing_master_key_is_generated_once_and_kept(tmp_path, caplog):
    first = load_settings(var_dir=tmp_path)
    second = load_settings(var_dir=tmp_path)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
    assert "BASTION_SECRET_KEY is not set" in caplog.text


def test_production_requires_a_master_key(tmp_path):
    with pytest.raises(ValueError, match="BASTION_SECRET_KEY"):
        load_settings(environment="production", var_dir=tmp_path)


def test_settings_come_from_a_toml_file_and_the_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "bastion.toml"
    config.write_text('issuer = "https://id.example.com/"\nbrute_force_max_attempts = 5\n')
    monkeypatch.setenv("BASTION_CONFIG_FILE", str(config))
    monkeypatch.setenv("BASTION_BRUTE_FORCE_MAX_ATTEMPTS", "7")
    settings = load_settings(secret_key="k" * 40, var_dir=tmp_path)
    assert settings.issuer == "https://id.example.com"
    assert settings.token_issuer == "https://id.example.com/"
    assert settings.management_audience == "https://id.example.com/api/v2/"
    assert settings.brute_force_max_attempts == 7
