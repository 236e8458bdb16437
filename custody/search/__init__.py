"""Search and cross-reference over the derived index."""
