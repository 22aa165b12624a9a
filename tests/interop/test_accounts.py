"""Two accounts on one stack and one socket, registered at once to Kamailio; a call to
each reaches the phone through the proxy and is matched to its own account."""

from __future__ import annotations

import re

import pytest

from peers.net import free_udp_port
from peers.phoneconfig import RTP_PORTS, write_config

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]


def two_accounts(path, kam, port: int):
    lines = []
    for user in ("1001", "1002"):
        sub = kam.subscriber(user)
        lines += ["[[accounts]]", f'name = "ext{user}"', f'aor = "sip:{user}@{kam.domain}"',
                  f'password = "{sub.password}"', f'registrar = "sip:{kam.host}:{kam.port}"',
                  "expires = 120", ""]
    lines += ["[network]", f'listen = "127.0.0.1:{port}"', "rate_limit = 0",
              f"rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]", "", "[audio]",
              'codecs = ["PCMU"]', "", "[control]", "enabled = false", ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def test_two_accounts_one_socket_each_gets_its_own_call(kamailio, softphone, tmp_path):
    kamailio.restart()  # no stale contacts from earlier tests in this module
    port = free_udp_port()
    phone = softphone("answer", "--auto", "--account", "all", "--config",
                      str(two_accounts(tmp_path / "two.toml", kamailio, port)))
    for name in ("ext1001", "ext1002"):  # both, at once, on one socket
        phone.wait_event("registered", timeout=15, account=name)
    contacts = kamailio.contacts()
    for user in ("1001", "1002"):  # both bindings point at the same socket
        (contact,) = [c for aor, cs in contacts.items() if aor.startswith(user) for c in cs]
        # the user part carries the account's random token (the stranger policy's key)
        assert re.search(rf"sip:{user}-[0-9a-f]{{16}}@127\.0\.0\.1:{port}\b", contact), contacts

    caller_cfg = write_config(tmp_path / "caller.toml", kamailio, "1003", register=False)
    for user in ("1002", "1001"):
        caller = softphone("call", f"sip:{user}@127.0.0.1", "--duration", "1",
                           "--config", str(caller_cfg))
        assert caller.wait_event("answered", timeout=20)["codec"] == "PCMU"
        assert caller.wait_exit(15) == 0, caller.diagnostics()
        incoming = phone.wait_event("incoming", timeout=5, to=f"sip:{user}@127.0.0.1")
        assert incoming["account"] == f"ext{user}", incoming
        answered = phone.wait_event("answered", timeout=5, call_id=incoming["call_id"])
        assert answered["account"] == f"ext{user}"
    phone.terminate()  # SIGTERM: hangs up and unregisters both
    for name in ("ext1001", "ext1002"):
        assert phone.find_event("unregistered", account=name), phone.diagnostics()
    assert not any(kamailio.contacts().values()), kamailio.contacts()
