"""One call: an INVITE dialog and its media session (RFC 3261 §13–15, RFC 3264).

Outgoing: INVITE with an SDP offer → 1xx (early dialog, ringing, early media) → 2xx → ACK
through the route set; 401/407 answered once; CANCEL while early; forked 2xx from a second
branch are ACKed and then released with BYE. Incoming: 100, 180, answer / reject /
auto-answer (no 180 when answered at once); the 2xx is retransmitted until the ACK arrives; CANCEL → 200 + 487.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from .sip import sdp
from .sip.auth import AuthenticationFailed, DigestClient, DigestError
from .sip.dialog import AnswerRetransmission, Dialog, DialogError
from .sip.errors import SipParseError
from .sip.message import Headers, Request, Response, make_response
from .sip.uri import NameAddr, SipUri, parse_uri
from .transport import Peer
from .ua import ALLOW, new_branch, new_tag

if TYPE_CHECKING:
    from .sip.transaction import ClientTransaction, ServerTransaction
    from .ua import UserAgent

__all__ = ["Call", "CallError", "parse_target"]

log = logging.getLogger(__name__)

CANONICAL_CODECS = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}


class CallError(Exception):
    """A call could not be placed (bad target, unreachable host …)."""


def parse_target(target: str, default_domain: str | None) -> SipUri:
    """A SIP URI, ``user@host[:port]``, or a bare user completed with ``default_domain``."""
    text = target.strip()
    if not text:
        raise CallError("empty target")
    if text.lower().startswith(("sip:", "sips:", "tel:")):
        try:
            return parse_uri(text)
        except SipParseError as exc:
            raise CallError(f"bad SIP URI {text!r}: {exc.reason}") from None
    if "@" not in text:
        if not default_domain:
            raise CallError(f"{text!r} needs a host: dial user@host or configure an account")
        text = f"{text}@{default_domain}"
    try:
        return parse_uri("sip:" + text)
    except SipParseError as exc:
        raise CallError(f"bad address {target!r}: {exc.reason}") from None


class Call:
    """A call as the UI sees it: direction, remote party, state, codec, quality."""

    def __init__(self, ua: "UserAgent", direction: str, call_id: str, local_tag: str) -> None:
        ua.call_count += 1
        self.ua = ua
        self.index = ua.call_count
        self.direction = direction  # "outgoing" | "incoming"
        self.call_id = call_id
        self.local_tag = local_tag
        self.state = "calling" if direction == "outgoing" else "incoming"
        self.dialog: Dialog | None = None
        self.remote: NameAddr | None = None
        self.local: NameAddr | None = None
        self.media: Any = None
        self.negotiated: sdp.NegotiatedMedia | None = None
        self.codec: str | None = None
        self.created_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.ended = False
        self.end_info: dict[str, Any] = {}
        self.muted = False
        self.on_hold = False  # we put the call on hold (our re-INVITE offered sendonly)
        self.remote_hold = False  # the far end put us on hold (its offer: sendonly/inactive)
        self._reinvite_busy = False  # our re-INVITE is in progress: theirs gets 491 (§14.2)
        self._hold_busy = False  # a hold/resume is under way (with its 491 back-off)
        self._reinvite_ack: Request | None = None
        self._answered = ua.loop.create_future()
        self._finished = ua.loop.create_future()
        self._session_id = secrets.randbelow(2**31)
        self._session_version = 0
        self._tasks: set[asyncio.Task] = set()
        # UAC
        self._invite: Request | None = None
        self._invite_tx: "ClientTransaction | None" = None
        self._peer: Peer | None = None
        self._offer: sdp.SessionDescription | None = None
        self._auth: DigestClient | None = None
        self._cancel_pending = False
        self._cancel_reason = "cancelled"
        self._cancel_sent = False
        self._got_provisional = False
        self._acks: dict[str, Request] = {}
        self._early_tags: set[str] = set()
        self._media_started = False
        # UAS
        self._request: Request | None = None
        self._stx: "ServerTransaction | None" = None
        self._answer_sdp: bytes | None = None
        self._delayed_offer = False
        self._final_sent = False
        self._retransmit: AnswerRetransmission | None = None
        self._retransmit_handle: asyncio.TimerHandle | None = None
        self._last_2xx: Response | None = None
        self._auto_answer_handle: asyncio.TimerHandle | None = None
        self._answer_requested = False
        self._response_peer: Peer | None = None
        self.rtp_timeout_hit = False
        self._devices: tuple[Any, Any] = ()

    # -- helpers ------------------------------------------------------------------------------
    def _spawn(self, coro) -> asyncio.Task:
        task = self.ua.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s task failed", self.call_id, exc_info=task.exception())
            if not self.ended:
                self._end("error", phrase=str(task.exception()))

    def owns(self, request: Request) -> bool:
        if self.dialog is None:
            return False
        return (request.to.tag == self.dialog.local_tag
                and (request.from_.tag or "") == self.dialog.remote_tag)

    @property
    def duration(self) -> float:
        if self.answered_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return max(0.0, end - self.answered_at)

    async def wait_answered(self, timeout: float | None = None) -> bool:
        done, _ = await asyncio.wait([self._answered, self._finished], timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        return self._answered.done() and not self._answered.cancelled()

    async def wait_ended(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        if self.media is None:
            return {"sent": 0, "received": 0, "lost": 0, "jitter_ms": 0.0}
        stats = self.media.stats()
        # the contract's four counters, plus what explains audio quality
        return {**stats.as_event(), "concealed": stats.concealed,
                "playout_ms": round(stats.playout_ms, 1)}

    # -- media --------------------------------------------------------------------------------
    async def _open_media(self) -> None:
        from .media.rtp import RtpSession

        low, high = self.ua.config.network.rtp_ports
        host = self.ua.transport.host
        self.media = await RtpSession.open(host=host, port_range=(low, high))

    def _sdp_address(self, peer: Peer) -> str:
        return self.ua.local_ip_for(peer.host)

    def _make_offer(self, peer: Peer, direction: str = "sendrecv") -> sdp.SessionDescription:
        audio = self.ua.config.audio
        self._session_version += 1
        return sdp.make_offer(address=self._sdp_address(peer), port=self.media.local_port,
                              codecs=list(audio.codecs), ptime=audio.ptime, dtmf=audio.dtmf,
                              session_id=self._session_id,
                              session_version=self._session_version, direction=direction)

    def _media_format(self, neg: sdp.NegotiatedMedia):
        from .media.rtp import MediaFormat

        fmtp = neg.codec.fmtp
        if isinstance(fmtp, str):
            fmtp = dict(item.split("=", 1) if "=" in item else (item, "")
                        for item in (p.strip() for p in fmtp.split(";")) if item)
        name = CANONICAL_CODECS.get(neg.codec.name.lower(), neg.codec.name)
        return MediaFormat(
            name=name, payload_type=neg.codec.payload_type, clock_rate=neg.codec.clock_rate,
            channels=neg.codec.channels, fmtp=dict(fmtp or {}), ptime=neg.ptime,
            dtmf_payload_type=neg.dtmf.payload_type if neg.dtmf else None,
            dtmf_clock_rate=neg.dtmf.clock_rate if neg.dtmf else 8000)

    def _start_media(self, neg: sdp.NegotiatedMedia) -> None:
        self.negotiated = neg
        self.codec = CANONICAL_CODECS.get(neg.codec.name.lower(), neg.codec.name)
        fmt = self._media_format(neg)
        remote = (neg.remote_host, neg.remote_port)
        remote_rtcp = (neg.remote_rtcp_host, neg.remote_rtcp_port)
        if self._media_started:
            self.media.update(fmt, remote, remote_rtcp, rtcp_mux=neg.rtcp_mux)
            self.media.set_hold(neg.direction)
            return
        source, sink = self.ua.media_devices(self)
        self._devices = (source, sink)
        self.media.start(fmt, remote, remote_rtcp, rtcp_mux=neg.rtcp_mux, source=source,
                         sink=sink, on_dtmf=self._on_dtmf, on_timeout=self._on_rtp_timeout,
                         rtp_timeout=float(self.ua.config.network.rtp_timeout or 0))
        if neg.direction != "sendrecv":
            self.media.set_hold(neg.direction)
        self._media_started = True

    def _on_dtmf(self, digit: str) -> None:
        self.ua.emit("dtmf", call_id=self.call_id, digit=digit)

    def _on_rtp_timeout(self) -> None:
        if self.ended or self.state != "connected":
            return
        self.rtp_timeout_hit = True
        log.warning("call %s: no RTP for %s s, hanging up", self.call_id,
                    self.ua.config.network.rtp_timeout)
        self._spawn(self._bye(reason="timeout",
                              phrase=f"no RTP for {self.ua.config.network.rtp_timeout} s"))

    # == outgoing ===============================================================================
    @classmethod
    async def outgoing(cls, ua: "UserAgent", target: str | SipUri, *,
                       timeout: float | None = None) -> "Call":
        if isinstance(target, SipUri):
            ruri = target
        else:
            domain = ua.account.aor_uri.hostport if ua.account else None
            ruri = parse_target(target, domain)
        if ruri.scheme == "tel":
            if not ua.account:
                raise CallError("a tel: URI needs an account to route it")
            ruri = SipUri(user=ruri.user, host=ua.account.aor_uri.host,
                          port=ua.account.aor_uri.port, params={"user": "phone"})
        hop, routes = ua.out_of_dialog_route(ruri)
        proto = ua.account.transport if ua.account and ua.account.transport != "udp" else None
        try:
            peer = await ua.resolve(hop, proto)
        except OSError as exc:
            raise CallError(f"cannot reach {hop.hostport}: {exc}") from None
        if hop is not ruri:  # the account's proxy or registrar: its requests are trusted
            ua.trust(peer)
        call = cls(ua, "outgoing", f"{secrets.token_hex(12)}@softphone", new_tag())
        call._peer = peer
        call.remote = NameAddr(ruri.with_(params={k: v for k, v in ruri.params.items()
                                                  if k == "user"}, headers={}))
        call.local = ua.local_identity(peer)
        ua.add_call(call)
        try:
            await call._open_media()
        except OSError as exc:
            ua.discard_call(call)
            raise CallError(f"no RTP port available: {exc}") from None
        call._offer = call._make_offer(peer)
        headers = Headers()
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(call.local.with_tag(call.local_tag)))
        headers.add("To", str(call.remote))
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", ua.contact(peer))
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", "application/sdp")
        call._invite = Request("INVITE", str(ruri), headers, call._offer.to_bytes())
        ua.common_headers(call._invite)
        call._send_invite()
        if timeout:
            ua.loop.call_later(timeout, call._on_setup_timeout)
        return call

    def _send_invite(self, auth_headers: list[tuple[str, str]] | None = None) -> None:
        assert self._invite is not None and self._peer is not None
        request = Request(self._invite.method, self._invite.uri, self._invite.headers.copy(),
                          self._invite.body)
        request.headers.remove("Via")
        if auth_headers is not None:
            request.headers.remove("Authorization")
            request.headers.remove("Proxy-Authorization")
            for name, value in auth_headers:
                request.headers.add(name, value)
        self.ua.stamp_via(request, self._peer, new_branch())
        self._invite = request
        self._got_provisional = False
        self._invite_tx = self.ua.send_request(request, self._peer,
                                               on_response=self._on_invite_response,
                                               on_timeout=self._on_invite_timeout)

    def _on_setup_timeout(self) -> None:
        if self.state in ("calling", "ringing", "early") and not self.ended:
            self._cancel_reason = "timeout"
            self.cancel()

    def cancel(self) -> None:
        """Abandon an outgoing call before it is answered (§9.1)."""
        if self.ended or self.direction != "outgoing" or self._answered.done():
            return
        if not self._got_provisional:
            self._cancel_pending = True  # a CANCEL may only follow a provisional response
            return
        if self._cancel_sent or self._invite_tx is None:
            return
        self._cancel_sent = True
        cancel = self._invite_tx.make_cancel()
        self.ua.send_request(cancel, self._peer, on_response=lambda r: None,
                             on_timeout=lambda error: None)
        # if the 487 never comes, Timer B/C of the INVITE ends the call; bound it here too
        self.ua.loop.call_later(64 * self.ua.timers.t1, self._cancel_expired)

    def _cancel_expired(self) -> None:
        if not self.ended:
            self._end(self._cancel_reason, status=408, phrase="no answer to CANCEL")

    def _on_invite_timeout(self, error: str | None = None) -> None:
        if self.ended:
            return
        if self._answered.done():
            return
        if error:  # the transport failed (connection refused, TLS certificate …)
            self._end("error", phrase=error)
            return
        reason = "timeout" if not self._cancel_sent else self._cancel_reason
        self._end(reason, status=408, phrase="Request Timeout")

    def _on_invite_response(self, response: Response) -> None:
        status = response.status
        if self.ended and not (200 <= status < 300):
            return
        if status < 200:
            self._on_provisional(response)
            return
        if status < 300:
            self._on_2xx(response)
            return
        if status in (401, 407) and not self._cancel_sent and not self._cancel_pending:
            if self._retry_with_auth(response):
                return
        if self._cancel_sent or self._cancel_pending:
            self._end(self._cancel_reason, status=status, phrase=response.reason)
            return
        self._end("rejected", status=status, phrase=response.reason)

    def _retry_with_auth(self, response: Response) -> bool:
        acc = self.ua.account
        if acc is None or not acc.secret():
            return False
        if self._auth is None:
            self._auth = DigestClient(acc.username, acc.secret() or "")
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            headers = self._auth.retry_headers(response.status, response.headers.get_all(name),
                                               "INVITE", self._invite.uri, self._invite.body)
        except (AuthenticationFailed, DigestError):
            return False
        number = self._invite.cseq[0] + 1
        self._invite.headers.set("CSeq", f"{number} INVITE")
        self._send_invite(headers)
        return True

    def _on_provisional(self, response: Response) -> None:
        self._got_provisional = True
        if self._cancel_pending and not self._cancel_sent:
            self._cancel_pending = False
            self.cancel()
        if response.status == 100:
            return
        tag = response.to.tag
        if tag and self.dialog is None:
            try:
                self.dialog = Dialog.from_uac(self._invite, response)
            except SipParseError:
                self.dialog = None
        elif tag and self.dialog is not None and self.dialog.remote_tag == tag:
            self.dialog.on_response(response)
        if response.status in (180, 183) and self.state == "calling":
            self.state = "ringing"
            self.ua.emit("ringing", call_id=self.call_id)
        if response.body and response.content_type == "application/sdp" and \
                not self._media_started:
            try:
                neg = sdp.apply_answer(self._offer, sdp.parse_sdp(response.body))
            except sdp.SdpError as exc:
                log.info("ignoring unusable early SDP: %s", exc)
                return
            self.state = "early"
            self._start_media(neg)
            self.ua.emit("early_media", call_id=self.call_id, codec=self.codec)

    def _on_2xx(self, response: Response) -> None:
        tag = response.to.tag or ""
        if tag in self._acks:  # retransmitted 2xx: our ACK was lost
            self._send_ack(self._acks[tag])
            return
        if self.dialog is not None and self.dialog.state == "confirmed" and \
                self.dialog.remote_tag != tag:
            self._release_fork(response)
            return
        if self.ended:
            # answered after we gave up (CANCEL crossed the 2xx): ACK it, then BYE (§9.1)
            self._release_fork(response)
            return
        if self.dialog is None or self.dialog.remote_tag != tag:
            try:
                self.dialog = Dialog.from_uac(self._invite, response)
            except SipParseError:
                self._end("error", status=response.status, phrase="2xx without To tag")
                return
        self.dialog.on_response(response)
        ack = self.dialog.create_ack(self._invite.cseq[0])
        self.ua.common_headers(ack)
        self._acks[tag] = ack
        self._send_ack(ack)
        try:
            neg = sdp.apply_answer(self._offer, sdp.parse_sdp(response.body)) \
                if response.body else self.negotiated
        except sdp.SdpError as exc:
            neg = None
            log.warning("unusable SDP answer: %s", exc)
        if neg is None:
            self._connected()
            self._spawn(self._bye(reason="error", phrase="no usable SDP answer"))
            return
        self._start_media(neg)
        self._connected()

    def _connected(self) -> None:
        self.state = "connected"
        self.answered_at = time.monotonic()
        if not self._answered.done():
            self._answered.set_result(True)
        self.ua.emit("answered", call_id=self.call_id, codec=self.codec)

    def _send_ack(self, ack: Request) -> None:
        assert self.dialog is not None
        self._spawn(self._send_in_dialog_stateless(ack, new_branch()))

    async def _send_in_dialog_stateless(self, request: Request, branch: str) -> None:
        peer = await self._dialog_peer()
        request.headers.remove("Via")
        self.ua.stamp_via(request, peer, branch)
        self.ua.send_stateless(request, peer)

    async def _dialog_peer(self, dialog: Dialog | None = None) -> Peer:
        dialog = dialog or self.dialog
        assert dialog is not None
        hop = dialog.next_hop()
        proto = hop.transport if "transport" in hop.params else \
            (self._peer.proto if self._peer else "udp")
        return await self.ua.resolve(hop, proto)

    def _release_fork(self, response: Response) -> None:
        """ACK then BYE a 2xx we do not want (another fork, or after we gave up)."""
        try:
            fork = Dialog.from_uac(self._invite, response)
        except SipParseError:
            return
        ack = fork.create_ack(self._invite.cseq[0])
        self.ua.common_headers(ack)
        self._acks[fork.remote_tag] = ack
        self._spawn(self._ack_and_bye(fork, ack))

    async def _ack_and_bye(self, fork: Dialog, ack: Request) -> None:
        peer = await self._dialog_peer(fork)
        self.ua.stamp_via(ack, peer, new_branch())
        self.ua.send_stateless(ack, peer)
        bye = fork.create_request("BYE")
        self.ua.common_headers(bye)
        self.ua.stamp_via(bye, peer)
        self.ua.send_request(bye, peer, on_response=lambda r: None, on_timeout=lambda error: None)

    def on_stray_2xx(self, response: Response) -> None:
        """A 2xx after the INVITE transaction is gone (retransmission or a late fork)."""
        ack = self._reinvite_ack
        if ack is not None and response.cseq[0] == ack.cseq[0]:
            self._send_ack(ack)  # a retransmitted 2xx to our re-INVITE: our ACK was lost
            return
        if self.direction == "outgoing" and self._invite is not None:
            self._on_2xx(response)

    # == incoming ===============================================================================
    @classmethod
    def incoming(cls, ua: "UserAgent", request: Request, stx: "ServerTransaction",
                 peer: Peer) -> "Call":
        call = cls(ua, "incoming", request.call_id, new_tag())
        call._request = request
        call._stx = stx
        call._peer = peer
        call._response_peer = ua.response_peer(request, peer)
        ua.add_call(call)
        ua.respond(stx, make_response(request, 100))
        try:
            call.dialog = Dialog.from_uas(request, call.local_tag)
        except DialogError as exc:
            call._final(exc.status, exc.reason)
            call._end("error", status=exc.status, phrase=exc.reason, emit=False)
            return call
        from_ = request.from_
        call.remote = NameAddr(from_.uri.with_(params={}, headers={}), from_.display_name)
        to = request.to
        call.local = NameAddr(to.uri, to.display_name)
        call._spawn(call._prepare_incoming())
        return call

    async def _prepare_incoming(self) -> None:
        request = self._request
        assert request is not None
        offer = None
        if request.body:
            if request.content_type not in (None, "application/sdp"):
                self._final(415, "Unsupported Media Type", extra=[("Accept", "application/sdp")])
                self._end("error", status=415, phrase="Unsupported Media Type", emit=False)
                return
            try:
                offer = sdp.parse_sdp(request.body)
            except sdp.SdpError as exc:
                self._final(400, f"Malformed SDP: {exc}"[:120])
                self._end("error", status=400, phrase="Malformed SDP", emit=False)
                return
        try:
            await self._open_media()
        except OSError:
            self._final(503, "No RTP Port Available")
            self._end("error", status=503, phrase="no RTP port", emit=False)
            return
        if self.ended:  # cancelled while we opened the socket
            return
        audio = self.ua.config.audio
        address = self._sdp_address(self._response_peer or self._peer)
        if offer is not None:
            self._session_version += 1
            try:
                answer, neg = sdp.answer_offer(
                    offer, address=address, port=self.media.local_port, codecs=list(audio.codecs),
                    session_id=self._session_id, session_version=self._session_version,
                    ptime_default=audio.ptime)
            except sdp.NoCommonCodec:
                self._final(488, "Not Acceptable Here",
                            extra=[("Warning", '304 softphone "No common codec"')])
                self._end("rejected", status=488, phrase="Not Acceptable Here", emit=False)
                return
            except sdp.SdpError as exc:
                self._final(488, "Not Acceptable Here")
                self._end("rejected", status=488, phrase=str(exc), emit=False)
                return
            self._answer_sdp = answer.to_bytes()
            self.negotiated = neg
            self.codec = CANONICAL_CODECS.get(neg.codec.name.lower(), neg.codec.name)
        else:
            self._delayed_offer = True
            self._offer = self._make_offer(self._response_peer or self._peer)
            self._answer_sdp = self._offer.to_bytes()
        self.state = "ringing"
        # answered at once (auto-answer without delay): no 180, as pjsua's --auto-answer;
        # a 180 a moment before the 200 is often overtaken by it in a multi-process proxy,
        # and a stale 180 after the 200 aborts SIPp's stock UAC scenarios
        if not (self._answer_requested or (self.ua.auto_answer and self.ua.answer_delay <= 0)):
            self._send_provisional(180)
        self.ua.emit("incoming", call_id=self.call_id, **{"from": str(self.remote.uri),
                     "to": str(self.local.uri)},
                     display_name=self.remote.display_name)
        if self._answer_requested:
            self.answer()
        elif self.ua.auto_answer:
            delay = max(0.0, self.ua.answer_delay)
            self._auto_answer_handle = self.ua.loop.call_later(delay, self.answer)

    def _dialog_response(self, status: int, reason: str | None = None, *,
                         body: bytes = b"", extra: list | None = None) -> Response:
        assert self._request is not None
        items: list[tuple[str, str]] = [("Record-Route", rr)
                                        for rr in self._request.headers.get_all("Record-Route")]
        peer = self._response_peer or self._peer
        items.append(("Contact", self.ua.contact(peer)))
        items.extend(extra or [])
        if body:
            items.append(("Content-Type", "application/sdp"))
        return make_response(self._request, status, reason, to_tag=self.local_tag, extra=items,
                             body=body)

    def _send_provisional(self, status: int) -> None:
        if self._final_sent or self._stx is None:
            return
        self.ua.respond(self._stx, self._dialog_response(status))

    def _final(self, status: int, reason: str | None = None, *, extra: list | None = None) -> None:
        if self._final_sent or self._stx is None or self._request is None:
            return
        self._final_sent = True
        self.ua.respond(self._stx, make_response(self._request, status, reason,
                                                 to_tag=self.local_tag, extra=extra or ()))

    def answer(self) -> None:
        """Accept an incoming call: 200 OK with the SDP answer, retransmitted until ACK."""
        if self.direction != "incoming" or self.ended or self._final_sent:
            return
        if self._answer_sdp is None:  # still opening media: answer as soon as it is ready
            self._answer_requested = True
            return
        if self._auto_answer_handle:
            self._auto_answer_handle.cancel()
        self._final_sent = True
        response = self._dialog_response(200, body=self._answer_sdp)
        self._last_2xx = response
        self.ua.respond(self._stx, response)
        self._retransmit = AnswerRetransmission(self.ua.now(), self.ua.timers.t1,
                                                self.ua.timers.t2)
        self._arm_retransmit()
        if self.dialog:
            self.dialog.state = "confirmed"
        if self.negotiated is not None:
            self._start_media(self.negotiated)
        self._connected()

    def _arm_retransmit(self) -> None:
        if self._retransmit is None or self._retransmit.acked:
            return
        deadline = min(self._retransmit.deadline, self._retransmit.give_up_at)
        self._retransmit_handle = self.ua.loop.call_at(deadline, self._on_retransmit_timer)

    def _on_retransmit_timer(self) -> None:
        if self._retransmit is None or self.ended:
            return
        action = self._retransmit.on_timer(self.ua.now())
        if action == "retransmit" and self._last_2xx is not None:
            self.ua.send_stateless(self._last_2xx, self._response_peer or self._peer)
            self._arm_retransmit()
        elif action == "give-up":
            log.warning("call %s: no ACK for our 200 OK, hanging up", self.call_id)
            self._spawn(self._bye(reason="error", phrase="no ACK received"))
        elif action == "idle":
            self._arm_retransmit()

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        """Refuse an incoming call (486 Busy Here, 603 Decline …)."""
        if self.direction != "incoming" or self.ended or self._final_sent:
            return
        if self._auto_answer_handle:
            self._auto_answer_handle.cancel()
        response = make_response(self._request, status, reason, to_tag=self.local_tag)
        self._final_sent = True
        self.ua.respond(self._stx, response)
        self._end("rejected", status=status, phrase=response.reason)

    def on_cancel(self, cancel: Request) -> None:
        if self.direction != "incoming" or self.ended:
            return
        if self._final_sent:
            return  # too late: the call is answered; the caller will BYE
        self._final(487, "Request Terminated")
        self._end("cancelled", status=487, phrase="Request Terminated")

    def on_ack(self, ack: Request) -> None:
        if self.dialog is None or (ack.to.tag or "") != self.dialog.local_tag:
            return
        if self._retransmit is not None:
            self._retransmit.on_ack()
            if self._retransmit_handle:
                self._retransmit_handle.cancel()
        if self._delayed_offer and ack.body and self.negotiated is None:
            try:
                neg = sdp.apply_answer(self._offer, sdp.parse_sdp(ack.body))
            except sdp.SdpError as exc:
                self._spawn(self._bye(reason="error", phrase=f"bad SDP in ACK: {exc}"))
                return
            self._start_media(neg)
            self.codec = CANONICAL_CODECS.get(neg.codec.name.lower(), neg.codec.name)

    # == in-dialog requests (both directions) ===================================================
    def on_request(self, request: Request, stx: "ServerTransaction", peer: Peer) -> None:
        assert self.dialog is not None
        try:
            self.dialog.on_request(request)
        except DialogError as exc:
            self.ua.respond(stx, make_response(request, exc.status, exc.reason))
            return
        method = request.method
        if method == "BYE":
            self.ua.respond(stx, make_response(request, 200))
            if not self.ended:
                self._end("remote-hangup")
            return
        if method == "INVITE":
            if self.ended:
                self.ua.respond(stx, make_response(request, 481))
                return
            if self._reinvite_busy:  # both sides re-INVITEd at once (glare, §14.2)
                self.ua.respond(stx, make_response(request, 491))
                return
            self._spawn(self._on_reinvite(request, stx, peer))
            return
        if method == "OPTIONS":
            self.ua.respond(stx, self.ua.options_response(request, self.local_tag))
            return
        if method == "INFO":
            self.ua.respond(stx, make_response(request, 200))
            if request.content_type == "application/dtmf-relay":
                for line in request.body.decode("utf-8", "replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.strip().lower() == "signal" and value.strip():
                        self._on_dtmf(value.strip()[0])
            return
        self.ua.respond(stx, make_response(request, 405, extra=[("Allow", ALLOW)]))

    async def _on_reinvite(self, request: Request, stx: "ServerTransaction", peer: Peer) -> None:
        """A re-INVITE: new offer (hold/resume, new address), same media session."""
        audio = self.ua.config.audio
        response_peer = self.ua.response_peer(request, peer)
        if request.body:
            try:
                offer = sdp.parse_sdp(request.body)
                self._session_version += 1
                answer, neg = sdp.answer_offer(
                    offer, address=self._sdp_address(response_peer), port=self.media.local_port,
                    codecs=list(audio.codecs), session_id=self._session_id,
                    session_version=self._session_version, ptime_default=audio.ptime,
                    direction="sendonly" if self.on_hold else "sendrecv")
            except sdp.NoCommonCodec:
                self.ua.respond(stx, make_response(request, 488))
                return
            except sdp.SdpError as exc:
                self.ua.respond(stx, make_response(request, 400, f"Malformed SDP: {exc}"[:100]))
                return
            body = answer.to_bytes()
            self._start_media(neg)
            self._note_remote_hold(offer, neg)
        else:
            self._offer = self._make_offer(response_peer)
            self._delayed_offer = True
            self.negotiated = None
            body = self._offer.to_bytes()
        response = make_response(request, 200, to_tag=self.local_tag, extra=[
            ("Contact", self.ua.contact(response_peer)), ("Content-Type", "application/sdp")],
            body=body)
        self._request = request
        self._last_2xx = response
        self._response_peer = response_peer
        self.ua.respond(stx, response)
        self._retransmit = AnswerRetransmission(self.ua.now(), self.ua.timers.t1,
                                                self.ua.timers.t2)
        self._arm_retransmit()

    def _note_remote_hold(self, offer: sdp.SessionDescription, neg: sdp.NegotiatedMedia) -> None:
        """Their offer says sendonly/inactive (or the old c=0.0.0.0): they hold us."""
        audio = next((m for m in offer.media if m.media == "audio" and m.port), None)
        theirs = offer.direction_for(audio) if audio is not None else "inactive"
        held = theirs in ("sendonly", "inactive") or neg.remote_host in ("0.0.0.0", "::")
        if held != self.remote_hold:
            self.remote_hold = held
            self.ua.emit("hold", call_id=self.call_id, local=self.on_hold, remote=held)

    # == hold: our own re-INVITE (RFC 3264 §8.4, RFC 6337 §5.3) ==================================
    async def set_hold(self, hold: bool) -> None:
        """Hold (offer sendonly and send silence) or resume (sendrecv) with a re-INVITE.

        A refused re-INVITE leaves the session as it was (§14.1) and raises CallError. A 491
        (both sides re-INVITEd at once) is retried after §14.1's random wait.
        """
        if self.ended or self.state != "connected" or self.dialog is None or self.media is None:
            raise CallError("hold needs a connected call")
        if hold == self.on_hold:
            return
        if self._hold_busy:
            raise CallError("a hold or resume is already in progress")
        self._hold_busy = True
        try:
            for attempt in range(3):
                status, reason = await self._reinvite("sendonly" if hold else "sendrecv")
                if status < 300:
                    break
                if self.ended:
                    raise CallError("the call ended")
                if status == 491 and attempt < 2:
                    # §14.1: the Call-ID's owner waits 2.1–4 s, the other side 0–2 s
                    low, high = (2.1, 4.0) if self.direction == "outgoing" else (0.0, 2.0)
                    await asyncio.sleep(low + (high - low) * secrets.randbelow(1001) / 1000)
                    if self.ended:
                        raise CallError("the call ended")
                    continue
                if status == 481:  # the far end has no such dialog (§12.2.1.2)
                    self._end("error", status=status, phrase=f"re-INVITE: {reason}")
                elif status == 408:
                    self._spawn(self._bye(reason="error", phrase="re-INVITE timed out"))
                raise CallError(f"{status} {reason}".rstrip())
        finally:
            self._hold_busy = False
        self.on_hold = hold
        self._apply_mute()
        self.ua.emit("hold", call_id=self.call_id, local=self.on_hold, remote=self.remote_hold)

    async def _reinvite(self, direction: str) -> tuple[int, str]:
        """One re-INVITE with a new offer (and one digest retry): its final status."""
        assert self.dialog is not None
        try:
            peer = await self._dialog_peer()
        except OSError as exc:
            return 503, str(exc)
        offer = self._make_offer(peer, direction=direction)
        auth_header: tuple[str, str] | None = None
        for _ in range(2):
            extra = [("Content-Type", "application/sdp")]
            if auth_header is not None:
                extra.append(auth_header)
            request = self.dialog.create_request("INVITE", contact=self.ua.contact(peer),
                                                 extra=extra, body=offer.to_bytes())
            self.ua.common_headers(request)
            done: asyncio.Future = self.ua.loop.create_future()

            def on_response(resp: Response, request=request, done=done) -> None:
                if resp.status < 200:
                    return
                if resp.status < 300:
                    self._ack_reinvite(request, resp)  # again for each retransmitted 2xx
                if not done.done():
                    done.set_result(resp)

            def on_timeout(_error: str | None, done=done) -> None:
                if not done.done():
                    done.set_result(None)

            self.ua.stamp_via(request, peer)
            self._reinvite_busy = True  # only while it is in flight: not during a back-off
            try:
                self.ua.send_request(request, peer, on_response=on_response,
                                     on_timeout=on_timeout)
                response = await done
            finally:
                self._reinvite_busy = False
            if response is None:
                return 408, "Request Timeout"
            if auth_header is None:
                auth_header = self._dialog_credentials(response, request)
                if auth_header is not None:
                    continue
            if response.status >= 300:
                return response.status, response.reason
            try:
                neg = sdp.apply_answer(offer, sdp.parse_sdp(response.body))
            except sdp.SdpError as exc:
                self._spawn(self._bye(reason="error", phrase=f"bad SDP answer to re-INVITE: {exc}"))
                return 488, f"unusable SDP answer: {exc}"
            self._offer = offer
            self._start_media(neg)
            return response.status, response.reason
        return 401, "Unauthorized"

    def _dialog_credentials(self, response: Response, request: Request) -> tuple[str, str] | None:
        """The header answering a 401/407 to an in-dialog request, or None (not a challenge,
        no password, or nothing we can answer). A fresh digest client: the INVITE's would
        take a new challenge for a realm it answered before as wrong credentials."""
        acc = self.ua.account
        if response.status not in (401, 407) or acc is None or not acc.secret():
            return None
        digest = DigestClient(acc.username, acc.secret() or "")
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            return digest.respond(response.status, response.headers.get_all(name),
                                  request.method, request.uri, request.body)
        except (AuthenticationFailed, DigestError):
            return None

    def _ack_reinvite(self, request: Request, response: Response) -> None:
        if self.dialog is None:
            return
        ack = self._reinvite_ack
        if ack is None or ack.cseq[0] != request.cseq[0]:
            self.dialog.on_response(response)  # a target refresh (§12.2.1.2)
            ack = self._reinvite_ack = self.dialog.create_ack(request.cseq[0])
            self.ua.common_headers(ack)
        self._send_ack(ack)

    def _apply_mute(self) -> None:
        """Silence goes out while muted or while we hold the call (the held party must not
        hear the room)."""
        if self.media is not None:
            self.media.set_muted(self.muted or self.on_hold)

    # == ending ===============================================================================
    async def hangup(self) -> None:
        """End the call whatever its state; returns when it has ended (bounded)."""
        if self.ended:
            return
        if self.direction == "outgoing" and not self._answered.done():
            self._cancel_reason = "cancelled"
            self.cancel()
            if self._cancel_pending:
                # nothing provisional yet: wait a little for it, then give up locally
                await self.wait_ended(timeout=4 * self.ua.timers.t1 + 2)
                if not self.ended:
                    self._end("cancelled")
                return
            await self.wait_ended(timeout=64 * self.ua.timers.t1)
            return
        if self.direction == "incoming" and not self._final_sent:
            self.reject(486)
            return
        await self._bye(reason="hangup")

    async def _bye(self, *, reason: str, phrase: str | None = None) -> None:
        if self.ended or self.dialog is None:
            return
        self.state = "ending"
        bye = self.dialog.create_request("BYE")
        self.ua.common_headers(bye)
        try:
            peer = await self._dialog_peer()
        except OSError as exc:
            self._end(reason, phrase=phrase or str(exc))
            return
        done = self.ua.loop.create_future()

        def finish(_resp: Response | None = None) -> None:
            if _resp is not None and _resp.status < 200:
                return
            if _resp is not None and not getattr(finish, "retried", False):
                header = self._dialog_credentials(_resp, bye)
                if header is not None:
                    finish.retried = True  # type: ignore[attr-defined]
                    retry = self.dialog.create_request("BYE")
                    self.ua.common_headers(retry)
                    retry.headers.add(*header)
                    self.ua.stamp_via(retry, peer)
                    self.ua.send_request(retry, peer, on_response=finish,
                                         on_timeout=lambda error: finish())
                    return
            if not done.done():
                done.set_result(True)

        self.ua.stamp_via(bye, peer)
        self.ua.send_request(bye, peer, on_response=finish, on_timeout=lambda error: finish())
        self._end(reason, phrase=phrase)
        try:
            await asyncio.wait_for(done, 64 * self.ua.timers.t1 + 1)
        except asyncio.TimeoutError:
            pass

    def send_dtmf(self, digits: str) -> None:
        if self.media is not None and self.state == "connected":
            self.media.send_dtmf(digits)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self._apply_mute()

    async def _close_media(self) -> None:
        """RTCP BYE and sockets, then the devices (files flushed, PortAudio streams closed)."""
        media, devices, self._devices = self.media, self._devices, ()
        try:
            await media.close()
        finally:
            # an ended call is kept a while to absorb retransmissions: keep it light
            self.media = None
            for device in devices:
                close = getattr(device, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.debug("closing %r failed", device, exc_info=True)

    def _end(self, reason: str, *, status: int | None = None, phrase: str | None = None,
             emit: bool = True) -> None:
        if self.ended:
            return
        self.ended = True
        self.ended_at = time.monotonic()
        self.state = "ended"
        if self._auto_answer_handle:
            self._auto_answer_handle.cancel()
        if self._retransmit_handle:
            self._retransmit_handle.cancel()
        rtp = self.stats()
        info: dict[str, Any] = {"call_id": self.call_id, "reason": reason}
        if status is not None:
            info["status"] = status
        if phrase:
            info["phrase"] = phrase
        info["duration"] = round(self.duration, 3)
        info["rtp"] = rtp
        self.end_info = info
        log.info("call %s ended: %s %s %s", self.call_id, reason, status or "", phrase or "")
        if emit:
            self.ua.emit("ended", **info)
        if not self._answered.done():
            self._answered.cancel()
        if self.media is not None:
            self.ua.loop.create_task(self._close_media())
        if not self._finished.done():
            self._finished.set_result(info)
        self.ua.call_ended(self)
