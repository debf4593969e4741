"""The seed story's order service (see app.py)."""
