"""The audit log: who changed what by hand (program versions, adjustments, overrides, launches)."""
