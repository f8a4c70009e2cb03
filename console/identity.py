"""Who is signed in to the console, and how they sign in.

`IdentityProvider` is the seam a real identity provider (OIDC: a redirect to its authorize
endpoint, then a callback with a code) implements: `sign_in` answers GET /signin (the dev form,
or the redirect), `complete` answers the POST or callback and returns the user with the bearer
token the services accept. `DevIdentityProvider` mints development tokens the way the CLI does
(`grantflow token`): any role, department or enterprise, user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from starlette.requests import Request

from services.common import validation
from services.common.auth import mint_token
from services.common.errors import InvalidArgument
from services.common.vocabulary import DEPARTMENT_ROLES, Department, Role

SESSION_KEY = "user"
# Roles a person signs in with (system is Grantflow's own processes).
PERSON_ROLES = tuple(role for role in Role if role != Role.SYSTEM)
SESSION_HOURS = 12


@dataclass(frozen=True)
class SignedInUser:
    subject: str
    role: Role
    token: str  # the bearer token every service call carries
    department: Department | None = None
    enterprise: str = ""  # applicants: the enterprise's unified social credit code

    def to_session(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_session(cls, data: dict[str, Any]) -> SignedInUser:
        return cls(
            subject=str(data["subject"]),
            role=Role(data["role"]),
            token=str(data["token"]),
            department=Department(data["department"]) if data.get("department") else None,
            enterprise=str(data.get("enterprise") or ""),
        )


class SignInRefused(Exception):
    """The sign-in form was wrong: which field, and why (shown beside the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class IdentityProvider(Protocol):
    name: str

    def form_fields(self) -> dict[str, Any]:
        """What the sign-in page offers (the dev form's choices; empty for a redirect)."""
        ...

    async def complete(self, request: Request, form: dict[str, str]) -> SignedInUser:
        """The signed-in user, or SignInRefused naming the field."""
        ...


@dataclass
class DevIdentityProvider:
    """Development identities: whoever fills in the form is signed in as it says."""

    auth_secret: str
    name: str = "dev"

    def form_fields(self) -> dict[str, Any]:
        return {"roles": PERSON_ROLES, "departments": tuple(Department)}

    async def complete(self, request: Request, form: dict[str, str]) -> SignedInUser:
        subject = form.get("user", "").strip()
        if not subject:
            raise SignInRefused("user", "请填写用户名 / enter a user name")
        if len(subject) > 64:
            raise SignInRefused("user", "用户名不超过 64 个字符 / at most 64 characters")
        try:
            role = Role(form.get("role", ""))
        except ValueError:
            raise SignInRefused("role", "请选择角色 / choose a role") from None
        if role == Role.SYSTEM:
            raise SignInRefused("role", "系统角色不能登录 / the system role cannot sign in")
        department = form.get("department", "")
        if role in DEPARTMENT_ROLES:
            if department not in set(Department):
                raise SignInRefused("department", "该角色须选择部门 / this role needs a department")
        else:
            department = ""
        enterprise = ""
        if role == Role.APPLICANT:
            try:
                enterprise = validation.credit_code("enterprise", form.get("enterprise", ""))
            except InvalidArgument as error:
                raise SignInRefused(
                    "enterprise",
                    f"统一社会信用代码无效 / not a valid credit code ({error.problem})",
                ) from None
        token = mint_token(
            self.auth_secret,
            subject,
            role,
            department=department,
            enterprise=enterprise,
            ttl_seconds=SESSION_HOURS * 3600,
        )
        return SignedInUser(
            subject=subject,
            role=role,
            token=token,
            department=Department(department) if department else None,
            enterprise=enterprise,
        )
