"""Insight: a draft scored over past events (simulation), and analytics over what is stored (docs/insights.md)."""
