"""asyncio SIP transports: one UDP socket and one TCP listener on the same port, and a
TLS listener on its own port when asked.

Thin on purpose: bytes in, bytes out, plus the connection bookkeeping TCP needs: a
response or request to a peer goes over the connection it opened to us (found by its
address, or by the Via ``;alias`` it announced, RFC 5923), else over one we open. Framing
and parsing live in ``sip.message``; what to do with a message lives in the UA.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable

from .sip.errors import SipParseError
from .sip.message import MAX_MESSAGE_SIZE, StreamFramer

__all__ = ["TransportLayer", "Peer", "StunClient", "StunError", "is_stun", "tls_context",
           "server_tls_context"]

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 256  # open TCP connections (both directions); more are refused
IDLE_INBOUND_TIMEOUT = 600.0  # s: a connection a peer opened and left silent is closed
PONG_TIMEOUT = 10.0  # s: RFC 5626 §4.4.1: no pong by then, the flow is dead
PING = b"\r\n\r\n"
PONG = b"\r\n"
STUN_COOKIE = b"\x21\x12\xa4\x42"


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to."""

    proto: str  # "udp" | "tcp" | "tls"
    host: str
    port: int
    name: str | None = field(default=None, compare=False, hash=False)  # TLS server name

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


Receiver = Callable[[bytes, Peer], None]
Tracer = Callable[[str, bytes, Peer], None]  # direction "sent"/"received"
ErrorSink = Callable[[Peer, str], None]


def is_stun(data: bytes) -> bool:
    """A STUN message (RFC 5389 §6: top bits 00 and the magic cookie); SIP starts with a
    letter, RTP with version bits 10."""
    return len(data) >= 20 and data[0] < 2 and data[4:8] == STUN_COOKIE


class StunError(OSError):
    """No usable answer from the STUN server; the message says which and why."""


class StunClient:
    """RFC 5389 Binding requests over a UDP socket someone else reads: ``sendto`` sends on
    it and whoever reads it hands STUN datagrams to :meth:`feed`. The codec is aioice's
    (a dependency of aiortc), imported on first use."""

    RTO = 0.25  # s, doubled at each retransmission (§7.2.1), until the timeout

    def __init__(self, sendto: Callable[[bytes, tuple], None]) -> None:
        self._sendto = sendto
        self._waiting: dict[bytes, asyncio.Future] = {}

    def feed(self, data: bytes, addr) -> bool:
        """True when ``data`` answered one of our requests (the caller drops it then)."""
        if not is_stun(data):
            return False
        fut = self._waiting.get(bytes(data[8:20]))
        if fut is None:  # not ours (late, or a stranger's): no use to anyone else either
            return True
        from aioice import stun

        try:
            message = stun.parse_message(data)
        except ValueError as exc:
            if not fut.done():
                fut.set_exception(StunError(f"STUN server {addr[0]}:{addr[1]} sent a "
                                            f"malformed answer: {exc}"))
            return True
        if not fut.done():
            fut.set_result(message)
        return True

    async def binding(self, server: tuple[str, int], timeout: float = 3.0) -> tuple[str, int]:
        """Our address as ``server`` sees it (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS)."""
        from aioice import stun

        request = stun.Message(message_method=stun.Method.BINDING,
                               message_class=stun.Class.REQUEST)
        data = bytes(request)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        key = bytes(request.transaction_id)
        self._waiting[key] = fut
        where = f"{server[0]}:{server[1]}"
        deadline = loop.time() + timeout
        rto = self.RTO
        try:
            while True:
                try:
                    self._sendto(data, server)
                except OSError as exc:
                    raise StunError(f"STUN server {where}: {exc.strerror or exc}") from None
                left = deadline - loop.time()
                if left <= 0:
                    raise StunError(f"STUN server {where} did not answer within {timeout:g} s")
                try:
                    answer = await asyncio.wait_for(asyncio.shield(fut), min(rto, left))
                    break
                except asyncio.TimeoutError:
                    rto *= 2
        finally:
            self._waiting.pop(key, None)
        if answer.message_class != stun.Class.RESPONSE:
            error = answer.attributes.get("ERROR-CODE")
            raise StunError(f"STUN server {where} refused the binding: "
                            f"{error[0] if error else ''} {error[1] if error else ''}".strip())
        mapped = answer.attributes.get("XOR-MAPPED-ADDRESS") or \
            answer.attributes.get("MAPPED-ADDRESS")
        if not mapped:
            raise StunError(f"STUN server {where} answered without a mapped address")
        return str(mapped[0]), int(mapped[1])


