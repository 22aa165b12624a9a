"""The event bus every face listens to, and the JSON-lines encoder (``--events jsonl``).

Publishing never fails because of a listener: a broken one is logged and the rest still
hear the event. High-rate events are produced only while someone subscribed to them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

from .events import Event

__all__ = ["EventBus", "JsonLines"]

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, bool]] = []

    def subscribe(self, listener: Listener, *, high_rate: bool = False) -> Callable[[], None]:
        """Hear every event (and the high-rate ones with ``high_rate``); returns the
        function that unsubscribes."""
        entry = (listener, high_rate)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return unsubscribe

    @property
    def wants_high_rate(self) -> bool:
        return any(high for _, high in self._listeners)

    def publish(self, event: Event) -> None:
        for listener, high in list(self._listeners):
            if event.high_rate and not high:
                continue
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed for %s", event.name)


class JsonLines:
    """One JSON object per event: ``{"event": name, "t": seconds since start, ...}``."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start

    def encode(self, event: Event) -> str:
        record = {"event": event.name, "t": round(time.monotonic() - self.start, 3),
                  **event.to_dict()}
        return json.dumps(record, separators=(", ", ": "), default=str)
