"""Stored runs, each file with a schema version: baselines (``baselines``, per test),
run records (``runs``, per session, with the load encoding of ``records``), and
the history database (``history``, SQLite or any SQLAlchemy URL, fed by
``ingest`` from run records and pytest-benchmark's saved runs).
"""
