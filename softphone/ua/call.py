"""One call: an INVITE session bound to a media session, plus the policy around them.

The protocol is the pure :class:`~softphone.sip.invite.InviteSession` with its
extensions (100rel, UPDATE, session timers, REFER); this turns its events into the call's
state and the phone's public events, applies each media agreement, and owns what is
policy: auto-answer (at once: no 180, as ``pjsua --auto-answer``), the set-up timeout,
the RTP timeout, waiting for outcomes, the DTMF mode. Transfer, redirects, call waiting
and the conference have their own modules (``transfer``, ``redirect``, ``waiting``,
``conference``); the call hands them its events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from ..sip import events as sev
from ..sip.ids import new_call_id, new_tag
from ..sip.invite import InviteSession, SessionError, SessionOptions
from ..sip.message import Request
from ..sip.negotiator import MediaPolicy, SdpNegotiator
from ..sip.uri import NameAddr, SipUri
from ..transport import Peer
from . import events as ev
from . import transfer, waiting
from .errors import CallError
from .media_session import MediaSession
from .redirect import RedirectPolicy

if TYPE_CHECKING:
    from .account import Account
    from .agent import UserAgent

__all__ = ["Call", "CallError", "sdes_refusal"]

log = logging.getLogger(__name__)


def sdes_refusal(account: "Account | None", transport: str) -> str | None:
    """Why this account's SDES keys must not go over ``transport`` (None: they may)."""
    if account is None:
        return None
    s = account.settings
    if s.media_encryption == "none" or transport == "tls" or s.allow_sdes_over_udp:
        return None
    return (f"account {s.name!r} encrypts media with SDES, whose keys would cross "
            f"{transport} signalling in clear text (allow_sdes_over_udp = false)")


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
        stack = agent.stack
        if ruri.scheme == "tel":
            if account is None:
                raise CallError("a tel: URI needs an account to route it")
            ruri = SipUri(user=ruri.user, host=account.aor.host, port=account.aor.port,
                          params={"user": "phone"})
        if account is not None:
            hop, routes = account.route(ruri)
            transport = account.transport
        else:
            hop, routes, transport = ruri, [], None
        try:
            peer = await stack.resolve(hop, transport)
        except OSError as exc:
            raise CallError(f"cannot reach {hop.hostport}: {exc}") from None
        refused = sdes_refusal(account, peer.proto)
        if refused is not None:
            raise CallError(f"{refused}: call over TLS (transport = \"tls\", a sips: URI) "
                            f"or set allow_sdes_over_udp = true")
        if hop is not ruri:  # the account's proxy or registrar: its requests are trusted
            stack.trust(peer)
        user = account.user if account is not None else agent.user
        contact = f"<{stack.contact_uri(peer, user)}>"
        local = account.identity() if account is not None else agent.local_identity(peer)
        remote = NameAddr(ruri.with_(params={k: v for k, v in ruri.params.items() if k == "user"},
                                     headers={}))
        negotiator = cls._negotiator(agent, stack.local_ip_for(peer.host), account, peer.proto)
        session = InviteSession.outgoing(
            request_uri=ruri, local=local, remote=remote, target=hop, call_id=new_call_id(),
            local_tag=new_tag(), negotiator=negotiator, routes=routes,
            options=cls._options(agent, contact, peer.proto),
            authenticator=account.authenticator if account is not None else None,
            extra_headers=extra_headers)
        call = cls(agent, session, "outgoing", account, remote, local)
        agent.add_call(call)
        try:
            port = await call.media.open(stack.transport.host, agent.config.network.rtp_ports)
        except OSError as exc:
            agent.discard_call(call)
            raise CallError(f"no RTP port available: {exc}") from None
        negotiator.port = port
        call.signalling_peer = peer
        await call._map_media()
        stack.attach(session, call._on_session_event)
        call.announced = True
        call._publish(ev.Calling(call.call_id, str(remote.uri), call.account_name))
        call._run(session.start(stack.now()))
        if timeout:
            call._timers["setup"] = agent.loop.call_later(timeout, call._setup_timeout, peer)
        return call

    @classmethod
    def incoming(cls, agent: "UserAgent", request: Request, peer: Peer,
                 account: "Account | None", *, replaces: "Call | None" = None,
                 refuse: tuple[int, str] | None = None) -> "Call":
        """A call ringing in; ``replaces``: it takes that call over (answered at once);
        ``refuse``: do not disturb (status, phrase), noted and refused at once."""
        stack = agent.stack
        response_peer = stack.response_peer(request, peer)
        user = account.user if account is not None else agent.user
        contact = f"<{stack.contact_uri(response_peer, user)}>"
        negotiator = cls._negotiator(agent, stack.local_ip_for(response_peer.host), account,
                                     peer.proto)
        session = InviteSession.incoming(
            request, local_tag=new_tag(), negotiator=negotiator,
            options=cls._options(agent, contact, peer.proto),
            authenticator=account.authenticator if account is not None else None)
        from_ = request.from_
        to = request.to
        call = cls(agent, session, "incoming", account,
                   NameAddr(from_.uri.with_(params={}, headers={}), from_.display_name),
                   NameAddr(to.uri, to.display_name))
        call.replaces = replaces
        agent.add_call(call)
        call.signalling_peer = response_peer
        stack.attach(session, call._on_session_event)
        stack.adopt(request, session)
        call._run(session.start(stack.now()))
        if call.ended:
            return call
        if refuse is not None:
            call.announced = True
            call._publish(ev.Incoming(call.call_id, str(call.remote.uri), str(call.local.uri),
                                      call.remote.display_name, call.account_name, dnd=True))
            call._run(session.reject(stack.now(), *refuse))
            return call
        call._spawn(call._prepare_incoming())
        return call

    async def _map_media(self) -> None:
        """With ``[network] stun_server``: our SDP offers the RTP socket's public address
        (its STUN mapping), not the local one; not towards loopback peers."""
        network = self.agent.config.network
        peer = self.signalling_peer
        if not network.stun_server or network.public_address or peer is None or \
                peer.host.startswith("127.") or peer.host == "::1":
            return
        try:
            server = await self.agent.stack.stun_server()
            if server is None:
                return
            mapped = await self.media.stun_binding(server)
        except OSError as exc:
            log.warning("STUN for RTP failed, offering the local address: %s", exc)
            return
        self.session.negotiator.set_local(*mapped)

    @staticmethod
    def _negotiator(agent: "UserAgent", address: str, account: "Account | None",
                    transport: str) -> SdpNegotiator:
        audio = agent.config.audio
        encryption = account.settings.media_encryption if account is not None else "none"
        suites: tuple[str, ...] = ()
        if encryption != "none":
            from ..media.srtp import supported_suites

            suites = supported_suites()
        return SdpNegotiator(MediaPolicy(codecs=tuple(audio.codecs), ptime=audio.ptime,
                                         dtmf=audio.dtmf, encryption=encryption,
                                         srtp_suites=suites,
                                         sdes_refused=sdes_refusal(account, transport)),
                             address=address)

    @staticmethod
    def _options(agent: "UserAgent", contact: str, transport: str) -> SessionOptions:
        from ..sip.prack import PrackExtension
        from ..sip.refer import ReferExtension
        from ..sip.session_timer import SessionTimer
        from ..sip.update import UpdateExtension

        sip, calls = agent.config.sip, agent.config.calls
        extensions: list = [UpdateExtension(), ReferExtension(calls.accept_transfer)]
        if sip.reliable_provisional != "disabled":
            extensions.append(PrackExtension(sip.reliable_provisional))
        if sip.session_timers != "disabled":
            extensions.append(SessionTimer(sip.session_timers, sip.session_expires, sip.min_se))
        return SessionOptions(contact=contact, transport=transport, timers=agent.stack.timers,
                              caps=agent.stack.caps, user_agent=agent.stack.user_agent,
                              extensions=extensions,
                              follow_redirects=calls.max_redirects > 0)

    async def _prepare_incoming(self) -> None:
        agent, session = self.agent, self.session
        try:
            port = await self.media.open(agent.stack.transport.host,
                                         agent.config.network.rtp_ports)
        except OSError:
            self._run(session.reject(agent.stack.now(), 503, "No RTP Port Available"))
            return
        if self.ended:  # cancelled while we opened the socket
            return
        session.negotiator.port = port
        await self._map_media()
        if self.ended:
            return
        self._run(session.media_ready(agent.stack.now()))
        if self.ended:  # 488: nothing in common
            return
        self.state = "ringing"
        replacing = self.replaces is not None  # RFC 3891 §3: it takes over; no ringing
        immediate = (agent.auto_answer and agent.answer_delay <= 0) or replacing
        if not immediate:
            self._run(session.ring(agent.stack.now()))
        self.announced = True
        call_waiting = not replacing and waiting.has_active_call(agent, but=self)
        self._publish(ev.Incoming(self.call_id, str(self.remote.uri), str(self.local.uri),
                                  self.remote.display_name, self.account_name,
                                  call_waiting=call_waiting or None,
                                  replaces=self.replaces.call_id if replacing else None))
        if immediate or self._answer_requested:
            self.answer()
        elif agent.auto_answer:
            self._timers["auto-answer"] = agent.loop.call_later(agent.answer_delay, self.answer)
        waiting.refresh_alerts(agent)

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
            self._on_redirected(event)
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
        waiting.refresh_alerts(self.agent)

    def _on_redirected(self, event: sev.Redirected) -> None:
        """Where next after a 3xx (or a failed redirect target): the policy says."""
        session = self.session
        if self.redirects is None:
            first = session.invite.request_uri if session.invite is not None else None
            self.redirects = RedirectPolicy(self.agent.config.calls.max_redirects,
                                            first if isinstance(first, SipUri) else SipUri())
        uri = self.redirects.next_target(event)
        if uri is None or self.ended:
            self._run(session.give_up(self.agent.stack.now(), event.status, event.reason))
            return
        self._publish(ev.Redirected(self.call_id, event.status, str(uri),
                                    [str(c.uri) for c in event.contacts]))
        self._spawn(self._retarget(uri, event))

    async def _retarget(self, uri: SipUri, event: sev.Redirected) -> None:
        stack = self.agent.stack
        hop = self.account.route(uri)[0] if self.account is not None else uri
        try:
            await stack.resolve(hop, self.account.transport if self.account else None)
        except OSError as exc:
            log.info("call %s: redirect target %s unreachable: %s", self.call_id, uri, exc)
            self._run(self.session.give_up(stack.now(), event.status, event.reason))
            return
        if self.session.awaiting_target:
            self._run(self.session.retarget(stack.now(), uri, hop))

    def _on_dtmf(self, digit: str) -> None:
        self._publish(ev.Dtmf(self.call_id, digit))

    def _on_info(self, event: sev.InfoReceived) -> None:
        if event.content_type == "application/dtmf-relay":
            for line in event.body.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal" and value.strip():
                    self._on_dtmf(value.strip()[0])

    def _on_rtp_timeout(self) -> None:
        if self.ended or self.state != "connected":
            return
        self.rtp_timeout_hit = True
        seconds = self.agent.config.network.rtp_timeout
        log.warning("call %s: no RTP for %s s, hanging up", self.call_id, seconds)
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
        waiting.refresh_alerts(self.agent)

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
        """Hold (offer sendonly and send silence) or resume (sendrecv) with a re-INVITE.

        A refused re-INVITE leaves the session as it was (§14.1) and raises CallError; a
        491 is retried after §14.1's wait by the session.
        """
        early = self.state == "early" and self.direction == "outgoing"
        if self.ended or not (self.state == "connected" or early):
            raise CallError("hold needs a connected call")
        if hold == self.on_hold:
            return
        if self._hold_busy:
            raise CallError("a hold or resume is already in progress")
        update = self.session.ext("update")
        if early and (update is None or not update.usable(self.session)):
            raise CallError("hold before the answer needs a peer that takes UPDATE")
        self._hold_busy = True
        try:
            done = self._expect(sev.ReinviteResult)
            direction = "sendonly" if hold else "sendrecv"
            now = self.agent.stack.now()
            try:
                if early:  # RFC 3311 §5.1: an early dialog changes its session with UPDATE
                    self._run(update.update(self.session, now, direction=direction))
                else:
                    self._run(self.session.reinvite(now, direction))
            except SessionError as exc:
                raise CallError(str(exc)) from None
            try:
                result = await asyncio.wait_for(asyncio.shield(done),
                                                64 * self.agent.stack.timers.t1 + 15)
            except asyncio.TimeoutError:
                raise CallError("no answer to the re-INVITE") from None
            if not result.ok:
                if self.ended:
                    raise CallError("the call ended")
                raise CallError(f"{result.status} {result.reason}".rstrip())
        finally:
            self._hold_busy = False
        self.on_hold = hold
        self.media.set_held(hold)
        self._publish(ev.Hold(self.call_id, self.on_hold, self.remote_hold))
        waiting.refresh_alerts(self.agent)

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


    @property
    def dtmf_method(self) -> str:
        """rfc4733 or info, per [audio] dtmf_mode (auto: RFC 4733 when negotiated)."""
        mode = self.agent.config.audio.dtmf_mode
        if mode != "auto":
            return mode
        neg = self.media.negotiated
        return "rfc4733" if neg is not None and neg.dtmf is not None else "info"

    def send_dtmf(self, digits: str) -> str:
        """Send DTMF the configured way; returns how (rfc4733 or info)."""
        if self.ended or self.state != "connected":
            raise CallError("DTMF needs a connected call")
        method = self.dtmf_method
        if method == "info":
            if self._dtmf_task is not None and not self._dtmf_task.done():
                raise CallError("DTMF digits are still being sent")
            self._dtmf_task = self._spawn(self._send_info_digits(digits))
            return method
        try:
            self.media.send_dtmf(digits)
        except ValueError as exc:
            raise CallError(f"cannot send DTMF: {exc}") from None
        return method

    async def _send_info_digits(self, digits: str, duration_ms: int = 160) -> None:
        """SIP INFO application/dtmf-relay, one digit at a time, each after the last's
        answer (',' waits a second, as with RFC 4733)."""
        t1 = self.agent.stack.timers.t1
        for digit in digits:
            if self.ended:
                return
            if digit == ",":
                await asyncio.sleep(1.0)
                continue
            body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
            done = self._expect(sev.RequestResult, "INFO")
            try:
                self._run(self.session.send_request(self.agent.stack.now(), "INFO", body=body,
                                                    content_type="application/dtmf-relay"))
            except SessionError:
                return
            try:
                result = await asyncio.wait_for(asyncio.shield(done), 64 * t1 + 1)
            except asyncio.TimeoutError:
                return
            if result.status >= 300:
                log.warning("call %s: DTMF INFO refused: %s %s", self.call_id, result.status,
                            result.reason)
                return
