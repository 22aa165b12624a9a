"""SIP URIs in the config: read by softphone.sip.uri.parse_uri, plus the config's rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.config import Account, Config, ConfigError
from softphone.config.validators import sip_uri

PASSWORD = "hunter2-Sup3rSecret"


def aor_error(aor: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"accounts": [{"aor": aor}]})
    assert info.value.key == "accounts[0].aor"
    return info.value


# Each reason parse_uri gives maps to one of ours (not the catch-all): if uri.py's
# messages change, this fails instead of the config silently getting vaguer.
@pytest.mark.parametrize(("aor", "reason"), [
    ("sip:1001@", "has no host"),
    ("sip:1001@bad_host!", "has an invalid host (not a host name, IPv4 or [IPv6] address)"),
    ("sip:1001@[::zz]", "has an invalid host (not a host name, IPv4 or [IPv6] address)"),
    ("sip:1001@[12345::1]", "has an invalid host (not an IPv6 address)"),
    ("sip:1001@[::1", "has an invalid host ('[' without ']')"),
    ("sip:1001@host:x", "has an invalid port (must be 1..65535)"),
    ("sip:1001@host:99999", "has an invalid port (must be 1..65535)"),
    ("sip:1001@host:0", "has an invalid port (must be 1..65535)"),
    ("sip:@host", "has an empty user part"),
    ("sip:10%zz01@host", "has a bad %-escape ('%' must start two hex digits)"),
    ("sip:10%ff01@host", "has a %-escape that is not UTF-8"),
    ("sip:1001@host;=x", "has a parameter without a name"),
])
def test_parse_uri_reasons_are_mapped(aor, reason):
    err = aor_error(aor)
    assert err.reason.startswith(reason + ", like 'sip:1001@pbx.example.com' (got ")
    assert repr(aor) in err.reason


@pytest.mark.parametrize(("aor", "reason"), [
    # RFC 3261 §19.1 forbids these; the old splitter accepted them, and the UA's
    # parse_uri then failed on them (or would have sent them as written)
    ("sip:1001@[fe80::1%eth0]", "has an invalid host"),  # no zone ids in a SIP URI
    ("sip:1001@host;", "has an empty parameter"),
    ("sip:1001@host;lr;;x", "has an empty parameter"),
    ("sip:1001@host;x=%4", "has a bad %-escape"),
    ("sip:10%ff01@host", "not UTF-8"),
    # the rules the config keeps on top of the wire parser's leniency
    ("sip:1001@host ", "must not start or end with white space"),
    ("sip:alice smith@host", "must not contain ' ' unescaped in the user part (write %20)"),
    ("sip:jörg@host", "must not contain 'ö' unescaped in the user part (write %C3%B6)"),
    ("sip:a[1]@host", "must not contain '[' unescaped in the user part (write %5B)"),
    ("sip:1001@host;lr,x", "must not contain ',' unescaped in a parameter (write %2C)"),
    ("sip:1001@host;x=\"y\"", "must not contain '\"' unescaped in a parameter"),
    ("sip:1001@host?subject=hi", "must not contain headers ('?…')"),
    ("sip:1001@host?", "must not contain headers ('?…')"),
    ("sip:1001@300.1.1.1", "has an invalid host: '300.1.1.1' is not a valid IPv4 address"),
    ("sip:1001@under_score.example", "'under_score.example' is not a valid host name"),
    ("tel:+15551234", "must be a sip: or sips: URI"),
])
def test_config_rules_on_top_of_parse_uri(aor, reason):
    assert reason in aor_error(aor).reason


@pytest.mark.parametrize("aor", [
    "sip:1001@pbx.example.com",
    "SIP:1001@PBX.example.com:5080;transport=tcp",
    "sips:alice%40corp@[2001:db8::1]:5061",
    "sip:+1-555;phone-context=x@host;user=phone",  # ';' and '=' are fine in a user part
    "sip:a?b/c@host.example.",  # so are '?' and '/'; a trailing dot in a host name too
    "sip:1001@host;lr;maddr=[::1];x=%41",
])
def test_valid_uris_load(aor):
    config = Config.from_dict({"accounts": [{"aor": aor}]})
    acc = config.account()
    assert acc.aor == aor and acc.aor_uri.scheme in ("sip", "sips")
    assert Config.from_dict(config.to_dict()) == config


def test_registrar_and_proxy_rules():
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.registrar: must not have a user part"):
        Config.from_dict({"accounts": [{"aor": "sip:a@b", "registrar": "sip:u@reg"}]})
    acc = Config.from_dict({"accounts": [{"aor": "sip:a@b", "registrar": "sip:reg:5070",
                                          "outbound_proxy": "sip:edge@proxy;lr"}]}).account()
    assert (acc.registrar, acc.outbound_proxy) == ("sip:reg:5070", "sip:edge@proxy;lr")
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.outbound_proxy: has an empty param"):
        Config.from_dict({"accounts": [{"aor": "sip:a@b", "outbound_proxy": "sip:p;lr;"}]})


def test_derived_views_come_from_parse_uri():
    acc = Account(aor="sips:alice%40corp@[2001:db8::1]:5061;transport=tcp")
    assert acc.user == "alice%40corp"  # as written
    assert acc.username == "alice@corp"  # unescaped, for digest auth
    assert (acc.domain, acc.hostport) == ("2001:db8::1", "[2001:db8::1]:5061")
    assert acc.registrar == "sips:[2001:db8::1]:5061"
    assert acc.transport == "tls"  # sips: wins over ;transport=
    assert acc.aor_uri is not acc.aor_uri  # each caller gets its own (SipUri is mutable)
    assert Account(aor="sip:bob@h;transport=TCP").transport == "tcp"
    assert Account(aor="sip:bob@h;transport").transport == "udp"


def test_flag_transport_parameter_is_refused():
    err = aor_error("sip:a@b;transport")
    assert err.reason == "transport parameter must be one of udp, tcp, tls (got '')"


@pytest.mark.parametrize("template", [
    "sip:1001:{pw}@127.0.0.1",
    "sips:1001:{pw}@[::1]:5061;lr",
    "sip:1001:{pw}@bad_host!",
    "sip:1001:{pw}@host:99999",
    "sip:1001:{pw}@",
    "sip:1001:{pw}@host?x=y",
    "sip:1001:{pw}@host;;",
    "sip::{pw}@host",
    "1001:{pw}@127.0.0.1",
    "sip:1001:{pw}@host ",
])
@pytest.mark.parametrize("key", ["aor", "registrar", "outbound_proxy"])
def test_password_in_a_uri_is_never_quoted(template, key):
    uri = template.format(pw=PASSWORD)
    account = {"aor": uri} if key == "aor" else {"aor": "sip:a@b", key: uri}
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"accounts": [account]})
    assert info.value.key == f"accounts[0].{key}"
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


@settings(max_examples=300, deadline=None)
@given(password=st.text(min_size=1, max_size=20).map(lambda s: f"Zq{s}Xw"),
       tail=st.sampled_from(["@host", "@bad!", "@host:0", "@", "@h?x", "@[::1", "@h;"]))
def test_no_password_reaches_a_reason(password, tail):
    text = f"sip:u:{password}{tail}"
    try:
        sip_uri(text, user=True)
    except ValueError as exc:  # Invalid
        assert password not in str(exc)
    else:
        raise AssertionError(f"accepted a URI with a password: {text!r}")
