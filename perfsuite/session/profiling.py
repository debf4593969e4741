"""Profiles and growth checks of the service, for the session.

Which profiler fits the service (``[tool.perfsuite.profiling] profiler``),
the window of each load it samples, the count sampler, and afterwards the
growth verdicts of each load and the profile kept (a collapsed-stacks file
beside the run records, and the baseline's copy for the differential).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from perfsuite.config import ProfilingConfig
from perfsuite.errors import PerfsuiteWarning, ProfileError
from perfsuite.load import LoadResult, Phase
from perfsuite.probes.growth import COUNTS, CountSampler
from perfsuite.probes.profile import (
    CapturedProfile,
    CommandProfiler,
    PprofProfiler,
    Profiler,
    ProfileSchedule,
    PySpyProfiler,
    profile_window,
)
from perfsuite.provision import MySQLServer, Service
from perfsuite.session.watchers import Watched
from perfsuite.stats.flame import (
    FrameShare,
    Stacks,
    format_collapsed,
    hottest,
    parse_collapsed,
    prune,
    self_shift,
)
from perfsuite.stats.growth import GrowthRule, GrowthVerdict, judge_growth
from perfsuite.stats.promql import NAME

__all__ = [
    "KeptProfile",
    "Profiling",
    "baseline_profile",
    "encode_profile",
    "fails_on_growth",
    "hottest_text",
    "judge_load_growth",
    "save_baseline_profile",
    "save_profile",
]


def _is_python(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        names = [proc.name(), *proc.cmdline()[:1]]
    except psutil.Error:
        return False
    return any("python" in Path(n).name for n in names)


class Profiling:
    """The session's profiler choice; each problem with it is said once, not per test."""

    def __init__(self, config: ProfilingConfig) -> None:
        self.config = config
        self._said: set[str] = set()

    def note(self, text: str) -> None:
        """Say ``text`` once a session (a missing profiler is not a test's failure)."""
        if text not in self._said:
            self._said.add(text)
            warnings.warn(PerfsuiteWarning(f"perfsuite: no flame graphs: {text}"), stacklevel=2)

    def _profiler(self, service: Service) -> Profiler | None:
        c = self.config
        if c.profiler == "pprof" or (c.profiler == "auto" and c.pprof_url):
            return PprofProfiler(c.pprof_url or service.base_url)
        # A container's process too, read from the host: py-spy then needs root here
        # (or CAP_SYS_PTRACE), as it reads the process through /proc.
        pid = service.host_pid()
        if c.profiler == "command":
            assert c.command is not None  # the config refuses "command" without one
            return CommandProfiler(c.command, pid)
        if pid is None:
            if c.profiler == "py-spy":
                self.note(
                    "py-spy profiles a local process; this service runs in a container or "
                    'elsewhere (set profiler = "command" or pprof_url)'
                )
            return None
        if c.profiler == "auto" and not _is_python(pid):
            return None
        return PySpyProfiler(pid, rate=c.rate)

    def schedule(
        self, service: Service | None, phases: Sequence[Phase], *, keep: bool
    ) -> ProfileSchedule | None:
        """The profiler of one load and its window (None: none, or nothing to keep)."""
        if service is None or not keep or self.config.profiler == "none":
            return None
        spans, start = [], 0.0
        for p in phases:
            spans.append((p.name, start, p.duration, p.role == "measure"))
            start += p.duration
        window = profile_window(spans, self.config.seconds)
        if window is None:
            return None
        try:
            profiler = self._profiler(service)
        except ProfileError as exc:
            self.note(str(exc))
            return None
        return None if profiler is None else ProfileSchedule(profiler, *window)

    def counts(
        self, service: Service | None, server: MySQLServer | None, inner_port: int | None
    ) -> CountSampler | None:
        """A sampler of the service's threads, descriptors and connections (local only)."""
        pid = service.host_pid() if service is not None and self.config.growth else None
        if service is None or pid is None:
            return None
        ports = {server.port, server.internal_port} if server is not None else set()
        try:
            # In a container it listens on its own port, not the one published here.
            listens = inner_port if service.container is not None else None
            return CountSampler(
                pid,
                mysql_ports={p for p in ports if p},
                service_ports={listens or urlsplit(service.base_url).port or 0},
            )
        except psutil.Error:
            return None


def fails_on_growth(name: str, config: ProfilingConfig) -> bool:
    """Whether a leak of this count fails the test: the named gauges, and sockets left in
    CLOSE_WAIT. Threads, descriptors and connections are reported only: a pool that fills
    during the load and stays full (threads, connections to MySQL) grows and stays as a
    leak does, and the pool check is what tells an idle connection from a leaked one."""
    return name == "tcp_close_wait" or name.split("{")[0] in config.growth_metrics


