"""SRTP and SRTCP (RFC 3711, RFC 7714 GCM) for one RTP session, on pylibsrtp (libsrtp 2).

`SrtpStreams` protects what we send with our key and unprotects what arrives with the far
end's; a re-key (a new offer/answer) replaces one side or both, and for a short while the
previous receive key still opens packets the far end sent before it switched. Keys live
only inside libsrtp's policies and this object (never in its repr). pylibsrtp is imported
on first use: only encrypted calls pay for it.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["SrtpStreams", "SrtpError", "supported_suites", "AUTH_FAILURES_BEFORE_ERROR"]

# SDES suite names (RFC 4568, RFC 7714) -> pylibsrtp profile attribute, our preference first
_PROFILES = {
    "AEAD_AES_128_GCM": "SRTP_PROFILE_AEAD_AES_128_GCM",
    "AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32": "SRTP_PROFILE_AES128_CM_SHA1_32",
}
_KEY_BYTES = {"AEAD_AES_128_GCM": 28, "AES_CM_128_HMAC_SHA1_80": 30,
              "AES_CM_128_HMAC_SHA1_32": 30}
AUTH_FAILURES_BEFORE_ERROR = 50  # in a row, none opened: ~1 s of audio with a wrong key


class SrtpError(Exception):
    """The far end's packets cannot be opened (wrong key or suite). Says so without keys."""


@lru_cache(maxsize=1)
def supported_suites() -> tuple[str, ...]:
    """The suites this libsrtp build runs, in our preference order (GCM needs libsrtp
    built with OpenSSL/NSS; pylibsrtp's wheels have it)."""
    try:
        import pylibsrtp
    except ImportError:
        return ()
    found = []
    for suite, attr in _PROFILES.items():
        profile = getattr(pylibsrtp.Policy, attr, None)
        if profile is None:
            continue
        try:
            pylibsrtp.Session(pylibsrtp.Policy(key=bytes(_KEY_BYTES[suite]),
                                               ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                               srtp_profile=profile))
        except Exception:  # noqa: BLE001 - a build without it
            continue
        found.append(suite)
    return tuple(found)


def _session(suite: str, key: bytes, outbound: bool) -> Any:
    import pylibsrtp

    policy = pylibsrtp.Policy(
        key=key, srtp_profile=getattr(pylibsrtp.Policy, _PROFILES[suite]),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound
        else pylibsrtp.Policy.SSRC_ANY_INBOUND)
    if not outbound:
        policy.window_size = 1024  # reordering on the way must not look like replays
    return pylibsrtp.Session(policy)


class SrtpStreams:
    """Both directions of one RTP session: protect out, unprotect in (RTP and RTCP)."""

    __slots__ = ("suite", "_send_key", "_receive_key", "_tx", "_rx", "_previous_rx",
                 "opened", "auth_failures", "failures_in_a_row", "replays", "_pylibsrtp_error")

    def __init__(self, suite: str, send_key: bytes, receive_key: bytes) -> None:
        import pylibsrtp

        if suite not in _PROFILES:
            raise SrtpError(f"SRTP suite {suite} is not supported")
        self._pylibsrtp_error = pylibsrtp.Error
        self.suite = suite
        self._send_key = self._receive_key = b""
        self._tx: Any = None
        self._rx: Any = None
        self._previous_rx: Any = None
        self.opened = 0            # packets that authenticated
        self.auth_failures = 0     # packets that did not (wrong key, corrupted, foreign)
        self.failures_in_a_row = 0
        self.replays = 0           # duplicates libsrtp refused (not an error)
        self.rekey(suite, send_key, receive_key)

    def __repr__(self) -> str:
        return f"<SrtpStreams {self.suite} opened={self.opened} failed={self.auth_failures}>"

    def same(self, suite: str, send_key: bytes, receive_key: bytes) -> bool:
        return (suite, send_key, receive_key) == (self.suite, self._send_key, self._receive_key)

    def rekey(self, suite: str, send_key: bytes, receive_key: bytes) -> None:
        """New keys from a new offer/answer: replace what changed (the old receive key
        stays as a fallback for packets sent before the far end switched)."""
        if suite != self.suite:
            self._tx = self._rx = self._previous_rx = None
            self._send_key = self._receive_key = b""
            self.suite = suite
        if send_key != self._send_key or self._tx is None:
            self._tx = _session(suite, send_key, outbound=True)
            self._send_key = send_key
        if receive_key != self._receive_key or self._rx is None:
            self._previous_rx = self._rx
            self._rx = _session(suite, receive_key, outbound=False)
            self._receive_key = receive_key
            self.failures_in_a_row = 0

    # -- sending -------------------------------------------------------------------------
    def protect(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._tx.protect_rtcp(packet)

    # -- receiving -----------------------------------------------------------------------
    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP packet, or None when it does not authenticate (counted)."""
        return self._open(packet, rtcp=False)

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        return self._open(packet, rtcp=True)

    def _open(self, packet: bytes, rtcp: bool) -> bytes | None:
        for session in (self._rx, self._previous_rx):
            if session is None:
                continue
            try:
                plain = session.unprotect_rtcp(packet) if rtcp else session.unprotect(packet)
            except self._pylibsrtp_error as exc:
                if "replay" in str(exc):
                    self.replays += 1
                    return None
                continue
            except (ValueError, TypeError):  # too short to be SRTP
                break
            self.opened += 1
            self.failures_in_a_row = 0
            return plain
        self.auth_failures += 1
        self.failures_in_a_row += 1
        return None

    @property
    def failing(self) -> bool:
        """Packets arrive and none opens: the far end's key or suite does not match."""
        return self.failures_in_a_row >= AUTH_FAILURES_BEFORE_ERROR
