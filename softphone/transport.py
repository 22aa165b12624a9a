"""asyncio SIP transports: one UDP socket and one TCP listener on the same port, and a
TLS listener on its own port when asked.

Thin on purpose: bytes in, bytes out, plus the connection bookkeeping TCP needs: a
response or request to a peer goes over the connection it opened to us (found by its
address, or by the Via ``;alias`` it announced, RFC 5923), else over one we open. Framing
and parsing live in ``sip.message``; what to do with a message lives in the UA.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Callable

from .sip.errors import SipParseError
from .sip.message import MAX_MESSAGE_SIZE, StreamFramer

__all__ = ["TransportLayer", "Peer", "tls_context", "server_tls_context"]

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 256  # open TCP connections (both directions); more are refused
IDLE_INBOUND_TIMEOUT = 600.0  # s: a connection a peer opened and left silent is closed


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
        self.layer._received(data, Peer("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction layer times out by itself
        log.debug("udp error: %s", exc)


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
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            log.warning("closing TCP connection from %s: %s", self.peer, exc.reason)
            self.layer.stats["stream_errors"] += 1
            assert self.transport is not None
            self.transport.close()
            return
        for raw in messages:
            assert self.peer is not None
            self.layer._received(raw, self.peer)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        if self.peer is not None:
            self.layer._connections.pop((self.peer.host, self.peer.port), None)
            for key in [k for k, conn in self.layer._aliases.items() if conn is self]:
                del self.layer._aliases[key]


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
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tls_server: asyncio.base_events.Server | None = None
        self.tls_port: int | None = None  # the TLS listener's port, when one listens
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        # (proto, host, port) a peer's Via ;alias named -> the connection it opened to us
        self._aliases: dict[tuple[str, str, int], _TcpConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self.stats = {"received": 0, "sent": 0, "stream_errors": 0, "oversized": 0,
                      "connections_refused": 0}

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
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, port), family=family)
                bound = udp.get_extra_info("sockname")[1]
                if tcp:
                    self._tcp_server = await loop.create_server(
                        lambda: _TcpConnection(self, inbound=True), host=host, port=bound,
                        family=family, reuse_address=True)
                self._udp = udp
                self.host, self.port = host, bound
                if tcp:
                    self._reaper = loop.call_later(60, self._reap_idle)
                sock = udp.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
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

    def send(self, data: bytes, peer: Peer) -> None:
        """Send now over UDP or an existing TCP connection; opens one if needed."""
        if self.tracer:
            self.tracer("sent", data, peer)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent to %s %s: %s", peer.proto, peer, _start_line(data))
        self.stats["sent"] += 1
        if peer.proto == "udp":
            if self._udp is None:
                raise OSError("transport not started")
            self._udp.sendto(data, (peer.host, peer.port))
            return
        if peer.proto not in ("tcp", "tls"):
            raise OSError(f"unknown transport {peer.proto!r}")
        conn = self._connections.get((peer.host, peer.port)) or \
            self._aliases.get((peer.proto, peer.host, peer.port))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.last_activity = time.monotonic()
            conn.transport.write(data)
            return
        asyncio.get_running_loop().create_task(self._connect_and_send(data, peer))

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
        except ssl.SSLCertVerificationError as exc:
            self._failed(peer, f"TLS certificate of {peer.name or peer.host} not trusted: "
                               f"{exc.verify_message or exc.reason}")
        except ssl.SSLError as exc:
            self._failed(peer, f"TLS handshake with {peer} failed: {exc.reason or exc}")
        except asyncio.TimeoutError:
            self._failed(peer, f"{peer.proto.upper()} connect to {peer} timed out")
        except OSError as exc:
            self._failed(peer, f"{peer.proto.upper()} connect to {peer} failed: "
                               f"{exc.strerror or exc}")

    def _failed(self, peer: Peer, reason: str) -> None:
        log.warning("%s", reason)
        if self.on_error is not None:
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
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
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
