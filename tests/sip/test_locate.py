"""The pure half of RFC 3263: NAPTR service choice, RFC 2782 SRV ordering, failover marks."""

from __future__ import annotations

import random
from collections import Counter

from softphone.sip.locate import FailureMarks, Naptr, Srv, naptr_choices, srv_name, srv_order


def test_naptr_order_then_preference_and_only_services_we_speak():
    records = [
        Naptr(20, 10, "S", "SIP+D2U", "_sip._udp.example.com."),
        Naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.example.com."),
        Naptr(10, 10, "S", "SIPS+D2T", "_sips._tcp.example.com."),
        Naptr(5, 10, "S", "SIP+D2S", "_sip._sctp.example.com."),  # SCTP: no
        Naptr(1, 10, "U", "SIP+D2U", "."),                       # not an SRV pointer
    ]
    assert naptr_choices(records, secure=False) == [
        ("tls", "_sips._tcp.example.com"), ("tcp", "_sip._tcp.example.com"),
        ("udp", "_sip._udp.example.com")]
    assert naptr_choices(records, secure=True) == [("tls", "_sips._tcp.example.com")]
    assert naptr_choices(records, secure=False, allowed=("udp",)) == \
        [("udp", "_sip._udp.example.com")]


def test_srv_names():
    assert srv_name("udp", "example.com") == "_sip._udp.example.com"
    assert srv_name("tcp", "example.com.") == "_sip._tcp.example.com"
    assert srv_name("tls", "example.com") == "_sips._tcp.example.com"


def test_srv_priority_first_then_weights_share_the_load():
    records = [Srv(20, 0, 5060, "backup."), Srv(10, 30, 5060, "heavy."),
               Srv(10, 10, 5060, "light.")]
    rng = random.Random(7)
    firsts = Counter()
    for _ in range(4000):
        order = srv_order(records, rng)
        assert [r.target for r in order][-1] == "backup."  # the higher priority number last
        assert sorted(r.target for r in order[:2]) == ["heavy.", "light."]
        firsts[order[0].target] += 1
    share = firsts["heavy."] / 4000
    assert 0.70 <= share <= 0.80, firsts  # 30:10 → 75 %


def test_zero_weight_is_chosen_rarely_and_dot_means_no_service():
    rng = random.Random(3)
    records = [Srv(10, 0, 5060, "zero."), Srv(10, 100, 5060, "hundred.")]
    firsts = Counter(srv_order(records, rng)[0].target for _ in range(2000))
    assert firsts["zero."] < 60, firsts  # ~1 in 101
    assert srv_order([Srv(0, 0, 0, ".")], rng) == []


def test_failure_marks_move_targets_back_for_a_while():
    marks = FailureMarks(hold=30)
    keys = ["a", "b", "c"]
    marks.mark("a", now=100)
    assert marks.order(keys, now=110) == ["b", "c", "a"]
    assert marks.order(keys, now=131) == ["a", "b", "c"]  # the hold is over
    marks.mark("b", now=200)
    marks.clear("b")
    assert marks.order(keys, now=201) == ["a", "b", "c"]
