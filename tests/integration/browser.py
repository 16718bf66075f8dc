"""One headless Chromium per pytest session (per xdist worker), shared by every browser test.

Each test opens a browser context of its own (its own cookies, storage, viewport and
colour scheme), so sharing the browser process shares no state between tests; the
``chromium`` fixture closes whatever contexts a test leaves open, a failed one included.

Playwright's sync API marks its event loop as running between its calls, for as long as
it is started: no test in a session that uses the browser may call ``asyncio.run`` in the
test's own thread (none does; the API and the workers run in subprocesses).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.system_packages import require_path

CHROMIUM = os.environ.get("STRATEGYQ_TEST_CHROMIUM", "/usr/bin/chromium")
DISABLED_FEATURES = [
    # Each new context's page opens a browser window of its own, and each window loads its
    # address bar's two WebUI popups (chrome://omnibox-popup.top-chrome/) into a renderer of
    # their own: a headless browser never shows them, and they cost as much CPU as the page.
    "WebUIOmniboxPopup", "WebUIOmniboxAimPopup",
    # Chromium keeps a spare renderer started for the next page of the context that last
    # opened one; every test's context is a new one, so each spare is started for nothing.
    "SpareRendererForSitePerProcess",
    # Chromium honours only the last --disable-features it is given, and Playwright passes
    # its own first: what follows repeats Playwright's list (as of Playwright 1.65), and
    # each launch checks that the browser was given no feature to disable that is missing
    # here (_check_disabled_features).
    "AimEnabled", "AvoidCorsURLLoaderRestartOnRedirect", "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose", "HttpsFirstBalancedModeAutoEnable", "HttpsUpgrades",
    "LensOverlay", "MediaRouter", "NetworkTimeServiceQuerying", "OptimizationHints",
    "PaintHolding", "PreconnectToSearch", "TcpPortRandomizationWin",
    "ThirdPartyStoragePartitioning", "msEdgeUpdateLaunchServicesPreferredVersion",
    "msForceBrowserSignIn",
]  # fmt: skip
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run",
                 "--disable-features=" + ",".join(DISABLED_FEATURES)]  # fmt: skip
SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
"""The two sizes every page is checked at."""


def _descends_from_this_process(pid: int) -> bool:
    mine = os.getpid()
    while pid > 1:
        if pid == mine:
            return True
        try:
            # The parent pid is the second field after the command name, which may hold spaces.
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def _check_disabled_features() -> None:
    """Fail when a --disable-features given before ours (Playwright's own list) names a
    feature that ours, the one Chromium honours, leaves out: a Playwright release that
    disables a new feature must not have it silently turned back on here."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        lists = [a.split("=", 1)[1].split(",") for a in argv if a.startswith("--disable-features=")]
        if not lists or any(a.startswith("--type=") for a in argv):
            continue  # not a browser process (its renderers get the merged list)
        if not _descends_from_this_process(int(proc.name)):
            continue
        missing = sorted({f for earlier in lists[:-1] for f in earlier} - set(lists[-1]))
        assert not missing, (
            f"Playwright disables Chromium features that {__file__}'s DISABLED_FEATURES "
            f"leaves out, which would turn them back on: add {missing} to DISABLED_FEATURES"
        )


class SharedChromium:
    """The session's Playwright driver and its one browser, launched on first use."""

    def __init__(self) -> None:
        self._stop: Callable[[], None] | None = None
        self._playwright: Any = None
        self._browser: Any = None

    def browser(self) -> Any:
        if self._playwright is None:
            require_path(CHROMIUM, ["chromium"])
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._stop = self._playwright.stop
        if self._browser is None or not self._browser.is_connected():
            # A browser that crashed under one test is replaced for the next.
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            _check_disabled_features()
        return self._browser

    def close(self) -> None:
        try:
            if self._browser is not None and self._browser.is_connected():
                self._browser.close()
        finally:
            if self._stop is not None:
                self._stop()


@pytest.fixture(scope="session")
def shared_chromium() -> Iterator[SharedChromium]:
    shared = SharedChromium()
    yield shared
    shared.close()


@pytest.fixture
def chromium(shared_chromium: SharedChromium) -> Iterator[Any]:
    """The session's headless Chromium; open a context of your own with ``new_context``."""
    browser = shared_chromium.browser()
    yield browser
    if browser.is_connected():
        for context in list(browser.contexts):
            context.close()


def watch_errors(page: Any, errors: list[str]) -> None:
    """Collect the page's uncaught JavaScript errors and Content-Security-Policy violations
    (a script or style the policy blocks is a bug of the page) into ``errors``."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )


class OpenPage(Protocol):
    """The ``open_page`` fixture: a page in a new context of the session's browser."""

    def __call__(self, base_url: str, **context_options: Any) -> Any: ...


@pytest.fixture
def open_page(chromium: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenPage]:
    """Open pages in contexts of their own; after the test, screenshot each page of a failed
    test (named in its report) and fail the test if a page had JavaScript errors."""
    opened: list[tuple[Any, list[str]]] = []

    def open_(base_url: str, **context_options: Any) -> Any:
        context = chromium.new_context(base_url=base_url, **context_options)
        page = context.new_page()
        errors: list[str] = []
        watch_errors(page, errors)
        opened.append((page, errors))
        return page

    yield open_
    report = getattr(request.node, "report_call", None)
    for i, (page, errors) in enumerate(opened):
        if report is not None and report.failed and not page.is_closed():
            shot = tmp_path / ("failure.png" if len(opened) == 1 else f"failure-{i}.png")
            page.screenshot(path=str(shot), full_page=True)
            request.node.add_report_section("call", "screenshot", f"{shot}\npage errors: {errors}")
        page.context.close()
    found = [e for _, errors in opened for e in errors]
    assert not found, f"JavaScript errors on the page: {found}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # open_page reads this to screenshot a failed test's page.
    setattr(item, f"report_{report.when}", report)
    return report
