"""Call transfer against real peers (RFC 3515 REFER + RFC 3892 Referred-By, RFC 3891
Replaces, the flows of RFC 5589): the softphone transfers baresip through Kamailio, baresip
transfers the softphone, three softphone processes do an attended transfer; a REFER
outside a dialog is refused, a failed transfer keeps the call."""

from __future__ import annotations

import socket

import pytest

from peers.net import free_udp_port
from peers.sipmsg import responses, sip_request, status
from peers.softphone import controlled, ctl

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]


def wait_call(phone, name: str = "answered", **match) -> dict:
    return phone.wait_event(name, timeout=20, **match)


def test_rfc5589_s6_softphone_transfers_baresip_failure_keeps_the_call_then_success(
        kamailio, baresip, softphone, tmp_path):
    """RFC 3515 §2.4.5: the NOTIFY's sipfrag says how baresip's call to the target went."""
    kamailio.restart()
    bob = baresip("bob", kamailio=kamailio)  # 1002, answers by itself
    bob.wait_registered(timeout=10)
    a = controlled(softphone, tmp_path, "a", kamailio=kamailio, user="1001")
    rc, reply, err = ctl(a.socket, "dial", "sip:1002@127.0.0.1")
    assert rc == 0, (reply, err)
    call_id = reply["result"]["call_id"]
    wait_call(a, call_id=call_id)
    # 1003 is not registered: Kamailio answers bob's INVITE 404, bob's NOTIFY says so
    rc, reply, err = ctl(a.socket, "transfer", "sip:1003@127.0.0.1")
    assert rc == 0 and reply["result"]["status"] == 202, (reply, err)
    failed = a.wait_event("transfer", timeout=20, state="failed")
    assert failed["status"] == 404 and failed["role"] == "transferor", failed
    resumed = a.wait_event("hold", timeout=10, local=False)
    assert resumed["call_id"] == call_id  # the call stays, taken off hold again
    assert a.find_event("ended", call_id=call_id) is None
    # now 1003 answers: the transfer succeeds and our call ends
    c = controlled(softphone, tmp_path, "c", "--auto", kamailio=kamailio, user="1003")
    mark = a.mark()
    rc, reply, err = ctl(a.socket, "transfer", "sip:1003@127.0.0.1", f"call_id={call_id}")
    assert rc == 0, (reply, err)
    done = a.wait_event("transfer", timeout=20, since=mark, state="succeeded")
    states = [e["state"] for e in a.events[mark:] if e["event"] == "transfer"]
    assert states[0] == "trying" and "accepted" in states, states
    assert done["status"] == 200
    assert a.wait_event("ended", timeout=10, call_id=call_id)["reason"] in ("hangup",
                                                                             "remote-hangup")
    incoming = c.wait_event("incoming", timeout=10)
    assert incoming["from"].startswith("sip:1002@")  # bob calls carol now
    wait_call(c)
    # bob's SIP trace shows the REFER it got, with our Referred-By (RFC 3892)
    assert bob.search(r"REFER sip:[^\n]*\n(?:[^\n]+\n)*?Referred-By: <sip:1001@127\.0\.0\.1>")


def test_rfc5589_s6_baresip_transfers_the_softphone(kamailio, baresip, softphone, tmp_path):
    kamailio.restart()
    x = controlled(softphone, tmp_path, "x", "--auto", kamailio=kamailio, user="1002")
    c = controlled(softphone, tmp_path, "c", "--auto", kamailio=kamailio, user="1003")
    alice = baresip("alice", kamailio=kamailio)  # 1001
    alice.wait_registered(timeout=10)
    alice.dial("sip:1002@127.0.0.1")
    old = wait_call(x)
    alice.wait_for("Call established", timeout=10)
    mark = alice.mark()
    alice.cmd("transfer sip:1003@127.0.0.1")
    requested = x.wait_event("transfer", timeout=15, state="requested")
    assert (requested["role"], requested["target"]) == ("transferee", "sip:1003@127.0.0.1")
    done = x.wait_event("transfer", timeout=20, state="succeeded")
    assert done["call_id"] == old["call_id"] and done["new_call_id"] != old["call_id"]
    wait_call(c)
    assert c.wait_event("incoming", timeout=5)["from"].startswith("sip:1002@")
    ended = x.wait_event("ended", timeout=10, call_id=old["call_id"])
    assert ended["reason"] in ("hangup", "remote-hangup")
    # baresip heard the progress: our NOTIFYs (100 Trying … 200 OK) crossed
    alice.wait_for(r"SIP/2\.0 200 OK", timeout=10, since=mark)
    assert alice.search(r"NOTIFY sip:", since=mark)


