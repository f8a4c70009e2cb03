"""The console's sign-in, session and CSRF rules, without a stack: the app in-process (no
service is called by these pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import jwt
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.identity import DevIdentityProvider
from grantflow.sample import credit_code
from services.common.config import Settings


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings()), follow_redirects=False) as test_client:
        yield test_client


def csrf(client: TestClient) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', client.get("/signin").text)
    assert found
    return found.group(1)


def sign_in(client: TestClient, **form: str) -> object:
    return client.post("/signin", data={"csrftoken": csrf(client), **form})


def test_a_department_reviewer_gets_a_token_the_services_accept(client: TestClient) -> None:
    answer = sign_in(client, user="li", role="reviewer", department="finance")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert answer.headers["location"] == "/inbox"  # type: ignore[attr-defined]
    cookie = answer.headers["set-cookie"]  # type: ignore[attr-defined]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert client.get("/").headers["location"] == "/inbox"  # signed in


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"user": "", "role": "finance"}, "用户名"),
        ({"user": "li", "role": "reviewer"}, "部门"),
        ({"user": "li", "role": "system"}, "系统角色"),
        ({"user": "li", "role": "emperor"}, "角色"),
        ({"user": "zhao", "role": "applicant", "enterprise": "91440300000000Y1BX"}, "信用代码"),
    ],
)
def test_a_wrong_sign_in_names_the_field_and_signs_nobody_in(
    client: TestClient, form: dict[str, str], field: str
) -> None:
    answer = sign_in(client, **form)
    assert answer.status_code == 400  # type: ignore[attr-defined]
    errors = re.findall(r'class="field-error"[^>]*>([^<]+)<', answer.text)  # type: ignore[attr-defined]
    assert len(errors) == 1 and field in errors[0]
    assert "grantflow_session" not in client.cookies


async def test_the_token_carries_the_identity_chosen() -> None:
    code = credit_code(1)
    provider = DevIdentityProvider(auth_secret=Settings().auth_secret)
    user = await provider.complete(
        None,  # type: ignore[arg-type]
        {"user": "zhao", "role": "applicant", "enterprise": code},
    )
    claims = jwt.decode(
        user.token, Settings().auth_secret, algorithms=["HS256"], issuer="grantflow"
    )
    assert (claims["sub"], claims["role"], claims["ent"]) == ("zhao", "applicant", code)


def test_sign_in_without_the_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/signin")  # the CSRF cookie is set, but the form does not carry the token
    answer = client.post("/signin", data={"user": "li", "role": "finance"})
    assert answer.status_code == 403
    assert "grantflow_session" not in client.cookies


def test_a_forged_session_cookie_signs_nobody_in(client: TestClient) -> None:
    client.cookies.set("grantflow_session", "eyJ1c2VyIjogeyJyb2xlIjogIm9wcyJ9fQ==.forged")
    answer = client.get("/")
    assert answer.headers["location"] == "/signin"


def test_sign_in_goes_back_only_to_a_page_of_this_site(client: TestClient) -> None:
    for target, expected in [
        ("/finance/plans", "/finance/plans"),
        ("//evil.example/x", "/finance"),
        ("https://evil.example", "/finance"),
    ]:
        client.cookies.clear()
        answer = sign_in(client, user="zhang", role="finance", next=target)
        assert answer.headers["location"] == expected  # type: ignore[attr-defined]


def test_the_language_switch_is_remembered_and_chinese_is_the_default(client: TestClient) -> None:
    assert "登录" in client.get("/signin").text
    switched = client.get("/lang", params={"to": "en", "next": "/signin"})
    assert switched.headers["location"] == "/signin"
    page = client.get("/signin").text
    assert "Sign in" in page and 'lang="en"' in page
    client.get("/lang", params={"to": "klingon"})
    assert 'lang="en"' in client.get("/signin").text


def test_signing_out_ends_the_session(client: TestClient) -> None:
    sign_in(client, user="zhang", role="finance")
    assert client.get("/").headers["location"] == "/finance"
    token = csrf(client)
    client.post("/signout", data={"csrftoken": token})
    assert client.get("/").headers["location"] == "/signin"


def test_a_multipart_form_with_its_token_passes_and_without_it_is_refused(
    client: TestClient,
) -> None:
    """File uploads post multipart forms: the CSRF check must read them (and not crash)."""
    token = csrf(client)
    with_token = client.post(
        "/signin",
        data={"csrftoken": token, "user": "zhang", "role": "finance"},
        files={"attachment": ("a.txt", b"x")},
    )
    assert with_token.status_code == 303
    client.cookies.delete("grantflow_session")
    without = client.post(
        "/signin",
        data={"user": "zhang", "role": "finance"},
        files={"attachment": ("a.txt", b"x")},
    )
    assert without.status_code == 403
