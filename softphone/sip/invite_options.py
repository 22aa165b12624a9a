"""What an INVITE session is given by its UA: its options (timers, capabilities, identity
on the wire) and the extensions (dialog usages: 100rel, session timers …) that ride on it
through hooks, as pjsip's ``sip_100rel.c`` and ``sip_timer.c`` do on ``sip_inv.c``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .actions import Action
from .caps import Capabilities
from .dialog import Dialog
from .message import Request, Response
from .transaction import TimerConfig

if TYPE_CHECKING:
    from .invite import InviteSession

__all__ = ["InviteExtension", "SessionOptions"]

_SHARED_RNG = random.SystemRandom()  # one for all: a Random holds 2.5 KB of state


class InviteExtension:
    """A dialog usage that rides on the INVITE session (100rel, session timers …).

    Hooks see every message the session sends or receives. ``on_outgoing_*`` may add
    headers (with ``headers.set``: a digest retry passes through them again) before the
    message is handed over, and queue actions with :meth:`InviteSession.defer`;
    ``on_incoming_*`` append actions to ``actions`` and return True when they consumed the
    message (the session then does nothing more with it). In-dialog requests of a method
    in ``methods`` reach :meth:`on_method` once the session has checked that they belong
    to the dialog (481, CSeq order). Timers named ``ext:<name>:<key>`` (armed with
    ``session.timers.start``) come back to :meth:`on_timer` as ``key``.
    """

    name = ""
    methods: tuple[str, ...] = ()  # in-dialog methods it handles (e.g. PRACK, UPDATE)

    def on_outgoing_request(self, session: "InviteSession", request: Request) -> None:
        pass

    def on_outgoing_response(self, session: "InviteSession", response: Response) -> None:
        pass

    def on_incoming_response(self, session: "InviteSession", response: Response, now: float,
                             actions: list[Action]) -> bool:
        return False

    def on_incoming_request(self, session: "InviteSession", request: Request, now: float,
                            actions: list[Action]) -> bool:
        return False

    def check_invite(self, session: "InviteSession", request: Request
                     ) -> tuple[int, str, list[tuple[str, str]]] | None:
        """UAS: refuse the initial INVITE (status, reason, extra headers), or None."""
        return None

    def on_provisional(self, session: "InviteSession", response: Response, dialog: Dialog,
                       now: float) -> list[Action]:
        """UAC: a provisional response with a To tag was taken into ``dialog``."""
        return []

    def on_method(self, session: "InviteSession", request: Request, dialog: Dialog,
                  now: float) -> list[Action]:
        """An in-dialog request of one of ``methods`` (it must be answered)."""
        return [session._respond(request, 501)]

    def on_timer(self, session: "InviteSession", key: str, now: float) -> list[Action]:
        return []

    def on_end(self, session: "InviteSession", now: float) -> list[Action]:
        return []


@dataclass
class SessionOptions:
    """What a session needs from its UA: timers, capabilities, identity on the wire."""

    contact: str                     # our Contact value, "<sip:…>"
    transport: str = "udp"           # default transport of in-dialog requests
    timers: TimerConfig = field(default_factory=TimerConfig)
    caps: Capabilities = field(default_factory=Capabilities)
    user_agent: str | None = None
    rng: random.Random = field(default_factory=lambda: _SHARED_RNG)
    extensions: list[InviteExtension] = field(default_factory=list)
    follow_redirects: bool = False   # a 3xx waits for retarget()/give_up() (the UA's policy)
