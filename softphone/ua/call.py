"""One call: an INVITE session bound to a media session, plus the policy around them.

The protocol is the pure :class:`~softphone.sip.invite.InviteSession` with its
extensions (100rel, UPDATE, session timers, REFER); this turns its events into the call's
state and the phone's public events, applies each media agreement, and owns what is
policy: the set-up timeout, the RTP timeout, waiting for outcomes. How a call starts
(``call_setup``), hold (``hold``), DTMF (``dtmf``), transfer, redirects, call waiting and
the conference have their own modules; the call hands them its events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from ..sip import events as sev
from ..sip.invite import InviteSession
from ..sip.message import Request
from ..sip.uri import NameAddr, SipUri
from ..transport import Peer
from . import alerts, call_setup, dtmf, redirect, transfer, waiting
from . import events as ev
from .errors import CallError
from .hold import set_hold as _set_hold
from .media_session import MediaSession
from .redirect import RedirectPolicy

if TYPE_CHECKING:
    from .account import Account
    from .agent import UserAgent

__all__ = ["Call", "CallError"]

log = logging.getLogger(__name__)


class Call:
    def __init__(self, agent: "UserAgent", session: InviteSession, direction: str,
                 account: "Account | None", remote: NameAddr, local: NameAddr) -> None:
        agent.call_count += 1
        self.agent = agent
        self.session = session
        self.index = agent.call_count
        self.direction = direction  # outgoing | incoming
        self.account = account
        self.call_id = session.call_id
        self.remote = remote
        self.local = local
        self.state = "calling" if direction == "outgoing" else "incoming"
        self.codec: str | None = None
        self.created_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.ended = False
        self.end_info: dict[str, Any] = {}
        self.on_hold = False        # we hold the call
        self.remote_hold = False    # the far end holds us
        self.rtp_timeout_hit = False
        self.announced = False      # the user heard of it (incoming/calling published)
        self.signalling_peer: Peer | None = None  # where its SIP goes (for STUN decisions)
        loop = asyncio.get_running_loop()
        self._answered = loop.create_future()
        self._finished = loop.create_future()
        self._waiters: dict[tuple, asyncio.Future] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._hold_busy = False
        self._answer_requested = False  # answer() came while the media was still opening
        self.observers: list[Callable[[ev.Event], None]] = []  # this call's events, first
        self.transferor: transfer.Transferor | None = None
        self.replaces: "Call | None" = None  # the call this one takes over (RFC 3891)
        self.redirects: RedirectPolicy | None = None
        self._dtmf_task: asyncio.Task | None = None
        self.media = MediaSession(lambda: agent.media_devices(self),
                                  rtp_timeout=float(agent.config.network.rtp_timeout or 0),
                                  on_dtmf=self._on_dtmf, on_timeout=self._on_rtp_timeout,
                                  on_error=self._on_media_error, tap=agent.media_tap)

    def __repr__(self) -> str:
        return f"<Call {self.index} {self.direction} {self.state} {self.call_id}>"

    # ======================================================================== creation
    @classmethod
    async def outgoing(cls, agent: "UserAgent", ruri: SipUri, *, account: "Account | None",
                       timeout: float | None = None,
                       extra_headers: list[tuple[str, str]] | None = None) -> "Call":
        """Place a call (``call_setup.place``)."""
        return await call_setup.place(cls, agent, ruri, account=account, timeout=timeout,
                                      extra_headers=extra_headers)

    @classmethod
    def incoming(cls, agent: "UserAgent", request: Request, peer: Peer,
                 account: "Account | None", *, replaces: "Call | None" = None,
                 refuse: tuple[int, str] | None = None) -> "Call":
        """A call ringing in (``call_setup.take``)."""
        return call_setup.take(cls, agent, request, peer, account, replaces=replaces,
                               refuse=refuse)

    # ======================================================================== helpers
    @property
    def account_name(self) -> str | None:
        return self.account.name if self.account is not None else None

    @property
    def muted(self) -> bool:
        return self.media.muted

    @property
    def duration(self) -> float:
        if self.answered_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return max(0.0, end - self.answered_at)

    @property
    def in_conference(self) -> bool:
        conference = self.agent.conference
        return conference is not None and self.call_id in conference.calls

    def _run(self, actions: list) -> None:
        self.agent.stack.run(self.session, actions)

    def _publish(self, event: ev.Event) -> None:
        """An event of this call: to its observers (a transfer following it), then out."""
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must not lose the event
                log.exception("call %s: observer failed", self.call_id)
        self.agent.publish(event)

    def _spawn(self, coro) -> asyncio.Task:
        task = self.agent.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s task failed", self.call_id, exc_info=task.exception())
            if not self.ended:
                self._run(self.session.hangup(self.agent.stack.now()))

    def stats(self) -> dict[str, Any]:
        return self.media.stats()

    async def wait_answered(self, timeout: float | None = None) -> bool:
        await asyncio.wait([self._answered, self._finished], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        return self._answered.done() and not self._answered.cancelled()

    async def wait_ended(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _expect(self, kind: type, method: str | None = None) -> asyncio.Future:
        fut = self.agent.loop.create_future()
        self._waiters[(kind, method)] = fut
        return fut

    def _resolve(self, key: tuple, event: object) -> None:
        fut = self._waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(event)

    # ======================================================================== session events
    def _on_session_event(self, event: object) -> None:
        agent = self.agent
        if isinstance(event, sev.CallProgress):
            if event.status in (180, 183) and self.state == "calling":
                self.state = "ringing"
                self._publish(ev.Ringing(self.call_id))
                alerts.refresh(agent)
        elif isinstance(event, sev.MediaAgreed):
            self._on_media(event)
        elif isinstance(event, sev.CallAnswered):
            self._connected()
        elif isinstance(event, sev.CallEnded):
            self._end(event)
        elif isinstance(event, sev.InfoReceived):
            self._on_info(event)
        elif isinstance(event, sev.ReinviteResult):
            if not event.refresh:  # a session refresh is nobody's hold or resume
                self._resolve((sev.ReinviteResult, None), event)
        elif isinstance(event, sev.RequestResult):
            self._resolve((sev.RequestResult, event.method), event)
        elif isinstance(event, sev.Redirected):
            redirect.on_redirected(self, event)
        elif isinstance(event, sev.ReferReceived):
            transfer.on_refer(self, event)
        elif isinstance(event, sev.ReferResult):
            if self.transferor is not None:
                self.transferor.on_refer_result(event)
        elif isinstance(event, sev.SessionReleased):
            agent.release_call(self)

    def _on_media(self, event: sev.MediaAgreed) -> None:
        if self.ended:
            return
        self.media.apply(event.media)
        self.codec = self.media.codec
        if event.early and self.state in ("calling", "ringing"):
            self.state = "early"
            self._publish(ev.EarlyMedia(self.call_id, self.codec))
            alerts.refresh(self.agent)
        if event.remote_hold != self.remote_hold and not event.early:
            self.remote_hold = event.remote_hold
            self._publish(ev.Hold(self.call_id, self.on_hold, self.remote_hold))

    def _connected(self) -> None:
        if self.ended:
            return
        self.state = "connected"
        self.answered_at = time.monotonic()
        self._cancel_timer("setup")
        if not self._answered.done():
            self._answered.set_result(True)
        self._publish(ev.Answered(self.call_id, self.codec, self.account_name,
                                  self.media.srtp))
        old = self.replaces
        if old is not None and not old.ended:  # RFC 3891 §3: the replaced dialog ends
            self._spawn(old.hangup())
        alerts.refresh(self.agent)

    def _on_dtmf(self, digit: str) -> None:
        self._publish(ev.Dtmf(self.call_id, digit))

    def _on_info(self, event: sev.InfoReceived) -> None:
        for digit in dtmf.digits_in_info(event):
            self._on_dtmf(digit)

    def _on_rtp_timeout(self) -> None:
        if self.ended or self.state != "connected":
            return
        self.rtp_timeout_hit = True
        seconds = self.agent.config.network.rtp_timeout
        log.info("call %s: no RTP for %s s, hanging up", self.call_id, seconds)  # ended says why
        self._run(self.session.hangup(self.agent.stack.now(), "timeout",
                                      f"no RTP for {seconds} s"))

    def _on_media_error(self, why: str) -> None:
        """The media cannot work (SRTP packets that never open): end the call, saying why."""
        if self.ended:
            return
        self.agent.publish(ev.Notice(f"call {self.index}: {why}"))
        self._run(self.session.hangup(self.agent.stack.now(), "error", why))

    def _setup_timeout(self, peer: Peer) -> None:
        self._timers.pop("setup", None)
        if self.ended or self.state == "connected":
            return
        self._run(self.session.abandon(self.agent.stack.now(), "timeout",
                                       f"no response from {peer}"))

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _end(self, event: sev.CallEnded) -> None:
        if self.ended:
            return
        self.ended = True
        self.ended_at = time.monotonic()
        self.state = "ended"
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        info: dict[str, Any] = {"call_id": self.call_id, "reason": event.reason}
        if event.status is not None:
            info["status"] = event.status
        if event.phrase:
            info["phrase"] = event.phrase
        info["duration"] = round(self.duration, 3)
        info["rtp"] = self.media.stats()
        self.end_info = info
        log.info("call %s ended: %s %s %s", self.call_id, event.reason, event.status or "",
                 event.phrase or "")
        conference = self.agent.conference
        if conference is not None:
            conference.left(self)
        if self.announced:
            self._publish(ev.Ended(self.call_id, event.reason, event.status, event.phrase,
                                   info["duration"], info["rtp"], self.account_name))
        if not self._answered.done():
            self._answered.cancel()
        self.agent.loop.create_task(self.media.close())
        if not self._finished.done():
            self._finished.set_result(info)
        self.agent.call_ended(self)
        alerts.refresh(self.agent)

    # ======================================================================== commands
    def answer(self) -> None:
        """Accept an incoming call: 200 with our answer, resent until the ACK."""
        if self.direction != "incoming" or self.ended:
            return
        self._cancel_timer("auto-answer")
        if self.state == "incoming":  # still opening media: answer as soon as it is ready
            self._answer_requested = True
            return
        self._run(self.session.answer(self.agent.stack.now()))

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        """Refuse an incoming call (486 Busy Here, 603 Decline …)."""
        if self.direction != "incoming" or self.ended:
            return
        self._cancel_timer("auto-answer")
        self._run(self.session.reject(self.agent.stack.now(), status, reason))

    async def hangup(self) -> None:
        """End the call whatever its state: CANCEL, 486 or BYE; returns when it has
        ended and a BYE was answered (bounded)."""
        if self.ended:
            return
        t1 = self.agent.stack.timers.t1
        if self.session.confirmed:  # a BYE: wait (bounded) for its answer
            done = self._expect(sev.RequestResult, "BYE")
            self.state = "ending"
            self._run(self.session.hangup(self.agent.stack.now()))
            if not done.done():
                try:
                    await asyncio.wait_for(asyncio.shield(done), 64 * t1 + 1)
                except asyncio.TimeoutError:
                    pass
            return
        self.state = "ending"
        self._run(self.session.hangup(self.agent.stack.now()))
        await self.wait_ended(timeout=64 * t1 + 1)

    async def set_hold(self, hold: bool) -> None:
        """Hold or resume (``hold.set_hold``); raises CallError when refused."""
        await _set_hold(self, hold)

    def set_muted(self, muted: bool) -> None:
        if muted != self.media.muted:
            self.media.set_muted(muted)
            self._publish(ev.Mute(self.call_id, muted))

    def play(self, source: Any, seconds: float | None) -> None:
        """Send ``source`` instead of the call's own audio for ``seconds``."""
        if self.ended or self.state != "connected":
            raise CallError("playing needs a connected call")
        try:
            self.media.play(source, seconds)
        except ValueError as exc:
            raise CallError(f"cannot play: {exc}") from None

    def add_audio_tap(self, sink: Any) -> Any:
        """``sink.write(pcm, rate)`` hears what the far end sends, decoded; returns the
        function that removes it."""
        if self.ended or self.state != "connected":
            raise CallError("listening needs a connected call")
        try:
            return self.media.add_tap(sink)
        except ValueError as exc:
            raise CallError(f"cannot listen: {exc}") from None

    def request_headers(self) -> list[tuple[str, str]]:
        """The header lines of the INVITE that set the call up (incoming calls; empty
        once the call has ended and let it go)."""
        invite = self.session.request if self.direction == "incoming" else self.session.invite
        return list(invite.headers) if invite is not None else []

    def send_dtmf(self, digits: str) -> str:
        """Send DTMF the configured way (``dtmf.send``); returns how (rfc4733 or info)."""
        return dtmf.send(self, digits)
