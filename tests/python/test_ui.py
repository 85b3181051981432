#!/usr/bin/env python3
"""The management web UI in a real browser (headless Chromium driven by Selenium 4), checking what a
user sees on every page while pika and paho-mqtt clients put things there to see.

Usage: python3 tests/python/test_ui.py MANAGEMENT_HOST:PORT AMQP_PORT MQTT_PORT SCREENSHOT_DIR
           [--perf-queues=stdin|pika]

Run by tests/ui_browser.rs, which starts the broker, enforces an overall timeout and declares the
10,000 queues of the rendering measurement in-process when this script asks for them on stdout
(`--perf-queues=stdin`: it prints PERF_REQUEST_LINE and waits for a line on stdin). Run by hand
against a fresh broker, the default `--perf-queues=pika` declares them over AMQP instead (slower).
The AMQP and MQTT listeners are on the management host.

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); Selenium
Manager is never asked to download a browser or driver. Exits 0 when every step passes; otherwise
prints the failing step, the page's state and the browser console, saves failure.png and
failure.html in SCREENSHOT_DIR, and exits 1. Rendering times with 10,000 queues are printed
("render queues 10000: N ms"), never asserted.
"""

import base64
import os
import re
import shutil
import statistics
import sys
import time
import traceback
import urllib.parse

# Selenium Manager must not go to the network for a driver or a browser.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

import pika  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from test_paho import V311, Conn  # noqa: E402

WAIT = 15  # seconds any single wait in the browser may take
PERF_QUEUES = 10_000
PERF_PREFIX = "ui-perf-"
PERF_REQUEST_LINE = "WARREN-UI-TEST: declare %d queues named %s00000.. in vhost /" % (
    PERF_QUEUES, PERF_PREFIX)
QUEUE = "ui-test-queue"
DEVICE = "ui-device-1"
TOPIC = "sensors/kitchen/temp"
USER, PASSWORD = "ui-user", "ui-pass"
INSTALL_HINT = ("on Debian/Ubuntu: apt-get install --no-install-recommends chromium "
                "chromium-driver")


# Sets location.hash and resolves when body[data-ready] changes to the page: the milliseconds
# since the hash was set, and since then until the first frame painted after it; whether the
# attribute was removed on the way (the contract: deleted when navigation starts). null after
# the timeout.
NAVIGATE = """
const [hash, page, timeout] = arguments, done = arguments[arguments.length - 1];
performance.clearResourceTimings();  // its buffer holds 250 entries; the UI polls
const t0 = performance.now();
let finished = false, cleared = false;
// The API requests the page made on the way (name, milliseconds from start to response end).
const api = () => performance.getEntriesByType('resource')
  .filter(e => e.startTime >= t0 && e.name.includes('/api/'))
  .map(e => {
    const url = new URL(e.name);
    url.searchParams.delete('columns');
    return [url.pathname + url.search, Math.round(e.duration)];
  });
const finish = (value) => {
  if (!finished) { finished = true; observer.disconnect(); done(value); }
};
const observer = new MutationObserver((records) => {
  if (!document.body.hasAttribute('data-ready')) cleared = true;
  for (const record of records) if (record.oldValue === null) cleared = true;
  if (document.body.dataset.ready === page && (cleared || records.some(r => r.oldValue !== page))) {
    const ready = performance.now() - t0;
    requestAnimationFrame(() => setTimeout(
      () => finish({ready: ready, painted: performance.now() - t0, cleared: cleared,
                    api: api()}), 0));
  }
});
observer.observe(document.body, {attributes: true, attributeFilter: ['data-ready'],
                                 attributeOldValue: true});
setTimeout(() => finish(null), timeout);
location.hash = hash;
"""


class StepFailed(AssertionError):
    pass


# --- browser ------------------------------------------------------------------------------------


def find_program(name):
    found = shutil.which(name)
    if found:
        return found
    fallback = "/usr/bin/" + name
    return fallback if os.access(fallback, os.X_OK) else None


