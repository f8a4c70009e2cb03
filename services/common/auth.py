"""Bearer tokens: who calls (role, department or enterprise) and what each role may call.

Tokens are HS256 JWTs signed with AUTH_SECRET. Roles: applicant (bound to an enterprise credit
code), reviewer and department head (bound to a department), expert and auditor (the subject is
the person), finance, ops, and system (the worker and consumers).
"""

from __future__ import annotations

import functools
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.errors import Unauthenticated
from services.common.vocabulary import DEPARTMENT_ROLES, Department, Role, VocabularyError

ISSUER = "grantflow"
# In a service's role table (services/common/service_main.py ServiceSpec), the mark of a method
# anyone may call, with or without a token (a public notice). Not a Role: no token can carry
# it, so it can never be mistaken for a caller's rights; a method marked public names no other
# role, and its servicer asks `current_caller()`, which is None for an anonymous caller.
PUBLIC = "public"


def __getattr__(name: str) -> Any:
    # DEPARTMENTS (department name -> proto number) is kept, derived from the vocabulary, only
    # for workflows/activities.py until it adopts Department; computed on use so importing this
    # module does not load the protos.
    if name == "DEPARTMENTS":
        return {department.value: department.to_proto() for department in Department}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    department: Department | None = None  # reviewers and heads: the department they serve
    enterprise: str = ""  # applicants: their unified social credit code


def mint_token(
    secret: str,
    subject: str,
    role: str,
    *,
    department: str = "",
    enterprise: str = "",
    ttl_seconds: int = 30 * 24 * 3600,
) -> str:
    """A signed token; role and department are parsed (ValueError naming the known terms)."""
    if role not in set(Role):
        raise ValueError(f"unknown role {role!r}; one of {', '.join(Role)}")
    if department and department not in set(Department):
        raise ValueError(f"unknown department {department!r}; one of {', '.join(Department)}")
    if role in DEPARTMENT_ROLES and not department:
        raise ValueError(f"a {role} needs a department: one of {', '.join(Department)}")
    if role == Role.APPLICANT and not enterprise:
        raise ValueError("an applicant token needs the enterprise credit code")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "role": role,
        "dept": department,
        "ent": enterprise,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Principal:
    """The caller a signed, unexpired token names; Unauthenticated otherwise."""
    principal, expires_at = _verified(secret, token)
    if time.time() >= expires_at:
        raise Unauthenticated("bearer token has expired")
    return principal


# Every call carries a token, and the same few tokens (the system's, a reviewer's for a day) come
# again and again: a checked signature is remembered, its expiry is checked on every use.
@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("bearer token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("bearer token is not valid") from exc
    try:
        role = Role.parse(str(claims.get("role", "")))
    except VocabularyError:
        raise Unauthenticated("bearer token has no valid subject and role") from None
    if not claims.get("sub"):
        raise Unauthenticated("bearer token has no valid subject and role")
    department = str(claims.get("dept") or "")
    principal = Principal(
        subject=claims["sub"],
        role=role,
        # A department this version does not know gives its holder no department's rights.
        department=Department(department) if department in set(Department) else None,
        enterprise=claims.get("ent", ""),
    )
    return principal, float(claims["exp"])


_current: ContextVar[Principal | None] = ContextVar("grantflow_principal")


def set_current_principal(principal: Principal | None) -> None:
    """Who calls the RPC being served; None for an anonymous call of a public method."""
    _current.set(principal)


def current_principal() -> Principal:
    """The caller of the RPC being served (set by the server's auth interceptor).
    Unauthenticated if the call is anonymous (a public method's servicer asking for a caller)."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("this call needs a bearer token (authorization metadata)")
    return principal


def current_caller() -> Principal | None:
    """The caller of the RPC being served, None if anonymous (public methods only)."""
    return _current.get(None)
