"""Call control between real user agents on loopback (in one process, real sockets): the
DTMF mode (RFC 4733 or SIP INFO application/dtmf-relay), the redirect policy's order,
loops and limit, and the commands' refusals when a call cannot do what is asked."""

from __future__ import annotations

import pytest

from agents import make_agent, port_of
from media_helpers import wait_for
from softphone.config import Config
from softphone.sip.events import Redirected
from softphone.sip.uri import NameAddr, parse_uri
from softphone.ua.errors import CallError
from softphone.ua.redirect import RedirectPolicy

pytestmark = pytest.mark.timeout(30)


def config(dtmf: bool = True, dtmf_mode: str = "auto") -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0},
                             "audio": {"codecs": ["PCMU"], "dtmf": dtmf,
                                       "dtmf_mode": dtmf_mode}})


async def connected(a_cfg: Config, b_cfg: Config, wire: list | None = None):
    events: list = []
    a = make_agent(a_cfg, user="alice", wire=wire)
    b = make_agent(b_cfg, user="bob", auto_answer=True, events=events)
    await a.start(preload_media=False)
    await b.start(preload_media=False)
    call = await a.dial(f"sip:bob@127.0.0.1:{port_of(b)}")
    assert await call.wait_answered(5), call.end_info
    return a, b, call, events


@pytest.mark.parametrize("a_mode, b_dtmf, method", [
    ("auto", False, "info"),     # no telephone-event negotiated: SIP INFO
    ("info", True, "info"),      # INFO by choice
    ("auto", True, "rfc4733"),   # negotiated: RTP events
])
async def test_dtmf_mode_picks_rfc4733_or_sip_info(a_mode, b_dtmf, method):
    wire: list = []
    a, b, call, events = await connected(config(dtmf_mode=a_mode), config(dtmf=b_dtmf),
                                         wire)
    try:
        assert call.send_dtmf("1#") == method
        await wait_for(lambda: [f["digit"] for n, f in events if n == "dtmf"] == ["1", "#"],
                       10, "the digits at the far end")
        infos = [d for direction, d in wire if direction == "sent" and d.startswith(b"INFO ")]
        if method == "info":
            assert len(infos) == 2 and b"application/dtmf-relay" in infos[0]
            assert b"Signal=1\r\n" in infos[0] and b"Signal=#\r\n" in infos[1]
        else:
            assert not infos
    finally:
        await a.close(timeout=2)
        await b.close(timeout=2)


async def test_rfc4733_mode_without_telephone_event_is_refused():
    a, b, call, _ = await connected(config(dtmf_mode="rfc4733"), config(dtmf=False))
    try:
        with pytest.raises(CallError, match="telephone-event"):
            call.send_dtmf("1")
    finally:
        await a.close(timeout=2)
        await b.close(timeout=2)


def redirect(status: int, *uris: str) -> Redirected:
    return Redirected(status, "x", tuple(NameAddr(parse_uri(u)) for u in uris))


def test_redirect_policy_order_loops_and_limit():
    first = parse_uri("sip:a@h")
    policy = RedirectPolicy(2, first)
    assert str(policy.next_target(redirect(302, "sip:b@h", "sip:a@h", "sip:c@h"))) == "sip:b@h"
    assert str(policy.next_target(redirect(486))) == "sip:c@h"  # the next of the target set
    # a redirect pointing back at targets tried already: nowhere new to go
    assert policy.next_target(redirect(302, "sip:b@h", "sip:a@h")) is None
    assert policy.next_target(redirect(302, "sip:d@h")) is None  # the limit (2) is used up
    assert RedirectPolicy(0, first).next_target(redirect(302, "sip:b@h")) is None
