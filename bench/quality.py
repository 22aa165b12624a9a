#!/usr/bin/env python3
"""Speech quality: PESQ through real calls over an impaired link, softphone vs baresip, and
a synthetic echo path with and without the echo canceller.

Calls: two network namespaces joined by a veth pair (tests/peers/netns.LossyLink). The
callee answers in one, the caller sends the speech sample from the other, codec forced
per call; what the callee records is time-aligned against the sample and scored with
PESQ (P.862 narrow band for G.711 at 8 kHz, P.862.2 wide band for G.722 and Opus at
16 kHz; see speechlib). Link points: 0, 3, 10, 20 % random loss on RTP, both directions
(nftables; SIP is spared so both implementations set up alike), and 60 ± 30 ms jitter on
the caller's RTP (the test relay, tests/peers/impair.py, slipped into the flow by a
stateless port rewrite). The loss is a seeded random pattern — exactly N % of every 1000
packets, the same packets in every call — so softphone/baresip and before/after are paired
comparisons, not two draws of the dice. One call per point, codec and implementation, one
after the other:

- softphone → softphone: ``softphone call --play`` → ``softphone answer --auto --record``
  (each with its defaults: adaptive playout buffer, today's concealment);
- baresip → baresip (Debian's 1.0): ``aufile`` source → a callee playing to a headless
  PulseAudio sink whose monitor is recorded (its playout, scored), and dumping with
  ``sndfile`` (scored too, shown beside: the dump knows no time, so it hides jitter and
  underruns); the ``plc`` module is loaded as the issue asks, though in 1.0 it never acts
  (DESIGN §8); its jitter buffer is its default (5-10 frames), Opus at 32 kbit/s mono
  without FEC (its default), as much as our speech gets — ours adds 8 kbit/s for the
  in-band FEC our callee asks for (softphone.media.codecs.OPUS_FEC_BITRATE).

The phones and the recorder run at ``nice -10``, ahead of the shared machine's other work.

Echo: the sample (far end) through tests/peers/echoscene's room (20 ms to the microphone,
RT60 150 ms, 6 dB below the speaker feed) plus -60 dBFS noise; a near-end talker joins
after 6 s. ERLE over 3-6 s (far end alone, after convergence; the product's own
``erle_db``) and PESQ of the near-end speech during double talk, without a canceller and
with the product's (``product_canceller``: the one place that knows its API) when this
build has one. bench/echo_compare.py sets it against speexdsp and livekit's AEC3.

Goals (issue 12, printed with the table, never asserted): PESQ ≥ baresip's at every
point; at 10 % loss ≥ +0.3 over today's repeat-and-fade (the ``--before`` file, made by
this script on the code before the change); ERLE ≥ 25 dB.

    bench/quality.py [--quick|--smoke] [--codecs PCMU,G722,opus] [--points loss0,loss10]
                     [--impls softphone,baresip|none] [--no-echo] [--before FILE|none]

Needs root (namespaces, nftables), espeak-ng, sox, baresip and the ``pesq`` package.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchlib import (FIGURE_RE, ROOT, figure, note, ratio, require, run_dir, stop_leftovers,
                      stop_popen, track)

import speechlib
from peers.baresip import Baresip
from peers.echoscene import echo_scene, through
from peers.impair import ImpairRelay
from peers.netns import LossyLink
from peers.pulse import HeadlessPulse
from peers.softphone import SoftphoneProcess

SIP_PORT = 5060
RTP_PORTS = (20000, 20001)  # one call at a time: the callee's RTP is always on 20000
LOSS_SEED = 12  # the loss pattern: the same packets are lost in every run, for every phone
# every phone under test runs ahead of the shared machine's other work (its tests, other
# benchmarks), so what is scored is the phone's playout, not the neighbours' load
NICE = ["nice", "-n", "-10"]
BEFORE = ROOT / "bench" / "results" / "quality-before.txt"
GOAL_GAIN_AT_10 = 0.3
GOAL_ERLE_DB = 25.0
PESQ_TIE = 0.05  # a difference this small is within one call's noise: reported apart


@dataclass(frozen=True)
class Codec:
    name: str           # as softphone's [audio] codecs names it
    baresip: str        # as baresip's account audio_codecs names it
    audio_rate: int     # the rate the codec samples at (the sample is sent at this rate)
    score_rate: int     # PESQ: 8000 narrow band, 16000 wide band

    @property
    def band(self) -> str:
        return "nb" if self.score_rate == 8000 else "wb"


CODECS = {c.name: c for c in (Codec("PCMU", "PCMU/8000/1", 8000, 8000),
                              Codec("G722", "G722/16000/1", 16000, 16000),
                              Codec("opus", "opus/48000/1", 48000, 16000))}


@dataclass(frozen=True)
class Point:
    name: str
    loss: int = 0                              # % of RTP datagrams dropped, each direction
    jitter: tuple[float, float] | None = None  # (delay, ± jitter) s on the caller's RTP


POINTS = {p.name: p for p in (Point("loss0"), Point("loss3", 3), Point("loss10", 10),
                              Point("loss20", 20), Point("jitter60_30", jitter=(0.06, 0.03)))}
QUICK_POINTS = ("loss0", "loss10")


@dataclass
class CallResult:
    impl: str
    codec: str
    point: str
    pesq: float | None = None
    lag_ms: float | None = None  # where the sample starts in the recording
    lost_pct: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the link
class Link:
    """The namespaces, the loss rule, and the jitter relay of the current point."""

    def __init__(self) -> None:
        self.lk = LossyLink().create()
        self.relay: ImpairRelay | None = None

    def apply(self, point: Point) -> None:
        self.clear()
        for n, ns in enumerate((self.lk.ns_a, self.lk.ns_b)):
            self.lk.set_loss(ns, point.loss, ports=(RTP_PORTS[0], RTP_PORTS[0]),
                             seed=LOSS_SEED + n)
        if point.jitter:
            delay, jitter = point.jitter
            lk = self.lk
            self.relay = ImpairRelay((lk.addr_b, RTP_PORTS[0]), listen=(lk.addr_b, 0),
                                     listen_netns=lk.ns_b, target_netns=lk.ns_b,
                                     target_bind=lk.addr_b, delay=delay, jitter=jitter,
                                     seed=LOSS_SEED).start()
            lk.divert_udp(lk.ns_b, RTP_PORTS[0], self.relay.port)

    def relay_stats(self) -> dict[str, int]:
        return self.relay.snapshot() if self.relay else {}

    def clear(self) -> None:
        if self.relay is not None:
            self.lk.undivert_udp(self.lk.ns_b)
            self.relay.stop()
            self.relay = None

    def close(self) -> None:
        self.clear()
        self.lk.destroy()


# --------------------------------------------------------------------------- softphone
class SoftphonePair:
    """``softphone answer --auto --record`` in one namespace for the whole run; a
    ``softphone call --play`` per call from the other, offering only the codec under test."""

    impl = "softphone"

    def __init__(self, link: LossyLink, workdir: Path) -> None:
        self.link, self.workdir = link, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = self._config("callee", link.addr_b, list(CODECS))
        self.callee = SoftphoneProcess("answer", "--auto", "--config", str(cfg), "--record",
                                       str(workdir / "rec-{n}.wav"), "--duration", "1800",
                                       prefix=link.exec_argv(link.ns_b, NICE), cwd=ROOT)
        self.callee.start()
        self.callee.wait_event("listening", timeout=30)

    def _config(self, name: str, addr: str, codecs: list[str]) -> Path:
        path = self.workdir / f"{name}-{'-'.join(codecs)}.toml"
        path.write_text(f'[network]\nlisten = "{addr}:{SIP_PORT}"\n'
                        f"rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]\n"
                        '[audio]\nbackend = "null"\n'
                        f"codecs = [{', '.join(f'{chr(34)}{c}{chr(34)}' for c in codecs)}]\n"
                        "[control]\nenabled = false\n")
        return path

    def call(self, codec: Codec, speech: Path, seconds: float, res: CallResult) -> Path | None:
        lk = self.link
        mark = self.callee.mark()
        t0 = time.time()
        caller = SoftphoneProcess("call", f"sip:quality@{lk.addr_b}:{SIP_PORT}", "--config",
                                  str(self._config("caller", lk.addr_a, [codec.name])),
                                  "--play", str(speech), "--duration", f"{seconds:.2f}",
                                  prefix=lk.exec_argv(lk.ns_a, NICE), cwd=ROOT)
        with caller:
            answered = caller.wait_event("answered", timeout=20)
            if answered.get("codec", "").lower() != codec.name.lower():
                res.error = f"negotiated {answered.get('codec')}, not {codec.name}"
            caller.wait_exit(seconds + 30)
        ended = self.callee.wait_event("ended", timeout=20, since=mark,
                                       call_id=answered["call_id"])
        rtp = ended.get("rtp") or {}
        got = rtp.get("received", 0) + rtp.get("lost", 0)
        res.lost_pct = 100.0 * rtp.get("lost", 0) / got if got else None
        for key in ("concealed", "late", "expansions", "compressions"):
            res.extra[key] = rtp.get(key)
        recs = [p for p in self.workdir.glob("rec-*.wav") if p.stat().st_mtime >= t0 - 1]
        return max(recs, key=lambda p: p.stat().st_mtime) if recs else None

    def close(self) -> None:
        self.callee.terminate()


# --------------------------------------------------------------------------- baresip
def baresip_config(dest: Path, addr: str, *, source: Path, rate: int, codecs: str,
                   auto: bool, player: str = "aubridge,nil") -> Path:
    """A headless baresip 1.0 config dir (like tests/peers/baresip's, on ``addr``): aufile
    source at ``rate``, ``player`` (default: a timed sink that discards), sndfile dumps in
    its cwd, plc loaded."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config").write_text(f"""\
# baresip 1.0.0 (Debian bookworm) for bench/quality.py
poll_method\t\tepoll
sip_listen\t\t{addr}:{SIP_PORT}
net_interface\t\t{addr}
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\t{player}
audio_alert\t\taubridge,nil
audio_source\t\taufile,{source}
ausrc_srate\t\t{rate}
ausrc_channels\t\t1
audio_buffer\t\t20-160
rtp_ports\t\t{RTP_PORTS[0]}-{RTP_PORTS[1]}
rtcp_mux\t\tno
rtp_stats\t\tyes
# baresip's default jitter buffer (frames)
jitter_buffer_delay\t5-10
opus_bitrate\t\t32000
opus_stereo\t\tno
opus_sprop_stereo\tno
module_path\t\t/usr/lib/baresip/modules
module\t\t\tstdio.so
module\t\t\tg711.so
module\t\t\tg722.so
module\t\t\topus.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\talsa.so
# record what the peer sent (dump-*-dec.wav) as decoded, before the playout buffer
module\t\t\tsndfile.so
snd_path\t\t.
# packet loss concealment: loads, but never acts in 1.0 (DESIGN §8)
module\t\t\tplc.so
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
statmode_default\toff
ringback_disabled\tyes
menu_bell\t\tno
""")
    (dest / "accounts").write_text(
        f"<sip:quality@{addr};transport=udp>;answermode={'auto' if auto else 'manual'};"
        f"regint=0;audio_codecs={codecs};mwi=no\n")
    (dest / "contacts").write_text("")
    (dest / "uuid").write_text(str(uuid.uuid5(uuid.NAMESPACE_URL, str(dest))))
    return dest