def start_browser():
    chromium = find_program("chromium") or find_program("chromium-browser")
    chromedriver = find_program("chromedriver")
    if not chromium or not chromedriver:
        raise StepFailed("chromium (%s) and chromedriver (%s) are both needed; %s" % (
            chromium or "missing", chromedriver or "missing", INSTALL_HINT))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-gpu", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--password-store=basic",
                     "--disable-features=PasswordLeakDetection,Translate"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(60)
    return driver


class Ui:
    """The browser plus the checks' helpers; every wait is bounded by WAIT seconds."""

    def __init__(self, driver, base, shots):
        self.d = driver
        self.base = base
        self.shots = shots
        self.console = []  # (step, entry) for every browser console entry, drained per step
        self.step = "start"

    # -- waiting

    def until(self, what, condition, timeout=WAIT):
        """Waits for condition(driver) to be truthy and returns it; fails naming `what`."""
        def guarded(driver):
            try:
                return condition(driver)
            except (NoSuchElementException, StaleElementReferenceException):
                return False
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(guarded)
        except TimeoutException:
            raise StepFailed("after %ss: %s" % (timeout, what)) from None

    def ready(self):
        return self.d.execute_script("return document.body.dataset.ready || null")

    def go(self, hash_, page, timeout=WAIT):
        """Navigates by setting location.hash and waits for body[data-ready=page]; returns the
        milliseconds until then and until the first frame after it. Checks that the UI removed
        data-ready when the navigation started (the contract)."""
        current = self.d.execute_script("return location.hash")
        assert current != hash_, "go(%s) from the same hash would not navigate" % hash_
        before = self.ready()
        result = self.d.execute_async_script(NAVIGATE, hash_, page, timeout * 1000)
        if result is None:
            raise StepFailed("after %ss: document.body.dataset.ready == %r after opening %s "
                             "(it is %r)" % (timeout, page, hash_, self.ready()))
        if before is not None and not result["cleared"]:
            raise StepFailed("opening %s: body[data-ready] went from %r to %r without being "
                             "removed when the navigation started" % (hash_, before, page))
        return result

    # -- elements

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def els(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css):
        return self.until("%s visible" % css, lambda d: self.el(css).is_displayed() and self.el(css))

    def present(self, *ids):
        missing = [i for i in ids if not self.els("#" + i)]
        if missing:
            raise StepFailed("missing on %s: %s" % (self.step, ", ".join("#" + i for i in missing)))

    def fill(self, css, value):
        """Types into an input, or picks the option of a <select> with that value (or text)."""
        element = self.el(css)
        if element.tag_name.lower() == "select":
            select = Select(element)
            try:
                select.select_by_value(value)
            except NoSuchElementException:
                select.select_by_visible_text(value)
        else:
            element.clear()
            element.send_keys(value)

    def click(self, css):
        element = self.visible(css)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def text(self, css):
        return self.el(css).text

    def flash_text(self):
        try:
            return self.text("#flash")
        except NoSuchElementException:
            return "(no #flash)"

    def wait_flash(self, words):
        return self.until("#flash to say %r (it says %r)" % (words, self.flash_text()),
                          lambda d: words.lower() in self.text("#flash").lower())

    # -- evidence

    def screenshot(self, name):
        """The whole page (up to 8000 px tall), not just the window."""
        path = os.path.join(self.shots, name + ".png")
        size = self.d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.d.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"],
                     "height": min(size["height"], 8000), "scale": 1}})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def drain_console(self):
        try:
            entries = self.d.get_log("browser")
        except Exception as e:  # a driver without the log endpoint: say so, do not hide it
            raise StepFailed("cannot read the browser console: %s" % e) from None
        self.console.extend((self.step, entry) for entry in entries)
        return entries


def row_by(ui, table, attribute, value):
    """The <tr> with that data attribute in #table, or None."""
    rows = ui.els('#%s tr[%s="%s"]' % (table, attribute, value))
    return rows[0] if rows else None


def cell(row, col):
    return row.find_element(By.CSS_SELECTOR, 'td[data-col="%s"]' % col).text.strip()


def number(text):
    """'3', '1,234' or '3 msg' as an int; None when it holds no number."""
    digits = "".join(ch for ch in text.split()[0] if ch.isdigit()) if text.split() else ""
    return int(digits) if digits else None


# --- steps --------------------------------------------------------------------------------------


