"""The background jobs (closing, expiry, tier review, referral payment) and the one way to run them."""
