"""Stored runs: versioned baseline files (and, later, history)."""
