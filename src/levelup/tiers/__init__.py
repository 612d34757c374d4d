"""Tiers: status earned over a window of a metric, with a demotion policy and admin overrides."""
