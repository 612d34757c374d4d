"""Rewards: the catalog and redemptions."""
