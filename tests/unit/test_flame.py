"""Collapsed stacks, the hottest functions, the differential, and the SVG drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from perfsuite.report.flame import diff_flame_svg, flame_svg, hottest_table
from perfsuite.stats.flame import (
    flame_tree,
    format_collapsed,
    hottest,
    merge,
    parse_collapsed,
    self_shift,
    shift,
)

BASE = """\
main;serve;handle;query 60
main;serve;handle;render 30
main;serve;accept 10
"""
HOT = """\
main;serve;handle;query 60
main;serve;handle;render 30
main;serve;handle;checksum 110
main;serve;accept 10
"""


def test_collapsed_stacks_read_and_write_back() -> None:
    stacks = parse_collapsed(BASE + "main;serve;accept 5\n\n")
    assert stacks[("main", "serve", "accept")] == 15  # the same stack twice: summed
    assert parse_collapsed(format_collapsed(stacks)) == stacks
    assert format_collapsed(stacks).splitlines()[0] == "main;serve;handle;query 60"


@pytest.mark.parametrize("line", ["main;serve", "main;serve x", "12", "a;b -3"])
def test_a_bad_line_is_named(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_collapsed(f"a;b 1\n{line}\n")


def test_the_tree_sums_callees_into_callers() -> None:
    root = flame_tree(parse_collapsed(BASE))
    assert root.value == 100
    handle = root.children["main"].children["serve"].children["handle"]
    assert handle.value == 90
    assert handle.self_value() == 0
    assert root.children["main"].children["serve"].children["accept"].self_value() == 10


def test_the_hottest_functions_by_self_time() -> None:
    rows = hottest(parse_collapsed(HOT), limit=3)
    assert [r.name for r in rows] == ["checksum", "query", "render"]
    assert rows[0].self_share == pytest.approx(110 / 210)
    # Recursion counts once in a function's total.
    rec = hottest({("a", "b", "a", "b"): 4.0, ("a", "c"): 4.0})
    total = {r.name: r.total_share for r in rec}
    assert total["a"] == 1.0
    assert total["b"] == 0.5


def test_the_differential_points_at_what_got_hotter() -> None:
    base, hot = parse_collapsed(BASE), parse_collapsed(HOT)
    # Shares of the whole: the profiles differ in length (100 and 210 samples).
    change = shift(base, hot)
    assert change[("main", "serve", "handle", "checksum")] == pytest.approx(110 / 210)
    assert change[("main", "serve", "handle", "query")] == pytest.approx(60 / 210 - 0.6)
    # A caller's share grew only through its callee: the change is not its own.
    assert ("main", "serve", "handle") not in change
    assert change[("main", "serve", "accept")] == pytest.approx(10 / 210 - 0.1)
    assert self_shift(base, hot, limit=1)[0][0] == "checksum"
    assert merge([base, base])[("main", "serve", "accept")] == 20


def test_the_flame_graph_is_svg_with_named_frames() -> None:
    svg = flame_svg("order query", parse_collapsed(HOT))
    doc = ET.fromstring(svg)
    titles = [t.text or "" for t in doc.iter("{http://www.w3.org/2000/svg}title")] or [
        t.text or "" for t in doc.iter("title")
    ]
    assert any(t.startswith("checksum: 110 samples (52.38 %)") for t in titles)
    assert titles[0].startswith("all (210 samples)")
    labels = [t.text for t in doc.iter("text")]
    assert "checksum" in labels
    assert "main" in labels


def test_narrow_frames_are_left_out() -> None:
    stacks = {("main", "wide"): 100_000.0, ("main", "narrow"): 1.0}
    svg = flame_svg("x", stacks)
    assert "wide:" in svg
    assert "narrow:" not in svg


def test_the_differential_graph_is_reddest_where_it_got_hotter() -> None:
    svg = diff_flame_svg("against the base", parse_collapsed(BASE), parse_collapsed(HOT))
    doc = ET.fromstring(svg)
    fills = {}
    for g in doc.iter("g"):
        title, rect = g.find("title"), g.find("rect")
        if title is not None and rect is not None:
            fills[(title.text or "").split(":")[0]] = rect.get("fill")
    assert fills["checksum"] == "rgb(255,0,0)"  # the largest increase: full red
    assert fills["query"].startswith("rgb(")
    assert fills["query"].endswith(",255)")
    assert fills["handle"] == "rgb(255,255,255)"  # hotter only through checksum: white


def test_the_table_of_hottest_functions() -> None:
    html = hottest_table(parse_collapsed(HOT), base=parse_collapsed(BASE), limit=2)
    assert "<td><code>checksum</code></td><td>52.4 %</td><td>52.4 %</td>" in html
    assert "+52.4 points" in html
    assert hottest_table({}) == ""
