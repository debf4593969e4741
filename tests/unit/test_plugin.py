"""The plugin as pytest sees it: options, marker, ini keys, header, errors."""

from __future__ import annotations

import pytest

from perfsuite import MySQLServer

from .conftest import admin_url

pytest_plugins = ["pytester"]

PERF_AND_PLAIN = """
    import pytest

    @pytest.mark.perf
    def test_load():
        pass

    def test_plain():
        pass
"""


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    sock = tmp_path_factory.mktemp("docker") / "absent.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*performance tests (perfsuite)*",
            "*--perf-profile=NAME*",
            "*--perf-mysql=PROVIDER*",
            "*--perf-mysql-image=IMAGE*",
            "*perf_profile (string):*",
            "*default of --perf-profile",
            "*perf_mysql (string):*default of --perf-mysql",
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.perf: a performance test*"])
    result.stdout.fnmatch_lines(["@pytest.mark.expect(*): a PromQL comparison that must hold*"])
    pytester.makepyfile(PERF_AND_PLAIN)
    assert pytester.runpytest("--strict-markers").ret == 0


def test_plain_pytest_deselects_perf_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PERF_AND_PLAIN)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_plain PASSED*"])


def test_dash_m_perf_selects_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PERF_AND_PLAIN)
    result = pytester.runpytest("-v", "-m", "perf")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_load PASSED*"])


def test_header_names_profile_provider_and_why(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PERF_AND_PLAIN)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "perfsuite 0.1.0: profile=ci, mysql=process (auto: no Docker engine (unix://*"
            "absent.sock does not exist)), service=none configured"
        ]
    )


def test_ini_keys_and_options(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        perf_profile = "smoke"
        perf_mysql = "mysql://u:p@127.0.0.1:3999/db"
        """
    )
    pytester.makepyfile(
        """
        def test_profile(perf_profile, perf_session):
            print("PROFILE", perf_profile.name, perf_session.config.mysql.provider)
        """
    )
    result = pytester.runpytest("-s")
    result.stdout.fnmatch_lines(
        ["*profile=smoke, mysql=url (a mysql:// URL was given)*", "*PROFILE smoke url"]
    )
    # A command-line option wins over the ini key.
    result = pytester.runpytest("-s", "--perf-profile=full", "--perf-mysql=process")
    result.stdout.fnmatch_lines(["*profile=full, mysql=process (chosen explicitly)*"])
    result.stdout.fnmatch_lines(["*PROFILE full process"])


def test_tool_perfsuite_table_is_read(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.perfsuite]
        mysql = "process"
        [tool.perfsuite.service]
        url = "http://127.0.0.1:9"
        [tool.perfsuite.profiles.nightly]
        duration_scale = 3.0
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--perf-profile=nightly")
    result.stdout.fnmatch_lines(
        ["*profile=nightly, mysql=process (chosen explicitly), service=url"]
    )


def test_unknown_key_is_one_clear_message(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.perfsuite]
        myslq = "process"
        """
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: perfsuite: unknown key 'myslq' in ?tool.perfsuite? (known keys: *"]
    )
    assert "Traceback" not in result.stderr.str()


def test_bad_option_value(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--perf-mysql=oracle")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --perf-mysql: mysql: expected auto, process*"])


def test_unknown_profile(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--perf-profile=nightly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: perfsuite: profile: unknown profile 'nightly'*"])


def test_service_fixture_without_service_config(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.perfsuite]
        mysql = "mysql://u:p@127.0.0.1:1/db"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session")
        def perf_mysql():
            return None

        def test_x(perf_service):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*perfsuite: ConfigError: no service configured*"])
    assert "Traceback" not in result.stdout.str()


def test_seed_callable_and_url_provider(pytester: pytest.Pytester, mariadb: MySQLServer) -> None:
    url = admin_url(mariadb, "plugin_seed")
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "{url}"
        sql = ["schema.sql"]
        seed = "myseed:seed"
        """
    )
    pytester.makefile(".sql", schema="CREATE TABLE IF NOT EXISTS t (v INT);")
    pytester.makepyfile(
        myseed="""
        def seed(server):
            server.execute("INSERT INTO t VALUES (41), (1)")
        """,
        test_seeded="""
        import pytest

        @pytest.mark.perf
        def test_rows(perf_mysql, perf_seed):
            assert perf_mysql.provider == "url"
            assert perf_mysql.query("SELECT SUM(v) FROM t") == [(42,)]
        """,
    )
    result = pytester.runpytest("-m", "perf")
    result.assert_outcomes(passed=1)


def test_bad_seed_reference(pytester: pytest.Pytester, mariadb: MySQLServer) -> None:
    url = admin_url(mariadb, "plugin_badseed")
    pytester.makepyprojecttoml(
        f"""
        [tool.perfsuite]
        mysql = "{url}"
        seed = "nosuchmodule:seed"
        """
    )
    pytester.makepyfile("def test_x(perf_seed): pass")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ConfigError: ?tool.perfsuite? seed: cannot import 'nosuchmodule:seed'*"]
    )
