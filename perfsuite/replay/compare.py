"""Each replayed answer compared with the reference's, beside the load, in a thread.

The reference is another build's URL, asked twice for each request (its two
answers tell noise from change, as Diffy's primary and secondary do), or the
recording itself. A recording answered once, so the noise then comes from
asking the *candidate* a second time (safe methods only: a write is not sent
twice to the build under test). The load's event loop only hands each answer
over (never waits): when the reference cannot keep up, the comparisons past
``max_pending`` are skipped and counted, not the load slowed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import Counter

import httpx

from perfsuite.errors import ConfigError
from perfsuite.replay import Recorded
from perfsuite.replay.diff import Answer, Differences
from perfsuite.replay.normalise import SAFE_METHODS, IdMap, Outgoing, prepare
from perfsuite.replay.schedule import ReplayPlan

__all__ = ["RECORDED", "Comparer"]

RECORDED = "recorded"
_Job = tuple[Recorded, int, bytes]


class Comparer:
    """Compares the candidate's answers with a reference's (see the module's docstring)."""

    def __init__(
        self,
        plan: ReplayPlan,
        reference: str,
        candidate: str,
        *,
        max_pending: int = 10_000,
        timeout: float = 10.0,
    ) -> None:
        if reference != RECORDED and not reference.startswith(("http://", "https://")):
            raise ConfigError(f"compare: expected a URL or {RECORDED!r}, got {reference!r}")
        self.plan = plan
        self.reference = reference
        self.diffs = Differences(reference=reference)
        self.skipped = 0  # not compared: the comparisons were too far behind the load
        self.unrecorded = 0  # not compared: the recording kept no answer to compare with
        self.failed: Counter[str] = Counter()  # reference (or second) calls that failed
        self._queue: queue.Queue[_Job | None] = queue.Queue(max_pending)
        self._ids = IdMap(table=dict(plan.rules.ids))  # the reference's ids are the recorded
        # Against the recording, with ids learned: the recorded answers hold the recorded
        # ids, the candidate's the ones its own writes got; learned here as the schedule
        # learns them, from the answers in the order they came.
        self._learned = IdMap() if reference == RECORDED and plan.rules.learn else None
        self._client = httpx.Client(
            base_url=candidate if reference == RECORDED else reference,
            timeout=timeout,
            headers={"accept-encoding": "identity"},
        )
        self._thread = threading.Thread(target=self._work, name="perfsuite-compare", daemon=True)
        self._thread.start()

    def told(self, item: Recorded, status: int, body: bytes) -> None:
        """An answer of the load (on its event loop): queued, never waited for."""
        try:
            self._queue.put_nowait((item, status, body))
        except queue.Full:
            self.skipped += 1

    def close(self, timeout: float = 60.0) -> Differences:
        """Finish the comparisons queued (at most ``timeout`` seconds), then stop."""
        with contextlib.suppress(queue.Full):  # still full: the thread is stuck; leave it
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._client.close()
        if self.skipped or self.unrecorded or self.failed:
            failed = ", ".join(f"{k}: {n}" for k, n in self.failed.most_common(3))
            self.diffs.not_compared = (
                f"{self.skipped} (the comparisons fell behind the load), "
                f"{self.unrecorded} (no recorded answer)"
                + (f"; reference calls failed: {failed}" if failed else "")
            )
        return self.diffs

    def _call(self, out: Outgoing) -> Answer | None:
        try:
            answer = self._client.request(
                out.method, out.target, headers=list(out.headers), content=out.body
            )
        except httpx.HTTPError as exc:
            self.failed[type(exc).__name__] += 1
            return None
        return Answer(answer.status_code, answer.content)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._compare(*job)
            except Exception as exc:  # a comparison must not end the others; counted
                self.failed[f"{type(exc).__name__}: {exc}"[:120]] += 1

    def _compare(self, item: Recorded, status: int, body: bytes) -> None:
        plan = self.plan
        endpoint = plan.names[plan.endpoint_of(item)]
        candidate = Answer(status, body)
        out = prepare(item, plan.rules, self._ids)
        if not isinstance(out, Outgoing):
            return
        if self.reference == RECORDED:
            if item.response is None or item.response.body is None:
                self.unrecorded += 1
                return
            recorded = item.response.body
            if self._learned is not None:
                self._learned.learn(plan.rules.learn, item, status, body)
                recorded = self._learned.body(recorded, "application/json")
            reference = Answer(item.response.status, recorded)
            # Asked again with the recorded ids: with ids learned from answers, the
            # candidate's are others, and the second answer would be no measure of noise.
            twice = item.method in SAFE_METHODS and not plan.rules.learn
            again = self._call(out) if twice else None
            noise = (candidate, again) if again is not None else None
        else:
            first, second = self._call(out), self._call(out)
            if first is None or second is None:
                return
            reference, noise = first, (first, second)
        self.diffs.add(endpoint, item.target, reference, candidate, noise)
