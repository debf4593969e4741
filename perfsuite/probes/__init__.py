"""Probes of the system under test: its connection pool (``pool``: MySQL's
processlist and thread counters; ``metrics``: the service's own pool gauges),
its resources (``resources``: CPU and memory of its process tree or its
container), its database's work (``statements``: performance_schema's
statement digests and the server's counters) and any Prometheus endpoint
(``scrape``: series once a second, for PromQL expectations).
"""
