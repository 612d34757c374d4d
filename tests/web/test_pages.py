"""The pages each link opens, and what they refuse: another program, another kind of link, a revoked or
expired link, a form without its CSRF token; a participant link shows that participant only."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from levelup.cases import service as cases
from levelup.leaderboards import history
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.web.charts import board_movement, liability_by_month
from levelup.web.render import csrf_token
from tests.conftest import event
from tests.web.conftest import KUDOS, Game, P


def at(url: str, page: str) -> str:
    """The same link's URL for another page (``/me`` → ``/store``)."""
    return re.sub(r"/(me|tv)\?", f"/{page}?", url)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_tv_shows_the_top_n_of_each_board_and_the_moments(game: Game) -> None:
    top1 = game.link(kind="tv", tv={"top": 1, "boards": ["xp-all"]})
    shown = text(game.client.get(top1["url"]).text)
    assert "Dana Scully" in shown and "Bob Marley" not in shown  # the top only: never the bottom
    assert "Dana Scully won Top Closer — Bronze" in shown and "Dana Scully reached Closer" in shown
    page = game.client.get(game.tv["url"])
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert all(f'data-board="{b}"' in page.text for b in ("revenue-month", "team-revenue", "xp-all"))  # team too
    assert "rank 1 of 2" in page.text  # read out by a screen reader
    assert game.client.get(at(game.tv["url"], "tv/boards")).status_code == 200


def marks(page: str) -> list[tuple[str, str, str]]:
    """Each TV row's participant, rank and change since yesterday."""
    found = re.findall(r'data-id="([^"]+)" data-rank="(\d+)">.*?<span class="since">(.*?)</span>\s*<span', page, re.S)
    return [(who, rank, text(mark).strip()) for who, rank, mark in found]


def keep_board_history(runtime: Runtime, days_ago: int) -> int:
    """What the board-history job writes, as if it ran ``days_ago`` days ago (on today's standings)."""
    return history.record(runtime, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago))


def test_the_tv_shows_the_change_since_yesterday_and_the_movement(game: Game, runtime: Runtime) -> None:
    tv = game.link(kind="tv", tv={"boards": ["xp-all"]})
    first = text(game.client.get(tv["url"]).text)
    assert "▲" not in first and "since yesterday" not in first and "<figure" not in first  # nothing kept yet
    keep_board_history(runtime, 2)
    with runtime.db.read() as connection:  # the all-time board's top (the calendar boards' depend on today's date)
        b = t.board_ranks.c
        kept = connection.execute(select(b.rank).where(b.board == "xp-all").order_by(b.rank)).scalars().all()
    assert kept == [1, 2]
    game.post(event("b-2", participant="rep-9", data={"amount": 900_000}))  # Bob takes the lead
    keep_board_history(runtime, 1)
    game.post(event("c-1", participant="rep-3", data={"amount": 1_000}))  # a newcomer, last
    page = game.client.get(tv["url"]).text
    assert marks(page) == [("rep-9", "1", "="), ("rep-17", "2", "="), ("rep-3", "3", "new")]
    assert 'aria-label="new in the top since yesterday"' in page and "Ranks at the end of each day since" in page
    assert "Bob Marley: #2, #1, #1 now; Dana Scully: #1, #2, #2 now" in text(page)
    assert page.count("<svg") == 1 and "#3" in page  # one board, drawn down to the newcomer's rank
    keep_board_history(runtime, 0)  # today's rows are replaced at each tick, yesterday's stay
    game.post(event("c-2", participant="rep-3", data={"amount": 9_000_000}))
    assert marks(game.client.get(tv["url"]).text) == [
        ("rep-3", "1", "new"),
        ("rep-9", "2", "▼1"),
        ("rep-17", "3", "▼1"),
    ]


def test_a_participant_home_explains_every_line_and_shows_no_one_else(game: Game) -> None:
    game.post(event("b-2", participant="rep-9", data={"amount": 777_000, "deal_id": "SECRET-B"}))
    home = game.client.get(game.dana["url"])
    assert home.status_code == 200
    shown = text(home.text)
    assert "Hi Dana Scully" in shown and "Level: Closer" in shown and "to Legend" in shown
    assert "rule deal-won v1, event d-4" in shown and "five-a-week" in shown and "Top Closer — Bronze" in shown
    assert "SECRET-B" not in shown and "rep-9" not in shown and "event b-" not in shown
    # Bob only as the neighbour above on a board (WEB.md: the top and one's own neighbourhood)
    assert shown.count("Bob") == 1 and "Xp all all time : 2 of 2 with 6,500 — 1,770 behind Bob Marley (1)" in shown
    for page in ("store", "rules"):  # the link opens its own pages, each of them Dana's alone
        assert "Bob Marley" not in game.client.get(at(game.dana["url"], page)).text
    bob = text(game.client.get(game.bob["url"]).text)
    assert "Hi Bob Marley" in bob and "event d-4" not in bob and "Dana" not in bob  # the one below is never named
    assert "Xp all all time : 1 of 2 with 8,270 — you lead!" in bob


