"""In a real browser (Debian's chromium driven by Playwright): the TV board follows the feed live and
celebrates, and a participant redeems in the store and sees the balance change. Screenshots of each step go
to tests/artifacts/ (ignored by git), at 1920×1080 and on a 390×844 phone.

Without /usr/bin/chromium these tests skip, and the summary says why (``.ci/run`` installs it)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from levelup.api.app import create_app
from levelup.runtime import Runtime
from tests.conftest import ADMIN_KEY, ROOT, event, fresh_database
from tests.live import served
from tests.web.conftest import Game, make_game

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: the browser tests need Debian's chromium (apt-get install chromium)",
)
TV = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, acme_text: str) -> Iterator[tuple[str, Game]]:
    """The app on a loopback port over a game in progress (SQLite), and the game."""
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    url = next(fresh_database("sqlite", tmp_path))
    runtime = Runtime.from_url(url, migrate=False)
    try:
        app = create_app(runtime)
        with TestClient(app) as client, served(app) as base:
            yield base, make_game(client, {"Authorization": f"Bearer {ADMIN_KEY}"}, acme_text)
    finally:
        runtime.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def local(url: str, base: str) -> str:
    return re.sub(r"^https?://[^/]+", base, url)


def signed_in(browser: object, base: str, viewport: dict[str, int]) -> Any:
    """A page of a new browser context signed in to the studio (the programs' list)."""
    page = browser.new_context(viewport=viewport).new_page()  # type: ignore[attr-defined]
    page.goto(f"{base}/admin")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_the_tv_board_updates_live_and_celebrates(site: tuple[str, Game], browser: object) -> None:
    from playwright.sync_api import expect

    base, game = site
    tv = game.link(kind="tv", tv={"boards": ["xp-all"], "top": 5})
    page = browser.new_page(viewport=TV)  # type: ignore[attr-defined]
    page.goto(local(tv["url"], base))
    expect(page.locator(".board .row.leader .name")).to_have_text("Dana Scully")
    shot(page, "tv-before")
    # Bob's fifth deal wins him Top Closer (Bronze), and enough XP to lead the board
    game.post(*[event(f"b-more-{i}", participant="rep-9", data={"amount": 900_000}) for i in range(4)])
    banner = page.locator("#celebration")
    expect(banner).to_be_visible(timeout=2_000)
    expect(banner).to_contain_text("Bob Marley")
    expect(page.locator("#moments")).to_contain_text("Bob Marley won Top Closer — Bronze")
    expect(page.locator(".board .row.leader .name")).to_have_text("Bob Marley ▲1", timeout=3_000)  # he climbed
    shot(page, "tv-celebration")
    page.close()


def test_a_participant_redeems_and_sees_the_balance_change(site: tuple[str, Game], browser: object) -> None:
    from playwright.sync_api import expect

    base, game = site
    for viewport, name in ((PHONE, "phone"), (TV, "desktop")):
        page = browser.new_page(viewport=viewport)  # type: ignore[attr-defined]
        page.goto(local(game.dana["url"], base))
        expect(page.get_by_role("heading", level=1)).to_have_text("Hi Dana Scully")
        shot(page, f"home-{name}")
        page.close()
    page = browser.new_page(viewport=PHONE)  # type: ignore[attr-defined]
    page.goto(local(game.dana["url"], base))
    page.get_by_role("link", name="Store", exact=True).click()
    expect(page.locator(".balance")).to_have_text("700")
    page.get_by_role("link", name="Redeem $25 gift card").click()
    expect(page.get_by_role("heading", name="Redeem $25 gift card?")).to_be_visible()
    shot(page, "store-confirm")
    page.get_by_role("button", name="Yes, redeem it").click()
    expect(page.locator(".balance")).to_have_text("200")
    expect(page.get_by_role("status")).to_contain_text("Redeemed: $25 gift card")
    expect(page.locator("#history ~ ul")).to_contain_text("on its way")
    shot(page, "store-redeemed")
    page.close()


def test_an_admin_breaks_a_document_sees_the_error_at_its_line_fixes_and_applies_it(
    site: tuple[str, Game], browser: object
) -> None:
    from playwright.sync_api import expect

    base, game = site
    page = signed_in(browser, base, TV)
    page.get_by_role("link", name="acme-sales").click()
    editor = page.get_by_label("The document (YAML or JSON), checked as you type")
    document = editor.input_value()
    line = next(i for i, text in enumerate(document.splitlines(), 1) if "per: day" in text)
    editor.fill(document.replace("per: day", "per: fortnight", 1))
    errors = page.locator("#errors")
    expect(errors).to_contain_text(f"Line {line}: rules[0].cap.per", timeout=2_000)
    expect(page.locator("#diff")).to_contain_text("+    per: fortnight")
    shot(page, "admin-error-at-line")
    editor.fill(document.replace("per: day", "per: week", 1))
    expect(errors).to_have_text("No errors.", timeout=2_000)
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_have_text("Applied: version 2 is in force.")
    shot(page, "admin-applied")
    page.context.close()
    assert game.client.get("/api/v1/programs/acme-sales", headers=game.admin).json()["version"] == 2


def test_axe_finds_no_serious_or_critical_violation_on_any_page(site: tuple[str, Game], browser: object) -> None:
    """Each page where it is looked at: the TV and the studio on a big screen, a participant's pages on a phone."""
    from axe_playwright_python.sync_playwright import Axe

    base, game = site
    axe = Axe()
    store = re.sub(r"/me\?", "/store?", game.dana["url"])
    hook = {"url": "https://hooks.example.com/x", "events": ["badge.awarded", "level.changed"]}
    webhook = game.client.post("/api/v1/programs/acme-sales/webhooks", json=hook, headers=game.admin).json()["id"]
    game.post(*[event(f"b-more-{i}", participant="rep-9", data={"amount": 900_000}) for i in range(4)])
    phone = {
        "me": game.dana["url"],
        "store": store,
        "store-confirm": store + "&confirm=gift-card-25",
        "rules": re.sub(r"/me\?", "/rules?", game.dana["url"]),
    }
    screen = {
        "tv": game.tv["url"],
        "admin-sign-in": f"{base}/admin",
        "sign in": "",
        "admin-programs": f"{base}/admin",
        "admin-program": f"{base}/admin/p/acme-sales",
        "admin-participants": f"{base}/admin/p/acme-sales/participants",
        "admin-events": f"{base}/admin/p/acme-sales/events",
        "admin-event": f"{base}/admin/p/acme-sales/events/d-1",
        "admin-teams": f"{base}/admin/p/acme-sales/teams",
        "admin-team": f"{base}/admin/p/acme-sales/teams/east",
        "admin-webhooks": f"{base}/admin/p/acme-sales/webhooks",
        "admin-deliveries": f"{base}/admin/p/acme-sales/webhooks/{webhook}",
        "admin-audit": f"{base}/admin/p/acme-sales/audit",
        "admin-insights": f"{base}/admin/p/acme-sales/insights",
        "admin-insights-fairness": f"{base}/admin/p/acme-sales/insights?view=fairness",
    }
    found = {}
    for viewport, urls in ((PHONE, phone), (TV, screen)):
        page = browser.new_context(viewport=viewport).new_page()  # type: ignore[attr-defined]
        for name, url in urls.items():
            if name == "sign in":
                page.get_by_label("Admin key").fill(ADMIN_KEY)
                page.get_by_role("button", name="Sign in").click()
                continue
            page.goto(local(url, base))
            violations = axe.run(page).response["violations"]
            found[name] = [
                f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
                for v in violations
                if v["impact"] in ("serious", "critical")
            ]
        page.context.close()
    assert len(found) == 18 and {name: v for name, v in found.items() if v} == {}


def test_a_missing_deal_reported_by_a_participant_and_resolved_by_the_admin(
    site: tuple[str, Game], browser: object
) -> None:
    from playwright.sync_api import expect

    base, game = site
    rep = browser.new_page(viewport=PHONE)  # type: ignore[attr-defined]
    rep.goto(local(game.dana["url"], base))
    rep.get_by_label("Tell us what").fill("I closed D-91 on 20 Nov")
    rep.get_by_role("button", name="Open a case").click()
    expect(rep.get_by_role("status")).to_contain_text("your case is open")
    admin = signed_in(browser, base, TV)
    admin.get_by_role("link", name="acme-sales").click()
    admin.get_by_label("Reply").fill("Found D-91, added")
    admin.get_by_label("Adjustment (optional)").fill("120")
    admin.get_by_label("Currency").select_option("coins")
    admin.get_by_role("button", name="Resolve").click()
    expect(admin.get_by_role("status")).to_have_text("Case 1 resolved.")
    admin.context.close()
    rep.reload()
    expect(rep.locator("#missing ~ ul, #missing ~ h3 + ul").first).to_contain_text("Found D-91, added")
    expect(rep.get_by_text("+120 Coins added to your balance")).to_be_visible()
    expect(rep.get_by_text("820 Coins", exact=False).first).to_be_visible()
    shot(rep, "case-resolved")
    rep.close()


def test_the_studio_teams_webhooks_audit_and_tier_pages(site: tuple[str, Game], browser: object) -> None:
    """An admin opens a team, subscribes a webhook and reads its delivery log, holds a customer in a tier by
    hand, erases a participant, and finds each change in the audit log under their key."""
    from playwright.sync_api import expect

    base, game = site
    brewhouse = (ROOT / "examples" / "brewhouse-rewards.yaml").read_text()
    loyalty = "/api/v1/programs/brewhouse-rewards"
    game.client.put(loyalty, content=brewhouse, headers={**game.admin, "Content-Type": "application/yaml"})
    game.client.put(f"{loyalty}/participants/cust-1", json={"name": "Ann Lee"}, headers=game.admin)
    for viewport, size in ((TV, "desktop"), (PHONE, "phone")):
        page = signed_in(browser, base, viewport)
        page.goto(f"{base}/admin/p/acme-sales")
        page.get_by_role("link", name="Teams").click()
        page.get_by_role("link", name="east").click()
        expect(page.get_by_role("heading", level=2)).to_have_text("1 member")
        expect(page.locator("main ul.plain")).to_contain_text("Dana Scully")
        shot(page, f"admin-team-{size}")
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("URL (http:// or https://)").fill(f"https://hooks.example.com/{size}")
        page.get_by_label("Format").select_option("slack")
        page.get_by_label("badge.awarded").check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("status")).to_contain_text(f"Subscribed https://hooks.example.com/{size}")
        expect(page.locator("#webhook-secret")).to_contain_text("whsec_")
        shot(page, f"admin-webhooks-{size}")
        page.context.close()
    game.post(*[event(f"b-more-{i}", participant="rep-9", data={"amount": 900_000}) for i in range(4)])
    page = signed_in(browser, base, TV)
    page.goto(f"{base}/admin/p/acme-sales/webhooks")
    page.get_by_role("link", name="Delivery log of webhook 1").click()
    expect(page.locator("tbody")).to_contain_text("badge.awarded")
    expect(page.locator("tbody")).to_contain_text("not tried yet")
    shot(page, "admin-deliveries")
    page.goto(f"{base}/admin/p/acme-sales/webhooks")
    page.get_by_role("button", name="Delete webhook 2").click()
    expect(page.get_by_role("status")).to_have_text("Webhook 2 deleted.")
    page.goto(f"{base}/admin/p/brewhouse-rewards/participants")
    page.get_by_text("Tier of Ann Lee by hand").click()
    page.get_by_label("Tier", exact=True).select_option("Gold")
    page.get_by_label("Why").last.fill("VIP guest")
    page.get_by_role("button", name="Set the tier").click()
    expect(page.get_by_role("status")).to_have_text("cust-1 is held in Gold by hand.")
    page.get_by_role("link", name="Audit log").click()
    newest = page.get_by_role("row").nth(1)  # under the header row
    expect(newest).to_have_accessible_name(re.compile(r"bootstrap-admin tier\.override participant cust-1; tier Gold"))
    page.goto(f"{base}/admin/p/acme-sales/participants?q=rep-9")
    page.get_by_text("Erase Bob Marley").click()
    page.get_by_label("Type rep-9 to confirm").fill("rep-9")
    shot(page, "admin-erase-confirm")
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_role("status")).to_contain_text("rep-9 erased: pseudonymised as erased-")
    page.goto(f"{base}/admin/p/acme-sales/audit")
    expect(newest).to_have_accessible_name(re.compile(r"bootstrap-admin participant\.erase participant erased-"))
    expect(page.get_by_role("row").nth(2)).to_have_accessible_name(
        re.compile(r"bootstrap-admin webhook\.delete id 2; url https://")
    )
    shot(page, "admin-audit-desktop")
    page.set_viewport_size(PHONE)
    shot(page, "admin-audit-phone")
    page.context.close()


