"""How a console page is written: `@page(roles)` gives the handler a `Page` (the request, the
signed-in user, the language, the services) and refuses everyone else; `Page.render` fills a
template; a service's refusal becomes the page a person should see (sign in again, not allowed,
not found, or the service's message).

Forms post with the CSRF token (`csrf_field()` in a template; htmx sends it as a header), and a
form that a service refused is shown again with the refusal beside its field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any
from urllib.parse import quote

import grpc
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from console.backend import Backend, ServiceRefusal
from console.i18n import DEFAULT_LANGUAGE, LANG_COOKIE, language, pick
from console.identity import SESSION_KEY, SignedInUser
from console.service_text import shown
from services.common.vocabulary import Role

Handler = Callable[["Page"], Awaitable[Response]]


@dataclass(frozen=True)
class NavItem:
    path: str
    zh: str
    en: str


# Each role's pages, in the order of its daily work; the first is its home page.
NAVIGATION: dict[Role, tuple[NavItem, ...]] = {
    Role.APPLICANT: (
        NavItem("/apply", "申报项目", "Programs"),
        NavItem("/my/applications", "我的申报", "My applications"),
        NavItem("/notices", "公示", "Public notices"),
    ),
    Role.REVIEWER: (
        NavItem("/inbox", "待办任务", "Inbox"),
        NavItem("/notices", "公示", "Public notices"),
    ),
    Role.DEPARTMENT_HEAD: (
        NavItem("/inbox", "待办任务", "Inbox"),
        NavItem("/notices", "公示", "Public notices"),
    ),
    Role.EXPERT: (NavItem("/expert", "专家评审", "Expert review"),),
    Role.AUDITOR: (NavItem("/audit", "专项审计", "Special audit"),),
    Role.FINANCE: (
        NavItem("/finance", "预算", "Budgets"),
        NavItem("/finance/plans", "资助计划", "Funding plans"),
        NavItem("/finance/payments", "支付", "Payments"),
        NavItem("/finance/accounts", "收款账户变更", "Account changes"),
    ),
    Role.OPS: (
        NavItem("/ops", "运行概况", "Overview"),
        NavItem("/ops/grants", "查找申报", "Find grants"),
    ),
}


def home_path(role: Role) -> str:
    items = NAVIGATION.get(role)
    return items[0].path if items else "/notices"


@dataclass
class Page:
    request: Request
    user: SignedInUser | None
    backend: Backend
    templates: Jinja2Templates
    lang: str = "zh-CN"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def signed_in(self) -> SignedInUser:
        assert self.user is not None, "a page for signed-in users only"
        return self.user

    def tr(self, zh: str, en: str) -> str:
        return pick(self.lang, zh, en)

    async def call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        return await self.backend.call(self.user, method, request)

    @property
    def clients(self) -> Any:
        return self.backend.clients

    async def form(self) -> dict[str, str]:
        data = await self.request.form()
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(
            self.request,
            template,
            {**self.base_context(), **values},
            status_code=status_code,
        )

    def base_context(self) -> dict[str, Any]:
        csrf = self.request.scope.get("csrftoken")
        token = csrf() if callable(csrf) else ""
        return {
            "user": self.user,
            "lang": self.lang,
            "navigation": NAVIGATION.get(self.user.role, ()) if self.user else (),
            "path": self.request.url.path,
            "csrftoken": token,
            "csrf_field": Markup(f'<input type="hidden" name="csrftoken" value="{escape(token)}">'),
            "query_string": self.request.url.query,
        }

    def redirect(self, path: str) -> Response:
        if self.request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": path})
        return RedirectResponse(path, status_code=303)


def page(*roles: Role, public: bool = False) -> Callable[[Handler], Callable[[Request], Any]]:
    """A route handler for the given roles (any signed-in user when none; anyone when public)."""

    allowed = frozenset(roles)

    def decorate(handler: Handler) -> Callable[[Request], Any]:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            state = request.app.state
            user = current_user(request)
            current = Page(
                request=request,
                user=user,
                backend=state.backend,
                templates=state.templates,
                lang=language(request.cookies.get(LANG_COOKIE)),
            )
            if user is None and not public:
                return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
            if user is not None and allowed and user.role not in allowed:
                return refusal_page(current, ServiceRefusal(grpc.StatusCode.PERMISSION_DENIED, ""))
            try:
                return await handler(current)
            except ServiceRefusal as refusal:
                return refusal_page(current, refusal)

        return endpoint

    return decorate


def current_user(request: Request) -> SignedInUser | None:
    data = request.session.get(SESSION_KEY)
    if not data:
        return None
    try:
        return SignedInUser.from_session(data)
    except (KeyError, ValueError):
        request.session.clear()
        return None


REFUSAL_PAGES: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.PERMISSION_DENIED: (403, "无权访问", "Not allowed"),
    grpc.StatusCode.NOT_FOUND: (404, "未找到", "Not found"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "输入有误", "Invalid input"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "当前状态不允许此操作", "Not possible now"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "已存在", "Already exists"),
    grpc.StatusCode.UNAVAILABLE: (503, "服务暂不可用，请稍后重试", "Service unavailable, retry"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "服务响应超时，请稍后重试", "Service timed out"),
}


def refusal_page(current: Page, refusal: ServiceRefusal) -> Response:
    if refusal.code == grpc.StatusCode.UNAUTHENTICATED:
        current.request.session.clear()
        return current.redirect("/signin")
    status, zh, en = REFUSAL_PAGES.get(refusal.code, (500, "出错了", "Something went wrong"))
    return current.render(
        "error.html",
        status_code=status,
        title=current.tr(zh, en),
        detail=(
            shown(current.lang, refusal.message)
            if refusal.code != grpc.StatusCode.PERMISSION_DENIED
            else ""
        ),
    )


def field_errors(
    refusal: ServiceRefusal, fields: Iterable[str], lang: str = DEFAULT_LANGUAGE
) -> dict[str, str]:
    """A refusal as {form field: message in the page's language}: the field it names when the
    form has it, else "" (shown at the top of the form).

    The services name nested fields (`figures[staff_count]`, `figures.staff_count`); the form's
    field is the last name in it that the form knows."""
    known = set(fields)
    name = refusal.field
    message = shown(lang, refusal.message)
    for part in [name, *name.replace("[", ".").replace("]", "").split(".")[::-1]]:
        if part in known:
            return {part: message}
    return {"": f"{refusal.field}: {message}" if refusal.field else message}
