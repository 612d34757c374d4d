"""Signed links to the web pages (SPEC §10): a TV board, or one participant's home."""