def test_links_open_their_own_program_and_kind_only(game: Game, acme_text: str) -> None:
    other = acme_text.replace("program: acme-sales", "program: other-game") + KUDOS
    headers = {**game.admin, "Content-Type": "application/yaml"}
    assert game.client.put("/api/v1/programs/other-game", content=other, headers=headers).status_code == 201
    token = game.dana["token"]
    assert game.client.get(f"/p/other-game/me?token={token}").status_code == 404  # a foreign program
    assert game.client.get(f"/p/no-such-program/me?token={token}").status_code == 404
    assert game.client.get(f"/p/acme-sales/tv?token={token}").status_code == 403  # a participant link is no TV
    assert game.client.get(f"/p/acme-sales/me?token={game.tv['token']}").status_code == 403
    assert game.client.get("/p/acme-sales/me").status_code == 404
    refused = game.client.get(f"/p/acme-sales/me?token={token[:-2]}xx")
    assert refused.status_code == 404 and "text/html" in refused.headers["content-type"]


def test_revoked_and_expired_links_open_nothing(game: Game, runtime: Runtime) -> None:
    assert game.client.delete(f"{P}/links/{game.bob['id']}", headers=game.admin).status_code == 204
    assert game.client.get(game.bob["url"]).status_code == 404
    assert game.client.get(at(game.bob["url"], "store")).status_code == 404
    with runtime.db.write() as connection:  # a link past its expiry
        connection.exec_driver_sql(
            "UPDATE links SET expires_at = created_at WHERE id = ?"
            if connection.dialect.name == "sqlite"
            else "UPDATE links SET expires_at = created_at WHERE id = %s",
            (game.tv["id"],),
        )
    assert game.client.get(game.tv["url"]).status_code == 404


def test_forms_need_their_csrf_token(game: Game) -> None:
    url = at(game.dana["url"], "me/kudos")
    body = {"to": "rep-9", "amount": "5", "message": "great demo"}
    assert game.client.post(url, data=body).status_code == 403
    assert game.client.post(url, data=body | {"csrf": csrf_token(game.bob["token"])}).status_code == 403  # Bob's
    assert game.client.post(at(game.dana["url"], "me/cases"), data={"message": "x"}).status_code == 403
    sent = game.client.post(url, data=body | {"csrf": csrf_token(game.dana["token"])}, follow_redirects=False)
    assert sent.status_code == 303 and "notice=" in sent.headers["location"]
    bob = text(game.client.get(game.bob["url"]).text)
    assert "kudos from rep-17: great demo" in bob
    over = game.client.post(url, data=body | {"amount": "46", "csrf": csrf_token(game.dana["token"])})
    assert "Not done: rep-17 has 45 of 50 kudos left this week" in text(over.text)
    nobody = game.client.post(url, data=body | {"to": "rep-404", "csrf": csrf_token(game.dana["token"])})
    assert "Not done: no participant" in text(nobody.text)
    assert "You can give 45 more Coins this week" in text(game.client.get(game.dana["url"]).text)


def test_a_redemption_confirms_then_debits_and_shows_in_the_history(game: Game) -> None:
    game.client.post(
        f"{P}/adjustments",
        json={"participant": "rep-17", "currency": "coins", "amount": 100, "note": "t"},
        headers=game.admin,
    )  # 800 coins
    store = game.client.get(at(game.dana["url"], "store"))
    assert "800" in text(store.text) and "Redeem $25 gift card" in store.text
    confirm = game.client.get(at(game.dana["url"], "store") + "&confirm=gift-card-25")
    assert "you will have 300 Coins left" in text(confirm.text)
    key = re.search(r'name="key" value="([0-9a-f]+)"', confirm.text)
    assert key is not None
    body = {"reward": "gift-card-25", "key": key.group(1), "csrf": csrf_token(game.dana["token"])}
    done = game.client.post(at(game.dana["url"], "store/redeem"), data=body)
    after = text(done.text)
    assert done.status_code == 200 and "Redeemed: $25 gift card" in after and "You have 300 Coins" in after
    assert "Not yet: at most 1 per month" in after  # why it is not redeemable again
    assert "Your redemptions $25 gift card — on its way" in after
    again = game.client.post(at(game.dana["url"], "store/redeem"), data=body)  # the same form twice: one redemption
    assert again.status_code == 200 and "You have 300 Coins" in text(again.text)


