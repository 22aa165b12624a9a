"""The dialogs our INVITEs make at the far end(s), for an INVITE session, sans-IO.

A proxy may fork our INVITE: early dialogs come back from several UASs (one per remote
tag), and more than one may answer (RFC 3261 §13.2.2.4). Every 2xx is ACKed; the first
makes the call and any other is released with BYE. The ACK of each 2xx (of the initial
INVITE or a re-INVITE) is kept, with its branch, to be sent again when its 2xx is
retransmitted: the ACK of a 2xx has no transaction that would do it (§13.2.2.4).
"""

from __future__ import annotations

from .dialog import Dialog
from .errors import SipParseError
from .ids import new_branch
from .message import Request, Response

__all__ = ["ForkTable"]


class ForkTable:
    """Early dialogs by remote tag, the ACKs we sent by (remote tag, CSeq), and the remote
    tags of forks we released. The session sends; this remembers."""

    __slots__ = ("early", "acks", "released")

    def __init__(self) -> None:
        self.early: dict[str, Dialog] = {}
        self.acks: dict[tuple[str, int], tuple[Request, str]] = {}  # -> the ACK, its branch
        self.released: set[str] = set()

    def on_provisional(self, invite: Request, response: Response, tag: str
                       ) -> tuple[Dialog | None, bool]:
        """The early dialog a provisional with To tag ``tag`` belongs to (updated), or a
        new one (True) — None when the response cannot make one."""
        early = self.early.get(tag)
        if early is not None:
            early.on_response(response)
            return early, False
        try:
            early = Dialog.from_uac(invite, response)
        except SipParseError:
            return None, False
        self.early[tag] = early
        return early, True

    def keep(self, tag: str, dialog: Dialog) -> None:
        """``dialog`` (remote tag ``tag``) answered: it is the call's; forget the others."""
        self.early = {tag: dialog}

    def clear(self) -> None:
        """A new INVITE goes out (a digest retry, a redirect): no early dialog is ours."""
        self.early.clear()

    def remember_ack(self, tag: str, cseq: int, ack: Request) -> str:
        """Note the ACK of the 2xx (``tag``, ``cseq``); returns the branch to send it on."""
        branch = new_branch()
        self.acks[(tag, cseq)] = (ack, branch)
        return branch

    def ack_sent(self, tag: str, cseq: int) -> tuple[Request, str] | None:
        """The ACK (and its branch) we sent for the 2xx (``tag``, ``cseq``), if any."""
        return self.acks.get((tag, cseq))

    def release(self, invite: Request, response: Response
                ) -> tuple[Dialog, Request, str, Request] | None:
        """A 2xx we do not keep: its dialog, the ACK (noted), the ACK's branch and the BYE
        that ends it; None when the response cannot make a dialog."""
        try:
            fork = Dialog.from_uac(invite, response)
        except SipParseError:
            return None
        self.released.add(fork.remote_tag)
        ack = fork.create_ack(response.cseq[0])
        branch = self.remember_ack(fork.remote_tag, response.cseq[0], ack)
        return fork, ack, branch, fork.create_request("BYE")

    def dialog_for(self, tag: str, confirmed: Dialog | None) -> Dialog | None:
        """The (early) dialog of remote tag ``tag``: the call's, else an early one."""
        if confirmed is not None and confirmed.remote_tag == tag:
            return confirmed
        return self.early.get(tag)

    def dialogs(self, confirmed: Dialog | None) -> list[Dialog]:
        """Every dialog of the session, each once."""
        seen = {id(d): d for d in self.early.values()}
        if confirmed is not None:
            seen[id(confirmed)] = confirmed
        return list(seen.values())

    def compact(self) -> None:
        """The session ended: the ACKs are kept only to be resent, as bytes."""
        for ack, _branch in self.acks.values():
            ack.compact()
