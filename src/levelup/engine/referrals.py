"""Refer-a-friend, decided in the stream: what one event does to the friend's referral.

1. ``referral.made`` (the program's ``referrals.event``) for the friend, naming the referrer:
   the first one stands; a friend who already made a qualifying event is an existing
   customer, so the referral is ``void``.
2. The friend's qualifying event (``qualify``) makes a waiting referral ``qualified``,
   payable ``hold`` after that event's time.
3. A full reversal of the qualifying event puts the referral back to ``waiting``.

Paying is time-driven (the referrals job), not decided here. Self-referral is refused
with the event by :func:`check`.
"""

from __future__ import annotations

import datetime as dt

from levelup.engine.model import WHOLE, Event, ParticipantState, ReferralChange, ReferralState
from levelup.errors import FieldError, Invalid
from levelup.programs.document import Referrals, duration_seconds


def check(referrals: Referrals | None, event: Event) -> None:
    """A referral names someone else: referring oneself is refused with the event (422), changing nothing."""
    if referrals is None or event.type != referrals.event or event.reverses:
        return
    path = f"data.{referrals.referrer}"
    referrer = event.data.get(referrals.referrer)
    if not isinstance(referrer, str) or not referrer or len(referrer) > 200:
        raise Invalid("a referral names its referrer", errors=[FieldError(path, "the referrer's participant id")])
    if referrer == event.participant:
        raise Invalid("self-referral", errors=[FieldError(path, "a participant cannot refer themselves")])


def progress(referrals: Referrals, state: ParticipantState, event: Event, refunded: int) -> ReferralChange | None:
    """The change this event makes to the friend's referral (``refunded``: the reversed event's share
    refunded once this event applies; WHOLE for a full reversal)."""
    held = state.referral
    if event.type == referrals.event and not event.reverses:
        if held is not None:
            return None  # the first referral stands
        status = "void" if state.bought else "waiting"
        return ReferralChange(ReferralState(status, str(event.data[referrals.referrer]), event.id), made=True)
    if held is None:
        return None
    if event.type == referrals.qualify and not event.reverses:
        if held.status != "waiting":
            return None
        pay_after = event.occurred_at + dt.timedelta(seconds=duration_seconds(referrals.hold))
        return ReferralChange(held._replace(status="qualified", qualifying_event=event.id, pay_after=pay_after))
    if event.reverses and refunded == WHOLE and held.status == "qualified" and held.qualifying_event == event.reverses:
        return ReferralChange(held._replace(status="waiting", qualifying_event=None, pay_after=None))
    return None
