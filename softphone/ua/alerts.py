"""What the user hears of calls that are not talking yet: the ring of an incoming call,
the ringback while our call rings at the far end, the call-waiting beeps.

Decided afresh whenever a call changes state (:func:`refresh`). The ring plays on the
ring device (or the speaker) when a call rings in and no call is active, unless the
phone answers by itself; a call that rings in during another one gets the call-waiting
beeps laid over that call's audio instead. The ringback plays while an outgoing call has
had its 180/183 and no early media (the far end's own tones then take over). Ring and
ringback need a speaker and ``[audio] tones`` (headless ``answer`` has them off unless
``--tones``); the call-waiting beeps are part of the call's audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import waiting

if TYPE_CHECKING:
    from .agent import UserAgent

__all__ = ["refresh", "ring_tone", "ringback_tone"]


def ring_tone() -> Any:
    """800 + 1000 Hz in the British double-ring cadence (0.4 s on, 0.2 off, 0.4 on, 2 off):
    easy to tell from the call-waiting beeps and from ringback."""
    from ..media.devices import CadencedTone

    return CadencedTone((800.0, 1000.0), ((400, 200), (400, 2000)), level_dbfs=-14.0)


def ringback_tone() -> Any:
    """440 + 480 Hz, 2 s on, 4 s off: ITU-T E.180's North American ringing tone."""
    from ..media.devices import CadencedTone

    return CadencedTone((440.0, 480.0), ((2000, 4000),), level_dbfs=-18.0)


def _wanted(agent: "UserAgent") -> str | None:
    if any(c.direction == "outgoing" and c.state == "ringing" and not c.ended
           for c in agent.calls.values()):
        return "ringback"
    if agent.auto_answer or waiting.has_active_call(agent):
        return None
    return "ring" if waiting.ringing_calls(agent) else None


def refresh(agent: "UserAgent") -> None:
    """Start or stop the ring, the ringback and the call-waiting beeps as the calls now
    need them. ``agent.devices`` may be None or a plain factory (no tones then)."""
    kind, handle = agent.local_tone
    if agent.auto_answer and not getattr(agent.devices, "tones", False) and handle is None:
        # an auto-answering endpoint without tones: no beeps, no ring, no ringback, so
        # nothing to scan on every event of its hundreds of calls
        return
    _refresh_call_waiting(agent)
    want = _wanted(agent)
    if want == kind:
        return
    if handle is not None:
        handle.close()
    play = getattr(agent.devices, "play_tone", None)
    handle = None
    if want is not None and play is not None:
        handle = play(ring_tone() if want == "ring" else ringback_tone())
    # kept even when it could not play (no device): tried again only when the tone wanted
    # changes, not on every call event (each try would say why it failed again)
    agent.local_tone = (want, handle)


def _refresh_call_waiting(agent: "UserAgent") -> None:
    """The call-waiting tone plays on the active calls while a call waits (not for an
    auto-answering endpoint)."""
    is_waiting = bool(waiting.ringing_calls(agent)) and not agent.auto_answer
    tone = None
    for call in agent.calls.values():
        if call.ended:
            continue
        want = is_waiting and call.state == "connected" and not call.on_hold
        if want and not call.media.alerting:
            if tone is None:
                from ..media.devices import call_waiting_tone

                tone = call_waiting_tone()
            call.media.set_alert(tone)
        elif not want and call.media.alerting:
            call.media.set_alert(None)
