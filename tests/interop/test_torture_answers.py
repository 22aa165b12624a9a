"""A running ``softphone answer`` fed every RFC 4475 and RFC 5118 torture message,
byte-exact over UDP: it answers each as the RFC says (tests/sip/torture/manifest.toml),
and it survives them all.

What the phone sent is read from its ``--sip-trace``: responses go where each message's
Via says, which is not our socket. After each message an OPTIONS probe is sent from the
same socket; the phone handles datagrams in order, so once the probe's 200 is in the
trace every answer to the message before it is too.

RFC 4475 reuses Via branches across its messages (unkscm and novelsc, cparam01 and
cparam02 …): to a phone that has seen the first, the second *is* a retransmission
(§17.2.3) and gets the first's answer again. Each message whose branch, sent-by and
method a phone has seen goes to a fresh phone instead.
"""

from __future__ import annotations

import re
import socket
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from peers.net import free_udp_port

pytestmark = pytest.mark.timeout(120)

TORTURE = Path(__file__).resolve().parents[1] / "sip" / "torture"
MANIFEST = tomllib.loads((TORTURE / "manifest.toml").read_text())
CASES = [(rfc, name, case) for rfc, cases in MANIFEST.items() for name, case in cases.items()]


class Trace:
    """The phone's text trace: (direction, peer, message text) entries, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[tuple[str, str, str]]:
        if not self.path.exists():
            return []
        text = self.path.read_text(errors="replace")
        parts = re.split(r"^--- \S+ (sent|received) \S+ (\S+)\n", text, flags=re.M)
        return [(parts[i], parts[i + 1], parts[i + 2]) for i in range(1, len(parts) - 2, 3)]


def call_id_of(message: str) -> str | None:
    m = re.search(r"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", message, re.I | re.M)
    return m.group(1) if m else None


def cseq_of(message: str) -> str | None:
    m = re.search(r"^cseq[ \t]*:[ \t]*(\S+)", message, re.I | re.M)
    return m.group(1) if m else None


def probe(port: int, sock_port: int) -> tuple[bytes, str]:
    call_id = f"probe-{uuid.uuid4().hex}"
    data = (f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{sock_port};branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    return data, call_id


def cancel_for(invite: str) -> bytes:
    """A CANCEL for a ringing torture INVITE (§9.1: its Request-URI, top Via, From, To,
    Call-ID and CSeq number), so the next one may reuse the Call-ID."""
    head = invite.split("\n\n", 1)[0]
    lines = re.split(r"\n(?![ \t])", head)
    uri = lines[0].split(" ")[1]
    def one(name: str, compact: str) -> str:
        for line in lines[1:]:
            key = line.split(":", 1)[0].strip().lower()
            if key in (name.lower(), compact):
                return line.split(":", 1)[1].strip().replace("\n", " ")
        raise KeyError(name)
    number = one("CSeq", "-").split()[0]
    via = re.split(r",(?![^<]*>)", one("Via", "v"))[0].strip()
    return (f"CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: {one('From', 'f')}\r\nTo: {one('To', 't')}\r\n"
            f"Call-ID: {one('Call-ID', 'i')}\r\nCSeq: {number} CANCEL\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def transaction_key(data: bytes) -> tuple:
    from softphone.sip.message import parse_message

    try:
        msg = parse_message(data)
        via = msg.top_via
        return (via.branch, via.host, via.port, msg.cseq[1])
    except Exception:
        return (data,)  # unparseable: it can match nothing


class Phone:
    def __init__(self, softphone, tmp_path: Path, n: int) -> None:
        self.port = free_udp_port()
        cfg = tmp_path / f"answer{n}.toml"
        cfg.write_text(f'[network]\nlisten = "127.0.0.1:{self.port}"\nrate_limit = 0\n'
                       f'max_calls = 64\n[control]\nenabled = false\n')
        self.trace = Trace(tmp_path / f"trace{n}.txt")
        self.proc = softphone("answer", "--config", str(cfg), "--sip-trace", str(self.trace.path))
        self.proc.wait_event("listening", timeout=15)
        self.seen: set[tuple] = set()


def test_every_torture_message_is_answered_as_its_rfc_says(softphone, tmp_path):
    phones = [Phone(softphone, tmp_path, 0)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock_port = sock.getsockname()[1]
    verdicts: dict[str, object] = {}
    wrong: list[str] = []
    try:
        for rfc, name, case in CASES:
            data = (TORTURE / rfc / f"{name}.dat").read_bytes()
            key = transaction_key(data)
            phone = next((p for p in phones if key not in p.seen), None)
            if phone is None:
                phone = Phone(softphone, tmp_path, len(phones))
                phones.append(phone)
            phone.seen.add(key)
            port, trace = phone.port, phone.trace
            mark = len(trace.entries())
            sock.sendto(data, ("127.0.0.1", port))
            check, check_id = probe(port, sock_port)
            sock.sendto(check, ("127.0.0.1", port))
            text = data.decode("utf-8", "replace")
            torture_id, torture_cseq = call_id_of(text), cseq_of(text)
            # an INVITE the phone takes rings once its RTP port is open — possibly after
            # it answered the probe: for an INVITE wait for more than its 100 as well
            invite = (torture_cseq or "").isdigit() and re.search(
                r"^cseq[ \t]*:[ \t]*\d+[ \t]+INVITE\b", text, re.I | re.M) is not None

            def own_statuses(new: list) -> list[int]:
                # its own answers: RFC 5118 reuses a Call-ID, and an earlier INVITE's 487
                # may still be resent (nobody ACKs it), so the CSeq number must match too
                sent = [m for d, _, m in new if d == "sent" and m.startswith("SIP/2.0 ")
                        and call_id_of(m) != check_id
                        and (torture_id is None or call_id_of(m) == torture_id)
                        and (torture_cseq is None or cseq_of(m) == torture_cseq)]
                return [int(m.split(" ")[1]) for m in sent if not m.startswith("SIP/2.0 100 ")]

            deadline = time.monotonic() + 10
            probed = False
            while time.monotonic() < deadline:
                new = trace.entries()[mark:]
                probed = probed or any(d == "sent" and call_id_of(m) == check_id
                                       for d, _, m in new)
                if probed and (not invite or own_statuses(new)
                               or time.monotonic() > deadline - 7):
                    break  # an INVITE left without an answer 3 s after the probe: none
                time.sleep(0.01)  # polling the trace file (bounded by the deadline)
            if not probed:
                pytest.fail(f"{name}: the phone stopped answering (no 200 to the probe)")
            statuses = own_statuses(new)
            got = statuses[0] if statuses else "none"
            verdicts[name] = got
            allowed = [case["answer"], *case.get("also", [])]
            if got not in allowed:
                wrong.append(f"{rfc} {name} §{case['section']}: sent {got}, RFC: {allowed} "
                             f"({case['why']})")
            if got == 180:
                sock.sendto(cancel_for(data.decode("utf-8", "replace")), ("127.0.0.1", port))
        assert not wrong, "\n".join(wrong)
        for phone in phones:  # survived every message
            assert phone.proc.proc.poll() is None, phone.proc.diagnostics()
        answers = [v for v in verdicts.values() if v != "none"]
        assert len(answers) >= 50  # nearly every request got an answer
        assert len(phones) <= 6  # the reused branches, not a phone per message
    finally:
        sock.close()
