"""The TUI's state in one place: what the widgets show, nothing they compute.

The bridge writes it (from the phone's events, posted as Textual messages); the widgets
read it. Snapshot tests fill it by hand, which is why it holds plain values
(durations, timestamps) rather than live objects.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["AccountView", "CallView", "TraceEntry", "TraceStore", "PhoneState", "call_id_of"]


@dataclass
class AccountView:
    name: str
    aor: str
    register: bool = True
    state: str = "unregistered"  # registering | registered | failed | unregistered
    status: int | None = None
    reason: str | None = None
    expires_at: float | None = None  # time.monotonic() when the registration runs out
    seconds_left: float | None = None  # a fixed value (snapshot tests) when no expires_at
    public: str | None = None  # our address as the registrar/STUN sees it (behind NAT)

    def left(self) -> float | None:
        """Seconds until the registration runs out (counts down by itself)."""
        if self.state != "registered":
            return None
        if self.expires_at is not None:
            return max(0.0, self.expires_at - time.monotonic())
        return self.seconds_left

    def describe(self) -> str:
        """The whole state: `registered (512 s)`, `failed: 403 <the reason>` …"""
        if self.state == "registered":
            seconds = self.left()
            left = f" ({int(seconds)} s)" if seconds is not None else ""
            public = f" as {self.public}" if self.public else ""
            return f"registered{left}{public}"
        if self.state == "failed":
            code = f"{self.status} " if self.status else ""
            return f"failed: {code}{self.reason or ''}".rstrip()
        if not self.register and self.state == "unregistered":
            return "not registering"
        return self.state


STATE_LABELS = {"calling": "calling", "ringing": "ringing", "early": "early media",
                "incoming": "incoming", "connected": "connected", "ending": "ending",
                "cancelling": "cancelling", "rejecting": "rejecting", "ended": "ended"}
# what we asked for and the phone has not confirmed yet: later progress events
# (a 180 that crossed our CANCEL) must not take the feedback away
LOCAL_ENDING = ("ending", "cancelling", "rejecting")


@dataclass
class CallView:
    call_id: str
    direction: str  # outgoing | incoming
    uri: str
    display_name: str | None = None
    state: str = "calling"
    reason: str | None = None  # for ended calls: "hangup", "rejected 486 Busy Here" …
    codec: str | None = None
    srtp: str | None = None  # the SRTP suite when the media is encrypted
    duration: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rtt_ms: float | None = None
    mos: float | None = None
    muted: bool = False
    on_hold: bool = False  # we hold the call
    remote_hold: bool = False  # the far end holds us
    started_at: float = field(default_factory=time.time)
    created_at: float = field(default_factory=time.monotonic)  # for the ringing timer
    account: str | None = None
    target: str | None = None  # what was dialled when it is not the URI ("echo")
    called: str | None = None  # incoming: the address they called (which account)
    answered_at: float | None = None
    dtmf_sent: str = ""
    dtmf_received: str = ""
    input_dbfs: float | None = None
    output_dbfs: float | None = None
    transfer: str | None = None  # "transferring to …: 180", "transferred by remote to …"
    conference: bool = False     # mixed in the local conference
    waiting: bool = False        # rang in during another call (call waiting)
    dnd: bool = False            # refused by do-not-disturb

    @property
    def party(self) -> str:
        return f"{self.display_name} <{self.uri}>" if self.display_name else self.uri

    @property
    def state_label(self) -> str:
        label = STATE_LABELS.get(self.state, self.state)
        if self.state == "ended" and self.reason:
            return f"ended: {self.reason}"
        if self.state == "connected":
            if self.on_hold:
                label = "on hold"
            elif self.remote_hold:
                label = "held by remote"
            if self.conference:
                label = "conference" + ("" if label == "connected" else f", {label}")
            if self.muted:
                label += " (muted)"
            if self.transfer:
                label += f" · {self.transfer}"
        elif self.waiting and self.state in ("incoming", "ringing"):
            label = "call waiting"
        return label

    @property
    def active(self) -> bool:
        return self.state != "ended"

    @property
    def held(self) -> bool:
        """Held by either side: no audio flows, so no levels and no quality to show."""
        return self.on_hold or self.remote_hold


@dataclass
class TraceEntry:
    time: float  # seconds since the epoch
    direction: str  # sent | received
    proto: str
    peer: str
    data: bytes

    @property
    def first_line(self) -> str:
        line = self.data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        return line.decode("utf-8", "replace")

    @property
    def summary(self) -> str:
        """`INVITE` for requests, `200 OK` for responses (the method in brackets)."""
        first = self.first_line
        if first.startswith("SIP/2.0 "):
            cseq = _CSEQ.search(self.data)
            method = f" ({cseq.group(1).decode()})" if cseq else ""
            return first[8:] + method
        return first.split(" ", 1)[0]

    @property
    def method(self) -> str:
        """The request's method; for a response the method of its CSeq."""
        first = self.first_line
        if first.startswith("SIP/2.0 "):
            cseq = _CSEQ.search(self.data)
            return cseq.group(1).decode() if cseq else "?"
        return first.split(" ", 1)[0]


