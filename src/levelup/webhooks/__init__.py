"""Webhooks out (docs/api.md, "Webhooks"): subscriptions, the transactional outbox, the delivery worker.

``service`` keeps subscriptions and their delivery log; ``outbox`` writes notifications in the
transaction of their effect; ``delivery`` claims and sends them, signed; ``formats`` turns one into
a Slack or Microsoft Teams message.
"""
