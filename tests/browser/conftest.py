"""Fixtures of the dashboard's browser tests.

Run by tests/browser.rs, which starts the server, prepares the data and passes it in RX_*
environment variables. One headless Chromium (Debian's /usr/bin/chromium; Playwright downloads no
browser) for the session, started with a fake microphone that plays RX_FAKE_MIC_WAV. Each test
gets a fresh context (so a fresh sessionStorage); any console error or CSP violation on a page
fails the test that caused it.
"""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


class Env:
    def __init__(self):
        e = os.environ
        self.base = e["RX_BASE_URL"].rstrip("/")
        self.admin_key = e["RX_ADMIN_KEY"]
        self.viewer_key = e["RX_VIEWER_KEY"]
        self.interviewer_id = e["RX_INTERVIEWER_ID"]
        self.other_interviewer_id = e["RX_OTHER_INTERVIEWER_ID"]
        self.web_receptionist_id = e["RX_WEB_RECEPTIONIST_ID"]
        self.candidate_id = e["RX_CANDIDATE_ID"]
        self.call_id = e["RX_CALL_ID"]
        self.fake_mic = e["RX_FAKE_MIC_WAV"]
        self.screenshots = Path(e["RX_SCREENSHOTS"])

    def api(self, method, path, body=None, key=None):
        """(status, JSON or None) of one API request with the admin key."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.admin_key}")
        if data is not None:
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, None


@pytest.fixture(scope="session")
def env():
    return Env()


@pytest.fixture(scope="session")
def browser(env):
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={env.fake_mic}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield b
        b.close()


class Page:
    """A page of the dashboard with helpers; records console errors and CSP violations."""

    def __init__(self, page, env):
        self.page = page
        self.env = env
        self.errors = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def __getattr__(self, name):
        return getattr(self.page, name)

    def open(self, route=""):
        self.page.goto(f"{self.env.base}/#/{route}")

    def route(self, route):
        """Go to a route of the signed-in page (no reload: the key stays in sessionStorage)."""
        self.page.evaluate("r => { location.hash = r }", f"#/{route}")

    def sign_in(self, key):
        self.open()
        self.page.fill("input[name=api_key]", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector(".topbar")

    def shot(self, name, full_page=True):
        self.env.screenshots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.env.screenshots / f"{name}.png"), full_page=full_page)


@pytest.fixture
def new_page(browser, env):
    """A factory of fresh pages (each its own context); checks them for errors afterwards."""
    made = []

    def make(viewport=(1280, 860)):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(15000)
        p = Page(context.new_page(), env)
        made.append((context, p))
        return p

    yield make
    errors = []
    for context, p in made:
        errors += p.errors
        context.close()
    # a 4xx the page expects (a wrong key, a validation error) is logged by Chromium as a failed
    # resource load; everything else is a real error
    real = [e for e in errors if "the server responded with a status of 4" not in e]
    assert not real, "console errors:\n" + "\n".join(real)


@pytest.fixture
def admin(new_page, env):
    p = new_page()
    p.sign_in(env.admin_key)
    return p


@pytest.fixture
def viewer(new_page, env):
    p = new_page()
    p.sign_in(env.viewer_key)
    return p
