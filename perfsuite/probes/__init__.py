"""Probes of the system under test: its connection pool (and, later, resources)."""
