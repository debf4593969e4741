"""A primary and its replicas (real MariaDB processes): start, stop, errors in the
replica's own words, and the lag measured against known delays."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from perfsuite.config import MySQLConfig, ReplicationConfig, load_config
from perfsuite.errors import ConfigError, MySQLError
from perfsuite.probes.replica_lag import LagSeries, ReplicaLagWatch
from perfsuite.provision.databases import copied_database
from perfsuite.provision.mysql_process import DATADIR_PREFIX, mysql_process
from perfsuite.provision.replication import behind, replica_status, wait_running
from perfsuite.provision.server import MySQLServer

from .conftest import descendants_with
from .relay import SlowRelay

# Each test starts two or three servers, and the lag is timed: nothing heavy beside.
pytestmark = pytest.mark.usefixtures("quiet")


def _datadirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{DATADIR_PREFIX}*"))


@pytest.fixture
def pair() -> Iterator[MySQLServer]:
    """A primary with one replica."""
    config = MySQLConfig(database="shop", replication=ReplicationConfig(replicas=1))
    with mysql_process(config) as primary:
        yield primary


def _replicated(replica: MySQLServer, sql: str, want: object, timeout: float = 10) -> None:
    """Wait until the replica answers `sql` with `want`; until the table's creation
    has been applied there, the query fails, which is waiting too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got: object = replica.query(sql)
        except MySQLError as error:
            got = error
        if got == want:
            return
        assert time.monotonic() < deadline, (got, want)
        time.sleep(0.02)


def test_a_primary_and_two_replicas_start_replicate_and_stop_with_nothing_left() -> None:
    before = _datadirs()
    config = MySQLConfig(database="shop", replication=ReplicationConfig(replicas=2))
    with mysql_process(config) as primary:
        made = _datadirs() - before
        assert len(made) == 3
        pids = [pid for folder in made for pid in descendants_with(str(folder))]
        assert len(pids) >= 3
        first, second = primary.replicas
        assert len({primary.port, first.port, second.port}) == 3
        assert primary.query("SELECT @@log_bin, @@binlog_format", admin=True) == [(1, "ROW")]
        for replica in primary.replicas:
            status = replica_status(replica)
            assert status is not None
            assert status.running, status
            # The application's account is the same there, and cannot write by mistake.
            assert replica.query("SELECT CURRENT_USER()") == [("perfsuite@127.0.0.1",)]
        assert replica_status(primary) is None
        primary.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        primary.execute("INSERT INTO t VALUES (1, 'paid')")
        for replica in primary.replicas:
            _replicated(replica, "SELECT v FROM t", [("paid",)])
            with pytest.raises(MySQLError, match="read-only"):
                replica.execute("INSERT INTO t VALUES (2, 'no')")
    assert not any(folder.exists() for folder in made)
    assert not any(psutil.pid_exists(pid) for pid in pids)


def test_a_replica_that_cannot_log_in_is_reported_in_its_own_words(
    pair: MySQLServer,
) -> None:
    (replica,) = pair.replicas
    replica.execute("STOP SLAVE", admin=True)
    replica.execute("CHANGE MASTER TO MASTER_PASSWORD = 'wrong'", admin=True)
    replica.execute("START SLAVE", admin=True)
    with pytest.raises(MySQLError) as caught:
        wait_running(replica, 1, timeout=20)
    text = str(caught.value)
    assert f"replica 1 (127.0.0.1:{replica.port}) does not replicate" in text
    assert "Access denied for user 'perfsuite_repl'" in text, text


def test_a_stopped_applier_is_reported_with_its_error(pair: MySQLServer) -> None:
    """A row the replica has and the primary inserts again: the SQL thread stops
    on the duplicate, and the lag's series carries the replica's error text."""
    (replica,) = pair.replicas
    pair.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    _replicated(replica, "SHOW TABLES LIKE 't'", [("t",)])
    replica.execute("INSERT INTO shop.t VALUES (7)", admin=True)  # admin: past read-only
    watch = ReplicaLagWatch(pair, pair.replicas, interval=0.05)
    watch.start()
    time.sleep(0.5)
    pair.execute("INSERT INTO t VALUES (7)")
    time.sleep(1.0)
    (series,) = watch.stop()
    assert "SQL thread No" in series.error, series.error
    assert "Duplicate entry '7'" in series.error, series.error
    # Heartbeats after the failed insert never arrived: counted, as lower bounds.
    assert series.pending >= 10
    assert series.applied[:5].all()


def _lags_ms(series: LagSeries) -> np.ndarray:
    return series.lag_us[series.applied] / 1000.0