def test_rfc5589_s7_attended_transfer_among_three_softphones(softphone, tmp_path):
    """A holds B, talks to C, then joins B to C: B's INVITE to C carries Replaces (RFC
    3891 §3), C takes it over without ringing and drops A; A then drops B."""
    a = controlled(softphone, tmp_path, "a")
    b = controlled(softphone, tmp_path, "b", "--auto")
    c = controlled(softphone, tmp_path, "c", "--auto")
    b_port, c_port = (int(p.wait_event("listening")["port"]) for p in (b, c))
    _, ab, _ = ctl(a.socket, "dial", f"sip:bob@127.0.0.1:{b_port}")
    wait_call(a, call_id=ab["result"]["call_id"])
    _, ac, _ = ctl(a.socket, "dial", f"sip:carol@127.0.0.1:{c_port}")
    wait_call(a, call_id=ac["result"]["call_id"])
    ab_id, ac_id = ab["result"]["call_id"], ac["result"]["call_id"]
    rc, reply, err = ctl(a.socket, "transfer", f"call_id={ab_id}", f"to_call={ac_id}")
    assert rc == 0 and reply["result"]["to_call"] == ac_id, (reply, err)
    assert a.wait_event("transfer", timeout=20, state="succeeded")["call_id"] == ab_id
    replacing = c.wait_event("incoming", timeout=10, replaces=ac_id)
    assert replacing["from"].endswith(f"@127.0.0.1:{b_port}")  # B calls C now
    wait_call(c, call_id=replacing["call_id"])
    assert c.wait_event("ended", timeout=10, call_id=ac_id)["reason"] == "hangup"
    for call_id in (ab_id, ac_id):
        a.wait_event("ended", timeout=10, call_id=call_id)
    new = b.wait_event("transfer", timeout=10, state="succeeded")["new_call_id"]
    assert new == replacing["call_id"]
    rc, reply, _ = ctl(b.socket, "calls")
    live = [x for x in reply["result"]["calls"] if "ended" not in x]
    assert [(x["call_id"], x["state"]) for x in live] == [(new, "connected")]


def test_rfc3515_a_refer_outside_a_dialog_is_refused(softphone, tmp_path):
    port = free_udp_port()
    b = controlled(softphone, tmp_path, "b", listen=f"127.0.0.1:{port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        me = sock.getsockname()[1]
        refer = sip_request("REFER", f"sip:b@127.0.0.1:{port}", "127.0.0.1", me,
                            extra="Refer-To: <sip:evil@127.0.0.1>\r\n")
        sock.sendto(refer, ("127.0.0.1", port))
        got = responses(sock, 5, until=lambda codes: any(s >= 200 for s in codes))
    final = [d for d in got if status(d) >= 200]
    assert final and status(final[0]) == 403, got
    assert b.find_event("calling") is None and b.find_event("transfer") is None


def test_call_transfer_to_refers_the_callee_and_exits_with_the_outcome(softphone, tmp_path):
    """``softphone call URI --transfer-to TARGET`` (a click-to-dial transfer): exit 0 once
    the callee's NOTIFY says the target answered; exit 1 when it says it did not."""
    from peers.phoneconfig import write_config

    a = controlled(softphone, tmp_path, "a", "--auto")
    c = controlled(softphone, tmp_path, "c", "--auto")
    a_port, c_port = (int(p.wait_event("listening")["port"]) for p in (a, c))
    x = softphone("call", f"sip:a@127.0.0.1:{a_port}", "--transfer-to",
                  f"sip:carol@127.0.0.1:{c_port}", "--config",
                  str(write_config(tmp_path / "x.toml", codecs=["PCMU"])))
    assert x.wait_exit(30) == 0, x.diagnostics()
    assert x.find_event("transfer", state="succeeded")["status"] == 200
    assert a.wait_event("transfer", timeout=10, state="succeeded")["role"] == "transferee"
    assert c.wait_event("answered", timeout=10)
    d = controlled(softphone, tmp_path, "d", extra="[calls]\ndnd = true")  # refuses: 486
    d_port = int(d.wait_event("listening")["port"])
    y = softphone("call", f"sip:a@127.0.0.1:{a_port}", "--transfer-to",
                  f"sip:dave@127.0.0.1:{d_port}", "--config",
                  str(write_config(tmp_path / "y.toml", codecs=["PCMU"])))
    assert y.wait_exit(30) == 1, y.diagnostics()
    assert "transfer failed: 486" in y.stderr_text()


def test_answer_max_calls_counts_incoming_calls_and_waits_for_a_transferred_one(
        softphone, tmp_path):
    """``answer --max-calls 1`` transferred by its caller: the call it places to the
    target is not "a call" of the count, and the job waits for it to end instead of
    hanging it up the moment the transferred call ends (it used to count every ended call,
    and exited as soon as two had ended, cutting the call that was still up)."""
    from peers.phoneconfig import write_config

    b = controlled(softphone, tmp_path, "b", "--auto", "--max-calls", "1")
    c = controlled(softphone, tmp_path, "c", "--auto")
    b_port, c_port = (int(p.wait_event("listening")["port"]) for p in (b, c))
    x = softphone("call", f"sip:b@127.0.0.1:{b_port}", "--transfer-to",
                  f"sip:carol@127.0.0.1:{c_port}", "--config",
                  str(write_config(tmp_path / "x.toml", codecs=["PCMU"])))
    assert x.wait_exit(30) == 0, x.diagnostics()
    new = b.wait_event("transfer", timeout=10, state="succeeded")["new_call_id"]
    old = b.wait_event("ended", timeout=10, reason="hangup")["call_id"]
    assert old != new
    incoming = c.wait_event("answered", timeout=10)
    rc, _, err = ctl(b.socket, "calls")
    assert rc == 0 and b.proc.poll() is None, err  # the new call keeps B up
    assert ctl(c.socket, "hangup", f"call_id={incoming['call_id']}")[0] == 0
    assert b.wait_event("ended", timeout=10, call_id=new)["reason"] == "remote-hangup"
    assert b.wait_exit(15) == 0, b.diagnostics()