def step_login(ui):
    ui.step = "login-error"
    ui.d.get(ui.base + "/")
    ui.visible("form#login")
    ui.fill("#username", "guest")
    ui.fill("#password", "wrong")
    ui.click("#login-button")
    ui.until("#login-error to say 'Login failed'",
             lambda d: ui.el("#login-error").is_displayed()
             and "login failed" in ui.text("#login-error").lower())
    role = ui.el("#login-error").get_attribute("role")
    if role != "alert":
        raise StepFailed("#login-error has role=%r, the contract says alert" % role)
    if ui.els("#nav") and ui.el("#nav").is_displayed():
        raise StepFailed("#nav is visible after a failed login")
    ui.screenshot("login-error")
    # The refused request is logged by Chromium as a SEVERE "401 (Unauthorized)" resource
    # error: that one is expected here, and only here.
    ui.drain_console()
    ui.step = "login"

    ui.fill("#username", "guest")
    ui.fill("#password", "guest")
    ui.click("#login-button")
    ui.visible("#nav")
    ui.until("document.body.dataset.ready == 'overview' after login (it is %r, hash %r)" % (
        ui.ready(), ui.d.execute_script("return location.hash")),
        lambda d: ui.ready() == "overview")
    links = {a.get_attribute("href").rsplit("#", 1)[-1] for a in ui.els("#nav a[href^='#/']")}
    wanted = {"/overview", "/connections", "/channels", "/exchanges", "/queues", "/mqtt",
              "/admin"}
    if not wanted <= links:
        raise StepFailed("#nav lacks links to %s" % sorted(wanted - links))
    ui.until("#whoami to name guest", lambda d: "guest" in ui.text("#whoami"))
    if ui.els("#login") and ui.el("#login").is_displayed():
        raise StepFailed("the login form is still visible after logging in")
    ui.present("logout")
    if ui.el("#flash").get_attribute("role") != "status":
        raise StepFailed("#flash has role=%r, the contract says status"
                         % ui.el("#flash").get_attribute("role"))


def step_overview(ui, amqp_port, mqtt_port):
    ui.present("page-overview", "overview-totals", "rates-chart", "listeners-table",
               "node-table", "alarms", "node-info")
    listeners = ui.text("#listeners-table")
    for port in (amqp_port, mqtt_port):
        if str(port) not in listeners:
            raise StepFailed("#listeners-table does not show port %d: %r" % (port, listeners))
    if not ui.text("#overview-totals").strip():
        raise StepFailed("#overview-totals is empty")
    ui.screenshot("overview")


def amqp(host, port, user="guest", password="guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials(user, password),
        connection_attempts=1, socket_timeout=WAIT, blocked_connection_timeout=WAIT,
        client_properties={"connection_name": "ui-test-pika"}))


def step_queues(ui, channel):
    channel.queue_declare(QUEUE)
    channel.confirm_delivery()
    for n in range(3):
        channel.basic_publish("", QUEUE, ("message %d" % (n + 1)).encode(),
                              pika.BasicProperties(content_type="text/plain"))
    ui.go("#/queues", "queues")
    ui.present("page-queues", "queues-table", "queues-prev", "queues-next", "queues-page",
               "queues-filter", "add-queue-form", "queue-name", "queue-durable",
               "queue-arguments", "add-queue-button")
    # Lists refresh every 5 s; a page opened just before the publishes shows them a bit later.
    seen = {}

    def three_messages(driver):
        row = row_by(ui, "queues-table", "data-name", QUEUE)
        if row is None:
            seen["row"] = None
            return False
        counts = {c: cell(row, c) for c in ("messages", "ready", "unacked", "consumers")}
        seen["row"] = counts
        return number(counts["messages"]) == 3 or number(counts["ready"]) == 3
    try:
        ui.until("queue row", three_messages, timeout=12)
    except StepFailed:
        raise StepFailed('#queues-table tr[data-name="%s"] does not show 3 messages within 12 s'
                         " (cells: %r)" % (QUEUE, seen.get("row"))) from None
    link = row_by(ui, "queues-table", "data-name", QUEUE).find_elements(
        By.CSS_SELECTOR, 'a[href="#/queue/%2F/' + QUEUE + '"]')
    if not link:
        raise StepFailed('the queue row has no link to #/queue/%2F/' + QUEUE)
    ui.screenshot("queues")


