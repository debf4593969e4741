"""The config layer: values parsed strictly, bad ones named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsuite.config import DEFAULT_PROFILES, load_config, parse_duration
from perfsuite.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5s", 1.5), (7, 7.0), ("250us", 0.00025)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, key="k") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "fast", "-1s", "10 parsecs", 0, True])
def test_bad_durations_name_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^my\.key: "):
        parse_duration(bad, key="my.key")


def test_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, {})
    assert config.profile.name == "ci"
    assert config.mysql.provider == "auto"
    assert config.mysql.image == "mysql:8.4"
    assert config.service is None
    assert set(config.profiles) == {"smoke", "ci", "full"}


def test_unknown_top_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'msyql' in \[tool.perfsuite\]"):
        load_config(tmp_path, {"msyql": "process"})


def test_unknown_service_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'comand' in \[tool.perfsuite.service\]"):
        load_config(tmp_path, {"service": {"comand": "x"}})


def test_service_kinds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a command, an image \(or both\), or a url"):
        load_config(tmp_path, {"service": {"url": "http://127.0.0.1:1", "image": "y"}})
    with pytest.raises(ConfigError, match=r"a command, an image \(or both\), or a url"):
        load_config(tmp_path, {"service": {"health": "/h"}})
    with pytest.raises(ConfigError, match="pass_env: expected a list of variable names"):
        load_config(tmp_path, {"service": {"image": "y", "pass_env": "FAULT"}})
    both = load_config(
        tmp_path, {"service": {"command": "x", "image": "y", "pass_env": ["FAULT"]}}
    ).service
    assert both is not None
    assert (both.kind, both.pass_env) == ("command", ("FAULT",))
    assert both.for_mysql("process").kind == "command"
    assert both.for_mysql("container").kind == "container"
    only_image = load_config(tmp_path, {"service": {"image": "y"}}).service
    assert only_image is not None
    assert only_image.for_mysql("process").kind == "container"  # refused later, with a reason


def test_service_command_string_is_split(tmp_path: Path) -> None:
    config = load_config(
        tmp_path, {"service": {"command": "app --port {port} 'a b'", "env": {"X": "1"}}}
    )
    assert config.service is not None
    assert config.service.command == ("app", "--port", "{port}", "a b")
    assert config.service.env == {"X": "1"}


def test_profiles_override_and_add(tmp_path: Path) -> None:
    config = load_config(
        tmp_path,
        {"profiles": {"ci": {"rate_scale": 0.25}, "soak": {"duration_scale": 6.0}}},
        profile="soak",
    )
    assert config.profiles["ci"].rate_scale == 0.25
    assert config.profiles["ci"].duration_scale == DEFAULT_PROFILES["ci"].duration_scale
    assert config.profile.name == "soak"
    assert config.profile.duration(600) == 3600


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nightly'"):
        load_config(tmp_path, {}, profile="nightly")


def test_bad_profile_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"profiles\.ci\]\.rate_scale: expected a number"):
        load_config(tmp_path, {"profiles": {"ci": {"rate_scale": "half"}}})
    with pytest.raises(ConfigError, match=r"profiles\.x\.rate_scale: must be > 0"):
        load_config(tmp_path, {"profiles": {"x": {"rate_scale": 0}}})


def test_mysql_choices(tmp_path: Path) -> None:
    url = "mysql://u:p@127.0.0.1:3307/db"
    config = load_config(tmp_path, {"mysql": url})
    assert (config.mysql.provider, config.mysql.url) == ("url", url)
    assert load_config(tmp_path, {"mysql": url}, mysql="process").mysql.provider == "process"
    with pytest.raises(ConfigError, match="expected auto, process, container"):
        load_config(tmp_path, {"mysql": "postgres"})


def test_missing_sql_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such SQL file"):
        load_config(tmp_path, {"sql": ["schema.sql"]})


def test_bad_port_and_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mysql_port: expected an integer in \[0, 65535\]"):
        load_config(tmp_path, {"mysql_port": 70000})
    with pytest.raises(ConfigError, match="not a plain database name"):
        load_config(tmp_path, {"database": "x; DROP"})


def test_profile_scaling() -> None:
    smoke = DEFAULT_PROFILES["smoke"]
    assert smoke.count(600_000) == 600
    assert smoke.rate(1000) == 100
    assert DEFAULT_PROFILES["full"].count(600_000) == 600_000


def test_client_limits(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"load": {"connect_timeout": "500ms", "max_body": 4096}})
    assert config.load.connect_timeout == 0.5
    assert config.load.max_body == 4096
    assert load_config(tmp_path, {}).load.connect_timeout == 5.0
    with pytest.raises(ConfigError, match=r"connect_timeout"):
        load_config(tmp_path, {"load": {"connect_timeout": "soon"}})
    with pytest.raises(ConfigError, match=r"max_body"):
        load_config(tmp_path, {"load": {"max_body": -1}})


def test_tls_settings(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(tmp_path, {"load": {"ca_bundle": "ca.pem", "verify": False}})
    assert config.load.ca_bundle == str(tmp_path / "ca.pem")
    assert config.load.verify is False
    with pytest.raises(ConfigError, match=r"ca_bundle: no such file"):
        load_config(tmp_path, {"load": {"ca_bundle": "missing.pem"}})
    with pytest.raises(ConfigError, match=r"verify: expected true or false"):
        load_config(tmp_path, {"load": {"verify": "no"}})


def test_metrics_section(tmp_path: Path) -> None:
    default = load_config(tmp_path, {}).metrics
    assert (default.service, default.database, default.interval, default.max_series) == (
        True,
        True,
        1.0,
        2000,
    )
    assert not default.targets
    assert default.prometheus_url is None
    assert (default.every_test, default.record_series) == (True, 200)
    metrics = load_config(
        tmp_path,
        {
            "metrics": {
                "path": "/actuator/prometheus",
                "targets": {"mysqld_exporter": "http://127.0.0.1:9104/metrics"},
                "interval": "500ms",
                "max_series": 300,
                "keep": ["^order_", "^process_"],
                "drop": ["_created$"],
                "pin": ["order_service_db_pool_in_use"],
                "prometheus_url": "http://127.0.0.1:9090/",
                "database": False,
                "every_test": False,
                "record_series": 0,
            }
        },
    ).metrics
    assert metrics.path == "/actuator/prometheus"
    assert metrics.targets == {"mysqld_exporter": "http://127.0.0.1:9104/metrics"}
    assert (metrics.interval, metrics.max_series, metrics.database) == (0.5, 300, False)
    assert metrics.keep == ("^order_", "^process_")
    assert metrics.drop == ("_created$",)
    assert metrics.pin == ("order_service_db_pool_in_use",)
    assert metrics.prometheus_url == "http://127.0.0.1:9090"
    assert (metrics.every_test, metrics.record_series) == (False, 0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"scrape": True}, r"unknown key 'scrape' in \[tool.perfsuite.metrics\]"),
        ({"path": "metrics"}, r"metrics\]\.path: expected a path starting with '/'"),
        ({"targets": ["http://x"]}, r"targets: expected a table of job = URL"),
        ({"targets": {"service": "http://127.0.0.1:1/m"}}, r"'service' cannot name a job"),
        ({"targets": {"exp": "127.0.0.1:9104"}}, r"targets\.exp: expected an http:// or https://"),
        ({"interval": "10ms"}, r"interval: expected 0.1s to 60s, got 0.01s"),
        ({"keep": ["(unclosed"]}, r"keep: '\(unclosed' is not a regex"),
        ({"drop": "x"}, r"drop: expected a list of strings"),
        ({"max_series": 0}, r"max_series: expected an integer in \[1, 1000000\]"),
        ({"database": "yes"}, r"database: expected true or false"),
        ({"every_test": 1}, r"every_test: expected true or false"),
        ({"record_series": -1}, r"record_series: expected an integer in \[0, 100000\]"),
        ({"prometheus_url": "localhost:9090"}, r"prometheus_url: expected an http://"),
    ],
)
def test_bad_metrics_values_are_named(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, {"metrics": table})


def test_profiling_values(tmp_path: Path) -> None:
    default = load_config(tmp_path, {}).profiling
    # On by default: their cost and false alarms are measured (README).
    assert (default.profiler, default.keep, default.seconds, default.growth) == (
        "auto",
        "failed",
        10.0,
        True,
    )
    profiling = load_config(
        tmp_path,
        {
            "profiling": {
                "profiler": "command",
                "command": "asprof -d {seconds} -o collapsed -f {output} {pid}",
                "seconds": "20s",
                "rate": 250,
                "keep": "always",
                "growth_metrics": ["go_goroutines"],
                "settle": "5s",
                "min_rise": 20,
            }
        },
    ).profiling
    assert profiling.command == "asprof -d {seconds} -o collapsed -f {output} {pid}"
    assert (profiling.seconds, profiling.rate, profiling.settle, profiling.min_rise) == (
        20.0,
        250,
        5.0,
        20.0,
    )
    assert profiling.growth_metrics == ("go_goroutines",)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"profiler": "perf"}, r"profiler: expected one of auto, py-spy, pprof, command, none"),
        ({"profiler": "command"}, r'profiler = "command" needs command = "..."'),
        ({"command": "asprof -d 10 {pid}"}, r"command: must write collapsed stacks to \{output\}"),
        ({"command": "asprof 'x"}, r"command: cannot split"),
        ({"pprof_url": "localhost:6060"}, r"pprof_url: expected an http:// or https:// URL"),
        ({"seconds": "0.5s"}, r"seconds: expected 1s to 600s, got 0.5s"),
        ({"keep": "sometimes"}, r"keep: expected one of failed, always, never"),
        ({"growth_metrics": ["go goroutines"]}, r"growth_metrics: expected a list of metric"),
        ({"min_rise": -1}, r"min_rise: expected a count of at least 0"),
        ({"flamegraph": True}, r"unknown key 'flamegraph' in \[tool.perfsuite.profiling\]"),
    ],
)
def test_bad_profiling_values_are_named(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, {"profiling": table})
