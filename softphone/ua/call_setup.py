"""How a call starts: the INVITE session for a call we place or one that rings in, with
the SDP negotiator and the session extensions the config asks for, and its RTP socket
(offered at its STUN mapping when one is configured).

:class:`~softphone.ua.call.Call` binds the session to the media once they exist; this
builds them. Policy at set-up lives here too: the route and transport of an outgoing
call, SDES keys never over clear-text signalling, auto-answer (at once: no 180, as
``pjsua --auto-answer``), and a replacing call (RFC 3891) answered without ringing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..sip.ids import new_call_id, new_tag
from ..sip.invite import InviteSession, SessionOptions
from ..sip.message import Request
from ..sip.negotiator import MediaPolicy, SdpNegotiator
from ..sip.uri import NameAddr, SipUri
from ..transport import Peer
from . import events as ev
from . import alerts, waiting
from .incoming import response_peer as peer_for_responses
from .errors import CallError

if TYPE_CHECKING:
    from .account import Account
    from .agent import UserAgent
    from .call import Call

__all__ = ["place", "take", "sdes_refusal", "negotiator", "session_options"]

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


def negotiator(agent: "UserAgent", address: str, account: "Account | None",
               transport: str) -> SdpNegotiator:
    """The SDP offer/answer of a call: [audio] codecs, ptime, DTMF; the account's SRTP."""
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


def session_options(agent: "UserAgent", contact: str, transport: str) -> SessionOptions:
    """The INVITE session's options: the extensions [sip] and [calls] turn on."""
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


async def map_media(call: "Call") -> None:
    """With ``[network] stun_server``: our SDP offers the RTP socket's public address
    (its STUN mapping), not the local one; not towards loopback peers."""
    network = call.agent.config.network
    peer = call.signalling_peer
    if not network.stun_server or network.public_address or peer is None or \
            peer.host.startswith("127.") or peer.host == "::1":
        return
    try:
        server = await call.agent.stack.addresses.stun_server()
        if server is None:
            return
        mapped = await call.media.stun_binding(server)
    except OSError as exc:
        log.warning("STUN for RTP failed, offering the local address: %s", exc)
        return
    call.session.negotiator.set_local(*mapped)


async def place(cls: type["Call"], agent: "UserAgent", ruri: SipUri, *,
                account: "Account | None", timeout: float | None = None,
                extra_headers: list[tuple[str, str]] | None = None) -> "Call":
    """An outgoing call: route (the account's proxy or registrar, else the URI's host),
    RTP socket, then the INVITE; ``timeout`` gives up locally (no provisional: no
    CANCEL may be sent yet)."""
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
        stack.admission.trust(peer)
    user = account.user if account is not None else agent.user
    secure = "sips" in (ruri.scheme, hop.scheme) and peer.proto == "tls"
    contact = f"<{stack.addresses.contact_uri(peer, user, secure=secure)}>"
    local = account.identity() if account is not None else agent.local_identity(peer)
    remote = NameAddr(ruri.with_(params={k: v for k, v in ruri.params.items() if k == "user"},
                                 headers={}))
    sdp = negotiator(agent, stack.addresses.local_ip_for(peer.host), account, peer.proto)
    session = InviteSession.outgoing(
        request_uri=ruri, local=local, remote=remote, target=hop, call_id=new_call_id(),
        local_tag=new_tag(), negotiator=sdp, routes=routes,
        options=session_options(agent, contact, peer.proto),
        authenticator=account.authenticator if account is not None else None,
        extra_headers=extra_headers)
    call = cls(agent, session, "outgoing", account, remote, local)
    agent.add_call(call)
    try:
        port = await call.media.open(stack.transport.host, agent.config.network.rtp_ports)
    except OSError as exc:
        agent.discard_call(call)
        raise CallError(f"no RTP port available: {exc}") from None
    sdp.port = port
    call.signalling_peer = peer
    await map_media(call)
    stack.attach(session, call._on_session_event)
    call.announced = True
    call._publish(ev.Calling(call.call_id, str(remote.uri), call.account_name))
    call._run(session.start(stack.now()))
    if timeout:
        call._timers["setup"] = agent.loop.call_later(timeout, call._setup_timeout, peer)
    return call


def take(cls: type["Call"], agent: "UserAgent", request: Request, peer: Peer,
         account: "Account | None", *, replaces: "Call | None" = None,
         refuse: tuple[int, str] | None = None) -> "Call":
    """A call ringing in; ``replaces``: it takes that call over (answered at once);
    ``refuse``: do not disturb (status, phrase), noted and refused at once."""
    stack = agent.stack
    response_peer = peer_for_responses(request, peer)
    user = account.user if account is not None else agent.user
    secure = _started_secure(request) and response_peer.proto == "tls"
    contact = f"<{stack.addresses.contact_uri(response_peer, user, secure=secure)}>"
    sdp = negotiator(agent, stack.addresses.local_ip_for(response_peer.host), account,
                     peer.proto)
    session = InviteSession.incoming(
        request, local_tag=new_tag(), negotiator=sdp,
        options=session_options(agent, contact, peer.proto),
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
    call._spawn(_prepare_incoming(call))
    return call


async def _prepare_incoming(call: "Call") -> None:
    """Open the RTP socket, answer the offer, then ring (or answer: auto, replacing)."""
    agent, session = call.agent, call.session
    try:
        port = await call.media.open(agent.stack.transport.host,
                                     agent.config.network.rtp_ports)
    except OSError:
        call._run(session.reject(agent.stack.now(), 503, "No RTP Port Available"))
        return
    if call.ended:  # cancelled while we opened the socket
        return
    session.negotiator.port = port
    await map_media(call)
    if call.ended:
        return
    call._run(session.media_ready(agent.stack.now()))
    if call.ended:  # 488: nothing in common
        return
    call.state = "ringing"
    replacing = call.replaces is not None  # RFC 3891 §3: it takes over; no ringing
    immediate = (agent.auto_answer and agent.answer_delay <= 0) or replacing
    if not immediate:
        call._run(session.ring(agent.stack.now()))
    call.announced = True
    call_waiting = not replacing and waiting.has_active_call(agent, but=call)
    call._publish(ev.Incoming(call.call_id, str(call.remote.uri), str(call.local.uri),
                              call.remote.display_name, call.account_name,
                              call_waiting=call_waiting or None,
                              replaces=call.replaces.call_id if replacing else None))
    if immediate or call._answer_requested:
        call.answer()
    elif agent.auto_answer:
        call._timers["auto-answer"] = agent.loop.call_later(agent.answer_delay, call.answer)
    alerts.refresh(agent)


def _started_secure(request: Request) -> bool:
    """The INVITE asks for sips: all the way (RFC 3261 §12.1.1): its Request-URI, else
    its top Record-Route, else (no Record-Route) its Contact is a sips: URI."""
    if getattr(request.uri, "scheme", None) == "sips":
        return True
    routes = request.headers.get_all("Record-Route")
    if routes:
        return routes[0].lstrip().lstrip("<").lower().startswith("sips:")
    return any(getattr(c.uri, "scheme", None) == "sips" for c in request.contacts[:1])
