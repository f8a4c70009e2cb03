"""Signing in and out, the language switch and the home page (each role's first page)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from console.i18n import LANG_COOKIE, LANGUAGES
from console.identity import SESSION_KEY, SignInRefused
from console.web import Page, home_path, page


def _local(path: str | None, default: str = "/") -> str:
    """Only a path on this site (no scheme, no host, no //): an open redirect otherwise."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path


@page(public=True)
async def home(current: Page) -> Response:
    if current.user is None:
        return RedirectResponse("/signin", status_code=303)
    return RedirectResponse(home_path(current.user.role), status_code=303)


@page(public=True)
async def sign_in(current: Page) -> Response:
    provider = current.request.app.state.identity
    values: dict[str, str] = {"next": _local(current.request.query_params.get("next"), "")}
    errors: dict[str, str] = {}
    if current.request.method == "POST":
        form = await current.form()
        values.update(form)
        try:
            user = await provider.complete(current.request, form)
        except SignInRefused as refused:
            errors[refused.field] = refused.message
        else:
            current.request.session.clear()
            current.request.session[SESSION_KEY] = user.to_session()
            return RedirectResponse(_local(form.get("next"), home_path(user.role)), 303)
    return current.render(
        "signin.html",
        status_code=400 if errors else 200,
        values=values,
        errors=errors,
        **provider.form_fields(),
    )


@page(public=True)
async def sign_out(current: Page) -> Response:
    current.request.session.clear()
    return RedirectResponse("/signin", status_code=303)


async def switch_language(request: Request) -> Response:
    target = request.query_params.get("to", "")
    response = RedirectResponse(_local(request.query_params.get("next")), status_code=303)
    if target in LANGUAGES:
        response.set_cookie(LANG_COOKIE, target, max_age=365 * 24 * 3600, samesite="lax")
    return response


async def healthz(request: Request) -> Response:
    """Alive and serving (the probes): calls no service, so a service down does not restart the
    console, whose pages say which service is unavailable."""
    return PlainTextResponse("ok")


routes = [
    Route("/healthz", healthz),
    Route("/", home),
    Route("/signin", sign_in, methods=["GET", "POST"]),
    Route("/signout", sign_out, methods=["POST"]),
    Route("/lang", switch_language),
]
