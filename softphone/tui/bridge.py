"""From the phone's event bus to the TUI: Textual messages, state, history.

Events arrive on the bus (on the app's event loop, or from a worker thread); each is
posted to the app as a :class:`PhoneEvent` message, whose handler applies it to
``PhoneState`` — the only place the widgets read. The high-rate ones (live statistics,
levels) are coalesced: the latest per call is kept and one :class:`LiveUpdate` message
carries them all. SIP messages go straight into the bounded trace store.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from textual.message import Message

from ..history import CallRecord, History
from .quality import estimate_mos
from .state import LOCAL_ENDING, AccountView, CallView, PhoneState

if TYPE_CHECKING:
    from textual.app import App

__all__ = ["PhoneEvent", "LiveUpdate", "Bridge", "outcome_of", "reason_text",
           "transfer_text"]


def reason_text(info: dict[str, Any]) -> str:
    """`rejected 486 Busy Here`, `hangup`, `remote-hangup`, `timeout` …"""
    parts = [str(info.get("reason", "ended"))]
    if info.get("status"):
        parts.append(str(info["status"]))
    if info.get("phrase"):
        parts.append(str(info["phrase"]))
    return " ".join(parts)


def outcome_of(direction: str, answered: bool, info: dict[str, Any],
               dnd: bool = False) -> str:
    """The history's outcome column: answered calls say so; unanswered ones say why."""
    if answered:
        return "answered"
    if dnd:
        return f"do not disturb ({info.get('status') or 'refused'})"
    if direction == "incoming" and info.get("reason") == "cancelled":
        return "missed"
    return reason_text(info)


def transfer_text(event: Any) -> str | None:
    """What the call list says of a transfer: ours (``transferring to …``) or the far
    end's (``transferred to …``), with its step; nothing once it is over and failed."""
    status = f" {event.status}" if event.status else ""
    if event.role == "transferee":
        if event.state == "refused":
            return f"transfer to {event.target} declined"
        if event.state == "failed":
            return f"transfer to {event.target} failed{status}"
        return f"transferred to {event.target}: {event.state}{status}"
    if event.state == "failed":
        return f"transfer failed{status}"
    return f"transferring to {event.target}: {event.state}{status}"


