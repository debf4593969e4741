"""The container path for real: testcontainers on a Docker engine, locally built images.

These tests need the engine ``.ci/run`` starts (``container/engine.sh``) and
the images ``container/images.sh`` builds; they find it in
``$PERFSUITE_TEST_DOCKER_HOST``. Without it they are skipped (a developer's
machine), never in CI, where the variable is set and a missing engine fails.

Each test holds a lock of its own so that, under ``pytest -n 2``, no other
container test runs meanwhile: "nothing left behind" compares everything the
engine holds before and after.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, run_example_suite, signal_and_wait, start_in_own_group

IMAGES = ("perfsuite/mariadb:bookworm", "perfsuite/order-service:latest")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """A Docker client of the test engine (skip when none is configured)."""
    host = os.environ.get("PERFSUITE_TEST_DOCKER_HOST")
    if not host:
        pytest.skip("no Docker engine for the container tests: .ci/run starts one")
    import docker

    client = docker.DockerClient(base_url=host)
    client.ping()  # configured but not answering: fail, do not skip
    for image in IMAGES:
        client.images.get(image)  # container/images.sh builds them
    yield client
    client.close()


@pytest.fixture
def alone(engine: Any) -> Iterator[Any]:
    """The engine, for this test only, and what it holds before the test."""
    with open(Path(tempfile.gettempdir()) / "perfsuite-container-tests.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        before = _holdings(engine)
        yield engine
        assert _holdings(engine) == before, "containers, networks or volumes were left behind"


def _holdings(client: Any) -> dict[str, set[str]]:
    return {
        "containers": {c.id for c in client.containers.list(all=True)},
        "networks": {n.id for n in client.networks.list()},
        "volumes": {v.id for v in client.volumes.list()},
    }


def _env() -> dict[str, str]:
    return {
        "DOCKER_HOST": os.environ["PERFSUITE_TEST_DOCKER_HOST"],
        "TESTCONTAINERS_RYUK_DISABLED": "true",  # its image cannot be pulled here
    }


def _suite(
    reports: Path, *args: str, select: str, fault: str = ""
) -> subprocess.CompletedProcess[str]:
    return run_example_suite(
        "--perf-mysql=container", *args, select=select, reports=reports, fault=fault, env=_env()
    )


def test_example_suite_runs_through_containers(alone: Any, tmp_path: Path) -> None:
    result = _suite(tmp_path, select="order_query or payment_callback")
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "mysql=container (chosen explicitly), service=container" in out
    assert "2 passed" in out
    (record,) = (tmp_path / "runs").glob("*.json")
    for test in json.loads(record.read_text())["tests"]:
        assert test["pool"]["ok"], test["pool"]["report"]
        # The pool gauges came from the service's /metrics through its published port.
        assert any(v is not None for v in test["pool"]["series"]["in_use"])
        # Resources from the Docker stats API: the container's CPU and memory.
        (res,) = test["resources"]
        assert max(res["cpu_percent"]) > 0
        assert min(res["rss_mib"]) > 1
        # The container's server has statement digests (options given as its command),
        # and the container's CPU time from the Docker stats API.
        (cost,) = test["cost"]
        assert cost["per_request"]["queries_per_request"] >= 1
        assert cost["per_request"]["cpu_ms_per_request"] > 0
    assert "no database cost per request" not in out + result.stderr


def test_a_leak_is_caught_through_containers(alone: Any, tmp_path: Path) -> None:
    # ORDER_SERVICE_FAULT reaches the container through [tool.perfsuite.service] pass_env.
    result = _suite(tmp_path, select="payment_callback", fault="leak")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "still in use (never released: a leak)" in out  # the service's gauges
    assert "connections of 'perfsuite' after the load:" in out  # the database's processlist
    assert " Sleep " in out


def test_a_missing_image_names_what_builds_it(alone: Any, tmp_path: Path) -> None:
    result = _suite(tmp_path, "--perf-mysql-image=perfsuite/no-such-image:1", select="order_query")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "the image perfsuite/no-such-image:1 is not on the Docker engine" in out
    assert "container/images.sh" in out
    assert "Traceback" not in out


def test_a_container_that_exits_early_shows_its_logs(alone: Any, tmp_path: Path) -> None:
    # The service's image as "MySQL": it exits at once, asking for a MySQL URL
    # (started without server options as its command: it takes none).
    image = "--perf-mysql-image=perfsuite/order-service:latest"
    result = _suite(tmp_path / "plain", image, "--perf-no-cost", select="order_query")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "the MySQL container perfsuite/order-service:latest did not start" in out
    assert "it exited with code 2, its last log lines:" in out
    assert "--mysql-url (or PERFSUITE_MYSQL_URL) is required" in out
    # With them (the default), the image cannot even start: said as such.
    result = _suite(tmp_path / "options", image, select="order_query")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "does not take server options as its command (--performance-schema=ON" in out
    assert "--perf-no-cost" in out


def test_auto_falls_back_to_the_process_provider_when_the_image_is_missing(
    alone: Any, tmp_path: Path
) -> None:
    result = run_example_suite(
        "--perf-mysql=auto",
        "--perf-mysql-image=perfsuite/no-such-image:1",
        select="order_query",
        reports=tmp_path,
        env=_env(),
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    assert "mysql=container (auto: Docker " in out  # the engine answered
    assert "falling back to a local MySQL process: the image perfsuite/no-such-image:1" in out


@pytest.mark.exclusive  # the time Ctrl-C takes
def _loading(engine: Any, reports: Path) -> subprocess.Popen[str]:
    """The example's long mixed test through containers, once its load is under way."""
    env = {**os.environ, **_env(), "ORDER_SERVICE_FAULT": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = start_in_own_group(
        [sys.executable, "-m", "pytest", "tests/perf", "-m", "perf", "-k", "mixed",
         "--perf-mysql=container", "--perf-profile=full", "-p", "no:cacheprovider",
         f"--perf-reports-dir={reports}"],
        cwd=REPO, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and _answered(engine) < 200:
        time.sleep(0.5)  # until the load is under way (after start-up and the seed)
    assert _answered(engine) >= 200, "the load never started"
    return proc


def test_sigint_leaves_no_container_behind(alone: Any, tmp_path: Path) -> None:
    proc = _loading(alone, tmp_path)
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert seconds < 10.0, output[-3000:]  # two containers to remove, vfs copies included
    assert "test_mixed was interrupted; what its load measured until then" in output
    assert "INTERRUPTED: interrupted by SIGINT after" in output


def test_sigint_while_mysql_starts_leaves_no_container_behind(alone: Any, tmp_path: Path) -> None:
    """Ctrl-C while testcontainers waits for the server to be ready: the container
    runs already, and goes with the run (not left to the next run's sweep)."""
    env = {**os.environ, **_env(), "ORDER_SERVICE_FAULT": ""}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = start_in_own_group(
        [sys.executable, "-m", "pytest", "tests/perf", "-m", "perf", "-k", "order_query",
         "--perf-mysql=container", "-p", "no:cacheprovider", f"--perf-reports-dir={tmp_path}"],
        cwd=REPO, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not alone.containers.list(
        filters={"ancestor": IMAGES[0]}
    ):
        time.sleep(0.1)
    assert alone.containers.list(filters={"ancestor": IMAGES[0]}), "MySQL never started"
    output, seconds = signal_and_wait(proc, signal.SIGINT, group=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert "ready for connections" not in output  # it was still starting
    assert seconds < 10.0, output[-3000:]


def test_kill_9_leaves_containers_that_the_next_run_removes(alone: Any, tmp_path: Path) -> None:
    # Ryuk is disabled here (its image cannot be pulled), as on many CI machines:
    # after a kill -9 only the next run can remove what this one started.
    proc = _loading(alone, tmp_path / "killed")
    labelled = alone.containers.list(all=True, filters={"label": "perfsuite.owner"})
    assert len(labelled) == 2  # MySQL and the service, with the run's owner token
    assert alone.networks.list(filters={"label": "perfsuite.owner"})
    proc.kill()  # pytest alone, as `kill -9 <pid>` or an OOM killer does
    proc.communicate(timeout=60)
    assert len(alone.containers.list(all=True, filters={"label": "perfsuite.owner"})) == 2
    # The next run removes them first; `alone` then
    # checks that the engine holds what it held before this test.
    result = _suite(tmp_path / "next", select="order_query")
    assert result.returncode == 0, result.stdout[-3000:]


def _answered(engine: Any) -> float:
    """Requests the order service's container has answered (0 before it runs)."""
    import httpx

    for container in engine.containers.list():
        ports = container.ports.get("8000/tcp") or []
        if container.image.tags == [IMAGES[1]] and ports:
            try:
                text = httpx.get(f"http://127.0.0.1:{ports[0]['HostPort']}/metrics").text
            except httpx.HTTPError:
                return 0.0
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("order_service_requests_total{")
            )
    return 0.0


def _wait_logs(container: Any, text: str, count: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        logs = container.logs().decode("utf-8", errors="replace")
        if logs.count(text) >= count or container.status == "exited":
            return str(logs)
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not logged {count} times within {timeout} s")


@pytest.mark.usefixtures("quiet")  # the engine copies the image for each container (vfs): heavy
def test_mariadb_image_honours_the_official_mysql_contract(alone: Any, tmp_path: Path) -> None:
    import pymysql

    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "seed.sql").write_text("CREATE TABLE t (x INT); INSERT INTO t VALUES (7);")
    container = alone.containers.run(
        IMAGES[0],
        detach=True,
        environment={"MYSQL_ALLOW_EMPTY_PASSWORD": "yes", "MYSQL_DATABASE": "shop"},
        ports={"3306/tcp": ("127.0.0.1",)},
        volumes={str(tmp_path / "init"): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"}},
    )
    try:
        # A temporary server initialises the datadir, then the real one starts.
        logs = _wait_logs(container, ": ready for connections", 2)
        assert "running /docker-entrypoint-initdb.d/seed.sql" in logs
        container.reload()
        port = int(container.ports["3306/tcp"][0]["HostPort"])
        assert container.ports["3306/tcp"][0]["HostIp"] == "127.0.0.1"
        conn = pymysql.connect(
            host="127.0.0.1", port=port, user="root", password="", database="shop"
        )
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM t")
            assert cur.fetchall() == ((7,),)
        conn.close()
    finally:
        container.remove(force=True, v=True)

    refused = alone.containers.run(IMAGES[0], detach=True)  # no password option at all
    try:
        assert refused.wait(timeout=60)["StatusCode"] == 1
        assert "You need to specify one of MYSQL_ROOT_PASSWORD" in refused.logs().decode()
    finally:
        refused.remove(force=True, v=True)


# The example's order journey with its order queries read from the replica: the
# replication test of test_replication_example.py, with every part a container.
_REPLICA_TESTS = """
import json
import pytest
from perfsuite import Journey, Scenario, Step, json_field

def create(ctx):
    return ctx.post("/orders", json={"user_id": ctx.pick("user_id"),
                                     "items": [{"sku_id": ctx.pick("sku_id"), "quantity": 1}]})

def pay(user):
    body = {"order_id": user["order_id"], "payment_id": f"pay-{user['order_id']}",
            "amount_cents": user["amount"]}
    return user.post("/payments/callback", json=body)

def query(user):  # from the replica, which may not have the order yet
    return user.get(f"/orders/{user['order_id']}")

def unpaid(status, body):  # a stale read: the replica has not applied the payment
    return status == 404 or json.loads(body)["status"] != "paid"

ORDER = Journey(
    "order",
    Step(name="create", build=create, status={201},
         extract={"order_id": json_field("id"), "amount": json_field("total_cents")}),
    Step(name="pay", build=pay, status={200}),
    Step(name="query", build=query, status={200, 404}, stale=unpaid),
)

@pytest.mark.slo(replica_lag_p99="200ms")
def test_orders_reach_the_replica(perf_run, perf_phases, perf_seed, perf_mysql):
    (replica,) = perf_mysql.replicas
    assert (replica.provider, replica.internal_host) == ("container", "mysql-replica-1")
    data = {"user_id": [u[0] for u in perf_seed.users], "sku_id": [s[0] for s in perf_seed.skus]}
    perf_run(Scenario(ORDER, data=data, seed=3),
             [perf_phases.warmup(rate=10, duration="2s"),
              perf_phases.constant(rate=30, duration="6s")])
    # The seed's orders, and the load's so far, are in the replica's database.
    (primary_count,), = perf_mysql.query("SELECT COUNT(*) FROM orders")
    (count,), = replica.query("SELECT COUNT(*) FROM orders")
    assert 100 <= count <= primary_count, (count, primary_count)
"""


def test_replicas_run_as_containers_of_a_mariadb_image(alone: Any, tmp_path: Path) -> None:
    """``replicas = 1`` with ``mysql = "container"``: the primary and its replica are
    containers of the MariaDB image on the run's network, the service container reads
    orders from the replica by its network name, and the lag is measured and gated:
    the ``nokey`` fault fails ``replica_lag_p99``, the correct service passes it."""
    from examples.order_service.project import run_session, write_project
    from perfsuite.report.rows import stale_rows

    project = write_project(
        tmp_path / "project",
        _REPLICA_TESTS,
        top='replicas = 1\nmysql_image = "perfsuite/mariadb:bookworm"',
        toml="[tool.perfsuite.pool]\ncheck = false\n",
        users=200,
        skus=50,
        orders=100,
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'pass_env = ["ORDER_SERVICE_FAULT"]',
            f'pass_env = ["ORDER_SERVICE_FAULT", "ORDER_SERVICE_READS"]\nimage = "{IMAGES[1]}"',
        )
    )
    env = {**_env(), "ORDER_SERVICE_READS": "replica"}
    outcomes = {}
    for fault in ("", "nokey"):
        done, (test,) = run_session(project, "--perf-mysql=container", fault=fault, env=env)
        out = done.stdout
        assert "mysql=container (chosen explicitly), service=container" in out, out[-3000:]
        (lag,) = test["replica_lag"]
        (slo,) = [s for s in test["slo"] if s["metric"] == "replica_lag_p99"]
        (stale,) = stale_rows([test])
        print(f"fault {fault or 'none'}: {slo['text']}; {stale}; lag phases {lag['phases']}")
        outcomes[fault] = (test["outcome"], slo["passed"], stale.rate, out)
    outcome, passed, correct_stale, out = outcomes[""]
    assert (outcome, passed) == ("passed", True), out[-3000:]
    outcome, passed, stale_rate, out = outcomes["nokey"]
    assert (outcome, passed) == ("failed", False), out[-3000:]
    assert stale_rate > max(0.5, 2 * correct_stale), (stale_rate, correct_stale)


# MariaDB told to call itself MySQL 8.0.36 (its `version` option): no MySQL image
# can be pulled where perfsuite is tested, and the refusal reads only the version.
_LOOKALIKE = "perfsuite-test/mysql-lookalike:8.0.36"
_REFUSED = f"""
from perfsuite.config import MySQLConfig, ReplicationConfig
from perfsuite.errors import MySQLError
from perfsuite.provision.containers import docker_network, mysql_container

config = MySQLConfig(provider="container", image="{_LOOKALIKE}", database="shop",
                     replication=ReplicationConfig(replicas=1))
with docker_network() as network:
    try:
        with mysql_container(config, network):
            raise SystemExit("replicas of a MySQL image were started")
    except MySQLError as error:
        print(error)
"""


def test_replicas_of_a_mysql_image_are_refused_in_words_that_say_what_to_use(
    alone: Any,
) -> None:
    import io
    import tarfile

    base = alone.containers.create(IMAGES[0])
    try:
        cnf = b"[mariadbd]\nversion = 8.0.36\n"
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("99-lookalike.cnf")
            info.size = len(cnf)
            tar.addfile(info, io.BytesIO(cnf))
        base.put_archive("/etc/mysql/mariadb.conf.d", archive.getvalue())
        image = base.commit(*_LOOKALIKE.split(":"))
    finally:
        base.remove(force=True, v=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _REFUSED],
            env={**os.environ, **_env()},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
    finally:
        alone.images.remove(image.id, force=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert f"the container provider starts replicas of MariaDB images; {_LOOKALIKE} " in text
    assert "runs MySQL 8.0.36" in text, text
    assert "Use a MariaDB image" in text, text
    assert "mysql = 'process'" in text, text
