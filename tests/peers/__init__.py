"""Real-peer test harness: Kamailio, SIPp, baresip, headless PulseAudio, lossy netns links,
and a driver for the softphone CLI. Everything runs on loopback (or inside namespaces the
harness creates), is started and stopped by PID, and every wait is bounded."""

from .baresip import Baresip, wav_tone
from .kamailio import SUBSCRIBERS, Kamailio, Subscriber
from .net import (LOOPBACK, free_port_block, free_port_pair, free_sip_port, free_udp_port,
                  sip_options_ping)
from .netns import LossyLink
from .procs import PeerTimeout, in_ci, require_binary, unavailable
from .pulse import HeadlessPulse
from .sipp import Sipp, SippResult, register, scenario_path
from .softphone import SoftphoneProcess

__all__ = [
    "Baresip", "wav_tone", "SUBSCRIBERS", "Kamailio", "Subscriber", "LOOPBACK", "free_port_block",
    "free_port_pair", "free_sip_port", "free_udp_port", "sip_options_ping", "LossyLink",
    "PeerTimeout", "in_ci", "require_binary", "unavailable", "HeadlessPulse", "Sipp",
    "SippResult", "register", "scenario_path", "SoftphoneProcess",
]