def test_something_missing_opens_a_case_the_admin_resolves_with_an_adjustment(game: Game, runtime: Runtime) -> None:
    home = game.client.get(game.dana["url"]).text
    line = re.search(r'name="entry" value="(\d+)"', home)
    assert line is not None
    body = {"message": "I closed D-91 on 20 Nov", "entry": line.group(1), "csrf": csrf_token(game.dana["token"])}
    assert game.client.post(at(game.dana["url"], "me/cases"), data=body).status_code == 200
    assert "open I closed D-91 on 20 Nov" in text(game.client.get(game.dana["url"]).text)
    with runtime.db.write() as connection:
        record = programs.find(connection, "acme-sales")
        [case] = cases.listed(connection, record)
        assert case["participant"] == "rep-17"
        cases.answer(
            connection,
            record,
            runtime.programs.compiled(connection, record),
            case["id"],
            status="resolved",
            reply="Found it, sorry!",
            actor="test",
            currency="coins",
            amount=120,
        )
    shown = text(game.client.get(game.dana["url"]).text)
    assert "resolved I closed D-91 on 20 Nov Answer: Found it, sorry! +120 Coins added" in shown
    assert "820 Coins" in shown and "case 1: Found it, sorry!" in shown  # the ledger line says why
    bob_line = body | {"entry": "1", "csrf": csrf_token(game.bob["token"])}  # a line of Dana's, from Bob's link
    refused = game.client.post(at(game.bob["url"], "me/cases"), data=bob_line)
    assert "Not done: no ledger line 1 of yours" in text(refused.text) and "Found it" not in text(refused.text)


@pytest.mark.parametrize("page", ["me", "store", "rules"])
def test_pages_have_landmarks_labels_and_local_assets_only(game: Game, page: str) -> None:
    html = game.client.get(at(game.dana["url"], page)).text
    assert '<html lang="en">' in html and '<main id="main"' in html and "<h1>" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from another host
    ids = set(re.findall(r'<(?:input|textarea|select)[^>]*\bid="([^"]+)"', html))
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    assert ids <= labelled, ids - labelled
    assert game.client.get("/static/web/web.css").status_code == 200


def test_charts_are_drawn_on_the_server_with_a_text_alternative(game: Game) -> None:
    home = game.client.get(game.dana["url"]).text
    assert home.count("<svg") == 1 and "<script" not in home.split("<svg")[1].split("</svg>")[0]
    assert "Points over time, day by day" in home and "XP now 6,500" in text(home)
    report = {
        "currencies": [
            {"currency": "coins", "redeemed_by_month": {"2026-10": 500, "2026-11": 1000}, "expired_by_month": {}}
        ]
    }
    drawn = liability_by_month(report)
    assert drawn is not None and drawn.count("<path") >= 2 and "Oct 2026" in drawn
    assert liability_by_month({"currencies": [report["currencies"][0] | {"redeemed_by_month": {}}]}) is None


def test_a_board_movement_is_drawn_once_per_picture() -> None:
    """A TV redraws its boards at each event: an unchanged picture is not drawn again, a changed one is."""
    days = [dt.date(2026, 12, 1), dt.date(2026, 12, 2)]
    ranks = {"Dana": {days[1]: 1, days[0]: 2}, "Bob": {days[0]: 1, days[1]: 2}}
    first = board_movement(ranks, days, 3)
    assert first is not None and first.count("<path") >= 2 and "2 Dec" in first
    same = {"Dana": dict(reversed(ranks["Dana"].items())), "Bob": dict(ranks["Bob"])}  # equal, built anew
    assert board_movement(same, list(days), 3) is first  # the drawing kept, not drawn again
    moved = board_movement({"Dana": {days[0]: 2, days[1]: 2}, "Bob": ranks["Bob"]}, days, 3)
    assert moved is not None and moved != first
    assert board_movement({"Bob": ranks["Bob"], "Dana": ranks["Dana"]}, days, 3) != first  # other colours
    assert board_movement(ranks, days[:1], 3) is None


