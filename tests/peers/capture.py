"""A live capture on the loopback interface with tshark (dumpcap), and what the RTP in it
carries: ``with LoopbackCapture(path, "udp portrange 30000-30039"): …`` then
``rtp_payloads(path)``. The capture is up when tshark says so; it stops by PID."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np

from .procs import PeerTimeout, require_binary, stop_popen, track


class LoopbackCapture:
    def __init__(self, path: Path, bpf: str, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.bpf = bpf
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._stderr: list[str] = []

    def __enter__(self) -> LoopbackCapture:
        tshark = require_binary("tshark")
        self.proc = subprocess.Popen(
            [tshark, "-i", "lo", "-f", self.bpf, "-w", str(self.path), "-q",
             "-a", f"duration:{int(self.timeout)}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        track(self.proc.pid, "tshark")
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(15):
            stop_popen(self.proc, grace=2)
            raise PeerTimeout(f"tshark did not start capturing: {''.join(self._stderr)[-1000:]}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self._stderr.append(line)
            if "Capturing on" in line:
                self._ready.set()

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        stop_popen(self.proc, grace=5)


def rtp_payloads(path: Path, payload_type: int = 0,
                 ports: set[int] | None = None) -> list[bytes]:
    """The payloads (after the 12-byte header and any CSRCs) of every UDP datagram in the
    capture that looks like RTP version 2 with ``payload_type`` (from or to one of
    ``ports``, when given: other programs on this machine use loopback too): SRTP keeps
    the header in clear, so its packets are found too, their payload still encrypted."""
    tshark = require_binary("tshark")
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "udp.srcport",
                          "-e", "udp.dstport", "-e", "udp.payload"],
                         capture_output=True, text=True, timeout=60)
    payloads = []
    for row in out.stdout.splitlines():
        fields = row.split("\t")
        if len(fields) != 3 or not fields[2]:
            continue
        if ports is not None and not {int(fields[0]), int(fields[1])} & ports:
            continue
        data = bytes.fromhex(fields[2].replace(":", ""))
        if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != payload_type:
            continue
        payloads.append(data[12 + 4 * (data[0] & 0x0F):])
    return payloads


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


_ULAW = _ulaw_table()


def pcmu_samples(payloads: list[bytes]) -> np.ndarray:
    """The payloads decoded as G.711 µ-law (what a listener of the wire would hear)."""
    joined = b"".join(payloads)
    return _ULAW[np.frombuffer(joined, dtype=np.uint8)] if joined else np.zeros(0, np.int16)


def tone_share(samples: np.ndarray, rate: int, freq_hz: float, width_hz: float = 25.0) -> float:
    """How much of the signal's energy lies within ``width_hz`` of ``freq_hz`` (a clean
    tone: most of it; noise, or ciphertext read as audio: next to none)."""
    x = samples.astype(np.float64)
    if len(x) < 64 or not np.any(x):
        return 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    near = np.abs(freqs - freq_hz) <= width_hz
    return float(power[near].sum() / power.sum())