class Speaker:
    """What a program plays: a headless PulseAudio null sink (tests/peers/pulse.py), its
    monitor recorded by ``parec`` for one call at a time.

    The sink runs at the wide-band scoring rate: G.722 then reaches the recording without
    a resampler (at 48 kHz, PulseAudio's low-pass smoothed G.722's top band and scored it
    0.07 above baresip's own decoder output)."""

    RATE = 16000

    def __init__(self, workdir: Path) -> None:
        self.pulse = HeadlessPulse(workdir / "pulse", rate=self.RATE)
        self.env = self.pulse.start()
        self._parec: subprocess.Popen | None = None
        self._raw: Path | None = None

    def record(self, raw: Path) -> None:
        """Start recording into ``raw``; back once samples flow (a bounded wait)."""
        self._raw = raw
        with open(raw, "wb") as out:
            self._parec = subprocess.Popen(
                [*NICE, "parec", "--raw", "-d", "spk.monitor", "--rate", str(self.RATE),
                 "--channels", "1", "--format", "s16le", "--latency-msec", "20"],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True)
        track(self._parec.pid, "parec quality")
        deadline = time.monotonic() + 5.0
        while raw.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the file for the first samples, bounded
        if raw.stat().st_size == 0:
            raise RuntimeError("parec recorded nothing in 5 s")

    def stop(self) -> Path:
        """End the recording; the WAV next to the raw file."""
        assert self._parec is not None and self._raw is not None
        stop_popen(self._parec, grace=3.0)
        self._parec = None
        x = np.fromfile(self._raw, dtype="<i2").astype(np.float64) / 32768.0
        return speechlib.write_wav(self._raw.with_suffix(".wav"), x, self.RATE)

    def close(self) -> None:
        if self._parec is not None:
            stop_popen(self._parec, grace=3.0)
        self.pulse.stop()


