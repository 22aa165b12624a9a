"""The first steps of a request off the wire, before any transaction: the top Via as the
transport saw it come (RFC 3261 §18.2.1 received=, RFC 3581 rport=, RFC 5923 ;alias),
where its responses go (§18.2.2), and a 400 (505 for a SIP version we do not speak) to a
malformed request that carries enough to be answered (§8.2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..sip.errors import SipParseError
from ..sip.ids import new_tag
from ..sip.message import Request, make_response
from ..transport import Peer

if TYPE_CHECKING:
    from ..transport import TransportLayer

__all__ = ["response_peer", "stamp_received", "answer_malformed"]

log = logging.getLogger(__name__)


def response_peer(request: Request, peer: Peer) -> Peer:
    """Where responses go (§18.2.2 with RFC 3581 rport)."""
    if peer.proto != "udp":
        return peer
    via = request.top_via
    host = via.params.get("received") or via.host.strip("[]")
    rport = via.params.get("rport")
    port = int(rport) if rport and rport.isdigit() else (via.port or 5060)
    return Peer("udp", host, port)


def stamp_received(request: Request, peer: Peer, transport: "TransportLayer") -> None:
    """RFC 3261 §18.2.1 received= and RFC 3581 rport= on the top Via; over TCP/TLS,
    a Via ;alias (RFC 5923) for the peer's own address maps it to the connection."""
    if peer.proto != "udp":
        via = request.top_via
        if "alias" in via.params and via.host.strip("[]") == peer.host:
            transport.alias(peer, via.port or (5061 if peer.proto == "tls" else 5060))
        return
    via = request.top_via
    changed = False
    if via.host.strip("[]") != peer.host:
        via.params["received"] = peer.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(peer.port)
        via.params.setdefault("received", peer.host)
        changed = True
    if changed:
        request.replace_top_via(via)


def answer_malformed(exc: SipParseError, peer: Peer, transport: "TransportLayer") -> bool:
    """400 with the reason when the request carries enough to be answered (§8.2); True
    when it was answered."""
    req = exc.partial
    if not isinstance(req, Request) or req.method == "ACK":
        log.info("dropped malformed message from %s: %s", peer, exc.reason)
        return False
    h = req.headers
    if not (h.get_all("Via") and h.get("From") and h.get("To") and h.get("Call-ID")
            and h.get("CSeq")):
        log.info("dropped malformed request from %s: %s", peer, exc.reason)
        return False
    reason = exc.reason[:1].upper() + exc.reason[1:]
    status = 505 if "version" in exc.reason else 400
    try:
        try:
            stamp_received(req, peer, transport)
            dest = response_peer(req, peer)
        except SipParseError:  # a Via we cannot read (SIP/7.0/UDP …): back to the source
            dest = peer
        resp = make_response(req, status, reason, to_tag=new_tag())
        transport.send(resp.to_bytes(), dest)
        return True
    except (SipParseError, OSError) as err:
        log.info("could not answer malformed request from %s: %s", peer, err)
        return False