def judge_load_growth(
    result: LoadResult, watched: Watched, rule: GrowthRule, names: Sequence[str]
) -> list[GrowthVerdict]:
    """The growth verdicts of one load: its counts, and the scraped gauges ``names``."""
    if watched.wall_start is None or watched.wall_end is None:
        return []
    measured = [p for p in result.phases if p.role == "measure" and p.duration > 0]
    if not measured:
        return []
    phase = max(measured, key=lambda p: p.duration)
    start, end = watched.wall_start, watched.wall_end
    lo, hi = start + phase.start, start + phase.start + phase.duration
    series: list[tuple[str, list[float], list[float]]] = []
    if watched.counts is not None:
        stamps = watched.counts.stamps
        series += [(n, stamps, watched.counts.values[n]) for n in COUNTS]
    if watched.scraped is not None:
        for labels, (times, values) in watched.scraped.scraped.points.items():
            name = dict(labels).get(NAME, "")
            if name in names:
                series.append((_label(labels), times, values))
    verdicts = []
    for name, stamps, values in series:
        pairs = list(zip(stamps, values, strict=True))
        steady = [(t - lo, v) for t, v in pairs if lo <= t <= hi]
        verdicts.append(
            judge_growth(
                name,
                before=[v for t, v in pairs if t < start],
                steady=([t for t, _ in steady], [v for _, v in steady]),
                after=[v for t, v in pairs if t > end],
                rule=rule,
            )
        )
    return verdicts


def _label(labels: Any) -> str:
    items = dict(labels)
    name = items.pop(NAME, "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(items.items()) if k != "job")
    return f"{name}{{{rest}}}" if rest else name


_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def _slug(test_id: str) -> str:
    return _SLUG.sub("_", test_id).strip("_")[:150] or "test"


def save_profile(folder: Path, test_id: str, index: int, stem: str, stacks: Stacks) -> Path:
    """Write collapsed stacks as ``folder/<test>-<load>-<stem>.collapsed``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(test_id)}-{index}-{stem}.collapsed"
    path.write_text(format_collapsed(stacks), encoding="utf-8")
    return path


def baseline_profile(folder: Path, test_id: str) -> Stacks | None:
    """The baseline run's profile of the test, if one was saved with it."""
    path = folder / f"{_slug(test_id)}.collapsed"
    try:
        return parse_collapsed(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_baseline_profile(folder: Path, test_id: str, stacks: Stacks) -> None:
    """Keep the profile beside the baselines: the next runs' differential is against it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{_slug(test_id)}.collapsed").write_text(format_collapsed(stacks), "utf-8")


@dataclass(frozen=True, kw_only=True)
class KeptProfile:
    """A profile kept for the report: where it is, and what it says."""

    load: int
    path: str  # relative to the reports folder
    profile: CapturedProfile
    base: Stacks | None
    hottest: list[FrameShare] = field(init=False)  # the 15 with the most self time
    hotter: list[tuple[str, float]] = field(init=False)  # self share grown, vs the base

    def __post_init__(self) -> None:
        stacks = self.profile.stacks
        hotter = [] if self.base is None else self_shift(self.base, stacks, limit=10)
        object.__setattr__(self, "hottest", hottest(stacks, limit=15))
        object.__setattr__(self, "hotter", [(n, v) for n, v in hotter if v > 0])


def encode_profile(kept: KeptProfile) -> dict[str, Any]:
    """JSON-ready, for the run record: the file, the window, the hottest functions."""
    p = kept.profile
    out: dict[str, Any] = {
        "load": kept.load,
        "file": kept.path,
        "profiler": p.profiler,
        "unit": p.unit,
        "start": round(p.start, 3),
        "seconds": round(p.seconds, 3),
        "samples": round(sum(p.stacks.values()), 3),
        "stacks": format_collapsed(prune(p.stacks)),
        "hottest": [
            {"name": f.name, "self": round(f.self_share, 5), "total": round(f.total_share, 5)}
            for f in kept.hottest
        ],
    }
    if kept.base is not None:
        out["base_stacks"] = format_collapsed(prune(kept.base))
        out["hotter"] = [{"name": n, "change": round(v, 5)} for n, v in kept.hotter]
    if p.goroutines:
        top = sorted(p.goroutines.items(), key=lambda kv: -kv[1])[:5]
        out["goroutines"] = [{"stack": list(s), "count": c} for s, c in top]
    return out


def hottest_text(kept: Sequence[KeptProfile], limit: int = 8) -> str:
    """The kept profiles' hottest functions, for the test's report."""
    parts = []
    for k in kept:
        p = k.profile
        lines = [
            f"load {k.load + 1}: {p.profiler}, {p.seconds:.1f} s from {p.start:.1f} s into the "
            f"load, {sum(p.stacks.values()):,.0f} {p.unit}; {k.path}",
            "   self   total  function",
        ]
        lines += [
            f"  {f.self_share * 100:5.1f}%  {f.total_share * 100:5.1f}%  {f.name}"
            for f in k.hottest[:limit]
        ]
        if k.base is not None:
            hotter = [(n, v) for n, v in k.hotter[:5] if v > 0.005]
            lines.append(
                "hotter than in the baseline's profile: "
                + (", ".join(f"{n} {v * 100:+.1f} points" for n, v in hotter) or "nothing")
            )
        if p.goroutines:
            lines.append("goroutines at the end, most common stacks (leaf first):")
            top = sorted(p.goroutines.items(), key=lambda kv: -kv[1])[:5]
            lines += [f"  {c:,.0f} x {' <- '.join(reversed(s))}" for s, c in top]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