class BaresipPair:
    """baresip auto-answering in one namespace for the whole run, playing what it receives
    to the headless ``Speaker`` (ALSA's pulse device) and dumping it with sndfile; a baresip
    caller per codec in the other, dialling once per point: its aufile source plays the
    sample once and ends the call at the end of the file.

    The speaker is what is scored: sndfile records decoded frames as they leave the jitter
    buffer, before baresip's playout buffer, so a jitter it smooths badly, and the gaps where
    that buffer runs dry, are not in the dump (scored too, as ``rec=sndfile``)."""

    impl = "baresip"

    def __init__(self, link: LossyLink, workdir: Path) -> None:
        self.link, self.workdir = link, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.speaker = Speaker(workdir)
        self.caller: Baresip | None = None
        self._caller_codec: str | None = None
        try:
            silence = speechlib.write_wav(workdir / "silence48k.wav", np.zeros(48000 * 60), 48000)
            cfg = baresip_config(workdir / "callee-cfg", link.addr_b, source=silence,
                                 rate=48000, player="alsa,pulse", auto=True,
                                 codecs=",".join(c.baresip for c in CODECS.values()))
            env = [f"{k}={v}" for k, v in self.speaker.env.items()]
            self.callee = Baresip("quality", workdir, name="callee", config_dir=cfg,
                                  sip_port=SIP_PORT, sip_trace=False, max_life=1800,
                                  prefix=link.exec_argv(link.ns_b, ["env", *env, *NICE]))
            self.callee.start()
            self.callee.wait_for("baresip is ready", timeout=15)
        except BaseException:
            self.speaker.close()
            raise

    def _caller_for(self, codec: Codec, speech: Path) -> Baresip:
        if self._caller_codec != codec.name:
            if self.caller is not None:
                self.caller.stop()
            lk = self.link
            cfg = baresip_config(self.workdir / f"caller-{codec.name}-cfg", lk.addr_a,
                                 source=speech, rate=codec.audio_rate, codecs=codec.baresip,
                                 auto=False)
            self.caller = Baresip("quality", self.workdir, name=f"caller-{codec.name}",
                                  config_dir=cfg, sip_port=SIP_PORT, sip_trace=False,
                                  max_life=1800, prefix=lk.exec_argv(lk.ns_a, NICE))
            self.caller.start()
            self.caller.wait_for("baresip is ready", timeout=15)
            self._caller_codec = codec.name
        assert self.caller is not None
        return self.caller

    def call(self, codec: Codec, speech: Path, seconds: float, res: CallResult) -> Path | None:
        caller = self._caller_for(codec, speech)
        mark_a, mark_b = caller.mark(), self.callee.mark()
        t0 = time.time()
        self.speaker.record(self.workdir / f"speaker-{codec.name}-{res.point}.raw")
        try:
            caller.dial(f"sip:quality@{self.link.addr_b}:{SIP_PORT}")
            caller.wait_for("Call established", timeout=20, since=mark_a)
            m = self.callee.wait_for(r"Set audio decoder: (\S+)", timeout=5, since=mark_b)
            if m.group(1).lower() != codec.name.lower():
                res.error = f"negotiated {m.group(1)}, not {codec.name}"
            # the end-of-call summary: "packets:  <sent> <received>" on each side
            sent = caller.wait_for(r"packets:\s+(\d+)\s+\d+", timeout=seconds + 30,
                                   since=mark_a)
            got = self.callee.wait_for(r"packets:\s+\d+\s+(\d+)", timeout=20, since=mark_b)
        finally:
            recording = self.speaker.stop()
        if int(sent.group(1)):
            res.lost_pct = 100.0 * (1 - int(got.group(1)) / int(sent.group(1)))
        dumps = [p for p in self.callee.workdir.glob("dump-*-dec.wav")
                 if p.stat().st_mtime >= t0 - 1]
        if dumps:
            res.extra["sndfile"] = max(dumps, key=lambda p: p.stat().st_mtime)
        return recording

    def close(self) -> None:
        try:
            for b in (self.caller, self.callee):
                if b is not None:
                    b.stop()
        finally:
            self.speaker.close()


