"""Signed links to the web pages (docs/web.md): a TV board, or one participant's home."""
