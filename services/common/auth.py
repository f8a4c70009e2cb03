"""Bearer tokens: who calls (role, department or enterprise) and what each role may call.

Tokens are HS256 JWTs signed with AUTH_SECRET. Roles: applicant (bound to an enterprise credit
code), reviewer (bound to a department), finance, ops, and system (the worker and consumers).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

import jwt

from grantflow.v1 import common_pb2
from services.common.errors import Unauthenticated

ROLES = ("applicant", "reviewer", "finance", "ops", "system")
DEPARTMENTS = {
    "industry": common_pb2.DEPARTMENT_INDUSTRY,
    "finance": common_pb2.DEPARTMENT_FINANCE,
    "hr": common_pb2.DEPARTMENT_HR,
}
DEPARTMENT_NAMES = {value: name for name, value in DEPARTMENTS.items()}
ISSUER = "grantflow"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    department: str = ""  # reviewers: industry, finance or hr
    enterprise: str = ""  # applicants: their unified social credit code

    @property
    def department_enum(self) -> int:
        return DEPARTMENTS.get(self.department, common_pb2.DEPARTMENT_UNSPECIFIED)


def mint_token(
    secret: str,
    subject: str,
    role: str,
    *,
    department: str = "",
    enterprise: str = "",
    ttl_seconds: int = 30 * 24 * 3600,
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "reviewer" and department not in DEPARTMENTS:
        raise ValueError(f"a reviewer needs a department: one of {', '.join(DEPARTMENTS)}")
    if role == "applicant" and not enterprise:
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
    role = claims.get("role", "")
    if role not in ROLES or not claims.get("sub"):
        raise Unauthenticated("bearer token has no valid subject and role")
    return Principal(
        subject=claims["sub"],
        role=role,
        department=claims.get("dept", ""),
        enterprise=claims.get("ent", ""),
    )


_current: ContextVar[Principal] = ContextVar("grantflow_principal")


def set_current_principal(principal: Principal) -> None:
    _current.set(principal)


def current_principal() -> Principal:
    """The caller of the RPC being served (set by the server's auth interceptor)."""
    return _current.get()