def step_queue_page(ui):
    ui.go("#/queue/%2F/" + QUEUE, "queue")
    ui.present("page-queue", "queue-name-heading", "queue-counts", "queue-depth-chart",
               "publish-form", "publish-payload", "publish-button", "get-form", "get-count",
               "get-ackmode", "get-button", "get-results", "purge-button",
               "delete-queue-button", "queue-bindings-table")
    ui.until("#queue-name-heading to name %s" % QUEUE,
             lambda d: QUEUE in ui.text("#queue-name-heading"))
    ui.until("#queue-counts [data-col=messages] to show 3 (it shows %r)" % (
        ui.els('#queue-counts [data-col="messages"]') and
        ui.text('#queue-counts [data-col="messages"]')),
        lambda d: number(ui.text('#queue-counts [data-col="messages"]')) == 3)
    modes = {o.get_attribute("value") for o in Select(ui.el("#get-ackmode")).options}
    wanted = {"ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
              "reject_requeue_false"}
    if not wanted <= modes:
        raise StepFailed("#get-ackmode lacks %s (has %s)" % (sorted(wanted - modes), sorted(modes)))

    ui.fill("#publish-payload", "hello from the UI")
    ui.click("#publish-button")
    ui.wait_flash("Message published")

    ui.fill("#get-count", "10")
    ui.fill("#get-ackmode", "ack_requeue_false")
    payloads = []
    deadline = time.monotonic() + WAIT
    while "hello from the UI" not in payloads:
        if time.monotonic() > deadline:
            raise StepFailed("#get-results never showed 'hello from the UI' (got %r)" % payloads)
        ui.click("#get-button")
        ui.until("article.message in #get-results",
                 lambda d: ui.els("#get-results article.message .payload"))
        payloads = [p.text.strip() for p in ui.els("#get-results article.message .payload")]
    if payloads[:4] != ["message 1", "message 2", "message 3", "hello from the UI"]:
        raise StepFailed("#get-results payloads in order: %r" % payloads)
    first = ui.els("#get-results article.message")[0]
    for part in (".routing-key", ".redelivered"):
        if not first.find_elements(By.CSS_SELECTOR, part):
            raise StepFailed("article.message has no %s" % part)
    if QUEUE not in first.find_element(By.CSS_SELECTOR, ".routing-key").text:
        raise StepFailed("article.message .routing-key: %r" % first.find_element(
            By.CSS_SELECTOR, ".routing-key").text)
    ui.screenshot("queue")
    # ack_requeue_false took them: the counts (refreshed every 5 s) come down to 0.
    ui.until("#queue-counts [data-col=messages] to show 0 after the get (it shows %r)" % (
        ui.text('#queue-counts [data-col="messages"]')),
        lambda d: number(ui.text('#queue-counts [data-col="messages"]')) == 0, timeout=12)