def test_the_lag_of_a_link_one_second_slow_is_one_second(pair: MySQLServer) -> None:
    """The replica reads the primary's log through a relay that delays it by 1 s:
    each heartbeat's lag is that second, with no interval's error."""
    (replica,) = pair.replicas
    relay = SlowRelay(("127.0.0.1", pair.port), 1.0, slow="down")
    try:
        replica.execute("STOP SLAVE", admin=True)
        replica.execute(f"CHANGE MASTER TO MASTER_PORT = {relay.port}", admin=True)
        replica.execute("START SLAVE", admin=True)
        wait_running(replica, 1, timeout=20)
        watch = ReplicaLagWatch(pair, [replica], interval=0.1)
        watch.start()
        time.sleep(4.0)
        (series,) = watch.stop()
    finally:
        relay.close()
    lags = _lags_ms(series)
    assert len(lags) >= 25, series
    p50, p99 = np.percentile(lags, [50, 99])
    print(f"1 s link: lag {np.percentile(lags, [0, 50, 99, 100])} ms, {series.pending} pending")
    assert 1000 <= p50 <= 1100, np.percentile(lags, [0, 50, 99, 100])
    assert p99 <= 1100, np.percentile(lags, [0, 50, 99, 100])
    # The last second's heartbeats had not crossed the relay when the load ended.
    assert 5 <= series.pending <= 12, series.pending


def _master_delay_apply_times(written_s: np.ndarray, delay: int, reach: float) -> np.ndarray:
    """When MariaDB applies each heartbeat under MASTER_DELAY (whole seconds): the
    event's timestamp is whole seconds; the applier reaches it ``reach`` seconds
    after it was written (or when done with the one before) and sleeps ``when +
    delay - now`` in whole seconds of its clock, counted from then."""
    done = 0.0
    out = []
    for w in written_s:
        at = max(w + reach, done)
        end = math.floor(w) + delay
        if end > math.floor(at):
            at += end - math.floor(at)
        done = at
        out.append(at)
    return np.array(out)


def test_master_delay_is_measured_as_the_server_applies_it() -> None:
    """MASTER_DELAY = 1: MariaDB delays by whole seconds of the events' timestamps,
    so heartbeats 100 ms apart wait from 0.3 s to 1.3 s, by a rule that is known.
    The measured lag of each is that rule's, within a few milliseconds."""
    config = MySQLConfig(database="shop", replication=ReplicationConfig(replicas=1, delay=1))
    with mysql_process(config) as primary:
        watch = ReplicaLagWatch(primary, primary.replicas, interval=0.1)
        watch.start()
        time.sleep(5.0)
        (series,) = watch.stop()
    lags = _lags_ms(series)
    written = series.written_us[series.applied] / 1e6
    # The time it takes the event to reach the applier (a few ms) is fitted: near a
    # second's end it decides which second the applier counts from.
    errors = [
        lags - (_master_delay_apply_times(written, 1, reach / 1000) - written) * 1000
        for reach in range(0, 30)
    ]
    error = min(errors, key=lambda e: float(np.median(np.abs(e))))
    assert len(lags) >= 30
    assert np.percentile(np.abs(error), 90) < 20, np.percentile(error, [0, 10, 50, 90, 100])
    p50, p99 = np.percentile(lags, [50, 99])
    off = np.percentile(error, [0, 50, 90, 100])
    print(f"MASTER_DELAY 1 s: lag p50 {p50:.0f} ms, p99 {p99:.0f} ms; off the rule {off} ms")


def test_no_delay_and_light_load_lags_a_few_milliseconds(pair: MySQLServer) -> None:
    watch = ReplicaLagWatch(pair, pair.replicas, interval=0.05)
    watch.start()
    for i in range(200):
        pair.execute(f"CREATE TABLE IF NOT EXISTS t{i % 5} (id INT)")
        pair.execute(f"INSERT INTO t{i % 5} VALUES ({i})")
    time.sleep(1.0)
    (series,) = watch.stop()
    lags = _lags_ms(series)
    assert series.pending <= 1  # at most the one written as the load ended
    print(f"no delay: lag {np.percentile(lags, [50, 99, 100])} ms, {series.clock}")
    assert np.percentile(lags, 99) < 20, np.percentile(lags, [50, 99, 100])
    assert series.clock is not None
    assert series.clock.uncertainty_ns < 5_000_000


