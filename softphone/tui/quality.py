"""Call quality as a MOS estimate from the ITU-T G.107 E-model, simplified.

R = R0 − Id − Ie,eff (Is and A taken as their defaults), with
- Id from one-way mouth-to-ear delay (the Cole–Rosenbluth fit of G.107's delay curve),
- Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl) (G.107 §7.4, random loss: BurstR 1),
and R → MOS by G.107 Annex B. Pure functions: the TUI calls them once a second.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CodecImpairment", "CODEC_IMPAIRMENTS", "r_factor", "mos_from_r", "estimate_mos",
           "delay_impairment", "effective_equipment_impairment"]

R0 = 93.2  # G.107 default basic signal-to-noise ratio (with default Is)


@dataclass(frozen=True)
class CodecImpairment:
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor
    frame_ms: float  # algorithmic + packetisation delay contribution per frame


# G.113 Appendix I values for G.711 with PLC; G.722 and Opus have no narrowband table
# entry, so they are rated at G.711's Ie with a robustness matching their PLC.
CODEC_IMPAIRMENTS: dict[str, CodecImpairment] = {
    "PCMU": CodecImpairment(ie=0.0, bpl=25.1, frame_ms=20.0),
    "PCMA": CodecImpairment(ie=0.0, bpl=25.1, frame_ms=20.0),
    "G722": CodecImpairment(ie=0.0, bpl=25.1, frame_ms=20.0),
    "opus": CodecImpairment(ie=0.0, bpl=30.0, frame_ms=26.5),
}
_UNKNOWN = CodecImpairment(ie=10.0, bpl=10.0, frame_ms=20.0)


def delay_impairment(delay_ms: float) -> float:
    """Id for one-way delay ``delay_ms`` (0 up to ~0.024 per ms, steeper past 177 ms)."""
    d = max(0.0, delay_ms)
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def effective_equipment_impairment(ie: float, bpl: float, loss_pct: float,
                                   burst_ratio: float = 1.0) -> float:
    ppl = min(100.0, max(0.0, loss_pct))
    return ie + (95.0 - ie) * ppl / (ppl / burst_ratio + bpl)


def r_factor(*, ie: float, bpl: float, loss_pct: float, delay_ms: float,
             burst_ratio: float = 1.0) -> float:
    return R0 - delay_impairment(delay_ms) - effective_equipment_impairment(
        ie, bpl, loss_pct, burst_ratio)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: 1.0 at R ≤ 0, 4.5 at R ≥ 100, a cubic in between (which dips just
    under 1 for R < ~6.5: clamped, so the estimate never goes below the scale)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def estimate_mos(codec: str | None, *, loss_pct: float, rtt_ms: float | None = None,
                 jitter_ms: float = 0.0, playout_ms: float = 0.0) -> float:
    """MOS for a live call: delay = half the RTT (0 when unknown) + the playout buffer
    (or twice the jitter when the buffer depth is unknown) + one codec frame."""
    imp = CODEC_IMPAIRMENTS.get(codec or "", _UNKNOWN)
    buffer_ms = playout_ms if playout_ms > 0 else 2.0 * max(0.0, jitter_ms)
    delay = (rtt_ms or 0.0) / 2.0 + buffer_ms + imp.frame_ms
    return round(mos_from_r(r_factor(ie=imp.ie, bpl=imp.bpl, loss_pct=loss_pct,
                                     delay_ms=delay)), 2)