def step_mqtt(ui, host, mqtt_port):
    device = Conn((host, mqtt_port), V311, client_id=DEVICE, clean=False)
    granted = device.subscribe("sensors/#", 1)
    assert granted == [1], "SUBACK %r" % granted
    device.publish(TOPIC, b"21.5", qos=1, retain=True)
    device.recv()  # its own publish, through its subscription

    ui.go("#/connections", "connections")
    ui.present("page-connections", "connections-table")
    seen = {}

    def device_row(driver):
        rows = []
        for row in ui.els("#connections-table tr[data-name]"):
            client, protocol = cell(row, "client"), cell(row, "protocol")
            rows.append((client, protocol))
            if DEVICE in client and "MQTT" in protocol.upper():
                return row
        seen["rows"] = rows
        return False
    try:
        row = ui.until("connection row", device_row, timeout=12)
    except StepFailed:
        raise StepFailed("#connections-table has no row with client %s and protocol MQTT "
                         "(rows: %r)" % (DEVICE, seen.get("rows"))) from None
    for col in ("user", "vhost", "peer", "transport", "state"):
        cell(row, col)  # present
    amqp_rows = [r for r in ui.els("#connections-table tr[data-name]")
                 if "AMQP" in cell(r, "protocol").upper()]
    if not amqp_rows:
        raise StepFailed("#connections-table shows no AMQP connection beside the MQTT one")
    if not ui.els("#connections-table button.close-connection"):
        raise StepFailed("#connections-table has no button.close-connection")
    ui.screenshot("connections")

    ui.go("#/mqtt", "mqtt")
    ui.present("page-mqtt", "mqtt-sessions-table", "mqtt-connections-table",
               "mqtt-retained-table", "mqtt-topic-tree")
    session = ui.until('#mqtt-sessions-table tr[data-client-id="%s"]' % DEVICE,
                       lambda d: row_by(ui, "mqtt-sessions-table", "data-client-id", DEVICE))
    online = cell(session, "online").lower()
    words = set(re.findall(r"\w+", online)) | set(online) & {"●", "✓", "✔"}
    if not words & {"yes", "true", "online", "●", "✓", "✔"} or \
            words & {"no", "false", "offline"}:
        raise StepFailed("session %s td[data-col=online] says %r" % (DEVICE, online))
    subscriptions = cell(session, "subscriptions")
    if "sensors/#" not in subscriptions:
        raise StepFailed("session %s subscriptions: %r" % (DEVICE, subscriptions))
    cell(session, "queued")
    retained = ui.until('#mqtt-retained-table tr[data-topic="%s"]' % TOPIC,
                        lambda d: row_by(ui, "mqtt-retained-table", "data-topic", TOPIC))
    if "21.5" not in retained.text:
        raise StepFailed("retained row for %s: %r" % (TOPIC, retained.text))
    if DEVICE not in ui.text("#mqtt-connections-table"):
        raise StepFailed("#mqtt-connections-table does not show %s" % DEVICE)
    tree = ui.text("#mqtt-topic-tree")
    if "sensors" not in tree or "kitchen" not in tree:
        raise StepFailed("#mqtt-topic-tree does not show sensors/kitchen: %r" % tree)
    # Recent traffic: the device's publish shows on its topic.
    if not ui.els('#mqtt-topic-tree li[data-path="%s"] .badge.recent' % TOPIC):
        raise StepFailed("#mqtt-topic-tree shows no recent publish on %s: %r" % (TOPIC, tree))
    ui.screenshot("mqtt")
    return device


def step_channels_exchanges(ui):
    ui.go("#/channels", "channels")
    ui.present("page-channels", "channels-table")
    ui.until("#channels-table to show the pika channel (a row mentioning ui-test-pika or guest)",
             lambda d: any(("ui-test-pika" in r.text or "guest" in r.text)
                           for r in ui.els("#channels-table tbody tr")), timeout=12)
    ui.screenshot("channels")

    ui.go("#/exchanges", "exchanges")
    ui.present("page-exchanges", "exchanges-table", "add-exchange-form", "exchange-name",
               "exchange-type", "add-exchange-button")
    for name in ("amq.direct", "amq.fanout", "amq.topic", "amq.headers"):
        if row_by(ui, "exchanges-table", "data-name", name) is None:
            raise StepFailed('#exchanges-table has no tr[data-name="%s"]' % name)
    ui.screenshot("exchanges")