IMPLS = {"softphone": SoftphonePair, "baresip": BaresipPair}


# --------------------------------------------------------------------------- calls
def sample_files(workdir: Path, sentences) -> tuple[Path, dict[int, Path]]:
    """The 16 kHz master and the sample at every codec audio rate (8, 16, 48 kHz)."""
    master = speechlib.synthesize(workdir, sentences)
    at = {16000: master}
    for rate in {c.audio_rate for c in CODECS.values()} - {16000}:
        path = master.with_name(master.stem.replace("16k", f"{rate // 1000}k") + ".wav")
        if not path.exists():
            speechlib.sox_convert(master, path, rate)
        at[rate] = path
    return master, at


def run_calls(impls: list[str], codecs: list[Codec], points: list[Point],
              workdir: Path, sentences) -> list[CallResult]:
    """One call per implementation, codec and point, one after the other, each scored."""
    master, at_rate = sample_files(workdir, sentences)
    seconds = speechlib.read_wav(master)[0].size / speechlib.MASTER_RATE
    note(f"sample {master.name}: {seconds:.1f} s "
         f"(speech {seconds - speechlib.LEAD_S - speechlib.TAIL_S:.1f} s)")
    results: list[CallResult] = []
    if not impls:
        return results
    link = Link()
    note(f"link {link.lk}")
    try:
        for impl in impls:
            pair = IMPLS[impl](link.lk, workdir / impl)
            try:
                for codec in codecs:
                    for point in points:
                        link.apply(point)
                        results.append(measure_call(pair, link, codec, point, master,
                                                    at_rate[codec.audio_rate], seconds + 0.3))
            finally:
                pair.close()
    finally:
        link.close()
    return results


