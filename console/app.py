"""The console's ASGI application: pages, sessions, CSRF and static files put together.

Sign-in state lives in a signed, HTTP-only, SameSite=Lax session cookie (Starlette's
SessionMiddleware, itsdangerous); every POST carries a CSRF token checked by asgi-csrf
(double-submit: a signed cookie and the form field or the htmx header), the sign-in form
included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console.backend import Backend
from console.i18n import LANG_COOKIE, TEMPLATE_GLOBALS, language, pick
from console.identity import SESSION_HOURS, DevIdentityProvider, IdentityProvider
from services.common.config import Settings

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "grantflow_session"
CSRF_COOKIE = "grantflow_csrf"


def page_routes() -> list[BaseRoute]:
    from console.pages import session

    routes: list[BaseRoute] = [*session.routes]
    for module in _group_modules():
        routes += module.routes
    return routes


def _group_modules() -> list[Any]:
    import importlib

    found = []
    for name in ("applicant", "reviewer", "finance", "ops"):
        try:
            found.append(importlib.import_module(f"console.pages.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"console.pages.{name}":
                raise
    return found


def templates() -> Jinja2Templates:
    environment = Jinja2Templates(directory=str(HERE / "templates"))
    environment.env.globals.update(TEMPLATE_GLOBALS)
    return environment


def identity_provider(settings: Settings) -> IdentityProvider:
    return DevIdentityProvider(auth_secret=settings.auth_secret)


async def _csrf_failed(scope: dict[str, Any], send: Any, message_id: Any) -> None:
    cookies = dict(
        part.strip().split("=", 1)
        for header, value in scope.get("headers", [])
        if header == b"cookie"
        for part in value.decode("latin-1").split(";")
        if "=" in part
    )
    lang = language(cookies.get(LANG_COOKIE))
    body = pick(
        lang,
        "表单已过期或来源不明（CSRF 校验未通过），请返回刷新页面后重试。",
        "The form expired or did not come from this site (CSRF check failed): go back, reload and retry.",
    )
    response = HTMLResponse(f"<!doctype html><p>{body}</p>", status_code=403)
    await response(scope, None, send)  # type: ignore[arg-type]


async def _not_found(request: Request, error: Exception) -> Response:
    from console.web import Page, current_user

    current = Page(
        request=request,
        user=current_user(request),
        backend=request.app.state.backend,
        templates=request.app.state.templates,
        lang=language(request.cookies.get(LANG_COOKIE)),
    )
    return current.render("error.html", status_code=404, title=current.tr("未找到", "Not found"))


def create_app(settings: Settings, identity: IdentityProvider | None = None) -> Any:
    backend = Backend(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = Starlette(
        routes=[
            *page_routes(),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=settings.console_session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_HOURS * 3600,
                same_site="lax",
                https_only=settings.profile == "production",
            )
        ],
        lifespan=lifespan,
        exception_handlers={404: _not_found},
    )
    app.state.backend = backend
    app.state.templates = templates()
    app.state.identity = identity or identity_provider(settings)
    app.state.settings = settings
    return asgi_csrf(
        app,
        signing_secret=settings.console_session_secret,
        cookie_name=CSRF_COOKIE,
        always_protect={"/signin", "/signout"},
        send_csrf_failed=_csrf_failed,
        cookie_secure=settings.profile == "production",
    )
