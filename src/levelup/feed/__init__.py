"""The live feed: what happened in a program, in order, for the SSE stream."""
