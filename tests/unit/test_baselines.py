"""Baseline files: one per test, never shared, never read for another test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfsuite.errors import StoreError
from perfsuite.store.baselines import BaselineStore, RunRecord, file_name

# Two node ids whose readable names are one slug.
A, B = "tests/perf/test_x.py::test_y[a b]", "tests/perf/test_x.py::test_y[a-b]"


def _run(commit: str) -> RunRecord:
    return RunRecord.new(commit=commit, fingerprint={"cpu": "x"}, loads=[])


def test_colliding_ids_get_separate_files(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    assert file_name(A) != file_name(B)
    store.save(A, _run("a1"))
    store.save(B, _run("b1"))
    store.save(A, _run("a2"))
    assert [r.commit for r in store.runs(A)] == ["a1", "a2"]
    assert [r.commit for r in store.runs(B)] == ["b1"]
    assert sorted(store.all_runs()) == sorted([A, B])


def test_a_file_of_another_test_is_refused(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.save(A, _run("a1"))
    store.path(A).rename(store.path(B))  # a renamed file: it still says it is A's
    with pytest.raises(StoreError, match=r"holds the baseline of .*test_y\[a b\]"):
        store.runs(B)
    assert store.all_runs() == {}  # nor is it A's, under B's name


def test_a_file_of_the_older_naming_is_read_then_moved(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    store.save(A, _run("a1"))
    legacy = tmp_path / "tests-perf-test_x.py.test_y-a-b.json"  # the name before the hash
    store.path(A).rename(legacy)
    assert [r.commit for r in store.runs(A)] == ["a1"]
    assert store.runs(B) == []  # the old name was B's too, but the file says A
    store.save(A, _run("a2"))
    assert not legacy.exists()
    assert [r.commit for r in store.runs(A)] == ["a1", "a2"]
    assert json.loads(store.path(A).read_text())["test"] == A