_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.I | re.M)
_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+([A-Za-z]+)", re.I | re.M)


def call_id_of(data: bytes) -> str | None:
    """The Call-ID of a SIP message, found by a regex over the header block (cheap)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    match = _CALL_ID.search(head)
    return match.group(1).strip().decode("utf-8", "replace") if match else None


class TraceStore:
    """Messages grouped by Call-ID, in order; bounded (oldest dialogs dropped first)."""

    def __init__(self, max_dialogs: int = 200, max_per_dialog: int = 500) -> None:
        self.max_dialogs = max_dialogs
        self.max_per_dialog = max_per_dialog
        self.dialogs: OrderedDict[str, list[TraceEntry]] = OrderedDict()
        self.version = 0

    def add(self, direction: str, data: bytes, proto: str, peer: str,
            when: float | None = None) -> None:
        call_id = call_id_of(data)
        if call_id is None:
            return
        entries = self.dialogs.get(call_id)
        if entries is None:
            entries = self.dialogs[call_id] = []
            while len(self.dialogs) > self.max_dialogs:
                self.dialogs.popitem(last=False)
        if len(entries) < self.max_per_dialog:
            entries.append(TraceEntry(when if when is not None else time.time(), direction,
                                      proto, peer, bytes(data)))
        self.version += 1

    def messages(self, call_id: str) -> list[TraceEntry]:
        return list(self.dialogs.get(call_id, ()))

    def call_ids(self) -> list[str]:
        """Every Call-ID seen (calls, registrations, OPTIONS …), oldest first."""
        return list(self.dialogs)

    def export(self, call_id: str) -> str:
        """The call's messages in the `--sip-trace` text format (DESIGN §3)."""
        import datetime as dt

        out = []
        for e in self.messages(call_id):
            stamp = dt.datetime.fromtimestamp(e.time, dt.timezone.utc).isoformat(
                timespec="milliseconds")
            out.append(f"--- {stamp} {e.direction} {e.proto} {e.peer}\n")
            text = e.data.decode("utf-8", "replace").replace("\r\n", "\n")
            out.append(text if text.endswith("\n") else text + "\n")
        return "".join(out)


@dataclass
class PhoneState:
    identity: str = "starting…"  # our local address, or the selected account's AOR
    local_address: str | None = None  # host:port we listen on (the `listening` event)
    accounts: dict[str, AccountView] = field(default_factory=dict)
    selected_account: str | None = None
    calls: OrderedDict[str, CallView] = field(default_factory=OrderedDict)
    trace: TraceStore = field(default_factory=TraceStore)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    audio_backend: str = "null"
    notice: str | None = None
    dnd: bool = False  # do not disturb is on
    max_ended_calls: int = 20
    log_count: int = 0  # lines ever logged (the deque forgets; viewers need the total)

    def add_call(self, view: CallView) -> None:
        self.calls[view.call_id] = view
        ended = [cid for cid, c in self.calls.items() if not c.active]
        for cid in ended[:-self.max_ended_calls] if len(ended) > self.max_ended_calls else ():
            del self.calls[cid]

    def clear_ended(self) -> int:
        """Drop the ended calls from the list (history keeps them); how many went."""
        ended = [cid for cid, c in self.calls.items() if not c.active]
        for cid in ended:
            del self.calls[cid]
        return len(ended)

    def incoming_ringing(self) -> list[CallView]:
        return [c for c in self.calls.values()
                if c.direction == "incoming" and c.state in ("incoming", "ringing")]

    def log_line(self, text: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(when or time.time()))
        self.log.append(f"{stamp} {text}")
        self.log_count += 1
