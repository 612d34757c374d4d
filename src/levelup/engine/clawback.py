"""The event type of an admin's clawback (levelup.events.clawback): a reversal whose ledger entries the
engine explains as "clawback of event …" instead of "reversal of event …", so the ledger says why."""

CLAWBACK = "levelup.clawback"
REASON = "clawback"  # what any clawback (of an event or of a kudos) says it is; a kudos clawback's ledger kind