def test_the_tv_board_shows_the_change_since_yesterday_and_the_movement(
    site: tuple[str, Game], browser: object
) -> None:
    """Four days of a race kept by the board-history job; the TV shows each row's change since yesterday and
    the board's movement beside it (below it on a phone)."""
    from playwright.sync_api import expect

    from levelup.leaderboards import history

    base, game = site
    runtime = game.client.app.state.runtime  # type: ignore[attr-defined]
    names = {"rep-1": "Ada Lovelace", "rep-2": "Grace Hopper", "rep-3": "Alan Turing", "rep-4": "Edsger Dijkstra"}
    for rep, name in names.items():
        game.client.put(f"/api/v1/programs/acme-sales/participants/{rep}", json={"name": name}, headers=game.admin)
    day = dt.timedelta(days=1)
    for ago, deals in ((3, {"rep-1": 200_000, "rep-2": 50_000}), (2, {"rep-3": 400_000}), (1, {"rep-2": 600_000})):
        game.post(*[event(f"{rep}-{ago}", participant=rep, data={"amount": amount}) for rep, amount in deals.items()])
        history.record(runtime, now=dt.datetime.now(dt.UTC) - ago * day)
    game.post(event("rep-4-0", participant="rep-4", data={"amount": 2_000_000}), event("rep-1-0", participant="rep-1"))
    tv = game.link(kind="tv", tv={"boards": ["xp-all"], "top": 6})
    for viewport, size in ((TV, "desktop"), (PHONE, "phone")):
        page = browser.new_page(viewport=viewport)  # type: ignore[attr-defined]
        page.goto(local(tv["url"], base))
        expect(page.locator(".board .row.leader .since")).to_have_text("new")
        expect(page.get_by_label("down 1 since yesterday").first).to_be_visible()
        expect(page.locator("figure.movement figcaption")).to_contain_text("Ranks at the end of each day since")
        shot(page, f"tv-movement-{size}")
        page.close()


