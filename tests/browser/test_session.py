"""Signing in to the console: the dev identities, the language switch, CSRF and the session."""

from __future__ import annotations

from typing import Any

import httpx


async def test_a_reviewer_signs_in_in_chinese_and_switches_to_english(open_console: Any) -> None:
    console = await open_console()
    await console.go("/")
    assert "/signin" in console.page.url  # not signed in: asked to sign in first
    await console.screenshot("signin")
    await console.sign_in("li", "reviewer", department="industry")
    assert await console.page.locator("html").get_attribute("lang") == "zh-CN"
    assert "退出" in await console.page.inner_text("header")
    await console.page.click("text=English")
    assert "Sign out" in await console.page.inner_text("header")
    cookies = {cookie["name"]: cookie for cookie in await console.context.cookies()}
    assert cookies["grantflow_session"]["httpOnly"]


async def test_a_bad_sign_in_says_which_field_and_signs_nobody_in(open_console: Any) -> None:
    console = await open_console()
    await console.go("/signin")
    await console.page.fill("input[name=user]", "zhao")
    await console.page.select_option("select[name=role]", "applicant")
    await console.page.fill("input[name=enterprise]", "91440300000000Y1BX")
    await console.page.click("button[type=submit]")
    error = console.page.locator(".field-error")
    assert "统一社会信用代码无效" in await error.inner_text()
    assert "grantflow_session" not in {c["name"] for c in await console.context.cookies()}


async def test_a_form_posted_without_its_csrf_token_is_refused(console_url: str) -> None:
    async with httpx.AsyncClient(base_url=console_url) as client:
        answer = await client.post("/signin", data={"user": "li", "role": "finance"})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert "grantflow_session" not in answer.cookies
