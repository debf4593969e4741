"""Example systems under test for perfsuite's own perf suite."""