def measure_call(pair, link: Link, codec: Codec, point: Point, master: Path, sample: Path,
                 seconds: float) -> CallResult:
    """One call of ``sample`` through ``link``; its recording scored against ``master``."""
    res = CallResult(pair.impl, codec.name, point.name)
    t0 = time.monotonic()
    try:
        rec = pair.call(codec, sample, seconds, res)
        stats = link.relay_stats()
        if point.jitter and not stats.get("up.sent"):
            res.error = f"jitter relay saw no RTP: {stats}"
        elif rec is None:
            res.error = "no recording"
        elif res.error is None:
            res.pesq, res.lag_ms = speechlib.score_recording(master, rec, codec.score_rate)
            if res.pesq is None:
                res.error = "PESQ found no speech in the recording"
        if res.extra.get("sndfile"):
            res.extra["pesq_sndfile"] = speechlib.score_recording(
                master, res.extra["sndfile"], codec.score_rate)[0]
    except Exception as exc:  # noqa: BLE001 - one bad call, not the run
        res.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    more = "".join(f" {k} {v:.2f}" if isinstance(v, float) else f" {k} {v}"
                   for k, v in res.extra.items()
                   if k in ("concealed", "late", "expansions", "compressions", "pesq_sndfile"))
    note(f"{res.impl:9} {codec.name:5} {point.name:12} PESQ {fmt(res.pesq)} "
         f"lost {fmt(res.lost_pct, 1)} % lag {fmt(res.lag_ms, 0)} ms{more} "
         f"({time.monotonic() - t0:.1f} s)" + (f" ERROR {res.error}" if res.error else ""))
    return res


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- echo
#: the echo path (tests/peers/echoscene.py): 20 ms from speaker to microphone (device
#: buffers and the air), RT60 150 ms, the echo 6 dB below the speaker feed
ECHO_ROOM = dict(delay_ms=20.0, rt60_s=0.15, erl_db=6.0, noise_dbfs=-60.0)


