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


def cfg(**tables) -> Config:
    return Config.from_dict({"network": {"listen": "127.0.0.1:0", "rate_limit": 0},
                             "audio": {"codecs": ["PCMU"]}, **tables})


def test_capabilities_advertise_only_what_is_enabled():
    from softphone.ua.agent import base_capabilities

    on = base_capabilities(cfg())
    assert {"PRACK", "UPDATE", "REFER", "NOTIFY"} <= set(on.methods)
    assert {"100rel", "timer", "replaces", "norefersub"} <= set(on.option_tags)
    assert "refer" in on.events
    off = base_capabilities(cfg(sip={"reliable_provisional": "disabled",
                                     "session_timers": "disabled"}))
    assert "PRACK" not in off.methods and "100rel" not in off.option_tags
    assert "timer" not in off.option_tags


async def test_rfc3262_require_100rel_when_disabled_gets_420_and_ours_declined_transfer():
    """A 420 names the extension (RFC 3261 §8.2.2.3); a REFER the user does not take is
    declined 603 and shown as a refused transfer on both sides."""
    import socket

    from peers.sipmsg import responses, sip_request, status

    b_events: list = []
    a_events: list = []
    a = make_agent(cfg(), user="alice", events=a_events)
    b = make_agent(cfg(sip={"reliable_provisional": "disabled"},
                       calls={"accept_transfer": False}), user="bob", auto_answer=True,
                   events=b_events)
    await a.start(preload_media=False)
    await b.start(preload_media=False)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            invite = sip_request("INVITE", f"sip:bob@127.0.0.1:{port_of(b)}", "127.0.0.1",
                                 sock.getsockname()[1], extra="Require: 100rel\r\n")
            sock.sendto(invite, ("127.0.0.1", port_of(b)))
            import asyncio

            got = [d for d in await asyncio.to_thread(  # the loop must run to answer
                responses, sock, 5, lambda codes: any(s >= 200 for s in codes))
                if status(d) >= 200]
        assert status(got[0]) == 420 and b"Unsupported: 100rel" in got[0]
        call = await a.dial(f"sip:bob@127.0.0.1:{port_of(b)}")
        assert await call.wait_answered(5)
        from softphone.ua import transfer

        with pytest.raises(CallError, match="transfer refused: 603"):
            await transfer.start(call, parse_uri("sip:carol@127.0.0.1:9"))
        assert [f["state"] for n, f in b_events if n == "transfer"] == ["refused"]
        assert [f["state"] for n, f in a_events if n == "transfer"] == ["trying", "failed"]
        await wait_for(lambda: not call.on_hold, 5, "the call resumed")
        assert not call.ended
    finally:
        await a.close(timeout=2)
        await b.close(timeout=2)
