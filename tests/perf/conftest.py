"""The example perf suite's set-up, written as a user of perfsuite would.

MySQL and the order service come from perfsuite's fixtures (configured in
``[tool.perfsuite]`` of pyproject.toml); this file only seeds the data.
"""

from __future__ import annotations

import pytest

from examples.order_service.seed import Dataset, seed_database
from perfsuite import MySQLServer


@pytest.fixture(scope="session")
def perf_seed(perf_mysql: MySQLServer) -> Dataset:
    """Many users and SKUs, and some orders to pay and read: caches can't flatter us."""
    return seed_database(perf_mysql, users=10_000, skus=2_000, orders=5_000)
