"""Repo-wide test set-up only: the plugin tests itself with pytester."""

pytest_plugins = ["pytester"]