def test_an_admin_reads_the_insight_of_the_last_weeks(site: tuple[str, Game], browser: object) -> None:
    """The insight page opens on engagement, computed when asked, with its chart (two weeks of play); each
    analysis is a link. (The second size finds what the first computed: it says when, and computes again.)"""
    from playwright.sync_api import expect

    base, game = site
    game.post(event("d-early", occurred_at="2026-11-10T10:00:00Z", data={"amount": 5_000, "deal_id": "E-1"}))
    for viewport, size in ((TV, "desktop"), (PHONE, "phone")):
        page = signed_in(browser, base, viewport)
        page.goto(f"{base}/admin/p/acme-sales")
        page.get_by_role("link", name="Insight").click()
        expect(page.locator("main")).to_contain_text(
            "Not computed for this window yet" if size == "desktop" else "UTC by bootstrap-admin"
        )
        page.get_by_role("button", name="Compute").click()
        expect(page.get_by_role("status")).to_have_text("Engagement computed.")
        expect(page.get_by_role("heading", level=2)).to_contain_text("2 participants were active")
        expect(page.locator("figure.chart svg")).to_be_visible()
        shot(page, f"admin-insights-{size}")
        page.get_by_role("link", name="Fairness").click()
        page.get_by_role("button", name="Compute").click()
        expect(page.get_by_role("heading", level=2)).to_contain_text("the revenue in 2026-11")
        shot(page, f"admin-insights-fairness-{size}")
        page.context.close()
