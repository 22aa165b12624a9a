"""Session timers (RFC 4028), sans-IO: the session is refreshed, or it ends.

We ask for ``Session-Expires`` (default 1800 s, as pjsua) with our ``Min-SE`` on the
INVITE (§7.1) and follow what the 2xx says (§7.2): the interval, and who refreshes (the
``refresher`` parameter names the UAC or UAS *of that transaction*). A 422 gets the INVITE
again with the Min-SE it named (§7.4). As UAS we refuse an interval below our Min-SE with
422 (§8.1), pick the refresher when the request did not (the UAC when it supports timers,
else us, §9), and put ``Session-Expires`` (and ``Require: timer`` when the UAC supports
it) in our 2xx. Every re-INVITE and UPDATE either side sends is a refresh. The refresher
refreshes at half the interval (§10) with an UPDATE when the far end allows it, else a
re-INVITE; either side sends BYE when the interval is nearly over with no refresh
(``min(32, interval/3)`` before it, §10). A 2xx without ``Session-Expires`` turns the timer
off (§7.2). A shorter interval than we asked for, granted in a 2xx, is obeyed: the far
end is the one that would tear the session down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .actions import Action
from .caps import Capabilities, add_token, header_tokens
from .errors import SipParseError
from .invite import InviteExtension, InviteSession, SessionError
from .message import Request, Response

if TYPE_CHECKING:
    pass

__all__ = ["SessionTimer", "MODES", "ABSOLUTE_MIN_SE", "parse_session_expires"]

MODES = ("supported", "required", "disabled")
TAG = "timer"
ABSOLUTE_MIN_SE = 90  # §4: no Min-SE below this
_RETRY = 2.0          # a refresh that could not start now (an exchange under way) tries again


def parse_session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    """``Session-Expires: 1800;refresher=uac`` → (1800, "uac"); None if absent or bad."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    delta, _, params = value.partition(";")
    delta = delta.strip()
    if not delta.isdigit() or not 0 < int(delta) < 2**31:
        return None
    refresher = None
    for param in params.split(";"):
        name, _, val = param.strip().partition("=")
        if name.lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
            refresher = val.strip().lower()
    return int(delta), refresher


def _supports(message: Request | Response) -> bool:
    return TAG in header_tokens(message, "Supported") | header_tokens(message, "Require")


