"""A participant a holdout experiment keeps out of the whole program is shown nothing: their link opens no
page (the 404 of any dead link: the experiment is not told), and public screens mask them as they mask one
who opted out (their place kept, so nobody else moves). Those treated see everything as before."""

from __future__ import annotations

import itertools
from typing import Any

from levelup.engine.experiments import held_out
from levelup.links.service import NOTHING
from levelup.programs.document import Experiment
from tests.web.conftest import Game, P
from tests.web.test_pages import text


def splitting(held: str, treated: str) -> dict[str, Any]:
    """A whole-program experiment whose salt holds ``held`` out and not ``treated`` (found by trying salts)."""
    for n in itertools.count():
        body = {"key": "quiet", "holdout": 0.5, "applies_to": {"program": True}, "metric": "revenue", "salt": f"s{n}"}
        experiment = Experiment.model_validate(body)
        if held_out(experiment, held) and not held_out(experiment, treated):
            return body
    raise AssertionError("unreachable")


def test_a_participant_held_out_of_the_program_is_shown_nothing(game: Game) -> None:
    document = game.client.get(P, headers=game.admin).json()["document"]
    document["experiments"] = [splitting("rep-9", "rep-17")]
    applied = game.client.put(P, json=document, headers=game.admin)
    assert applied.status_code in (200, 201), applied.text
    bob = game.client.get(game.bob["url"])  # Bob scored before the experiment: on the boards, with XP
    assert bob.status_code == 404 and NOTHING in text(bob.text)
    for page in ("store", "rules"):
        assert game.client.get(game.bob["url"].replace("/me?", f"/{page}?")).status_code == 404
    dana = game.client.get(game.dana["url"])
    assert dana.status_code == 200 and "Dana Scully" in text(dana.text)
    kudos = {"from": "rep-17", "to": "rep-9", "amount": 5, "message": "thanks"}
    assert game.client.post(f"{P}/kudos", json=kudos, headers=game.admin).status_code == 201
    tv = text(game.client.get(game.tv["url"]).text)
    assert "Dana Scully" in tv and "Bob Marley" not in tv and "Hidden participant" in tv  # his place, no name
    assert "Dana Scully gave Hidden participant kudos" in tv  # the room's moments do not name him either
    api = game.client.get(f"{P}/leaderboards/xp-all", headers=game.admin).json()
    assert "rep-9" in [e["id"] for e in api["entries"]]  # an admin's read key still sees everyone
