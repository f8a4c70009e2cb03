"""The console in a real browser: the embedded stack (console included) once per package,
seeded like `grantflow seed`, and Debian's chromium driven by Playwright.

Playwright's own browser download cannot work offline, so the tests drive /usr/bin/chromium,
which `make test` installs (`make browser`) when a machine lacks it. Without it these tests
fail, naming the command; they are never skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from grantflow.demo import seed_catalogue, seed_experts
from infra.local.stack import LocalStack
from tests.stack_fixture import running_stack

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The flags this machine's notes give for headless chromium behind a closed network (Playwright
# adds --headless and a fresh, empty profile of its own).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium: `make browser` installs Debian's chromium for these tests")
    return found


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("browser"), notice_period_seconds=1.0) as s:
        yield s


@pytest.fixture(scope="package")
async def seeded(stack: LocalStack) -> LocalStack:
    await seed_catalogue(stack.settings)
    await seed_experts(stack.settings)
    return stack


@pytest.fixture(scope="package")
def console_url(seeded: LocalStack) -> str:
    return f"http://{seeded.settings.console_address}"


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """One person's browser session with the console: sign in, go to pages, take screenshots."""

    def __init__(self, context: BrowserContext, page: Page, url: str) -> None:
        self.context = context
        self.page = page
        self.url = url

    async def sign_in(
        self, user: str, role: str, *, department: str = "", enterprise: str = ""
    ) -> None:
        await self.page.goto(f"{self.url}/signin")
        await self.page.fill("input[name=user]", user)
        await self.page.select_option("select[name=role]", role)
        if department:
            await self.page.select_option("select[name=department]", department)
        if enterprise:
            await self.page.fill("input[name=enterprise]", enterprise)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_selector("[data-testid=signed-in-as]")

    async def go(self, path: str) -> None:
        await self.page.goto(f"{self.url}{path}")

    async def screenshot(self, name: str) -> None:
        """docs/screenshots/<name>.png, the whole page (the README links the folder)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def open_console(browser: Browser, console_url: str) -> AsyncIterator[object]:
    """`await open_console()` -> a new Console (its own cookies) in zh-CN; closed after the test."""
    contexts: list[BrowserContext] = []

    async def open_one(locale: str = "zh-CN") -> Console:
        context = await browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return Console(context, await context.new_page(), console_url)

    yield open_one
    for context in contexts:
        await context.close()
