"""Insight: a draft scored over past events (simulation), and analytics over what is stored (SPEC §12)."""
