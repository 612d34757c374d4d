"""Participants' "something is missing" cases and the admin's answers."""
