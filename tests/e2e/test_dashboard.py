"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium), and its security rules over plain
HTTP: sessions, CSRF tokens, headers, the sign-in rate limit, and a deleted admin key's session."""

import http.cookiejar
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import ENGINE, Server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chromium_driver():
    options = webdriver.ChromeOptions()
    options.add_argument("--headless=new")
    options.add_argument("--no-sandbox")  # CI runs as root, where Chromium's sandbox cannot start
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--window-size=1200,820")
    options.add_argument("--force-device-scale-factor=1")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture
def browser():
    driver = chromium_driver()
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def go(browser, element):
    """Clicks a link or a submit button and waits for the next page, so that no lookup finds the old one: the old
    page's window carries a mark that a newly loaded one does not."""
    browser.execute_script("window.keysmithPreviousPage = true")
    element.click()
    WebDriverWait(browser, 10).until(
        lambda driver: driver.execute_script(
            "return window.keysmithPreviousPage === undefined && document.readyState === 'complete'"
        )
    )


def screenshot(browser, name):
    """Keeps a screenshot of the page for docs/ (the SQLite run makes them; both runs see the same pages)."""
    if ENGINE == "sqlite":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def check(server, key):
    """A gateway's check of a chat completion (the scoped keys here hold api.model.request): a scoped key is only let
    through on a check that says what the original request is."""
    original = {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions"}
    status, _, _ = server.request_root("GET", "/v1/auth/check", key=key, headers=original)
    return status


def sign_in(browser, server, key=None):
    browser.get(server.base_url.removesuffix("/v1") + "/dashboard")
    assert browser.current_url.endswith("/dashboard/sign-in")
    browser.find_element(By.ID, "admin_key").send_keys(key or server.admin_key)
    go(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def notice(browser):
    return browser.find_element(By.CSS_SELECTOR, ".notice").text


def test_a_key_from_sign_in_to_revocation_in_the_browser(server, browser):
    root = server.base_url.removesuffix("/v1")
    browser.get(root + "/dashboard/sign-in")
    screenshot(browser, "sign-in")
    sign_in(browser, server)
    assert browser.current_url.endswith("/dashboard/projects")
    assert "No projects yet" in browser.page_source

    # A person in the organization, then a project, and the person as its member.
    go(browser, browser.find_element(By.LINK_TEXT, "People"))
    browser.find_element(By.ID, "user_email").send_keys("ada@example.com")
    browser.find_element(By.ID, "user_name").send_keys("Ada Lovelace")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Add user']"))
    assert notice(browser) == "The user was added to the organization."
    assert "ada@example.com" in browser.find_element(By.TAG_NAME, "table").text

    go(browser, browser.find_element(By.LINK_TEXT, "Projects"))
    browser.find_element(By.ID, "project_name").send_keys("Gateway")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Create project']"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Gateway")
    project_url = browser.current_url
    project_id = project_url.rsplit("/", 1)[1]
    assert project_id.startswith("proj_")

    go(browser, browser.find_element(By.LINK_TEXT, "Members"))
    browser.find_element(By.ID, "member_email").send_keys("ada@example.com")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Add member']"))
    assert notice(browser) == "The member was added."

    # A key for Ada: its plaintext appears once, in the dialog, beside the copy button.
    go(browser, browser.find_element(By.LINK_TEXT, "API keys"))
    Select(browser.find_element(By.ID, "key_user")).select_by_visible_text("Ada Lovelace (ada@example.com)")
    browser.find_element(By.ID, "key_name").send_keys("laptop")
    browser.find_element(By.ID, "key_scopes").send_keys("api.model.request")
    Select(browser.find_element(By.ID, "key_expiry")).select_by_visible_text("in 90 days")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Create key']"))
    dialog = browser.find_element(By.CSS_SELECTOR, "dialog.secret")
    assert "This key will not be shown again." in dialog.text
    plaintext = browser.find_element(By.ID, "secret-value").get_attribute("value")
    assert plaintext.startswith("sk-proj-")
    copy = dialog.find_element(By.XPATH, ".//button[text()='Copy']")
    screenshot(browser, "new-key")
    copy.click()  # the one script: its status line appears
    assert browser.find_element(By.ID, "copied").is_displayed()
    assert check(server, plaintext) == 200

    # Done: the secret is gone from the page; the list shows the key redacted, with who holds it and when.
    go(browser, dialog.find_element(By.LINK_TEXT, "Done"))
    assert plaintext not in browser.page_source
    row = browser.find_element(By.XPATH, "//tr[td[contains(., 'laptop')]]")
    assert "ada@example.com" in row.text and "never" in row.text and "in 3 months" in row.text
    assert "sk-proj-…" + plaintext[-4:] in row.text and "active" in row.text
    screenshot(browser, "project-keys")

    # Revoke it behind a confirmation that names it.
    go(browser, row.find_element(By.LINK_TEXT, "Revoke"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Revoke the key “laptop”?"
    go(browser, browser.find_element(By.XPATH, "//button[text()='Revoke key']"))
    assert notice(browser) == "The key was revoked: it no longer works."
    assert check(server, plaintext) == 401

    # Both events are in the audit log, made with the signed-in admin key.
    go(browser, browser.find_element(By.LINK_TEXT, "Audit log"))
    log = browser.find_element(By.TAG_NAME, "table").text
    assert "api_key.created" in log and "api_key.deleted" in log
    Select(browser.find_element(By.ID, "filter_type")).select_by_visible_text("api_key.deleted")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Filter']"))
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1 and "admin key key_" in rows[0].text
    browser.find_element(By.XPATH, "//button[text()='Filter']")  # the filters stay on the page
    Select(browser.find_element(By.ID, "filter_type")).select_by_visible_text("any")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Filter']"))
    screenshot(browser, "audit-log")

    go(browser, browser.find_element(By.LINK_TEXT, "People"))
    screenshot(browser, "people")
    go(browser, browser.find_element(By.LINK_TEXT, "Projects"))
    screenshot(browser, "projects")

    # Signing out ends the session: the pages send the browser back to sign-in.
    go(browser, browser.find_element(By.XPATH, "//button[text()='Sign out']"))
    assert browser.current_url.endswith("/dashboard/sign-in")
    browser.get(project_url)
    assert browser.current_url.endswith("/dashboard/sign-in")


def test_errors_are_shown_beside_the_form_that_caused_them(server, browser):
    sign_in(browser, server)
    browser.find_element(By.ID, "project_name").send_keys("Gateway")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Create project']"))
    go(browser, browser.find_element(By.LINK_TEXT, "Members"))
    browser.find_element(By.ID, "member_email").send_keys("nobody@example.com")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Add member']"))
    error = browser.find_element(By.ID, "member_error")
    assert "nobody@example.com" in error.text
    assert browser.find_element(By.ID, "member_email").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "member_email").get_attribute("value") == "nobody@example.com"

    go(browser, browser.find_element(By.LINK_TEXT, "People"))
    browser.find_element(By.ID, "user_email").send_keys("ada@example.com")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Add user']"))
    browser.find_element(By.ID, "user_email").send_keys("ada@example.com")
    go(browser, browser.find_element(By.XPATH, "//button[text()='Add user']"))
    assert "ada@example.com" in browser.find_element(By.ID, "user_error").text

    # The organization's last admin key cannot be deleted: said on the page, and the key stays.
    go(browser, browser.find_element(By.LINK_TEXT, "Admin keys"))
    go(browser, browser.find_element(By.LINK_TEXT, "Delete"))
    go(browser, browser.find_element(By.XPATH, "//button[text()='Delete admin key']"))
    assert "last" in browser.find_element(By.ID, "delete_error").text
    assert browser.find_element(By.ID, "admin_name").get_attribute("aria-invalid") is None
    screenshot(browser, "admin-keys")


def test_usable_on_a_phone_and_with_the_keyboard(server, browser):
    browser.get(server.base_url.removesuffix("/v1") + "/dashboard/sign-in")
    # The key field has the focus on arrival; on the other pages the first Tab reaches the skip link, which shows.
    assert browser.switch_to.active_element.get_attribute("id") == "admin_key"
    sign_in(browser, server)
    ActionChains(browser).send_keys(Keys.TAB).perform()
    skip = browser.switch_to.active_element
    assert skip.get_attribute("class") == "skip" and skip.location["x"] >= 0
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.current_url.endswith("#main")
    project = server.client().admin.organization.projects.create(name="A project with a rather long name for a phone")
    for index in range(3):
        server.client().admin.organization.projects.service_accounts.create(project.id, name=f"bot-{index}")
    browser.set_window_size(390, 844)
    for path in ("/dashboard/projects", f"/dashboard/projects/{project.id}", "/dashboard/audit-log", "/dashboard/people"):
        browser.get(server.base_url.removesuffix("/v1") + path)
        # Nothing wider than the screen but the tables, which scroll inside their own box.
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), path
    browser.get(server.base_url.removesuffix("/v1") + f"/dashboard/projects/{project.id}/service-accounts")
    screenshot(browser, "phone")


def test_a_wrong_admin_key_is_refused_in_the_browser(server, browser):
    sign_in(browser, server, key="sk-admin-" + "x" * 64)
    assert browser.current_url.endswith("/dashboard/sign-in")
    assert browser.find_element(By.ID, "admin_key_error").text == "That is not a valid admin key."
    # A project key is not an admin key either.
    project = server.client().admin.organization.projects.create(name="P")
    account = server.client().admin.organization.projects.service_accounts.create(project.id, name="bot")
    sign_in(browser, server, key=account.api_key.value)
    assert browser.find_element(By.ID, "admin_key_error").text == "That is not a valid admin key."


class Visitor:
    """A browser without a browser: a cookie jar, no redirects followed, for what the pages answer over HTTP."""

    def __init__(self, server):
        self.root = server.base_url.removesuffix("/v1")
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def request(self, method, path, form=None, headers=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.root + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def sign_in(self, key):
        status, _, page = self.request("GET", "/dashboard/sign-in")
        assert status == 200
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)
        return self.request("POST", "/dashboard/sign-in", {"csrf_token": token, "admin_key": key})

    def csrf(self, path="/dashboard/projects"):
        status, _, page = self.request("GET", path)
        assert status == 200, page
        return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)

    def cookie(self, name):
        return next((cookie for cookie in self.jar if cookie.name == name), None)


def project_names(server):
    return [project.name for project in server.client().admin.organization.projects.list()]


def test_sessions_cookies_and_headers(server):
    visitor = Visitor(server)
    status, headers, _ = visitor.sign_in(server.admin_key)
    assert status == 303 and headers["Location"] == "/dashboard/projects"
    set_cookie = [value for name, value in headers.items() if name.lower() == "set-cookie"]
    session_cookie = next(value for value in set_cookie if value.startswith("keysmith_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Path=/dashboard" in session_cookie
    assert "Secure" not in session_cookie  # plain HTTP here, and no proxy said https
    assert server.admin_key not in session_cookie

    status, headers, page = visitor.request("GET", "/dashboard/projects")
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert server.admin_key not in page
    assert "<script>" not in page and " style=" not in page and "onclick" not in page

    # Behind a proxy that says the client used HTTPS, the cookie is Secure.
    _, headers, _ = Visitor(server).request("GET", "/dashboard/sign-in", headers={"X-Forwarded-Proto": "https"})
    assert all("Secure" in value for name, value in headers.items() if name.lower() == "set-cookie")


def test_a_form_without_its_csrf_token_changes_nothing(server):
    visitor = Visitor(server)
    visitor.sign_in(server.admin_key)
    status, _, page = visitor.request("POST", "/dashboard/projects", {"name": "Forged"})
    assert status == 403 and "This form has expired" in page
    status, _, _ = visitor.request("POST", "/dashboard/projects", {"name": "Forged", "csrf_token": "0" * 64})
    assert status == 403
    assert project_names(server) == []
    # With the session's token, the same form works.
    status, headers, _ = visitor.request("POST", "/dashboard/projects", {"name": "Real", "csrf_token": visitor.csrf()})
    assert status == 303 and headers["Location"].startswith("/dashboard/projects/proj_")
    assert project_names(server) == ["Real"]
    # Sign-in, too, needs the token its own page set in a cookie: a form posted from elsewhere is refused.
    status, _, _ = Visitor(server).request("POST", "/dashboard/sign-in", {"admin_key": server.admin_key, "csrf_token": "x"})
    assert status == 403


def test_signing_out_ends_the_session(server):
    visitor = Visitor(server)
    visitor.sign_in(server.admin_key)
    token = visitor.csrf()
    stolen = visitor.cookie("keysmith_session").value
    status, headers, _ = visitor.request("POST", "/dashboard/sign-out", {"csrf_token": token})
    assert status == 303 and headers["Location"] == "/dashboard/sign-in"
    # The old cookie, replayed, is worth nothing: the server ended the session.
    replay = Visitor(server)
    status, headers, _ = replay.request("GET", "/dashboard/projects", headers={"Cookie": f"keysmith_session={stolen}"})
    assert status == 303 and headers["Location"] == "/dashboard/sign-in"


def test_a_deleted_admin_keys_session_stops_at_once(server):
    admin = server.client().admin.organization.admin_api_keys.create(name="dashboard")
    visitor = Visitor(server)
    visitor.sign_in(admin.value)
    assert visitor.request("GET", "/dashboard/projects")[0] == 200
    server.client().admin.organization.admin_api_keys.delete(admin.id)
    status, headers, _ = visitor.request("GET", "/dashboard/projects")
    assert status == 303 and headers["Location"] == "/dashboard/sign-in"


def test_failed_sign_ins_are_limited_per_address_and_never_lock_out_a_real_key(server):
    # Behind a proxy every browser has the proxy's address, so ten bad keys from anyone would lock out everyone
    # behind it, for as long as someone keeps sending them: failures are limited, a valid key always signs in.
    attacker = Visitor(server)
    for _ in range(10):
        status, _, page = attacker.sign_in("sk-admin-" + "y" * 64)
        assert status == 401 and "That is not a valid admin key." in page
    status, headers, page = attacker.sign_in("sk-admin-" + "z" * 64)
    assert status == 429 and "Too many failed sign-ins" in page
    assert int(headers["Retry-After"]) > 0
    admin = Visitor(server)
    status, headers, _ = admin.sign_in(server.admin_key)
    assert status == 303 and headers["Location"] == "/dashboard/projects"
    assert admin.request("GET", "/dashboard/projects")[0] == 200


def test_the_dashboard_can_be_turned_off(tmp_path):
    server = Server(tmp_path, args=["--no-dashboard"])
    try:
        status, _, _ = server.request_root("GET", "/dashboard/sign-in", key=False)
        assert status == 404
        status, _, _ = server.request_root("GET", "/healthz", key=False)
        assert status == 200
    finally:
        server.stop()
