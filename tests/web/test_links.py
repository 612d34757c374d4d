"""Signed links: made by an admin (the token shown once, only its hash stored), listed, revoked, expiring."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from levelup.cli.main import app
from levelup.errors import Forbidden, NotFound
from levelup.links import service as links
from levelup.programs import service as programs
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES

P = "/api/v1/programs/acme-sales"


def make(client: TestClient, admin: dict[str, str], **body: object) -> dict:
    response = client.post(f"{P}/links", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_link_is_shown_once_listed_without_its_secret_and_revoked(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    acme.put(f"{P}/participants/rep-17", json={"name": "Dana"}, headers=admin)
    tv = make(acme, admin, kind="tv", tv={"top": 3, "boards": ["revenue-month"]}, note="sales floor")
    me = make(acme, admin, kind="participant", participant="rep-17", expires_in=3600)
    assert tv["url"].endswith(f"/p/acme-sales/tv?token={tv['token']}") and "/p/acme-sales/me?token=" in me["url"]
    assert tv["options"] == {"top": 3, "boards": ["revenue-month"], "rotate": 15} and me["participant"] == "rep-17"
    listed = acme.get(f"{P}/links", headers=admin).json()["links"]
    assert {link["id"] for link in listed} == {tv["id"], me["id"]}
    assert all("token" not in link and "url" not in link for link in listed)
    with runtime.db.read() as connection:  # only a hash is kept
        stored = connection.exec_driver_sql("SELECT secret_hash FROM links").scalars().all()
    assert tv["token"].split(".")[1] not in stored and len(stored) == 2
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        assert links.open_link(connection, record, me["token"], "participant").participant == "rep-17"
        with pytest.raises(Forbidden):  # a participant link is not a tv link
            links.open_link(connection, record, me["token"], "tv")
    assert acme.delete(f"{P}/links/{me['id']}", headers=admin).status_code == 204
    with runtime.db.read() as connection, pytest.raises(NotFound):
        links.open_link(connection, programs.find(connection, "acme-sales"), me["token"], "participant")
    assert acme.delete(f"{P}/links/{me['id']}", headers=admin).status_code == 404  # revoked once
    assert [link["revoked_at"] is not None for link in acme.get(f"{P}/links", headers=admin).json()["links"]].count(
        True
    ) == 1


def test_a_link_expires_and_a_wrong_secret_opens_nothing(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    tv = make(acme, admin, kind="tv", expires_in=60)
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
        assert links.open_link(connection, record, tv["token"], "tv").id == tv["id"]
        for token, when in ((tv["token"], later), (tv["id"] + ".not-the-secret", None), ("", None), ("x.y", None)):
            with pytest.raises(NotFound):
                links.open_link(connection, record, token, "tv", now=when)


def test_links_refuse_what_makes_no_sense(acme: TestClient, admin: dict[str, str]) -> None:
    def refused(**body: object) -> tuple[int, list[str]]:
        response = acme.post(f"{P}/links", json=body, headers=admin)
        return response.status_code, [e["path"] for e in response.json().get("errors", [])]

    assert refused(kind="participant") == (422, ["participant"])
    assert refused(kind="tv", participant="rep-17") == (422, ["participant"])
    assert refused(kind="participant", participant="nobody")[0] == 404
    assert refused(kind="tv", tv={"boards": ["no-such-board"]}) == (422, ["boards"])
    assert refused(kind="tv", expires_in=10) == (422, ["expires_in"])
    reader = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    assert (
        acme.post(f"{P}/links", json={"kind": "tv"}, headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    )


def test_levelup_links_create_prints_a_url_that_opens(db_url: str, runtime: Runtime) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(app, ["program", "apply", str(EXAMPLES / "acme-sales.yaml"), "--database", db_url]).exit_code == 0
    )
    result = runner.invoke(
        app, ["links", "create", "acme-sales", "--top", "5", "--base-url", "http://tv:8000", "--database", db_url]
    )
    assert result.exit_code == 0, result.output
    url = result.output.strip().splitlines()[-1]
    assert url.startswith("http://tv:8000/p/acme-sales/tv?token=")
    with runtime.db.read() as connection:
        opened = links.open_link(connection, programs.find(connection, "acme-sales"), url.split("token=")[1], "tv")
    assert opened.options.top == 5
    refused = runner.invoke(
        app, ["links", "create", "acme-sales", "--kind", "participant", "--participant", "nobody", "--database", db_url]
    )
    assert refused.exit_code == 1 and "nobody" in refused.output
