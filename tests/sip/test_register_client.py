"""The sans-IO registration client against a scripted registrar on the in-memory wire."""

from __future__ import annotations

from harness import Endpoint, Wire
from softphone.sip.auth import authorization_value, parse_challenges
from softphone.sip.caps import Capabilities
from softphone.sip.challenge import Authenticator
from softphone.sip.events import Registered, Registering, RegistrationFailed, Unregistered
from softphone.sip.message import Request, make_response
from softphone.sip.register import RegistrationClient, RegistrationOptions, refresh_delay
from softphone.sip.uri import SipUri, parse_uri

PHONE, PBX = "10.0.0.1", "10.0.0.9"


class Registrar:
    """Challenges once per Call-ID, then grants; or answers what ``script`` says."""

    def __init__(self, password: str = "secret", script: list | None = None) -> None:
        self.password = password
        self.script = list(script or [])
        self.requests: list[Request] = []
        self.grant = 120

    def __call__(self, endpoint: Endpoint, request: Request):
        self.requests.append(request)
        if self.script:
            status, extra = self.script.pop(0)
            endpoint._send_response(make_response(request, status, to_tag="r", extra=extra))
            return None
        auth = request.headers.get("Authorization")
        challenge = 'Digest realm="pbx", nonce="n0nce", qop="auth"'
        if auth is None or not self._valid(request, auth):
            endpoint._send_response(make_response(request, 401, to_tag="r", extra=[
                ("WWW-Authenticate", challenge)]))
            return None
        expires = request.headers.get("Expires")
        contact = request.headers.get("Contact").split(";")[0]
        granted = 0 if expires == "0" else self.grant
        endpoint._send_response(make_response(request, 200, to_tag="r", extra=[
            ("Contact", f"{contact};expires={granted}")]))
        return None

    def _valid(self, request: Request, auth: str) -> bool:
        params = dict(p.strip().split("=", 1) for p in auth[len("Digest "):].split(","))
        params = {k: v.strip('"') for k, v in params.items()}
        (challenge,) = parse_challenges('Digest realm="pbx", nonce="n0nce", qop="auth"')
        expected = authorization_value(challenge, "1001", self.password, "REGISTER",
                                       params["uri"], nc=int(params["nc"], 16),
                                       cnonce=params["cnonce"])
        return f'response="{params["response"]}"' in expected


def setup(registrar: Registrar, password: str | None = "secret"):
    wire = Wire()
    phone = wire.add(Endpoint(PHONE))
    wire.add(Endpoint(PBX, on_new_request=registrar))
    caps = Capabilities()
    caps.add_method("INVITE", "ACK", "BYE")
    options = RegistrationOptions(aor=parse_uri(f"sip:1001@{PBX}"), registrar=parse_uri(f"sip:{PBX}"),
                                  target=parse_uri(f"sip:{PBX}"),
                                  contact=SipUri(user="1001", host=PHONE, port=5060), expires=120,
                                  caps=caps)
    client = RegistrationClient(options, Authenticator("office", "1001", password))
    return wire, phone, client


def test_register_answers_the_challenge_then_refreshes_with_credentials_at_once():
    registrar = Registrar()
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    assert client.state == "registered" and client.granted == 120
    events = [type(e) for e in phone.events_of(client)]
    assert events == [Registering, Registered]
    assert len(registrar.requests) == 2  # challenged, then answered
    wire.run(refresh_delay(120) - 1)
    assert len(registrar.requests) == 2
    wire.run(refresh_delay(120) + 1)
    assert len(registrar.requests) == 3  # the refresh carried credentials: no new 401
    assert b"Authorization: Digest" in registrar.requests[2].to_bytes()
    assert "nc=00000002" in registrar.requests[2].headers.get("Authorization")
    assert events == [Registering, Registered]
    assert client.state == "registered"


def test_wrong_password_fails_saying_so_and_retries_later():
    registrar = Registrar(password="other")
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    (failed,) = phone.events_of(client, RegistrationFailed)
    assert failed.status == 401 and "rejected our credentials for realm 'pbx'" in failed.reason
    assert failed.retry_in == 5.0 and client.state == "failed"
    wire.run_for(5)
    assert len(phone.events_of(client, RegistrationFailed)) == 2  # retried, failed again


def test_no_password_says_the_account_has_none():
    wire, phone, client = setup(Registrar(), password=None)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    (failed,) = phone.events_of(client, RegistrationFailed)
    assert "account 'office' has no password" in failed.reason


def test_423_raises_the_expiry_to_min_expires():
    registrar = Registrar(script=[(423, [("Min-Expires", "300")]), (200, [])])
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    assert registrar.requests[1].headers.get("Expires") == "300"
    assert client.state == "registered"


def test_503_retry_after_is_honoured():
    registrar = Registrar(script=[(503, [("Retry-After", "42")])])
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    (failed,) = phone.events_of(client, RegistrationFailed)
    assert (failed.status, failed.retry_after, failed.retry_in) == (503, 42, 42.0)
    wire.run(41)
    assert len(registrar.requests) == 1
    wire.run(44)
    assert client.state == "registered"


def test_timeout_is_a_408_and_stop_unregisters():
    registrar = Registrar()
    wire, phone, client = setup(registrar)
    wire.drop = lambda src, dst, data: True
    phone.run(client, client.start(wire.now))
    wire.run_for(40)
    failed = phone.events_of(client, RegistrationFailed)[0]
    assert (failed.status, failed.reason) == (408, "Request Timeout")
    wire.drop = lambda src, dst, data: False
    wire.run_for(10)  # the retry after 5 s succeeds
    assert client.state == "registered"
    phone.run(client, client.stop(wire.now))
    wire.run_for(1)
    assert registrar.requests[-1].headers.get("Expires") == "0"
    assert isinstance(phone.events_of(client)[-1], Unregistered)
    assert not client.timers.running  # nothing left to refresh


def test_granted_expiry_is_the_one_for_our_contact():
    registrar = Registrar(script=[(200, [("Contact", "<sip:1001@10.9.9.9:5060>;expires=999"),
                                         ("Contact", "<sip:1001@10.0.0.1:5060>;expires=77")])])
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    assert client.granted == 77


def test_a_new_contact_replaces_the_old_binding_in_one_register():
    """NAT: the registrar saw us elsewhere; the next REGISTER carries the new Contact and
    removes the old one (expires=0), once; later REGISTERs carry only the new one."""
    registrar = Registrar()
    wire, phone, client = setup(registrar)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    assert client.state == "registered"
    public = SipUri(user="1001", host="203.0.113.5", port=40001)
    client.set_contact(public)
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    contacts = registrar.requests[-1].headers.get_all("Contact")
    assert contacts == ["<sip:1001@203.0.113.5:40001>;expires=120",
                        f"<sip:1001@{PHONE}:5060>;expires=0"], contacts
    assert client.state == "registered" and client.granted == 120
    phone.run(client, client.start(wire.now))
    wire.run_for(1)
    assert registrar.requests[-1].headers.get_all("Contact") == \
        ["<sip:1001@203.0.113.5:40001>;expires=120"]
