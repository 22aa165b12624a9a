"""SDP offer/answer state for one INVITE session (RFC 3264, RFC 3261 §13.2.1).

Who made the pending offer, what was agreed last, our o= session id and version (one up
for every new offer or changed answer, §8), and our wish for the direction (hold). The
INVITE session calls it at the points the RFCs name; the media layer applies what comes
out (:class:`~softphone.sip.sdp.NegotiatedMedia`). A rejected offer rolls back: the
session keeps what was agreed before (§14.1).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from . import sdes, sdp

__all__ = ["SdpNegotiator", "OfferState", "MediaPolicy"]


class OfferState(enum.Enum):
    IDLE = "idle"              # nothing pending (before the first offer, or after an answer)
    LOCAL_OFFER = "local"      # we sent an offer and wait for the answer
    REMOTE_OFFER = "remote"    # they sent an offer and wait for ours


@dataclass(frozen=True)
class MediaPolicy:
    """What we offer and accept: codec names in preference order, ptime, telephone-event;
    SRTP: ``encryption`` (none | sdes | sdes-required) with the ``srtp_suites`` the media
    layer runs, in our preference order. ``sdes_refused`` says why keys must not go over
    this call's signalling (plain text): SDES is then off, and a call that needs it is
    refused with that reason."""

    codecs: tuple[str, ...] = ("PCMU",)
    ptime: int = 20
    dtmf: bool = True
    encryption: str = "none"
    srtp_suites: tuple[str, ...] = ()
    sdes_refused: str | None = None


class SdpNegotiator:
    def __init__(self, policy: MediaPolicy, *, address: str = "", port: int = 0,
                 session_id: int | None = None) -> None:
        self.policy = policy
        self.address = address
        self.port = port
        self.session_id = session_id if session_id is not None else secrets.randbelow(2**31)
        self.version = 0
        self.state = OfferState.IDLE
        self.direction = "sendrecv"  # what we want: sendonly/inactive while we hold
        self.local_offer: sdp.SessionDescription | None = None
        self.remote_offer: sdp.SessionDescription | None = None
        self.active: sdp.NegotiatedMedia | None = None  # what was agreed last
        self.remote_direction = "sendrecv"  # what the far end asked for in its last offer
        self._pending_answer: tuple[sdp.SessionDescription, sdp.NegotiatedMedia] | None = None

    def release(self) -> None:
        """The session is over: forget the descriptions (the last agreement stays)."""
        self.local_offer = self.remote_offer = None
        self._pending_answer = None
        self.state = OfferState.IDLE

    def set_local(self, address: str, port: int) -> None:
        """Where our RTP listens (known once the media socket is open)."""
        self.address, self.port = address, port

    @property
    def ready(self) -> bool:
        return bool(self.address) and 0 < self.port < 65536

    @property
    def encryption(self) -> str:
        """What this session does now: the policy's, except that SDES over plain-text
        signalling is off, and a call that is encrypted stays so (no downgrade by a
        re-INVITE)."""
        policy = self.policy
        if self.active is not None and self.active.srtp is not None:
            return "sdes-required"
        if policy.sdes_refused is not None:
            return "none"
        return policy.encryption if policy.srtp_suites else "none"

    @property
    def srtp_suite(self) -> str | None:
        """The SRTP suite agreed last (None: plain RTP)."""
        return self.active.srtp.suite if self.active is not None and self.active.srtp else None

    @property
    def remote_hold(self) -> bool:
        """The far end holds us: its last offer said sendonly/inactive (or c=0.0.0.0)."""
        if self.remote_offer is None:
            return False
        neg = self.active
        unspecified = neg is not None and neg.remote_host in ("0.0.0.0", "::")
        return self.remote_direction in ("sendonly", "inactive") or unspecified

    # -- our offers ------------------------------------------------------------------------
    def create_offer(self, direction: str | None = None) -> sdp.SessionDescription:
        """A new offer (o= version one up). ``direction`` changes our wish (hold)."""
        if direction is not None:
            self.direction = direction
        encryption = self.encryption
        # every offer carries fresh keys: a re-INVITE re-keys (RFC 4568 §7.1.4)
        crypto = sdes.offer_cryptos(self.policy.srtp_suites) if encryption != "none" else None
        self.version += 1
        offer = sdp.make_offer(address=self.address, port=self.port,
                               codecs=list(self.policy.codecs), ptime=self.policy.ptime,
                               dtmf=self.policy.dtmf, session_id=self.session_id,
                               session_version=self.version, direction=self.direction,
                               crypto=crypto, secure=encryption == "sdes-required")
        self.local_offer = offer
        self.state = OfferState.LOCAL_OFFER
        return offer

    def receive_answer(self, body: bytes) -> sdp.NegotiatedMedia:
        """Their answer to our offer. A repeated answer (an SDP in both the reliable 183
        and the 2xx, or from another fork) is applied against the same offer. Raises
        SdpError; the offer stays pending then."""
        if self.local_offer is None:
            raise sdp.SdpError("an answer with no offer of ours")
        neg = sdp.apply_answer(self.local_offer, sdp.parse_sdp(body),
                               ptime_default=self.policy.ptime)
        if neg.srtp is None and self.encryption == "sdes-required":
            raise sdp.SdpError("the answer does not encrypt the media (no a=crypto), and "
                               "this call must be encrypted")
        self.active = neg
        self.state = OfferState.IDLE
        return neg

    def cancel_offer(self) -> None:
        """Our offer was refused (a failed re-INVITE): keep what was agreed before."""
        if self.state is OfferState.LOCAL_OFFER:
            self.state = OfferState.IDLE

    # -- their offers ----------------------------------------------------------------------
    def receive_offer(self, body: bytes) -> sdp.SessionDescription:
        """Their offer; the answer comes from :meth:`create_answer`. Raises SdpError
        (malformed) or, once our address is known, NoCommonCodec (nothing we speak): the
        request gets 400 / 488 and what was agreed before stays."""
        offer = sdp.parse_sdp(body)
        pending = self._answer(offer) if self.ready else None
        self.remote_offer = offer
        self._pending_answer = pending
        self.state = OfferState.REMOTE_OFFER
        return offer

    def prepare_answer(self) -> None:
        """Compute the answer to a pending offer now that our address is known (raises
        NoCommonCodec), so a call that cannot work is refused before it rings."""
        if self.remote_offer is not None and self._pending_answer is None:
            self._pending_answer = self._answer(self.remote_offer)

    def create_answer(self) -> tuple[sdp.SessionDescription, sdp.NegotiatedMedia]:
        """Our answer to the pending offer; the agreement takes effect now. The same
        answer is returned again until a new offer arrives (183 then 200)."""
        if self.remote_offer is None:
            raise sdp.SdpError("no offer to answer")
        self.prepare_answer()
        assert self._pending_answer is not None
        answer, neg = self._pending_answer
        self.active = neg
        self.remote_direction = _offered_direction(self.remote_offer)
        self.state = OfferState.IDLE
        return answer, neg

    def _answer(self, offer: sdp.SessionDescription
                ) -> tuple[sdp.SessionDescription, sdp.NegotiatedMedia]:
        policy = self.policy
        refused = policy.sdes_refused
        if refused is not None and policy.encryption == "sdes-required":
            raise sdp.NoCommonCodec(refused)
        try:
            answer = sdp.answer_offer(
                offer, address=self.address, port=self.port, codecs=list(policy.codecs),
                session_id=self.session_id, session_version=self.version + 1,
                ptime_default=policy.ptime, direction=self.direction, dtmf=policy.dtmf,
                encryption=self.encryption, suites=policy.srtp_suites)
        except sdp.NoCommonCodec as exc:
            if refused is not None and policy.encryption != "none":
                raise sdp.NoCommonCodec(f"{exc} ({refused})") from None
            raise
        self.version += 1
        return answer


def _offered_direction(offer: sdp.SessionDescription) -> str:
    audio = next((m for m in offer.media if m.media == "audio" and m.port), None)
    return offer.direction_for(audio) if audio is not None else "inactive"
