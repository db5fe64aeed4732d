"""A real browser for the console's tests: Debian's Chromium, driven by Playwright for Python
(`executable_path`; Playwright's own browser download is not used). `make test` installs
Chromium from Debian's packages (deploy/install-chromium); where it cannot be had, the browser
tests say why they did not run, and in CI (CI set) they fail instead."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

# Without the background-networking flags Chromium keeps dialling Google's hosts, which a
# closed network refuses many times over.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if path is None:
        reason = (
            "no Chromium on this machine: install Debian's package (deploy/install-chromium, run"
            " by `make test`) or set CHROMIUM to a Chromium binary"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@asynccontextmanager
async def browser_page(**context: Any) -> AsyncIterator[Any]:
    """A fresh headless Chromium with one page (its own profile, nothing shared)."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page_context = await browser.new_context(**context)
            yield await page_context.new_page()
        finally:
            await browser.close()