def test_the_rules_page_says_how_to_play_in_words_linkable_by_anchor(game: Game) -> None:
    page = game.client.get(at(game.dana["url"], "rules")).text
    shown = text(page)
    assert 'id="rule-call-logged"' in page and 'id="badge-top-closer"' in page and 'id="challenge-five-a-week"' in page
    assert "5 XP per call of a minute or more, up to 20 calls a day" in shown and "at most 20 a day" in shown
    assert "Bronze: " in shown and "Levels climb on the lifetime xp earned" in shown


def test_a_participant_who_opted_out_keeps_their_place_without_their_name(game: Game) -> None:
    """Opting out of public boards (PUT …/visibility, or the home's own form): the TV keeps each row and rank,
    names no one there, nor in its moments; Dana's home names the one above only if they did not opt out."""
    game.post(event("b-2", participant="rep-9", data={"amount": 777_000, "deal_id": "B-2"}))  # Bob leads
    for rep in ("rep-17", "rep-9"):
        made = game.client.put(f"{P}/participants/{rep}/visibility", json={"hidden": True}, headers=game.admin)
        assert made.status_code == 200, made.text
    shown = text(game.client.get(game.tv["url"]).text)
    assert "Dana Scully" not in shown and "Bob Marley" not in shown and "rep-17" not in shown
    assert "Hidden participant won Top Closer — Bronze" in shown  # the moment, without the name
    assert "Hidden participant" in text(game.client.get(at(game.tv["url"], "tv/boards")).text)
    home = text(game.client.get(game.dana["url"]).text)
    assert "Hi Dana Scully" in home and "1,770 behind Hidden participant (1)" in home and "Bob" not in home
    bob = game.client.get(game.bob["url"]).text
    assert "show your place without your name" in text(bob)
    shown_again = {"hidden": "false", "csrf": csrf_token(game.bob["token"])}
    assert game.client.post(at(game.bob["url"], "me/visibility"), data={"hidden": "false"}).status_code == 403
    answer = text(game.client.post(at(game.bob["url"], "me/visibility"), data=shown_again).text)
    assert "Public screens show your name again" in answer and "Hide my name on public screens" in answer
    assert "1,770 behind Bob Marley (1)" in text(game.client.get(game.dana["url"]).text)


def test_a_participant_held_out_of_a_rule_is_not_shown_it(game: Game, acme_text: str) -> None:
    """A holdout experiment's members are shown nothing of what they are held out of: Bob's rules page
    leaves out deal-won (the draw of salt s4 holds rep-9 out at 0.5, not rep-17); Dana's shows it."""
    experiment = "experiments: [{key: ab, holdout: 0.5, salt: s4, applies_to: {rule: deal-won}, metric: revenue}]\n"
    headers = {**game.admin, "Content-Type": "application/yaml"}
    assert game.client.put(P, content=acme_text + KUDOS + experiment, headers=headers).status_code == 200
    assert 'id="rule-deal-won"' not in game.client.get(at(game.bob["url"], "rules")).text
    assert 'id="rule-deal-won"' in game.client.get(at(game.dana["url"], "rules")).text
    assert "deal-won" in {w["rule"] for w in game.client.get(f"{P}/rules", headers=game.admin).json()["ways_to_earn"]}


def test_the_home_shows_where_one_stands_on_a_normalised_board(game: Game) -> None:
    """quota-month (revenue ÷ quota) is kept ranked like a plain board, so the home shows it too."""
    now = dt.datetime.now(dt.UTC).isoformat()
    game.post(
        event("m-1", data={"amount": 100_000, "deal_id": "M-1"}, occurred_at=now),
        event("m-2", participant="rep-9", data={"amount": 5_000, "deal_id": "M-2"}, occurred_at=now),
    )  # this month: Dana 100,000 of 1,000,000 (0.1), Bob 5,000 of 10,000 (0.5)
    for rep, quota in (("rep-17", 1_000_000), ("rep-9", 10_000)):
        made = game.client.put(f"{P}/participants/{rep}", json={"attributes": {"quota": quota}}, headers=game.admin)
        assert made.status_code == 200, made.text
    shown = text(game.client.get(game.dana["url"]).text)
    assert "Quota month" in shown and "2 of 2" in shown and "behind Bob Marley (1)" in shown
