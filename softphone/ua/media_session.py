"""A call's audio: the RTP session, its devices, and each negotiated agreement applied.

The INVITE session says *what* was agreed (:class:`~softphone.sip.sdp.NegotiatedMedia`);
this starts the RTP stream on the first agreement, updates it on later ones (codec,
address, direction), and keeps mute and hold apart: silence goes out while muted or while
we hold the call, and the user's mute survives a resume. SRTP keys from the agreement go
to the RTP session before its first packet, and again on every re-key.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..sip.sdp import NegotiatedMedia

__all__ = ["MediaSession", "canonical_codec"]

log = logging.getLogger(__name__)

_CANONICAL = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}

Devices = Callable[[], tuple[Any, Any]]


def canonical_codec(name: str) -> str:
    """The SDP encoding name as the events spell it: PCMU, PCMA, G722, opus."""
    return _CANONICAL.get(name.lower(), name)


class MediaSession:
    def __init__(self, devices: Devices, *, rtp_timeout: float = 0.0,
                 on_dtmf: Callable[[str], None] | None = None,
                 on_timeout: Callable[[], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 tap: Callable[[str, bytes, tuple, tuple], None] | None = None) -> None:
        self.devices_factory = devices
        self.tap = tap  # every RTP/RTCP packet, for a capture (--trace-rtp)
        self.rtp_timeout = rtp_timeout
        self.on_dtmf = on_dtmf
        self.on_timeout = on_timeout
        self.on_error = on_error      # the media cannot work (SRTP packets do not open)
        self.rtp: Any = None          # media.rtp.RtpSession once open
        self.devices: tuple[Any, Any] = ()
        self.negotiated: NegotiatedMedia | None = None
        self.codec: str | None = None
        self.srtp: str | None = None  # the SRTP suite in use, None for plain RTP
        self.started = False
        self.muted = False            # the user's mute
        self.held = False             # we hold the call
        self.bridge: Any = None       # the conference bridge this call is mixed in
        self._bridge_key: Any = None
        self._overlay: Any = None     # lays the call-waiting tone over the speaker
        self._closed = False
        self._final: dict[str, Any] | None = None  # the counters, kept after close
        self._playing: Any = None     # what play() put in place of the call's source
        self._play_timer: Any = None
        self._taps: list[Any] = []    # sinks that hear what the speaker hears

    async def open(self, host: str, port_range: tuple[int, int]) -> int:
        """Bind the RTP/RTCP port pair; returns the RTP port (raises OSError)."""
        from ..media.rtp import RtpSession

        self.rtp = await RtpSession.open(host=host, port_range=port_range)
        if self.tap is not None:
            self.rtp.capture(self.tap)
        self.rtp.on_srtp_error = self._media_error
        return self.rtp.local_port

    def _media_error(self, why: str) -> None:
        if self.on_error is not None:
            self.on_error(why)

    async def stun_binding(self, server: tuple[str, int], timeout: float = 2.0) -> tuple[str, int]:
        """The RTP socket's public address as the STUN server sees it (RFC 5389), asked
        before the stream starts (raises OSError)."""
        from ..transport import StunClient

        transport = self.rtp.rtp_transport if self.rtp is not None else None
        if transport is None or self.started:
            raise OSError("the RTP socket is not open")
        port = transport.get_protocol()
        client = StunClient(transport.sendto)
        previous = port.on_rtp

        def hook(data: bytes, addr) -> None:
            if not client.feed(data, addr):
                previous(data, addr)

        port.on_rtp = hook
        try:
            return await client.binding(server, timeout)
        finally:
            if port.on_rtp is hook:  # (the stream did not start meanwhile)
                port.on_rtp = previous

    @property
    def local_port(self) -> int:
        return self.rtp.local_port if self.rtp is not None else 0

    @property
    def direction(self) -> str | None:
        return self.rtp.direction if self.rtp is not None else None

    def apply(self, neg: NegotiatedMedia) -> None:
        """Start the stream with the first agreement; later ones update it."""
        if self.rtp is None or self._closed:
            return
        from ..media.rtp import MediaFormat

        self.negotiated = neg
        self.codec = canonical_codec(neg.codec.name)
        fmtp = neg.codec.fmtp
        if isinstance(fmtp, str):
            fmtp = dict(item.split("=", 1) if "=" in item else (item, "")
                        for item in (p.strip() for p in fmtp.split(";")) if item)
        fmt = MediaFormat(
            name=self.codec, payload_type=neg.codec.payload_type,
            clock_rate=neg.codec.clock_rate, channels=neg.codec.channels, fmtp=dict(fmtp or {}),
            ptime=neg.ptime, dtmf_payload_type=neg.dtmf.payload_type if neg.dtmf else None,
            dtmf_clock_rate=neg.dtmf.clock_rate if neg.dtmf else 8000)
        remote = (neg.remote_host, neg.remote_port)
        remote_rtcp = (neg.remote_rtcp_host, neg.remote_rtcp_port)
        keys = neg.srtp
        if keys is not None:
            self.rtp.set_srtp(keys.suite, keys.send_key, keys.receive_key)
        else:
            self.rtp.set_srtp(None)
        self.srtp = keys.suite if keys is not None else None
        if self.started:
            self.rtp.update(fmt, remote, remote_rtcp, rtcp_mux=neg.rtcp_mux)
            self.rtp.set_hold(neg.direction)
            return
        source, sink = self.devices_factory()
        self.devices = (source, sink)
        sink = self._speaker_overlay(sink)
        self.rtp.start(fmt, remote, remote_rtcp, rtcp_mux=neg.rtcp_mux, source=source,
                       sink=sink, on_dtmf=self.on_dtmf, on_timeout=self.on_timeout,
                       rtp_timeout=self.rtp_timeout)
        if neg.direction != "sendrecv":
            self.rtp.set_hold(neg.direction)
        self.started = True
        self._apply_mute()

    def _speaker_overlay(self, sink: Any) -> Any:
        """The speaker (not a recording) gets an overlay for local tones."""
        from ..media.devices import OverlaySink, TeeSink

        if isinstance(sink, TeeSink) and sink.sinks:
            self._overlay = sink.sinks[0] = OverlaySink(sink.sinks[0])
            return sink
        self._overlay = OverlaySink(sink)
        return self._overlay

    def set_alert(self, tone: Any) -> None:
        """Lay ``tone`` (an audio source; None: stop) over what we hear of this call."""
        if self._overlay is not None:
            self._overlay.tone = tone

    @property
    def alerting(self) -> bool:
        return self._overlay is not None and self._overlay.tone is not None

    def join(self, bridge: Any, key: Any) -> None:
        """Mix this call into a conference bridge (its audio path is wrapped)."""
        if self.rtp is None or not self.started or self._closed:
            raise ValueError("the call has no media yet")
        bridge.join(key, self.rtp)
        self.bridge, self._bridge_key = bridge, key
        self._apply_mute()

    def leave(self, key: Any) -> None:
        if self.bridge is not None:
            self.bridge.leave(key)
            self.bridge = None
            self._apply_mute()

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self._apply_mute()

    def set_held(self, held: bool) -> None:
        self.held = held
        self._apply_mute()

    def _apply_mute(self) -> None:
        """Silence goes out while muted or while we hold (the held party must not hear
        the room). In a conference, mute silences only our microphone, not the others."""
        if self.rtp is not None and self.started:
            if self.bridge is not None:
                self.bridge.set_muted(self._bridge_key, self.muted)
                self.rtp.set_muted(self.held)
                return
            self.rtp.set_muted(self.muted or self.held)

    def send_dtmf(self, digits: str) -> None:
        """RFC 4733 digits; ',' pauses (raises ValueError when no telephone-event)."""
        if self.rtp is None or not self.started:
            raise ValueError("no media yet")
        self.rtp.send_dtmf(digits)

    def stats(self) -> dict[str, Any]:
        """The ``rtp`` counters of the ``ended`` event, plus what explains audio quality."""
        if self._final is not None:
            return dict(self._final)
        if self.rtp is None:
            return {"sent": 0, "received": 0, "lost": 0, "jitter_ms": 0.0}
        stats = self.rtp.stats()
        return {**stats.as_event(), "concealed": stats.concealed,
                "fec_recovered": stats.fec_recovered, "late": stats.late,
                "expansions": stats.expansions, "compressions": stats.compressions,
                "playout_ms": round(stats.playout_ms, 1)}

    def live_stats(self) -> Any:
        return self.rtp.stats() if self.rtp is not None and self.started else None

    def levels(self) -> tuple[float | None, float | None]:
        if len(self.devices) != 2:
            return None, None
        source = self._playing if self._playing is not None else self.devices[0]
        try:
            return float(source.level_dbfs), float(self.devices[1].level_dbfs)
        except Exception:
            return None, None

    # ------------------------------------------------------------------ play and listen
    def play(self, source: Any, seconds: float | None,
             on_done: Callable[[], None] | None = None) -> None:
        """Send ``source`` instead of the call's own audio (microphone, --play file) for
        ``seconds`` (None: until :meth:`stop_playing`), then go back to it."""
        if self.rtp is None or not self.started:
            raise ValueError("no media yet")
        self.stop_playing()
        self._playing = source
        self.rtp.source = source
        if seconds is not None:
            import asyncio

            def done() -> None:
                self._play_timer = None
                if self._playing is source:
                    self.stop_playing()
                if on_done is not None:
                    on_done()

            self._play_timer = asyncio.get_running_loop().call_later(seconds, done)

    def stop_playing(self) -> bool:
        """Back to the call's own audio; False when nothing was playing."""
        if self._play_timer is not None:
            self._play_timer.cancel()
            self._play_timer = None
        if self._playing is None:
            return False
        self._playing = None
        if self.rtp is not None and self.devices:
            self.rtp.source = self.devices[0]
        return True

    @property
    def playing(self) -> bool:
        return self._playing is not None

    def add_tap(self, sink: Any) -> Callable[[], None]:
        """``sink.write(pcm, rate)`` hears what the speaker hears from now on (the playout
        decodes for it even when the speaker discards); returns the remover."""
        if self.rtp is None or not self.started:
            raise ValueError("no media yet")
        self._taps.append(sink)
        self._route_sink()

        def remove() -> None:
            if sink in self._taps:
                self._taps.remove(sink)
                self._route_sink()
        return remove

    def _route_sink(self) -> None:
        if self.rtp is None or len(self.devices) != 2:
            return
        speaker = self.devices[1]
        if not self._taps:
            self.rtp.sink = speaker
            return
        from ..media.devices import TeeSink

        self.rtp.sink = TeeSink(speaker, *self._taps)

    async def close(self) -> None:
        """RTCP BYE and sockets, then the devices (files flushed, PortAudio streams closed)."""
        if self._closed:
            return
        self._final = self.stats()
        self._closed = True
        self.stop_playing()
        self._taps.clear()
        # an ended call is kept a while to absorb retransmissions: keep it light
        rtp, devices, self.rtp, self.devices = self.rtp, self.devices, None, ()
        try:
            if rtp is not None:
                await rtp.close()
        finally:
            for device in devices:
                close = getattr(device, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.debug("closing %r failed", device, exc_info=True)
