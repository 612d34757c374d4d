"""The event type of an admin's clawback (levelup.events.clawback): a reversal whose ledger entries the
engine explains as "clawback of event …" instead of "reversal of event …", so the ledger says why."""

CLAWBACK = "levelup.clawback"