class SessionTimer(InviteExtension):
    name = "timer"

    def __init__(self, mode: str = "supported", expires: int = 1800,
                 min_se: int = ABSOLUTE_MIN_SE) -> None:
        if mode not in MODES:
            raise ValueError(f"session_timers must be one of {', '.join(MODES)}")
        self.mode = mode
        self.expires = max(expires, min_se)  # what we ask for
        self.min_se = max(min_se, ABSOLUTE_MIN_SE)
        self.interval: int | None = None     # the agreed interval (None: no timer)
        self.we_refresh = False
        self._pending: dict[int, tuple[int, str, bool]] = {}  # their CSeq -> (SE, refresher, supports)
        self._applied: set[tuple[str, int]] = set()
        self._retries_422 = 0
        self._refreshing = False
        self._refresh_cseq: int | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @staticmethod
    def advertise(caps: Capabilities, mode: str) -> None:
        if mode != "disabled":
            caps.add_option_tag(TAG)

    # ------------------------------------------------------------------ our requests
    def on_outgoing_request(self, session: InviteSession, request: Request) -> None:
        if not self.enabled or request.method not in ("INVITE", "UPDATE"):
            return
        if self._refreshing:
            self._refresh_cseq = request.cseq[0]
        initial = request.method == "INVITE" and session.role == "uac" and not session.answered
        if initial:
            request.headers.set("Session-Expires", str(self.expires))
            request.headers.set("Min-SE", str(self.min_se))
            if self.mode == "required":
                add_token(request, "Require", TAG)
            return
        if self.interval is not None:
            # the refresher parameter is relative to this request: we are its UAC
            refresher = "uac" if self.we_refresh else "uas"
            request.headers.set("Session-Expires", f"{self.interval};refresher={refresher}")
            request.headers.set("Min-SE", str(self.min_se))
        elif session.remote_supports(TAG):
            request.headers.set("Session-Expires", str(self.expires))
            request.headers.set("Min-SE", str(self.min_se))

    def on_incoming_response(self, session: InviteSession, response: Response, now: float,
                             actions: list[Action]) -> bool:
        if not self.enabled:
            return False
        try:
            number, method = response.cseq
        except SipParseError:
            return False
        if method not in ("INVITE", "UPDATE") or response.status < 200:
            return False
        initial = method == "INVITE" and session.role == "uac" and session.invite is not None \
            and number == session.invite_cseq and not session.answered
        if response.status == 422:
            asked = response.header_int("Min-SE") or 0
            if asked > self.expires:
                self.expires = asked
            self.min_se = max(self.min_se, asked)
            if initial:  # §7.4: the INVITE again, asking for at least that much
                if self._retries_422 >= 2 or asked <= 0:
                    return False
                self._retries_422 += 1
                actions += session.resend_invite(now, [("Session-Expires", str(self.expires)),
                                                       ("Min-SE", str(self.min_se))])
                return True
            if self.interval is not None:
                self.interval = max(self.interval, asked)
                actions.append(session.timers.start("ext:timer:refresh", now))
            return False
        if response.status >= 300:
            if number == self._refresh_cseq and self.interval is not None and self.we_refresh:
                actions.append(session.timers.start("ext:timer:refresh", now + _RETRY))
            return False
        if (method, number) in self._applied:  # a retransmitted 2xx
            return False
        self._applied.add((method, number))
        value = parse_session_expires(response)
        if value is None:  # §7.2: no Session-Expires in the 2xx, no session timer
            actions += self._stop(session)
            return False
        interval, refresher = value
        self.interval = interval
        self.we_refresh = refresher != "uas"  # we were the UAC of this transaction
        actions += self._arm(session, now)
        return False

    # ------------------------------------------------------------------ their requests
    def check_invite(self, session: InviteSession, request: Request
                     ) -> tuple[int, str, list[tuple[str, str]]] | None:
        if not self.enabled:
            return None
        value = parse_session_expires(request)
        supported = _supports(request)
        if value is not None and value[0] < self.min_se:
            return 422, "Session Interval Too Small", [("Min-SE", str(self.min_se))]
        if self.mode == "required" and not supported:
            return 421, "Extension Required", [("Require", TAG)]
        if value is None and not supported:
            return None  # the caller knows nothing of session timers: none (pjsua does so)
        theirs = request.header_int("Min-SE") or ABSOLUTE_MIN_SE
        interval = value[0] if value is not None else max(self.expires, theirs)
        refresher = value[1] if value is not None and value[1] else \
            ("uac" if supported else "uas")
        self._pending[request.cseq[0]] = (interval, refresher, supported)
        return None

    def on_incoming_request(self, session: InviteSession, request: Request, now: float,
                            actions: list[Action]) -> bool:
        if not self.enabled or request.method not in ("INVITE", "UPDATE"):
            return False
        value = parse_session_expires(request)
        supported = _supports(request)
        if value is not None and value[0] < self.min_se:
            actions.append(session._respond(request, 422, "Session Interval Too Small",
                                            extra=[("Min-SE", str(self.min_se))]))
            return True
        if value is None and self.interval is None:
            return False
        if value is not None:
            interval = value[0]
            refresher = value[1] or ("uac" if supported else "uas")
        else:  # they refresh without saying: keep what we agreed (we are the UAS of it)
            interval = self.interval or self.expires
            refresher = "uas" if self.we_refresh else "uac"
        try:
            self._pending[request.cseq[0]] = (interval, refresher, supported)
        except SipParseError:
            pass
        return False

    def on_outgoing_response(self, session: InviteSession, response: Response) -> None:
        if not self.enabled or response.status < 200:
            return
        try:
            number, method = response.cseq
        except SipParseError:
            return
        if method not in ("INVITE", "UPDATE"):
            return
        pending = self._pending.pop(number, None)
        if pending is None or response.status >= 300:
            return
        interval, refresher, supported = pending
        response.headers.set("Session-Expires", f"{interval};refresher={refresher}")
        if supported:
            add_token(response, "Require", TAG)
        self.interval = interval
        self.we_refresh = refresher == "uas"  # we are the UAS of this transaction
        session.defer(*self._arm(session, session.now))

    # ------------------------------------------------------------------ timers
    def _arm(self, session: InviteSession, now: float) -> list[Action]:
        interval = self.interval
        actions: list[Action] = list(session.timers.stop("ext:timer:refresh",
                                                         "ext:timer:expire"))
        if interval is None:
            return actions
        if self.we_refresh:
            actions.append(session.timers.start("ext:timer:refresh", now + interval / 2))
        actions.append(session.timers.start("ext:timer:expire",
                                            now + interval - min(32.0, interval / 3)))
        return actions

    def _stop(self, session: InviteSession) -> list[Action]:
        self.interval = None
        return list(session.timers.stop("ext:timer:refresh", "ext:timer:expire"))

    def on_timer(self, session: InviteSession, key: str, now: float) -> list[Action]:
        if session.ended is not None or self.interval is None:
            return []
        if key == "expire":
            return session._bye(now, "timeout", f"session expired: no refresh within "
                                                f"{self.interval} s (RFC 4028 §10)")
        if key == "refresh":
            return self._refresh(session, now)
        return []

    def _refresh(self, session: InviteSession, now: float) -> list[Action]:
        """§10: UPDATE when the far end allows it (no SDP needed), else a re-INVITE."""
        update = session.ext("update")
        self._refreshing = True
        try:
            if session.confirmed and update is not None and update.usable(session):
                return update.update(session, now, offer=False, refresh=True)
            if session.confirmed and session.can_offer:
                return session.reinvite(now, None, refresh=True)
        except SessionError:
            pass
        finally:
            self._refreshing = False
        return [session.timers.start("ext:timer:refresh", now + _RETRY)]
