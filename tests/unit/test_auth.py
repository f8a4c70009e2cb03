"""Bearer tokens: what a token must carry to be accepted."""

from __future__ import annotations

import time

import jwt
import pytest

from services.common.auth import ISSUER, mint_token, verify_token
from services.common.errors import Unauthenticated

SECRET = "unit-test-secret-of-sufficient-length"


def test_a_minted_token_says_who_calls() -> None:
    caller = verify_token(SECRET, mint_token(SECRET, "li", "reviewer", department="finance"))
    assert (caller.subject, caller.role, caller.department) == ("li", "reviewer", "finance")


def test_tokens_are_refused_when_forged_expired_or_without_expiry() -> None:
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, mint_token("another-secret-entirely-different", "li", "ops"))
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, mint_token(SECRET, "li", "ops", ttl_seconds=-10))
    forever = jwt.encode(
        {"iss": ISSUER, "sub": "li", "role": "system", "iat": int(time.time())}, SECRET, "HS256"
    )
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, forever)
    with pytest.raises(Unauthenticated):
        verify_token(
            SECRET,
            jwt.encode(
                {"iss": ISSUER, "sub": "li", "role": "root", "exp": 2**40, "iat": 1}, SECRET
            ),
        )


def test_roles_need_their_binding() -> None:
    with pytest.raises(ValueError):
        mint_token(SECRET, "li", "reviewer")
    with pytest.raises(ValueError):
        mint_token(SECRET, "acme", "applicant")
    with pytest.raises(ValueError):
        mint_token(SECRET, "li", "superuser")


def test_departments_are_terms_of_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="unknown department"):
        mint_token(SECRET, "li", "reviewer", department="police")
    # A token naming a department this version does not know carries no department's rights.
    stranger = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "li",
            "role": "reviewer",
            "dept": "police",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        SECRET,
        "HS256",
    )
    assert verify_token(SECRET, stranger).department is None


def test_a_token_accepted_once_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = mint_token(SECRET, "li", "ops", ttl_seconds=60)
    assert verify_token(SECRET, token).subject == "li"  # its signature is now remembered
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, token)
