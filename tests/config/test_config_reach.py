"""[network] keys for reaching providers: DNS servers, STUN, NAT Contact, keep-alives."""

from __future__ import annotations

import pytest

from softphone.config import Config, ConfigError


def test_defaults_and_normal_forms():
    net = Config.default().network
    assert net.dns_servers == () and net.stun_server is None and net.keepalive is None
    assert net.nat_contact is True and net.keepalive_udp == "options"
    net = Config.from_dict({"network": {
        "dns_servers": ["192.0.2.53", "127.0.0.1:5353", "[::1]:53"],
        "stun_server": "stun.example.net", "keepalive": 0, "keepalive_udp": "crlf"}}).network
    assert net.dns_servers == ("192.0.2.53:53", "127.0.0.1:5353", "[::1]:53")
    assert net.stun_server == "stun.example.net:3478" and net.keepalive == 0


@pytest.mark.parametrize(("table", "key", "reason"), [
    ({"dns_servers": "127.0.0.1"}, "network.dns_servers", "must be an array"),
    ({"dns_servers": ["dns.example.net"]}, "network.dns_servers[0]",
     "must be an IP address, optionally :PORT"),
    ({"dns_servers": ["127.0.0.1:0"]}, "network.dns_servers[0]", "port must be 1..65535"),
    ({"stun_server": "stun.example.net:99999"}, "network.stun_server", "must be HOST or HOST:PORT"),
    ({"stun_server": "::1"}, "network.stun_server", "in brackets"),
    ({"keepalive": -1}, "network.keepalive", "must be between 0 and 3600"),
    ({"keepalive_udp": "stun"}, "network.keepalive_udp", "must be one of"),
])
def test_bad_values_name_the_key(table, key, reason):
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"network": table})
    assert info.value.key == key and reason in info.value.reason, info.value


def test_an_account_without_transport_leaves_it_to_dns():
    accounts = Config.from_dict({"accounts": [
        {"aor": "sip:1001@pbx.example.com"},
        {"aor": "sip:1002@pbx.example.com", "transport": "udp", "name": "b"},
        {"aor": "sip:1003@pbx.example.com;transport=tcp", "name": "c"},
        {"aor": "sips:1004@pbx.example.com", "name": "d"}]}).accounts
    assert [a.fixed_transport for a in accounts] == [None, "udp", "tcp", "tls"]
    assert accounts[0].transport == "udp"  # what it falls back to when DNS says nothing