def step_admin(ui, host, amqp_port):
    ui.go("#/admin", "admin")
    ui.present("page-admin", "users-table", "add-user-form", "new-user-name",
               "new-user-password", "new-user-tags", "add-user-button", "vhosts-table",
               "add-vhost-form", "new-vhost-name", "add-vhost-button", "permissions-table",
               "set-permission-form", "perm-user", "perm-vhost", "perm-configure",
               "perm-write", "perm-read", "set-permission-button",
               "topic-permissions-table", "policies-table", "add-policy-form",
               "export-definitions", "import-definitions", "import-definitions-button")
    if row_by(ui, "users-table", "data-name", "guest") is None:
        raise StepFailed('#users-table has no tr[data-name="guest"]')
    ui.fill("#new-user-name", USER)
    ui.fill("#new-user-password", PASSWORD)
    ui.fill("#new-user-tags", "management")
    ui.click("#add-user-button")
    user_row = ui.until('#users-table tr[data-name="%s"] (flash: %r)' % (USER, ui.flash_text()),
                        lambda d: row_by(ui, "users-table", "data-name", USER))
    if "management" not in user_row.text:
        raise StepFailed("the new user's row does not show its tag: %r" % user_row.text)
    if not user_row.find_elements(By.CSS_SELECTOR, "button.delete-user"):
        raise StepFailed("the new user's row has no button.delete-user")

    # No permissions yet: the vhost refuses the connection (530 NOT_ALLOWED).
    try:
        amqp(host, amqp_port, USER, PASSWORD).close()
    except pika.exceptions.AMQPError:
        pass
    else:
        raise StepFailed("%s connected to / before it had any permission there" % USER)

    defaults = {f: ui.el(f).get_attribute("value") for f in ("#perm-vhost", "#perm-read")}
    if defaults != {"#perm-vhost": "/", "#perm-read": ".*"}:
        raise StepFailed("set-permission-form defaults: %r (contract: / and .*)" % defaults)
    # #perm-user may be a <select> of users filled when the list refreshed: wait for the option.
    if ui.el("#perm-user").tag_name.lower() == "select":
        ui.until("#perm-user to offer %s" % USER, lambda d: any(
            o.get_attribute("value") == USER or o.text == USER
            for o in Select(ui.el("#perm-user")).options))
    ui.fill("#perm-user", USER)
    ui.fill("#perm-vhost", "/")
    for field in ("#perm-configure", "#perm-write", "#perm-read"):
        ui.fill(field, ".*")
    ui.click("#set-permission-button")
    ui.until("#permissions-table to list %s on / (flash: %r)" % (USER, ui.flash_text()),
             lambda d: any(USER in r.text for r in ui.els("#permissions-table tr")))

    connection = amqp(host, amqp_port, USER, PASSWORD)
    try:
        channel = connection.channel()
        declared = channel.queue_declare("ui-user-queue", exclusive=True)
        assert declared.method.queue == "ui-user-queue"
    finally:
        connection.close()
    ui.screenshot("admin")


def request_perf_queues(mode, host, amqp_port):
    """Gets 10,000 more queues into vhost /; returns the seconds it took."""
    started = time.monotonic()
    if mode == "stdin":
        print(PERF_REQUEST_LINE, flush=True)
        answer = sys.stdin.readline()
        if not answer.startswith("done"):
            raise StepFailed("the test driver answered %r to the queue request" % answer)
    else:
        connection = amqp(host, amqp_port)
        try:
            channel = connection.channel()
            for n in range(PERF_QUEUES):
                channel.queue_declare("%s%05d" % (PERF_PREFIX, n))
        finally:
            connection.close()
    return time.monotonic() - started


def step_perf(ui, mode, host, amqp_port):
    declared = request_perf_queues(mode, host, amqp_port)
    print("declare %d queues (%s): %d ms" % (PERF_QUEUES, mode, declared * 1000), flush=True)
    # Start from a page that is neither measured one.
    ui.go("#/channels", "channels")
    times = {"queues": [], "overview": []}
    requests = {"queues": [], "overview": []}
    for _ in range(3):
        for page in ("queues", "overview"):
            result = ui.go("#/" + page, page, timeout=30)
            times[page].append((result["ready"], result["painted"]))
            requests[page].append(result["api"])
            if page == "queues" and len(times[page]) == 1:
                rows = ui.els("#queues-table tr[data-name]")
                if not rows:
                    raise StepFailed("#queues-table shows no rows with %d queues" % PERF_QUEUES)
                ui.screenshot("queues-10000")
                print("queues page with %d queues: %d rows shown, #queues-page %r" % (
                    PERF_QUEUES, len(rows), ui.text("#queues-page")), flush=True)
            if page == "overview" and len(times[page]) == 1:
                ui.screenshot("overview-10000")
    for page in ("queues", "overview"):
        ready = [round(r) for r, _ in times[page]]
        painted = [round(p) for _, p in times[page]]
        print("render %s %d: %d ms (ready in runs: %s ms; median %d ms; first frame after "
              "ready: %s ms)" % (page, PERF_QUEUES, ready[0], ", ".join(map(str, ready)),
                                 statistics.median(ready), ", ".join(map(str, painted))),
              flush=True)
        print("  API requests of the first run (ms, response end): %s" % (
            ", ".join("%s %d" % (name, ms) for name, ms in requests[page][0]) or "none"),
            flush=True)