def tls_context(*, verify: bool = True, ca_file: str | None = None,
                cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """Client TLS: certificates and host names verified unless the user turned it off;
    our certificate shown to servers that ask for one."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The TLS listener's: our certificate; callers are not asked for one (who may call
    is the stranger policy's business, as with UDP and TCP)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _start_line(data: bytes) -> str:
    """The first line only: enough to follow a flow, never a header that could matter."""
    return data.split(b"\r\n", 1)[0][:120].decode("utf-8", "replace")


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, layer: "TransportLayer") -> None:
        self.layer = layer

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        if data[:1] in (b"\x00", b"\x01") and self.layer.stun.feed(data, addr):
            return
        self.layer._received(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        """ICMP port/host unreachable (RFC 3261 §18.4: a transport failure): the error
        queue (IP_RECVERR) says which destination refused, so its requests fail now (and
        fail over to the next server) instead of retransmitting for 32 s."""
        log.debug("udp error: %s", exc)
        transport = self.layer._udp
        sock = transport.get_extra_info("socket") if transport is not None else None
        raw = getattr(sock, "_sock", sock)  # asyncio's wrapper hides recvmsg
        for _ in range(64):
            try:
                _data, ancdata, _flags, addr = raw.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (OSError, AttributeError, ValueError):
                return
            errno_ = exc.errno if isinstance(exc, OSError) else None
            for _level, _type, payload in ancdata:
                if len(payload) >= 4:  # struct sock_extended_err: ee_errno first
                    errno_ = int.from_bytes(payload[:4], "little")
            if not isinstance(addr, tuple) or errno_ is None:
                continue
            peer = Peer("udp", addr[0], addr[1])
            reason = (f"nothing listens at UDP {peer} (ICMP port unreachable)"
                      if errno_ == errno.ECONNREFUSED else
                      f"UDP to {peer}: {os.strerror(errno_)} (ICMP)")
            log.info("%s", reason)
            if self.layer.on_unreachable is not None:
                self.layer.on_unreachable(peer, reason)


def _udp_socket(family: int, host: str, port: int) -> socket.socket:
    """Our UDP socket, with ICMP errors queued (IP_RECVERR) so we learn who refused."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for level, option in ((socket.IPPROTO_IP, 11), (socket.IPPROTO_IPV6, 25)):
            try:  # IP_RECVERR / IPV6_RECVERR (Linux)
                sock.setsockopt(level, option, 1)
            except OSError:
                pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Relay:
    """A worker's UDP, through the dispatcher that owns the SIP port (``--workers``): each
    datagram comes and goes as ``b"HOST PORT\\n" + payload`` on a Unix datagram socket
    pair (read with the loop's reader callback; a full pipe drops, as UDP would)."""

    def __init__(self, layer: "TransportLayer", sock: socket.socket) -> None:
        self.layer = layer
        self.sock = sock
        sock.setblocking(False)
        self.dropped = 0
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):  # bounded: let the loop breathe between bursts
            try:
                data = self.sock.recv(MAX_MESSAGE_SIZE + 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("dispatcher line failed: %s", exc)
                self.close()
                return
            head, _, payload = data.partition(b"\n")
            try:
                host, port = head.decode("ascii").rsplit(" ", 1)
                peer = Peer("udp", host, int(port))
            except ValueError:
                log.warning("dispatcher sent an unreadable frame")
                continue
            if payload[:1] in (b"\x00", b"\x01") and \
                    self.layer.stun.feed(payload, (peer.host, peer.port)):
                continue  # the answer to our STUN binding (worker 0: no Call-ID)
            self.layer._received(payload, peer)

    # the part of DatagramTransport the layer uses
    def sendto(self, data: bytes, addr) -> None:
        try:
            self.sock.send(f"{addr[0]} {addr[1]}\n".encode("ascii") + data)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            log.debug("dispatcher line: %s", exc)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()

    def get_extra_info(self, name: str, default=None):
        return self.sock if name == "socket" else default


class _TcpConnection(asyncio.Protocol):
    def __init__(self, layer: "TransportLayer", inbound: bool = False) -> None:
        self.layer = layer
        self.inbound = inbound  # opened by the peer (ours to the registrar are kept open)
        self.last_activity = time.monotonic()
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.pong_due: asyncio.TimerHandle | None = None  # a ping of ours awaits its pong
        self.close_reason: str | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        addr = transport.get_extra_info("peername")
        proto = "tls" if transport.get_extra_info("sslcontext") is not None else "tcp"
        self.peer = Peer(proto, addr[0], addr[1])
        if len(self.layer._connections) >= MAX_TCP_CONNECTIONS:
            self.layer.stats["connections_refused"] += 1
            log.warning("too many TCP connections: refusing %s", self.peer)
            self.peer = None
            transport.abort()
            return
        self.layer._connections[(self.peer.host, self.peer.port)] = self

    def data_received(self, data: bytes) -> None:
        if self.peer is None:  # refused in connection_made
            return
        self.last_activity = time.monotonic()
        crlfs = self.framer.keepalives
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            log.warning("closing TCP connection from %s: %s", self.peer, exc.reason)
            self.layer.stats["stream_errors"] += 1
            assert self.transport is not None
            self.transport.close()
            return
        crlfs = self.framer.keepalives - crlfs
        if crlfs:  # RFC 5626 §4.4.1: a CRLF answers our ping, a double CRLF is a ping
            if self.pong_due is not None:
                self.pong_due.cancel()
                self.pong_due = None
            elif crlfs >= 2 and self.transport is not None:
                self.transport.write(PONG)
        for raw in messages:
            assert self.peer is not None
            self.layer._received(raw, self.peer)

    def ping(self, timeout: float) -> None:
        assert self.transport is not None
        self.transport.write(PING)
        if self.pong_due is None:
            self.pong_due = asyncio.get_running_loop().call_later(timeout, self._no_pong)

    def _no_pong(self) -> None:
        self.pong_due = None
        if self.peer is not None:
            log.warning("no CRLF pong from %s within %g s: the flow is dead", self.peer,
                        PONG_TIMEOUT)
            self.layer.stats["dead_flows"] += 1
        self.close_reason = "no keep-alive pong"
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        if self.pong_due is not None:
            self.pong_due.cancel()
            self.pong_due = None
        if self.peer is not None:
            key = (self.peer.host, self.peer.port)
            if self.layer._connections.get(key) is self:
                del self.layer._connections[key]
            for alias in [k for k, conn in self.layer._aliases.items() if conn is self]:
                del self.layer._aliases[alias]
            reason = self.close_reason or (f"connection reset: {exc.strerror or exc}"
                                           if isinstance(exc, OSError) else "connection closed")
            self.layer._closed(self.peer, reason, inbound=self.inbound)


class TransportLayer:
    """UDP + TCP endpoints bound to one host:port (+ a TLS listener on its own)."""

    def __init__(self, on_message: Receiver, tracer: Tracer | None = None, *,
                 on_error: ErrorSink | None = None,
                 tls: "ssl.SSLContext | Callable[[], ssl.SSLContext] | None" = None) -> None:
        self.on_message = on_message
        self.tracer = tracer
        self.on_error = on_error
        # a context, or what makes one on the first TLS connection: loading the system's
        # CA store costs ~30 ms that a UDP-only phone never needs
        self._tls = tls
        self.host = "0.0.0.0"
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_sock: socket.socket | None = None  # our own UDP socket (not a relay's)
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tls_server: asyncio.base_events.Server | None = None
        self.tls_port: int | None = None  # the TLS listener's port, when one listens
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        # (proto, host, port) a peer's Via ;alias named -> the connection it opened to us
        self._aliases: dict[tuple[str, str, int], _TcpConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self.stats = {"received": 0, "sent": 0, "stream_errors": 0, "oversized": 0,
                      "connections_refused": 0, "keepalives_sent": 0, "dead_flows": 0}
        # a stream connection closed (reset, EOF, no pong): (peer, reason, inbound)
        self.on_closed: Callable[[Peer, str, bool], None] | None = None
        # an ICMP error said nothing listens at a UDP destination: (peer, reason)
        self.on_unreachable: ErrorSink | None = None
        self.stun = StunClient(self._send_udp)
        self._closing = False

    @property
    def tls(self) -> ssl.SSLContext:
        """The client TLS context, made on first use."""
        if callable(self._tls):
            self._tls = self._tls()
        if self._tls is None:
            self._tls = tls_context()
        return self._tls

    async def start(self, host: str, port: int, *, tcp: bool = True,
                    relay: socket.socket | None = None) -> None:
        """Bind UDP (and TCP on the same port). Port 0 picks a free one for both. With
        ``relay`` (a worker of ``answer --workers``) UDP goes through the dispatcher that
        holds ``host:port``, and TCP shares the port with the other workers (the kernel
        spreads the connections)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if relay is not None:
            self._udp = _Relay(self, relay)  # type: ignore[assignment]
            self.host, self.port = host, port
            if tcp:
                self._tcp_server = await loop.create_server(
                    lambda: _TcpConnection(self, inbound=True), host=host, port=port,
                    family=family, reuse_address=True, reuse_port=True)
                self._reaper = loop.call_later(60, self._reap_idle)
            return
        last_error: OSError | None = None
        for _attempt in range(20 if port == 0 else 1):
            udp = None
            try:
                sock = _udp_socket(family, host, port)
                udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=sock)
                self._udp_sock = sock
                bound = udp.get_extra_info("sockname")[1]
                if tcp:
                    self._tcp_server = await loop.create_server(
                        lambda: _TcpConnection(self, inbound=True), host=host, port=bound,
                        family=family, reuse_address=True)
                self._udp = udp
                self.host, self.port = host, bound
                if tcp:
                    self._reaper = loop.call_later(60, self._reap_idle)
                return
            except OSError as exc:
                last_error = exc
                if udp is not None:
                    udp.close()
        raise OSError(f"cannot listen on {host}:{port}: {last_error}")

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext, *,
                        shared: bool = False) -> None:
        """Listen for SIP over TLS on host:port (0: a free port); ``shared``: with the
        other workers of ``answer --workers`` (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._tls_server = await loop.create_server(
                lambda: _TcpConnection(self, inbound=True), host=host, port=port,
                family=family, reuse_address=True, reuse_port=shared or None, ssl=context,
                ssl_handshake_timeout=10)
        except OSError as exc:
            raise OSError(f"cannot listen for TLS on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
        self.tls_port = self._tls_server.sockets[0].getsockname()[1]

    def port_for(self, proto: str) -> int:
        """Our port for ``proto``: the TLS listener's for TLS (when there is one)."""
        return self.tls_port if proto == "tls" and self.tls_port else self.port

    def alias(self, peer: Peer, port: int) -> None:
        """RFC 5923: the peer that opened this connection wants requests to its host:port
        sent over it. Only for its own address (a Via can name any host)."""
        conn = self._connections.get((peer.host, peer.port))
        if conn is not None and conn.inbound and (peer.host, port) != (peer.host, peer.port):
            if len(self._aliases) < MAX_TCP_CONNECTIONS:
                self._aliases[(peer.proto, peer.host, port)] = conn

    def opened_by_us(self, peer: Peer) -> bool:
        """``peer`` is the far end of a connection we opened (to a registrar, a proxy)."""
        conn = self._connections.get((peer.host, peer.port))
        return conn is not None and not conn.inbound

    def _received(self, data: bytes, peer: Peer) -> None:
        self.stats["received"] += 1
        if len(data) > MAX_MESSAGE_SIZE:
            self.stats["oversized"] += 1
            return
        if data.strip(b"\r\n\x00") == b"":
            return  # keep-alive
        if self.tracer:
            self.tracer("received", data, peer)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("received from %s %s: %s", peer.proto, peer, _start_line(data))
        self.on_message(data, peer)

    def _send_udp(self, data: bytes, addr: tuple) -> None:
        """Send one datagram now, or raise OSError.

        With IP_RECVERR, an ICMP error that an earlier datagram drew (a peer that went
        away) is reported by the socket's next send, whatever its destination, and that
        send is lost; asyncio's ``sendto`` would swallow both. So the socket is written
        directly: on an error the datagram is sent again (the error is cleared once
        reported), a bounded number of times, and the error queue, which says which peer
        refused, is read on the next loop turn: reading it now would fail transactions
        in the middle of the stack applying another one's actions."""
        udp = self._udp
        if udp is None:
            raise OSError("transport not started")
        sock = self._udp_sock
        if sock is None or udp.get_write_buffer_size():  # a relay, or asyncio has a queue
            udp.sendto(data, addr)
            return
        protocol = udp.get_protocol()
        for attempt in range(4):
            try:
                sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                udp.sendto(data, addr)  # the kernel buffer is full: asyncio queues it
                return
            except OSError as exc:
                asyncio.get_running_loop().call_soon(protocol.error_received, exc)
                if attempt == 3:
                    raise

    def ping(self, peer: Peer, timeout: float = PONG_TIMEOUT) -> bool:
        """A CRLF keep-alive on the flow to ``peer`` (RFC 5626 §4.4.1): over TCP/TLS a
        double CRLF that must be answered with a CRLF within ``timeout`` (or the flow is
        closed as dead); over UDP a double CRLF, unanswered. False: no open flow."""
        self.stats["keepalives_sent"] += 1
        if peer.proto == "udp":
            try:
                self._send_udp(PING, (peer.host, peer.port))
            except OSError:
                return False
            return True
        conn = self._connections.get((peer.host, peer.port))
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return False
        conn.ping(timeout)
        return True

    def has_flow(self, peer: Peer) -> bool:
        """An open stream connection to ``peer`` (always True for UDP)."""
        if peer.proto == "udp":
            return self._udp is not None
        conn = self._connections.get((peer.host, peer.port))
        return conn is not None and conn.transport is not None and \
            not conn.transport.is_closing()

    def _closed(self, peer: Peer, reason: str, *, inbound: bool) -> None:
        if self._closing or self.on_closed is None:
            return
        try:
            self.on_closed(peer, reason, inbound)
        except Exception:
            log.exception("flow-closed handler failed")

    def send(self, data: bytes, peer: Peer) -> None:
        """Send now over UDP or an existing TCP connection; opens one if needed. A send
        that fails raises OSError (UDP, TCP/TLS with a connection) or is reported by
        ``on_error`` (a connection that cannot be opened); only what went out is traced."""
        if peer.proto == "udp":
            self._send_udp(data, (peer.host, peer.port))
            self._sent(data, peer)
            return
        if peer.proto not in ("tcp", "tls"):
            raise OSError(f"unknown transport {peer.proto!r}")
        conn = self._connections.get((peer.host, peer.port)) or \
            self._aliases.get((peer.proto, peer.host, peer.port))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.last_activity = time.monotonic()
            conn.transport.write(data)
            self._sent(data, peer)
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(data, peer))

    def _sent(self, data: bytes, peer: Peer) -> None:
        self.stats["sent"] += 1
        if self.tracer:
            self.tracer("sent", data, peer)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent to %s %s: %s", peer.proto, peer, _start_line(data))

    async def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        key = (peer.host, peer.port)
        loop = asyncio.get_running_loop()
        try:
            fut = self._connecting.get(key)
            if fut is None:
                kwargs: dict = {}
                if peer.proto == "tls":
                    kwargs = {"ssl": self.tls,
                              "server_hostname": peer.name or peer.host}
                fut = loop.create_task(loop.create_connection(
                    lambda: _TcpConnection(self), peer.host, peer.port, **kwargs))
                self._connecting[key] = fut
            try:
                transport, _ = await asyncio.wait_for(asyncio.shield(fut), 10)
            finally:
                self._connecting.pop(key, None)
            transport.write(data)
            self._sent(data, peer)
        except ssl.SSLCertVerificationError as exc:
            self._failed(peer, f"TLS certificate of {peer.name or peer.host} not trusted: "
                               f"{exc.verify_message or exc.reason}")
        except ssl.SSLError as exc:
            self._failed(peer, f"TLS handshake with {peer} failed: {exc.reason or exc}")
        except asyncio.TimeoutError:
            self._failed(peer, f"{peer.proto.upper()} connect to {peer} timed out")
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc)
            self._failed(peer, f"{peer.proto.upper()} connect to {peer} failed: {why}")

    def _failed(self, peer: Peer, reason: str) -> None:
        if self.on_error is None:
            log.warning("%s", reason)
            return
        log.info("%s", reason)  # the owner reports it (a failed call says why)
        self.on_error(peer, reason)

    def _reap_idle(self) -> None:
        """Close connections peers opened and left silent (they would hold a slot forever)."""
        now = time.monotonic()
        for conn in list(self._connections.values()):
            if conn.inbound and conn.transport is not None and \
                    now - conn.last_activity > IDLE_INBOUND_TIMEOUT:
                conn.transport.close()
        if self._udp is not None:
            self._reaper = asyncio.get_running_loop().call_later(60, self._reap_idle)

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
            self._udp_sock = None
        for conn in list(self._connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in (self._tcp_server, self._tls_server):
            if server is None:
                continue
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self._tcp_server = self._tls_server = None
