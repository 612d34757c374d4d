"""Refer-a-friend: referrals recorded from events, paid by a job once they qualify."""
