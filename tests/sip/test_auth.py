"""Digest authentication client: RFC vectors, parsing, and the per-chain answer policy."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.auth import (
    SUPPORTED_ALGORITHMS,
    AuthenticationFailed,
    Challenge,
    DigestClient,
    DigestError,
    authorization_value,
    digest_response,
    parse_challenges,
)

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc7616_challenge(algorithm: str) -> str:
    # Folded over several lines as in the RFC's own figure.
    return (
        "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n"
        f"    algorithm={algorithm},\r\n    nonce=\"{RFC7616_NONCE}\",\r\n"
        f"    opaque=\"{RFC7616_OPAQUE}\""
    )


def fields(credentials: str) -> dict[str, str]:
    """Parameters of credentials we produced (test-side parser, quotes kept visible)."""
    assert credentials.startswith("Digest ")
    found = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)', credentials[len("Digest ") :])
    return dict(found)


def unquote(value: str) -> str:
    assert value.startswith('"') and value.endswith('"'), value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def counter_cnonces(prefix: str = "cn"):
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


def server_side_md5(username, realm, password, method, uri, nonce, nc, cnonce, qop="auth"):
    """What a registrar such as Kamailio computes to check our answer (RFC 2617 §3.2.2)."""
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{username}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- RFC worked examples -------------------------------------------------------------


def test_rfc2617_section_3_5_example():
    challenge = parse_challenges(RFC2617_CHALLENGE)[0]
    value = authorization_value(
        challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", nc=1, cnonce="0a4f113b"
    )
    got = fields(value)
    assert got["response"] == '"6629fae49393a05397450978507c4ef1"'
    assert got["qop"] == "auth" and got["nc"] == "00000001"
    assert got["cnonce"] == '"0a4f113b"'
    assert got["opaque"] == '"5ccc069c403ebaf9f0171e9517f40e41"'
    assert "algorithm" not in got  # the challenge had none, so none is echoed


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm, expected):
    (challenge,) = parse_challenges(rfc7616_challenge(algorithm))
    assert challenge.qop == ("auth", "auth-int")
    value = authorization_value(
        challenge, "Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce=RFC7616_CNONCE
    )
    got = fields(value)
    assert got["response"] == f'"{expected}"'
    assert got["algorithm"] == algorithm
    assert unquote(got["opaque"]) == RFC7616_OPAQUE
    assert unquote(got["realm"]) == "http-auth@example.org"


def _independent(name: str, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.new(name, data).hexdigest()


@pytest.mark.parametrize("session", [False, True])
@pytest.mark.parametrize("qop", ["auth", "auth-int"])
def test_sha512_256_matches_independent_computation(session, qop):
    algorithm = "SHA-512-256-sess" if session else "SHA-512-256"
    challenge = Challenge(realm="biloxi.com", nonce="n0nce", algorithm=algorithm, qop=(qop,))
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    got = digest_response(
        challenge, "bob", "zanzibar", "INVITE", "sip:bob@biloxi.com", body=body, nc=3, cnonce="c1"
    )
    h = lambda text: _independent("sha512_256", text)  # noqa: E731
    ha1 = h("bob:biloxi.com:zanzibar")
    if session:
        ha1 = h(f"{ha1}:n0nce:c1")
    a2 = "INVITE:sip:bob@biloxi.com" + (f":{h(body)}" if qop == "auth-int" else "")
    assert got == h(f"{ha1}:n0nce:00000003:c1:{qop}:{h(a2)}")
    assert len(got) == 64


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
def test_every_supported_algorithm_hashes_with_its_own_function(algorithm):
    base = algorithm.removesuffix("-sess")
    name = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}[base]
    challenge = Challenge(realm="r", nonce="n", algorithm=algorithm, qop=("auth",))
    got = digest_response(challenge, "u", "p", "REGISTER", "sip:r", nc=1, cnonce="c")
    h = lambda text: _independent(name, text)  # noqa: E731
    ha1 = h(f"{h('u:r:p')}:n:c") if algorithm.endswith("-sess") else h("u:r:p")
    assert got == h(f"{ha1}:n:00000001:c:auth:{h('REGISTER:sip:r')}")


def test_all_six_algorithms_are_supported_here():
    assert set(SUPPORTED_ALGORITHMS) == {
        "MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess",
    }


# --- forms of the answer --------------------------------------------------------------


def test_no_qop_gives_rfc2069_response_without_nc_or_cnonce():
    (challenge,) = parse_challenges('Digest realm="r", nonce="abc"')
    value = authorization_value(challenge, "u", "p", "REGISTER", "sip:r", cnonce="unused")
    got = fields(value)
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = md5("u:r:p"), md5("REGISTER:sip:r")
    assert unquote(got["response"]) == md5(f"{ha1}:abc:{ha2}")
    assert not {"qop", "nc", "cnonce"} & got.keys()


def test_auth_int_used_only_when_auth_is_not_offered():
    body = b"hello body"
    (only_int,) = parse_challenges('Digest realm="r", nonce="n", qop="auth-int"')
    got = fields(authorization_value(only_int, "u", "p", "INVITE", "sip:x", body=body, cnonce="c"))
    md5 = lambda text: hashlib.md5(text if isinstance(text, bytes) else text.encode()).hexdigest()  # noqa: E731
    ha2 = md5(f"INVITE:sip:x:{md5(body)}")
    assert got["qop"] == "auth-int"
    ha1 = md5("u:r:p")
    assert unquote(got["response"]) == md5(f"{ha1}:n:00000001:c:auth-int:{ha2}")
    # A different body must change the answer; with plain auth it must not matter.
    other = fields(authorization_value(only_int, "u", "p", "INVITE", "sip:x", body=b"x", cnonce="c"))
    assert other["response"] != got["response"]
    (both,) = parse_challenges('Digest realm="r", nonce="n", qop="auth-int,auth"')
    a = fields(authorization_value(both, "u", "p", "INVITE", "sip:x", body=body, cnonce="c"))
    b = fields(authorization_value(both, "u", "p", "INVITE", "sip:x", body=b"x", cnonce="c"))
    assert a["qop"] == "auth" and a["response"] == b["response"]


def test_sess_algorithm_echoes_algorithm_and_sends_cnonce():
    (with_qop,) = parse_challenges('Digest realm="r", nonce="n", algorithm=MD5-sess, qop=auth')
    got = fields(authorization_value(with_qop, "u", "p", "REGISTER", "sip:r", cnonce="c"))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{md5('u:r:p')}:n:c")
    assert got["algorithm"] == "MD5-sess"
    assert unquote(got["response"]) == md5(f"{ha1}:n:00000001:c:auth:{md5('REGISTER:sip:r')}")
    # without qop the server still needs the cnonce to rebuild HA1
    (no_qop,) = parse_challenges('Digest realm="r", nonce="n", algorithm=MD5-sess')
    got = fields(authorization_value(no_qop, "u", "p", "REGISTER", "sip:r", cnonce="c"))
    assert got["cnonce"] == '"c"' and "nc" not in got and "qop" not in got
    assert unquote(got["response"]) == md5(f"{ha1}:n:{md5('REGISTER:sip:r')}")


def test_values_are_quote_escaped():
    (challenge,) = parse_challenges(r'Digest realm="a\"b\\c", nonce="n\"x", opaque="o\"p"')
    assert challenge.realm == 'a"b\\c' and challenge.nonce == 'n"x'
    value = authorization_value(challenge, 'us"er', "p", "REGISTER", 'sip:"q"@r', cnonce="c")
    got = fields(value)
    assert unquote(got["username"]) == 'us"er'
    assert unquote(got["realm"]) == 'a"b\\c'
    assert unquote(got["uri"]) == 'sip:"q"@r'
    assert unquote(got["opaque"]) == 'o"p'
    # our own output is a well-formed Digest list that the parser can read back
    (again,) = parse_challenges(value)
    assert again.realm == challenge.realm and again.nonce == challenge.nonce


def test_header_layout_and_unquoted_qop_nc():
    client = DigestClient("1001", "secret1001", cnonce_factory=lambda: "abc")
    name, value = client.respond(
        401, ['Digest realm="127.0.0.1", nonce="N", algorithm=MD5, qop="auth"'], "REGISTER",
        "sip:127.0.0.1",
    )
    assert name == "Authorization"
    assert re.fullmatch(
        r'Digest username="1001", realm="127\.0\.0\.1", nonce="N", uri="sip:127\.0\.0\.1", '
        r'response="[0-9a-f]{32}", algorithm=MD5, cnonce="abc", qop=auth, nc=00000001',
        value,
    ), value


def test_kamailio_style_challenge_is_answered_as_kamailio_verifies_it():
    nonce = "Z3v3kGd7+2QpG1SMiXmJmRzMGdhOGI0ZTcxOQ=="  # base64-ish, as Kamailio sends
    client = DigestClient("1001", "secret1001", cnonce_factory=lambda: "0123abcd")
    name, value = client.respond(
        401, [f'Digest realm="127.0.0.1", nonce="{nonce}", qop="auth"'], "REGISTER",
        "sip:127.0.0.1",
    )
    got = fields(value)
    assert name == "Authorization"
    expected = server_side_md5(
        "1001", "127.0.0.1", "secret1001", "REGISTER", "sip:127.0.0.1", nonce, "00000001",
        "0123abcd",
    )
    assert unquote(got["response"]) == expected
    assert unquote(got["nonce"]) == nonce


# --- parsing --------------------------------------------------------------------------


def test_parse_is_case_insensitive_tolerant_and_skips_other_schemes():
    value = (
        'Basic realm="cam", dIgEsT REALM = "r1" ,\r\n\tNonce="n/1==", ALGORITHM=sha-256,'
        ' QOP="Auth , auth-int", Stale=TRUE, DOMAIN="sip:a sip:b", unknown=thing,'
        ' other="x,y", Bearer abc.def==, Negotiate'
    )
    (challenge,) = parse_challenges(value)
    assert challenge == Challenge(
        realm="r1", nonce="n/1==", algorithm="sha-256", qop=("auth", "auth-int"), stale=True,
        domain="sip:a sip:b",
    )
    assert challenge.algorithm_base == "SHA-256" and challenge.supported


def test_several_digest_challenges_in_one_value():
    challenges = parse_challenges(
        'Digest realm="a", nonce="1", algorithm=MD5, Digest realm="a", nonce="2", '
        "algorithm=SHA-256"
    )
    assert [(c.nonce, c.algorithm) for c in challenges] == [("1", "MD5"), ("2", "SHA-256")]


def test_non_digest_only_yields_nothing():
    assert parse_challenges('Basic realm="x"') == []
    assert parse_challenges("Negotiate") == []
    assert parse_challenges("") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest realm="x', "unterminated"),
        ('Digest nonce="n"', "no realm"),
        ('Digest realm="r"', "no nonce"),
        ('Digest realm="r", nonce=""', "empty nonce"),
        ('Digest realm="r", nonce="n" junk', "expected ','"),
        ('Digest realm="r", realm="s", nonce="n"', "duplicate"),
        ("Digest dGVzdA==", "token68"),
        ('realm="r", nonce="n"', "outside any challenge"),
        ('Digest realm="r",\nnonce="n"', "line break"),
        ('Digest realm=, nonce="n"', "outside any challenge"),
        ('"Digest"', "expected an authentication scheme"),
        ('Digest realm="r", nonce=n, =x', "expected an authentication scheme"),
        ('Digest realm="r", nonce="\ud800"', "unencodable"),
    ],
)
def test_malformed_raises_digest_error(value, message):
    with pytest.raises(DigestError, match=message):
        parse_challenges(value)


def test_unsupported_algorithm_or_qop_is_parsed_but_not_supported():
    (unknown_alg,) = parse_challenges('Digest realm="r", nonce="n", algorithm=SHA-1024')
    (unknown_qop,) = parse_challenges('Digest realm="r", nonce="n", qop="auth-conf"')
    assert not unknown_alg.supported and not unknown_qop.supported
    with pytest.raises(DigestError, match="cannot answer"):
        authorization_value(unknown_alg, "u", "p", "GET", "/")


# --- the per-chain policy -------------------------------------------------------------


def test_strongest_of_several_challenges_is_chosen():
    offered = [
        'Digest realm="r", nonce="m", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="s5", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="r", nonce="s2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="x", algorithm=SHA-3000, qop="auth"',
    ]
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    _, value = client.respond(401, offered, "REGISTER", "sip:r")
    got = fields(value)
    assert got["algorithm"] == "SHA-512-256" and unquote(got["nonce"]) == "s5"
    assert len(unquote(got["response"])) == 64
    client2 = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    _, value2 = client2.respond(401, [offered[0], offered[2]], "REGISTER", "sip:r")
    assert fields(value2)["algorithm"] == "SHA-256"


def test_nc_increments_per_use_and_resets_with_a_new_nonce():
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    _, first = client.respond(
        401, ['Digest realm="r", nonce="n1", qop="auth", opaque="op"'], "REGISTER", "sip:r"
    )
    client.accepted()
    later = [client.authorize("REGISTER", "sip:r") for _ in range(3)]
    ncs = [fields(first)["nc"]] + [fields(h[0][1])["nc"] for h in later]
    assert ncs == ["00000001", "00000002", "00000003", "00000004"]
    cnonces = {fields(first)["cnonce"]} | {fields(h[0][1])["cnonce"] for h in later}
    assert len(cnonces) == 4  # a fresh cnonce each use
    assert all(fields(h[0][1])["opaque"] == '"op"' for h in later)
    # server rotates the nonce (a 401 on the refresh): count starts again at 1
    _, renewed = client.respond(
        401, ['Digest realm="r", nonce="n2", qop="auth"'], "REGISTER", "sip:r"
    )
    assert fields(renewed)["nc"] == "00000001" and unquote(fields(renewed)["nonce"]) == "n2"


def test_default_cnonce_is_random():
    client = DigestClient("u", "p")
    challenge = ['Digest realm="r", nonce="n", qop="auth"']
    _, a = client.respond(401, challenge, "REGISTER", "sip:r")
    b = client.authorize("REGISTER", "sip:r")[0][1]
    assert len(unquote(fields(a)["cnonce"])) >= 16
    assert fields(a)["cnonce"] != fields(b)["cnonce"]


def test_authorize_before_any_challenge_is_empty():
    assert DigestClient("u", "p").authorize("REGISTER", "sip:r") == []


def test_repeated_challenge_after_answer_fails_with_status():
    client = DigestClient("u", "wrong", cnonce_factory=counter_cnonces())
    client.respond(401, ['Digest realm="r", nonce="n1", qop="auth"'], "REGISTER", "sip:r")
    with pytest.raises(AuthenticationFailed) as failure:
        client.respond(401, ['Digest realm="r", nonce="n2", qop="auth"'], "REGISTER", "sip:r")
    assert failure.value.status == 401 and failure.value.realm == "r"
    # and it keeps failing: never a loop of answers
    with pytest.raises(AuthenticationFailed):
        client.respond(401, ['Digest realm="r", nonce="n3", qop="auth"'], "REGISTER", "sip:r")


def test_stale_true_is_answered_again_with_the_new_nonce():
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    client.respond(401, ['Digest realm="r", nonce="old", qop="auth"'], "REGISTER", "sip:r")
    _, value = client.respond(
        401, ['Digest realm="r", nonce="new", qop="auth", stale=true'], "REGISTER", "sip:r"
    )
    assert unquote(fields(value)["nonce"]) == "new" and fields(value)["nc"] == "00000001"


def test_endless_stale_challenges_are_bounded():
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces(), max_stale_answers=3)
    client.respond(401, ['Digest realm="r", nonce="n0", qop="auth"'], "REGISTER", "sip:r")
    answered = 0
    with pytest.raises(AuthenticationFailed, match="stale"):
        for i in range(1, 20):
            client.respond(
                401, [f'Digest realm="r", nonce="n{i}", stale=TRUE'], "REGISTER", "sip:r"
            )
            answered += 1
    assert answered == 3


def test_accepted_allows_one_more_answer_after_nonce_expiry():
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    client.respond(401, ['Digest realm="r", nonce="n1", qop="auth"'], "REGISTER", "sip:r")
    client.accepted()  # 200 OK to the REGISTER
    refresh = client.authorize("REGISTER", "sip:r")
    assert refresh[0][0] == "Authorization" and fields(refresh[0][1])["nc"] == "00000002"
    # the refresh is bounced anyway (nonce expired, no stale flag): answered once more
    name, value = client.respond(
        401, ['Digest realm="r", nonce="n2", qop="auth"'], "REGISTER", "sip:r"
    )
    assert name == "Authorization" and unquote(fields(value)["nonce"]) == "n2"
    with pytest.raises(AuthenticationFailed):
        client.respond(401, ['Digest realm="r", nonce="n3", qop="auth"'], "REGISTER", "sip:r")


def test_proxy_and_registrar_challenges_are_kept_apart():
    client = DigestClient("1001", "secret1001", cnonce_factory=counter_cnonces())
    proxy = ['Digest realm="proxy.example", nonce="pn", qop="auth"']
    registrar = ['Digest realm="127.0.0.1", nonce="rn", qop="auth"']
    name, value = client.respond(407, proxy, "INVITE", "sip:1002@127.0.0.1")
    assert name == "Proxy-Authorization" and unquote(fields(value)["realm"]) == "proxy.example"
    # the retried INVITE is now challenged by the far end: both headers are needed
    headers = client.retry_headers(401, registrar, "INVITE", "sip:1002@127.0.0.1")
    by_name = {n: fields(v) for n, v in headers}
    assert sorted(by_name) == ["Authorization", "Proxy-Authorization"]
    assert unquote(by_name["Authorization"]["realm"]) == "127.0.0.1"
    assert by_name["Authorization"]["nc"] == "00000001"
    assert by_name["Proxy-Authorization"]["nc"] == "00000002"  # fresh, not a replay
    # a 401 from the same realm as the proxy is a different kind: not "repeated"
    name, _ = client.respond(
        401, ['Digest realm="proxy.example", nonce="x", qop="auth"'], "INVITE", "sip:x"
    )
    assert name == "Authorization"
    # but a second 407 for the proxy realm is a rejection
    with pytest.raises(AuthenticationFailed) as failure:
        client.respond(407, proxy, "INVITE", "sip:1002@127.0.0.1")
    assert failure.value.status == 407
    assert {n for n, _ in client.authorize("BYE", "sip:1002@127.0.0.1")} == {
        "Authorization", "Proxy-Authorization",
    }


def test_no_supported_challenge_fails():
    client = DigestClient("u", "p")
    with pytest.raises(AuthenticationFailed, match="no Digest challenge") as failure:
        client.respond(407, ['Basic realm="x"'], "INVITE", "sip:x")
    assert failure.value.status == 407
    with pytest.raises(AuthenticationFailed, match="no supported"):
        client.respond(401, ['Digest realm="r", nonce="n", algorithm=SHA-1'], "INVITE", "sip:x")
    with pytest.raises(AuthenticationFailed, match="malformed"):
        client.respond(401, ['Digest realm="r'], "INVITE", "sip:x")
    with pytest.raises(AuthenticationFailed, match="not a 401 or 407"):
        client.respond(403, ['Digest realm="r", nonce="n"'], "INVITE", "sip:x")


def test_a_malformed_header_beside_a_good_one_is_ignored():
    client = DigestClient("u", "p", cnonce_factory=counter_cnonces())
    name, value = client.respond(
        401, ['Digest realm="r', 'Digest realm="r", nonce="n", qop="auth"'], "REGISTER", "sip:r"
    )
    assert name == "Authorization" and unquote(fields(value)["nonce"]) == "n"


def test_password_never_shown():
    password = "s3cr3t-PASSWORD"
    client = DigestClient("alice", password, cnonce_factory=counter_cnonces())
    client.respond(401, ['Digest realm="r", nonce="n", qop="auth"'], "REGISTER", "sip:r")
    assert password not in repr(client) and password not in str(client)
    assert "alice" in repr(client)
    texts = []
    for status, values in [
        (401, ['Digest realm="r", nonce="n2", qop="auth"']),  # rejected credentials
        (401, ["Basic realm=x"]),
        (407, ['Digest realm="r" oops']),
        (500, []),
    ]:
        with pytest.raises(AuthenticationFailed) as failure:
            client.respond(status, values, "REGISTER", "sip:r")
        texts += [str(failure.value), repr(failure.value), repr(failure.value.args)]
    with pytest.raises(DigestError) as bad_user:
        DigestClient("evil\r\nVia: x", password)
    texts.append(str(bad_user.value))
    assert texts and all(password not in text for text in texts)


def test_line_break_in_username_is_refused():
    with pytest.raises(DigestError):
        DigestClient("a\nb", "p")


# --- property tests: only DigestError escapes the parser ------------------------------

VALID = [
    RFC2617_CHALLENGE,
    rfc7616_challenge("SHA-256"),
    'Digest realm="127.0.0.1", nonce="Z3v3kGd7+2QpG1SMiXmJ==", qop="auth"',
    'Basic realm="x", Digest realm="a\\"b", nonce=n, algorithm=MD5-sess, stale=true',
]
SPECIAL = st.sampled_from(list('"\\,= \t\r\n;:/+-_.aZ0é\x00') + ["Digest ", "realm=", '="'])


def _check_parse(value: str) -> None:
    try:
        result = parse_challenges(value)
    except DigestError as exc:
        assert str(exc)  # a clear message, never empty
        return
    assert all(isinstance(c, Challenge) and c.nonce for c in result)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_random_text_only_raises_digest_error(text):
    _check_parse(text)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 400), SPECIAL),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_challenges_only_raise_digest_error(valid, edits):
    text = valid
    for kind, where, piece in edits:
        i = where % (len(text) + 1)
        if kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + piece + text[i + 1 :]
    _check_parse(text)
    client = DigestClient("u", "p", cnonce_factory=lambda: "c")
    try:
        name, value = client.respond(401, [text], "REGISTER", "sip:r")
    except AuthenticationFailed:
        return
    assert name == "Authorization" and value.startswith("Digest ")


QUOTABLE = st.characters(codec="utf-8", exclude_characters="\r\n\x00")


@settings(max_examples=300, deadline=None)
@given(
    realm=st.text(QUOTABLE, max_size=30),
    nonce=st.text(QUOTABLE, min_size=1, max_size=30),
    opaque=st.none() | st.text(QUOTABLE, max_size=20),
)
def test_quoted_values_round_trip(realm, nonce, opaque):
    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    value = f"Digest realm={q(realm)}, nonce={q(nonce)}, qop=\"auth\""
    if opaque is not None:
        value += f", opaque={q(opaque)}"
    (challenge,) = parse_challenges(value)
    assert (challenge.realm, challenge.nonce, challenge.opaque) == (realm, nonce, opaque)
    got = fields(authorization_value(challenge, "u", "p", "GET", "/", cnonce="c"))
    assert unquote(got["realm"]) == realm and unquote(got["nonce"]) == nonce
