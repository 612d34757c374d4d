"""What a subscription is sent: the notification's JSON, or a plain sentence for a chat channel.

``format: slack`` posts Slack's incoming-webhook message (``{"text": …}``); ``format: teams`` posts a
Microsoft Teams message with one Adaptive Card (what Teams' incoming webhooks and Workflows take).
Sentences name things as the program document does (badge, challenge, reward and currency names)
and people by their display name when known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from levelup.programs.document import ProgramDocument


@dataclass(frozen=True)
class Names:
    """Display names for one program: participants by external id, and the program's document."""

    document: ProgramDocument | None = None
    participants: Mapping[str, str] = field(default_factory=dict)

    def person(self, external_id: str | None) -> str:
        return self.participants.get(external_id or "", external_id or "everyone")

    def _named(self, items: Any, key: str) -> str:
        found = next((x for x in items if x.key == key), None)
        return (found.name if found is not None else None) or key

    def badge(self, key: str) -> str:
        return self._named(self.document.badges if self.document else [], key)

    def challenge(self, key: str) -> str:
        return self._named(self.document.challenges if self.document else [], key)

    def reward(self, key: str) -> str:
        return self._named(self.document.rewards if self.document else [], key)

    def streak(self, key: str) -> str:
        return self._named(self.document.streaks if self.document else [], key)

    def amount(self, amount: int, currency: str) -> str:
        return f"{amount:,} {self._named(self.document.currencies if self.document else [], currency)}"


def _awards(awards: list[dict[str, Any]], names: Names) -> str:
    return " and ".join(names.amount(a["amount"], a["currency"]) for a in awards)


def _grade(data: dict[str, Any], names: Names) -> str:
    badge = names.badge(data["badge"])
    return badge if data.get("grade") in (None, badge) else f"{badge} — {data['grade']}"


def _level(who: str, d: dict[str, Any], _n: Names) -> str:
    return f"{who} reached level {d['to']}" if d.get("up") else f"{who} is back to level {d['to']}"


def _tier(who: str, d: dict[str, Any], _n: Names) -> str:
    if d.get("to") is None:
        return f"{who} left the {d['from']} tier"
    return f"{who} moved {'up' if d.get('up') else 'down'} to the {d['to']} tier"


def _prize(who: str, d: dict[str, Any], n: Names) -> str:
    place = f" (rank {d['rank']})" if d.get("rank") else ""
    return f"{who} won {_awards(d['awards'], n)} in {n.challenge(d['challenge'])} {d['period']}{place}"


def _expiring(who: str, d: dict[str, Any], n: Names) -> str:
    first = d["first_expires_at"][:10]
    return f"{n.amount(d['amount'], d['currency'])} of {who} expire within {d['within_days']} days (from {first})"


_SENTENCES: dict[str, Callable[[str, dict[str, Any], Names], str]] = {
    "award.granted": lambda who, d, n: f"{who} just earned {_awards(d['awards'], n)}",
    "badge.awarded": lambda who, d, n: f"{who} just earned {_grade(d, n)}",
    "badge.revoked": lambda who, d, n: f"{who} no longer holds {_grade(d, n)}",
    "level.changed": _level,
    "tier.changed": _tier,
    "streak.extended": lambda who, d, n: f"{who}'s {n.streak(d['streak'])} streak reached {d['length']}",
    "challenge.completed": lambda who, d, n: f"{who} completed {n.challenge(d['challenge'])}",
    "prize.paid": _prize,
    "redemption.created": lambda who, d, n: f"{who} redeemed {n.reward(d['reward'])}",
    "redemption.fulfilled": lambda who, d, n: f"{n.reward(d['reward'])} was delivered to {who}",
    "redemption.cancelled": lambda who, d, n: f"{who}'s redemption of {n.reward(d['reward'])} was cancelled",
    "kudos.given": lambda who, d, n: (
        f"{n.person(d['from'])} gave {who} {n.amount(d['amount'], d['currency'])}: “{d['message']}”"
    ),
    "points.expiring": _expiring,
}


def sentence(body: dict[str, Any], names: Names) -> str:
    """The notification in one plain sentence, e.g. "Dana just earned Top Closer — Gold"."""
    return _SENTENCES[body["type"]](names.person(body["participant"]), body["data"], names)


def render(format: str, body: dict[str, Any], names: Names) -> bytes:
    """The bytes POSTed (and signed) for a subscription of ``format``."""
    if format == "slack":
        return orjson.dumps({"text": sentence(body, names)})
    if format == "teams":
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "TextBlock", "text": sentence(body, names), "wrap": True}],
        }
        attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        return orjson.dumps({"type": "message", "attachments": [attachment]})
    return orjson.dumps(body)
