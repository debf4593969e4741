"""``PERFSUITE_MYSQL_URL=mysql://... python -m examples.order_service --port 8000``.

The URL is read from the environment (``--mysql-url`` also takes it, but an
argument is visible to every local user in the process list).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn

from examples.order_service.app import create_app
from examples.order_service.faults import parse_faults


def main() -> None:
    """Parse the arguments, read the fault switches, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="order_service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mysql-url", default=os.environ.get("PERFSUITE_MYSQL_URL"))
    parser.add_argument("--pool-size", type=int, default=int(os.environ.get("POOL_SIZE", "10")))
    # Connections the pool opens at start and keeps (HikariCP's minimumIdle).
    parser.add_argument("--pool-min-size", type=int, default=os.environ.get("POOL_MIN_SIZE"))
    # Order queries from a replica (perfsuite sets PERFSUITE_MYSQL_REPLICA_URL with replicas).
    parser.add_argument(
        "--reads-from",
        choices=("primary", "replica"),
        default=os.environ.get("ORDER_SERVICE_READS", "primary"),
    )
    args = parser.parse_args()
    if not args.mysql_url:
        parser.error("--mysql-url (or PERFSUITE_MYSQL_URL) is required")
    replica_url = os.environ.get("PERFSUITE_MYSQL_REPLICA_URL")
    if args.reads_from == "replica" and not replica_url:
        parser.error("--reads-from replica needs PERFSUITE_MYSQL_REPLICA_URL")
    try:
        faults = parse_faults(os.environ.get("ORDER_SERVICE_FAULT"))
    except ValueError as exc:
        sys.exit(f"order_service: {exc}")
    print(
        f"order_service: faults={faults}, pool_size={args.pool_size}, "
        f"reads from the {args.reads_from}",
        flush=True,
    )
    app = create_app(
        args.mysql_url,
        pool_size=args.pool_size,
        faults=faults,
        pool_min_size=None if args.pool_min_size is None else int(args.pool_min_size),
        # Its traffic as a perfsuite capture (for replay), when asked.
        record=Path(os.environ["ORDER_SERVICE_RECORD"])
        if os.environ.get("ORDER_SERVICE_RECORD")
        else None,
        replica_url=replica_url if args.reads_from == "replica" else None,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
