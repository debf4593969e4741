"""The README's examples are real: this test runs them as a user would."""

from __future__ import annotations

import os
import re
import tomllib

import pytest

from .conftest import REPO

pytest_plugins = ["pytester"]

README = (REPO / "README.md").read_text(encoding="utf-8")


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)


def _examples() -> dict[str, str]:
    pattern = r"<!-- readme-example: (\S+) -->\n```python\n(.*?)```"
    return dict(re.findall(pattern, README, flags=re.DOTALL))


def test_readme_snippets_are_the_code_they_quote() -> None:
    pattern = r"<!-- readme-snippet: (\S+) -->\n```python\n(.*?)```"
    snippets = re.findall(pattern, README, flags=re.DOTALL)
    assert snippets
    for path, code in snippets:
        assert code in (REPO / path).read_text(encoding="utf-8"), path


def test_readme_toml_is_valid_config() -> None:
    from perfsuite.config import load_config
    from perfsuite.stats.slo import parse_slo

    for block in _toml_blocks():
        table = tomllib.loads(block).get("tool", {}).get("perfsuite", {})
        config = load_config(REPO, table)  # raises ConfigError on anything unknown or bad
        if config.slo:
            parse_slo(config.slo)


def test_readme_example_runs(pytester: pytest.Pytester) -> None:
    examples = _examples()
    assert set(examples) == {"conftest.py", "test_orders.py"}
    # The quick start's config, and the SLO table that follows it.
    config = _toml_blocks()[0]
    profiles = next(b for b in _toml_blocks() if b.startswith("[tool.perfsuite.slo]"))
    pytester.makefile(".toml", pyproject=config + "\n" + profiles)
    for name, code in examples.items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    os.symlink(REPO / "examples", pytester.path / "examples")
    result = pytester.runpytest_subprocess("-m", "perf", "--perf-profile=smoke", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "perfsuite 0.1.0: profile=smoke, mysql=*",
            "*test_order_query PASSED*",
            "perfsuite: wrote *history.sqlite (history)",
        ]
    )
    # The README's report command, in the same project.
    report = pytester.run("perfsuite", "report")
    assert report.ret == 0
    report.stdout.fnmatch_lines(["perfsuite: wrote reports/index.html (1 runs, * charts, *"])
    html = (pytester.path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "test_orders.py::test_order_query" in html
