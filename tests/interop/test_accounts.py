"""Two accounts on one stack and one socket, registered at once to Kamailio (by default:
every account with register = true); a call to each reaches the phone through the proxy
and is matched to its own account; ``call --account NAME`` calls as that account."""

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
    phone = softphone("answer", "--auto", "--config",  # no --account: every account
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


def test_register_brings_up_every_registering_account_by_default(kamailio, softphone,
                                                                   tmp_path):
    """``register`` without --account registers each account with register = true (and
    not the one that says false); --account NAME still picks one."""
    kamailio.restart()
    cfg = two_accounts(tmp_path / "three.toml", kamailio, free_udp_port())
    cfg.write_text(cfg.read_text().replace("[network]", '[[accounts]]\nname = "quiet"\n'
                                           f'aor = "sip:1003@{kamailio.domain}"\n'
                                           'register = false\n\n[network]', 1))
    phone = softphone("register", "--duration", "30", "--config", str(cfg))
    for name in ("ext1001", "ext1002"):
        phone.wait_event("registered", timeout=15, account=name)
    assert not phone.find_event("registering", account="quiet")
    assert sorted(aor.split("@")[0] for aor, cs in kamailio.contacts().items() if cs) == [
        "1001", "1002"]
    phone.terminate()
    one = softphone("register", "--duration", "30", "--account", "ext1002", "--config", str(cfg))
    one.wait_event("registered", timeout=15, account="ext1002")
    assert [e.get("account") for e in one.events if e["event"] == "registering"] == ["ext1002"]
    one.terminate()


def test_call_as_the_chosen_account(kamailio, softphone, tmp_path):
    """``call --account ext1002``: the INVITE's From, Contact and credentials are that
    account's (Kamailio's proxy_authorize checks the auth user against the From user), and
    the callee sees the call from 1002."""
    kamailio.restart()
    callee_cfg = write_config(tmp_path / "callee.toml", kamailio, "1003")
    callee = softphone("answer", "--auto", "--max-calls", "1", "--config", str(callee_cfg))
    callee.wait_event("registered", timeout=15)
    cfg = two_accounts(tmp_path / "two.toml", kamailio, free_udp_port())
    cfg.write_text(cfg.read_text().replace('expires = 120', 'expires = 120\nregister = false'))
    trace = tmp_path / "caller.trace"
    caller = softphone("call", f"sip:1003@{kamailio.domain}", "--account", "ext1002",
                       "--duration", "1", "--sip-trace", str(trace), "--config", str(cfg))
    answered = caller.wait_event("answered", timeout=20)
    assert answered["account"] == "ext1002"
    assert caller.wait_exit(15) == 0, caller.diagnostics()
    incoming = callee.wait_event("incoming", timeout=5)
    assert incoming["from"].startswith(f"sip:1002@{kamailio.domain}"), incoming
    sent = re.split(r"^--- \S+ sent \S+ \S+\n", trace.read_text(), flags=re.M)
    invites = [m.split("\n--- ")[0] for m in sent if m.startswith("INVITE ")]
    assert len(invites) == 2, trace.read_text()[:3000]  # challenged once, then with credentials
    for invite in invites:
        assert re.search(rf"^From:.*<sip:1002@{kamailio.domain}>", invite, re.M), invite
        assert re.search(r"^Contact:\s*<sip:1002(-[0-9a-f]{16})?@127\.0\.0\.1:", invite, re.M), \
            invite
    assert re.search(r'^Proxy-Authorization:.*username="1002"', invites[1], re.M), invites[1]