def step_logout(ui):
    ui.click("#logout")
    ui.visible("form#login")
    ui.until("#nav hidden after logging out", lambda d: not ui.el("#nav").is_displayed())


def check_console(ui):
    ui.step = "end"
    ui.drain_console()
    for step, entry in ui.console:
        print("console [%s] %s %s" % (step, entry.get("level"), entry.get("message")))
    severe = [(step, e) for step, e in ui.console
              if e.get("level") == "SEVERE"
              and "favicon.ico" not in e.get("message", "")
              and not (step == "login-error" and "401" in e.get("message", ""))]
    if severe:
        raise StepFailed("SEVERE browser console entries:\n" + "\n".join(
            "  [%s] %s" % (step, e.get("message")) for step, e in severe))


# --- main ---------------------------------------------------------------------------------------


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    if len(args) != 4 or any(not f.startswith("--perf-queues=") for f in flags):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    management, amqp_port, mqtt_port, shots = args[0], int(args[1]), int(args[2]), args[3]
    mode = flags[-1].split("=", 1)[1] if flags else "pika"
    if mode not in ("stdin", "pika"):
        print("--perf-queues is stdin or pika", file=sys.stderr)
        return 2
    host = urllib.parse.urlsplit("http://" + management).hostname
    os.makedirs(shots, exist_ok=True)
    began = time.monotonic()

    try:
        driver = start_browser()
    except StepFailed as e:
        print("FAIL browser: %s" % e)
        return 1
    except Exception as e:
        print("FAIL browser: cannot start headless chromium through chromedriver (%s: %s); %s"
              % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "",
                 INSTALL_HINT))
        return 1
    ui = Ui(driver, "http://" + management, shots)
    connection = device = None
    steps_done = []
    try:
        def step(name, function, *a):
            ui.step = name
            t = time.monotonic()
            result = function(*a)
            ui.drain_console()
            steps_done.append(name)
            print("ok   %-20s %5d ms" % (name, (time.monotonic() - t) * 1000), flush=True)
            return result

        step("login", step_login, ui)
        step("overview", step_overview, ui, amqp_port, mqtt_port)
        connection = amqp(host, amqp_port)
        channel = connection.channel()
        step("queues", step_queues, ui, channel)
        step("queue", step_queue_page, ui)
        device = step("mqtt", step_mqtt, ui, host, mqtt_port)
        step("channels+exchanges", step_channels_exchanges, ui)
        step("admin", step_admin, ui, host, amqp_port)
        step("perf", step_perf, ui, mode, host, amqp_port)
        step("logout", step_logout, ui)
        check_console(ui)
        print("ok   console (no SEVERE entries)")
    except Exception as e:
        print("FAIL %s: %s" % (ui.step, e))
        if not isinstance(e, StepFailed):
            traceback.print_exc(file=sys.stdout)
        diagnose(ui)
        return 1
    finally:
        for closing in (lambda: device and device.close(),
                        lambda: connection and connection.is_open and connection.close(),
                        driver.quit):
            try:
                closing()
            except Exception:
                pass
        print("total %.1f s; screenshots in %s" % (time.monotonic() - began, shots), flush=True)
    return 0


def diagnose(ui):
    """What the page looked like when a step failed."""
    try:
        print("  url %s; body[data-ready] %r; #flash %r" % (
            ui.d.current_url, ui.ready(), ui.flash_text()))
        ui.d.save_screenshot(os.path.join(ui.shots, "failure.png"))
        with open(os.path.join(ui.shots, "failure.html"), "w", encoding="utf-8") as f:
            f.write(ui.d.page_source)
        print("  saved failure.png and failure.html in %s" % ui.shots)
        ui.drain_console()
        for step, entry in ui.console:
            print("  console [%s] %s %s" % (step, entry.get("level"), entry.get("message")))
    except Exception as e:
        print("  (no diagnostics: %s)" % e)


if __name__ == "__main__":
    sys.exit(main())