def product_canceller(rate: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``(mic, far) -> out`` (int16) through the product's echo canceller alone — no noise
    suppression or gain control, which would move ERLE for other reasons — driven as the
    capture callback drives it; None when this build has none. The one place that knows
    the product's API."""
    try:
        from softphone.media.processing import (Processing, ProcessingUnavailable,
                                                VoiceProcessor)
    except ImportError as exc:
        note(f"echo: no echo canceller in this build ({exc})")
        return None
    try:
        vp = VoiceProcessor(rate, Processing(echo_cancellation=True, noise_suppression=False,
                                             auto_gain_control=False))
    except ProcessingUnavailable as exc:
        note(f"echo: the product's canceller is unavailable: {exc}")
        return None
    return lambda mic, far: through(vp, mic, far, rate)


def run_echo(workdir: Path, far_sentences, near_sentences, double_talk_s: float = 6.0,
             converge_s: float = 3.0) -> dict[str, tuple]:
    """{"none"/"product": (ERLE dB after ``converge_s``, double-talk PESQ)}: the far end's
    sample through ECHO_ROOM into the microphone, the near end joining at ``double_talk_s``."""
    rate = 16000
    pcm = lambda x: np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)  # noqa: E731
    far = speechlib.read_wav(speechlib.synthesize(workdir, far_sentences))[0]
    near = speechlib.trim_silence(
        speechlib.read_wav(speechlib.synthesize(workdir, near_sentences))[0])
    start = int(double_talk_s * rate)
    end = start + len(near) + rate // 2
    far = np.concatenate([far, np.zeros(max(0, end - len(far)))])
    scene = echo_scene(pcm(far), pcm(near), rate=rate, double_talk_at=double_talk_s,
                       **ECHO_ROOM)
    variants: dict[str, np.ndarray] = {"none": scene.mic}
    cancel = product_canceller(rate)
    if cancel is not None:
        from softphone.media.processing import erle_db  # the product's own measure

        variants["product"] = cancel(scene.mic, scene.far)
    settled = slice(int(converge_s * rate), start)
    out: dict[str, tuple] = {}
    for name, signal in variants.items():
        erle = 0.0 if signal is scene.mic else erle_db(
            scene.mic[settled], scene.far[settled], signal[settled], rate)
        span = slice(start - rate // 2, min(end, len(signal)))
        mos = speechlib.pesq_mos(scene.near[span] / 32768, signal[span] / 32768, rate)
        out[name] = (erle, mos)
        note(f"echo canceller={name}: ERLE {erle:.1f} dB, double-talk PESQ {fmt(mos)}")
    return out


# --------------------------------------------------------------------------- report
def read_before(path: Path | None) -> dict[tuple[str, str, str], float]:
    """{(impl, codec, point): PESQ} from a saved run (its figure lines)."""
    if path is None or not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if FIGURE_RE.match(line) and line.startswith("quality.pesq "):
            name, value, _unit, *tags = line.split(" ")
            t = dict(tag.split("=", 1) for tag in tags)
            if t.get("rec", "playout") == "playout":
                out[(t.get("impl"), t.get("codec"), t.get("link"))] = float(value)
    return out


def report(results: list[CallResult], echo: dict[str, tuple], before: dict,
           before_path: Path | None) -> list[str]:
    """Figure lines on stdout; the table and the goals as text lines (returned)."""
    by = {(r.impl, r.codec, r.point): r for r in results}
    for r in results:
        tags = dict(impl=r.impl, codec=r.codec, link=r.point, band=CODECS[r.codec].band)
        if r.impl == "baresip":
            tags["plc"] = "inert"
        figure("quality.pesq", r.pesq, "mos_lqo", **tags, rec="playout")
        if "pesq_sndfile" in r.extra:
            figure("quality.pesq", r.extra["pesq_sndfile"], "mos_lqo", **tags, rec="sndfile")
        figure("quality.rtp_lost", r.lost_pct, "%", impl=r.impl, codec=r.codec, link=r.point)
    rows = sorted({(r.codec, r.point) for r in results},
                  key=lambda cp: (list(CODECS).index(cp[0]), list(POINTS).index(cp[1])))
    for codec, point in rows:
        sp, bs = by.get(("softphone", codec, point)), by.get(("baresip", codec, point))
        if sp and bs:
            ratio("quality.ratio.pesq", sp.pesq, bs.pesq, codec=codec, link=point)
        old = before.get(("softphone", codec, point))
        if sp and sp.pesq is not None and old is not None:
            figure("quality.pesq_gain", sp.pesq - old, "mos_lqo", impl="softphone",
                   codec=codec, link=point, vs="before")
    for name, (erle, mos) in echo.items():
        figure("quality.echo.erle", erle, "dB", canceller=name)
        figure("quality.echo.pesq_double_talk", mos, "mos_lqo", canceller=name, band="wb")

    lines = ["PESQ MOS-LQO (P.862 nb for PCMU, P.862.2 wb for G722/opus); one call per cell",
             "baresip 1.0 runs with its plc module loaded, but that module never acts in "
             "this version (DESIGN §8)",
             "(baresip: its playout, recorded from the speaker; sndfile: its decoder dump)",
             f"{'codec':6} {'link':12} {'softphone':>9} {'baresip':>8} {'ratio':>6} "
             f"{'sndfile':>7} {'lost% sp/bs':>12} {'before':>7} {'gain':>6}"]
    for codec, point in rows:
        sp, bs = by.get(("softphone", codec, point)), by.get(("baresip", codec, point))
        old = before.get(("softphone", codec, point))
        s = sp.pesq if sp else None
        b = bs.pesq if bs else None
        lines.append(
            f"{codec:6} {point:12} {fmt(s):>9} {fmt(b):>8} "
            f"{fmt(s / b if s is not None and b else None):>6} "
            f"{fmt(bs.extra.get('pesq_sndfile') if bs else None):>7} "
            f"{fmt(sp.lost_pct if sp else None, 1):>5}/{fmt(bs.lost_pct if bs else None, 1):<6} "
            f"{fmt(old):>7} {fmt(s - old if s is not None and old is not None else None):>6}")
    for r in results:
        if r.error:
            lines.append(f"  {r.impl} {r.codec} {r.point}: {r.error}")
    lines += ["", "echo (synthetic path, 16 kHz): ERLE after convergence, PESQ wb of the "
                  "near end during double talk"]
    lines += [f"  canceller={name:15} ERLE {erle:5.1f} dB   double-talk PESQ {fmt(mos)}"
              for name, (erle, mos) in echo.items()]
    if "product" not in echo:
        lines.append("  canceller=product: not available in this build")
    return lines + [""] + goal_lines(by, rows, echo, before, before_path)


def goal_lines(by: dict, rows: list[tuple[str, str]], echo: dict[str, tuple], before: dict,
               before_path: Path | None) -> list[str]:
    """Issue 12's goals against this run's figures: met, missed, or not judged."""
    lines = ["goals (issue 12; reported, not asserted):"]
    pairs = [(by.get(("softphone", c, p)), by.get(("baresip", c, p))) for c, p in rows]
    judged = [(sp, bs) for sp, bs in pairs if sp and bs and sp.pesq is not None
              and bs.pesq is not None]
    ties = [f"{sp.codec}/{sp.point} {sp.pesq - bs.pesq:+.2f}" for sp, bs in judged
            if 0 < bs.pesq - sp.pesq < PESQ_TIE]
    missed = [f"{sp.codec}/{sp.point} {sp.pesq - bs.pesq:+.2f}" for sp, bs in judged
              if bs.pesq - sp.pesq >= PESQ_TIE]
    met = len(judged) - len(ties) - len(missed)
    lines.append(f"  PESQ >= baresip at every point: {met}/{len(judged)} met"
                 + (f"; below by less than {PESQ_TIE} (noise): {', '.join(ties)}" if ties else "")
                 + (f"; missed: {', '.join(missed)}" if missed else "") if judged else
                 "  PESQ >= baresip at every point: not judged, no pairs of calls")
    if before:
        for codec in dict.fromkeys(c for c, _ in rows):
            sp, old = by.get(("softphone", codec, "loss10")), before.get(("softphone", codec, "loss10"))
            if sp and sp.pesq is not None and old is not None:
                gain = sp.pesq - old
                lines.append(f"  {codec} at 10 % loss: {gain:+.2f} over repeat-and-fade "
                             f"(goal +{GOAL_GAIN_AT_10}): {'met' if gain >= GOAL_GAIN_AT_10 else 'missed'}")
    else:
        lines.append(f"  +{GOAL_GAIN_AT_10} at 10 % loss: not judged, no before figures "
                     f"({before_path or 'none given'})")
    erle = echo.get("product", (None,))[0]
    lines.append(f"  ERLE >= {GOAL_ERLE_DB:.0f} dB: "
                 + ("canceller not available" if erle is None else
                    f"{erle:.1f} dB, {'met' if erle >= GOAL_ERLE_DB else 'missed'}"))
    return lines


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help=f"points {','.join(QUICK_POINTS)} only")
    g.add_argument("--smoke", action="store_true",
                   help="one short PCMU call per implementation, no loss (the smoke test)")
    ap.add_argument("--codecs", help=f"comma list of {','.join(CODECS)}")
    ap.add_argument("--points", help=f"comma list of {','.join(POINTS)}")
    ap.add_argument("--impls", default="softphone,baresip",
                    help="comma list of softphone,baresip (none: the echo part only)")
    ap.add_argument("--before", default=str(BEFORE),
                    help="figures of the code before the change (for the +0.3 goal); none: skip")
    ap.add_argument("--no-echo", action="store_true", help="skip the echo part")
    a = ap.parse_args(argv)

    def pick(text: str | None, table: dict, default) -> list[str]:
        if text == "none":
            return []
        names = [n.strip() for n in text.split(",") if n.strip()] if text else list(default)
        bad = [n for n in names if n not in table]
        if bad:
            ap.error(f"unknown {', '.join(bad)}; have {' '.join(table)}")
        return names

    codecs = [CODECS[n] for n in pick(a.codecs, CODECS, ["PCMU"] if a.smoke else CODECS)]
    points = [POINTS[n] for n in pick(a.points, POINTS, ["loss0"] if a.smoke else
                                      QUICK_POINTS if a.quick else POINTS)]
    impls = pick(a.impls, IMPLS, IMPLS)
    if os.geteuid() != 0:
        raise SystemExit("bench/quality.py needs root (network namespaces, nftables)")
    require("ip", "nft", "espeak-ng", "sox",
            *(["baresip", "pulseaudio", "pactl", "parec"] if "baresip" in impls else []))
    try:
        import pesq  # noqa: F401
    except ImportError:
        raise SystemExit("the pesq package is missing: pip install -e '.[bench]'") from None
    # the smoke run's sample is shorter: the before figures are not its to compare with
    before_path = None if a.before == "none" or a.smoke else Path(a.before)
    before = read_before(before_path)
    workdir = run_dir("quality")
    sentences = speechlib.SENTENCES[:1] if a.smoke else speechlib.SENTENCES
    near = speechlib.NEAR_SENTENCES[:1] if a.smoke else speechlib.NEAR_SENTENCES
    note(f"quality: {len(impls)} implementations x {len(codecs)} codecs x {len(points)} points; "
         f"command: {shlex.join(['bench/quality.py', *(sys.argv[1:] if argv is None else argv)])}")
    t0 = time.monotonic()
    try:
        results = run_calls(impls, codecs, points, workdir, sentences)
        echo = {} if a.no_echo else run_echo(workdir, sentences, near,
                                              double_talk_s=2.5 if a.smoke else 6.0,
                                              converge_s=1.0 if a.smoke else 3.0)
    finally:
        stop_leftovers()
    lines = report(results, echo, before, before_path)
    table = "\n".join(lines)
    note("quality table:\n" + table)
    (workdir / "table.txt").write_text(table + "\n")
    note(f"quality: {time.monotonic() - t0:.0f} s; recordings and logs in {workdir}")
    failed = [r for r in results if r.pesq is None]
    return 1 if failed and len(failed) == len(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
