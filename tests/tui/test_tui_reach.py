"""The account panel says where the outside sees us once a NAT was found."""

from __future__ import annotations

from softphone.tui.bridge import Bridge
from softphone.tui.state import PhoneState
from softphone.ua import events as ev


def test_the_account_row_shows_the_learned_public_address():
    state = PhoneState()
    bridge = Bridge(None, state, None)  # type: ignore[arg-type]  (apply needs no app)
    bridge.seed_accounts([{"name": "office", "aor": "sip:1001@pbx.example.com",
                           "register": True, "state": "registering", "public_address": None}])
    bridge.apply(ev.Registered("office", 600))
    assert state.accounts["office"].describe().startswith("registered (")
    assert " as " not in state.accounts["office"].describe()
    bridge.apply(ev.PublicAddress("office", "203.0.113.7:40001", "rport"))
    assert state.accounts["office"].describe().endswith(" as 203.0.113.7:40001")
    # a phone that already knew it (the panel opened later) shows it from the seed too
    bridge.seed_accounts([{"name": "office", "aor": "sip:1001@pbx.example.com",
                           "register": True, "state": "registered",
                           "public_address": "203.0.113.7:40001"}])
    assert state.accounts["office"].public == "203.0.113.7:40001"