def test_replication_settings_are_checked(tmp_path: Path) -> None:
    def load(table: dict[str, object]) -> ReplicationConfig:
        return load_config(tmp_path, table).mysql.replication

    got = load(
        {"mysql": "process", "replicas": 2, "replication": {"delay": "1s", "heartbeat": "50ms"}}
    )
    assert got == ReplicationConfig(replicas=2, delay=1, heartbeat=0.05)
    url = "mysql://u:p@127.0.0.1:3306/db"
    bad: list[tuple[dict[str, object], str]] = [
        ({"replicas": 1, "replication": {"delay": "1.5s"}}, "whole seconds"),
        ({"mysql": url, "replicas": 1}, "name the existing ones"),
        ({"replicas": 9}, r"replicas: expected an integer in \[0, 8\]"),
        ({"replication": {"urls": [url]}}, "need mysql = 'mysql://"),
        ({"replication": {"heartbeat": "1ms"}}, "expected 10ms to 10s"),
        ({"replication": {"lag": "yes"}}, "expected true or false"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            load(table)


def test_the_replicas_of_a_given_server_are_checked_and_watched(pair: MySQLServer) -> None:
    """``mysql = "mysql://..."`` with ``replication.urls``: each named replica must be
    replicating; the lag is measured on it as on a replica perfsuite started."""
    from urllib.parse import quote

    from perfsuite.provision import ProviderChoice, open_mysql

    (replica,) = pair.replicas

    def url(server: MySQLServer) -> str:
        user, password = quote(server.admin_user), quote(server.admin_password, safe="")
        return f"mysql://{user}:{password}@127.0.0.1:{server.port}/shop"

    choice = ProviderChoice(provider="url", reason="test")
    config = MySQLConfig(
        provider="url", url=url(pair), replication=ReplicationConfig(urls=(url(replica),))
    )
    with open_mysql(config, choice) as given:
        (seen,) = given.replicas
        assert seen.port == replica.port
        watch = ReplicaLagWatch(given, given.replicas, interval=0.05)
        watch.start()
        time.sleep(1.0)
        (series,) = watch.stop()
        assert series.applied.sum() >= 15
    # The primary named as its own replica: not a replica, said so.
    config = MySQLConfig(
        provider="url", url=url(pair), replication=ReplicationConfig(urls=(url(pair),))
    )
    with pytest.raises(MySQLError, match="not configured as a replica"), open_mysql(config, choice):
        pass


def test_an_account_that_may_not_log_statements_is_told_before_the_load(
    pair: MySQLServer,
) -> None:
    """A primary given by URL whose account cannot set ``binlog_format``: the lag
    watch refuses to start, naming the right it needs (not a load with no heartbeats)."""
    from dataclasses import replace

    confined = replace(pair, admin_user=pair.user, admin_password=pair.password)
    watch = ReplicaLagWatch(confined, pair.replicas, interval=0.05)
    with pytest.raises(MySQLError, match=r"may not log the heartbeats as statements.*BINLOG ADMIN"):
        watch.start()


def test_a_copy_of_the_database_is_on_the_replicas_when_handed_over(
    pair: MySQLServer,
) -> None:
    """A/B's copy of the database for the base build: the replicas hold it when it is
    handed over (no wait after), its replicas name it, and it is dropped there too."""
    pair.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    pair.execute("INSERT INTO t VALUES (1, 'paid')")
    with copied_database(pair, "shop_ab_base") as copy:
        (replica,) = copy.replicas
        assert (replica.database, replica.port) == ("shop_ab_base", pair.replicas[0].port)
        assert replica.query("SELECT v FROM t") == [("paid",)]
        assert pair.replicas[0].database == "shop"
    _replicated(pair.replicas[0], "SHOW DATABASES LIKE 'shop_ab_base'", [])


def test_behind_waits_for_a_delayed_replica_and_names_a_stopped_one(pair: MySQLServer) -> None:
    """``behind``: until each replica has applied what the primary logged (past its
    MASTER_DELAY); a replica whose applier stopped is named with its status."""
    (replica,) = pair.replicas
    for sql in ("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 2", "START SLAVE"):
        replica.execute(sql, admin=True)
    wait_running(replica, 1, timeout=10)
    pair.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    began = time.monotonic()
    assert behind(pair, pair.replicas, timeout=10) == []
    waited = time.monotonic() - began
    assert replica.query("SHOW TABLES LIKE 't'") == [("t",)]
    assert 1.0 <= waited < 12, waited  # MASTER_DELAY: a second short at most (the README)
    replica.execute("STOP SLAVE SQL_THREAD", admin=True)
    pair.execute("INSERT INTO t VALUES (1)")
    (late,) = behind(pair, pair.replicas, timeout=1)
    assert late.startswith(f"replica 1 (127.0.0.1:{replica.port}): ")
    assert "SQL thread No" in late