class PhoneEvent(Message):
    """One event from the phone's bus."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class LiveUpdate(Message):
    """The latest statistics and levels of live calls (coalesced)."""


class Bridge:
    """Subscribes to a phone's bus; applies its events to the TUI state."""

    def __init__(self, app: "App", state: PhoneState, history: History | None,
                 on_incoming: Callable[[CallView], None] = lambda view: None) -> None:
        self.app = app
        self.state = state
        self.history = history
        self.on_incoming = on_incoming
        self._thread = threading.get_ident()
        self._live: dict[tuple[str, str], Any] = {}  # (kind, call_id) -> latest event
        self._live_pending = False
        self._answered: set[str] = set()
        self._recorded: set[str] = set()
        self._targets: dict[str, str] = {}  # call_id -> what was dialled ("echo")
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, bus: Any) -> None:
        self.detach()
        self._unsubscribe = bus.subscribe(self._listen, high_rate=True)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def dialled(self, call_id: str, target: str) -> None:
        """Remember what the user typed (``echo``) for the history and redial."""
        self._targets[call_id] = target
        view = self.state.calls.get(call_id)
        if view is not None:
            view.target = target

    # -- from the bus (any thread) -------------------------------------------------------
    def _post(self, message: Message) -> None:
        if threading.get_ident() == self._thread:
            self.app.post_message(message)
        else:
            self.app.call_from_thread(self.app.post_message, message)

    def _listen(self, event: Any) -> None:
        if event.name == "sip_message":
            self.state.trace.add(event.direction, event.data, event.proto, event.peer)
            return
        if event.high_rate:
            self._live[(event.name, event.call_id)] = event
            if not self._live_pending:
                self._live_pending = True
                self._post(LiveUpdate())
            return
        self._post(PhoneEvent(event))

    # -- on the app ---------------------------------------------------------------------
    def apply_live(self) -> None:
        self._live_pending = False
        live, self._live = self._live, {}
        for (kind, call_id), event in live.items():
            view = self.state.calls.get(call_id)
            if view is None or not view.active:
                continue
            if kind == "levels":
                if not view.held:  # on hold nothing flows: no level to show
                    view.input_dbfs, view.output_dbfs = event.input_dbfs, event.output_dbfs
                continue
            if view.state == "connected":  # before: the ringing timer (the app's tick)
                view.duration = event.duration
            view.loss_pct = event.loss_pct
            view.jitter_ms = event.jitter_ms
            view.rtt_ms = event.rtt_ms
            if event.received and not view.held:
                view.mos = estimate_mos(view.codec, loss_pct=view.loss_pct, rtt_ms=event.rtt_ms,
                                        jitter_ms=view.jitter_ms, playout_ms=event.playout_ms)

    def apply(self, event: Any) -> None:
        name = event.name
        data = event.to_dict()
        if name == "listening":
            host = f"[{event.address}]" if ":" in event.address else event.address
            self.state.local_address = f"{host}:{event.port}"
            return
        if name == "notice":
            self.state.log_line(f"notice: {event.text}")
            return
        details = " ".join(f"{k}={v}" for k, v in data.items() if k != "rtp" and v is not None)
        self.state.log_line(f"{name} {details}".rstrip())
        account = data.get("account")
        acc = self.state.accounts.get(account) if account else None
        if name == "registering" and acc:
            acc.state = "registering"
        elif name == "registered" and acc:
            acc.state, acc.status, acc.reason = "registered", None, None
            acc.expires_at = time.monotonic() + float(data.get("expires") or 0)
        elif name == "registration_failed" and acc:
            acc.state, acc.status, acc.reason = "failed", data.get("status"), data.get("reason")
            acc.expires_at = None
        elif name == "unregistered" and acc:
            acc.state, acc.expires_at = "unregistered", None
        elif name == "dnd":
            self.state.dnd = event.enabled
        elif name == "conference":
            for call_id in event.call_ids:
                view = self.state.calls.get(call_id)
                if view is not None:
                    view.conference = event.state != "split"
        elif name == "public_address" and acc:
            acc.public = data.get("address")
        elif "call_id" in data:
            self._call_event(name, event)

    def _call_event(self, name: str, event: Any) -> None:
        call_id = event.call_id
        view = self.state.calls.get(call_id)
        if name == "calling":
            view = CallView(call_id=call_id, direction="outgoing", uri=event.to,
                            account=event.account, state="calling",
                            target=self._targets.get(call_id))
            self.state.add_call(view)
            return
        if name == "incoming":
            view = CallView(call_id=call_id, direction="incoming", uri=event.from_,
                            display_name=event.display_name, account=event.account,
                            state="ringing", called=event.to,
                            waiting=bool(event.call_waiting), dnd=bool(event.dnd))
            self.state.add_call(view)
            if not view.dnd:  # refused at once: nothing rings
                self.on_incoming(view)
            return
        if view is None:
            return
        if view.state in LOCAL_ENDING and name in ("ringing", "early_media"):
            return  # we are already ending it: keep saying so until it has ended
        if name == "ringing":
            view.state = "ringing"
        elif name == "early_media":
            view.state, view.codec = "early", event.codec or view.codec
        elif name == "answered":
            self._answered.add(call_id)
            view.state, view.codec = "connected", event.codec or view.codec
            view.srtp = event.srtp
            view.answered_at = time.monotonic()
            view.duration = 0.0  # was the ringing time
        elif name == "hold":
            view.on_hold, view.remote_hold = event.local, event.remote
            if view.held:  # the last levels and MOS are no longer true
                view.input_dbfs = view.output_dbfs = None
                view.mos = None
        elif name == "mute":
            view.muted = event.muted
        elif name == "dtmf":
            view.dtmf_received = (view.dtmf_received + event.digit)[-24:]
        elif name == "transfer":
            view.transfer = transfer_text(event)
        elif name == "ended":
            info = event.to_dict()
            view.state = "ended"
            view.reason = reason_text(info)
            view.duration = float(info.get("duration", view.duration))
            # meters and quality freeze otherwise: an ended call shows no live numbers
            view.input_dbfs = view.output_dbfs = None
            view.mos = None
            self._record(view, info)

    def _record(self, view: CallView, info: dict[str, Any]) -> None:
        if self.history is None or view.call_id in self._recorded:
            return
        self._recorded.add(view.call_id)
        answered = view.call_id in self._answered
        try:
            self.history.add(CallRecord(
                direction=view.direction, party=view.target or view.uri,
                display_name=view.display_name, started_at=view.started_at,
                duration=float(info.get("duration", 0.0)),
                outcome=outcome_of(view.direction, answered, info, view.dnd),
                account=view.account))
        except Exception as exc:  # a full disk must not take the phone down
            self.state.log_line(f"history: {exc}")

    def seed_accounts(self, accounts: list[dict[str, Any]]) -> None:
        """The accounts as the phone has them at start (the panel's rows)."""
        self.state.accounts.clear()
        for a in accounts:
            self.state.accounts[a["name"]] = AccountView(a["name"], a["aor"], a["register"],
                                                         state=a["state"],
                                                         public=a.get("public_address"))
