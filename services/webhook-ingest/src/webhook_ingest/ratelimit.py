"""Per-source budget for unverifiable requests.

A flood of forged or broken webhooks must not cost CPU on signature checks forever (nor, for
gateways whose verification may call out, a gateway call). Each source IP may be rejected a
bounded number of times per window; past that it gets 429 before any verification runs.
Verified requests never consume the budget, so a real gateway behind a shared IP is only
throttled while something at that IP is sending garbage.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RejectionLimiter:
    """Sliding-window counter of rejections per source, bounded in memory (LRU of sources)."""

    def __init__(
        self,
        budget: int,
        window_seconds: float,
        *,
        max_sources: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._window = window_seconds
        self._max_sources = max_sources
        self._clock = clock
        self._hits: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, source: str) -> list[float]:
        past = self._hits.get(source)
        if past is None:  # the common case: a source never rejected (a real gateway)
            return []
        now = self._clock()
        hits = [t for t in past if now - t < self._window]
        if hits:
            self._hits[source] = hits
            self._hits.move_to_end(source)
        else:
            self._hits.pop(source, None)
        return hits

    def exhausted(self, source: str) -> bool:
        """True when ``source`` used up its rejection budget in the current window."""
        return len(self._recent(source)) >= self._budget

    def record_rejection(self, source: str) -> None:
        hits = self._recent(source)
        hits.append(self._clock())
        self._hits[source] = hits
        self._hits.move_to_end(source)
        while len(self._hits) > self._max_sources:
            self._hits.popitem(last=False)
