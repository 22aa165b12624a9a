"""Call transfer, both roles (RFC 3515 REFER, RFC 3891 Replaces; the flows of RFC 5589).

Transferor, blind (§6): the call is held, the far end is REFERred to the target, and the
NOTIFYs of the implicit subscription say how its new call goes. On success we hang up;
on failure (the REFER refused, a final error in the sipfrag, no final NOTIFY before the
subscription expires) the call is resumed and stays. Attended (§7): the same with a
Refer-To that carries Replaces for our other call, whose party takes our place; that
call is released by its party (or by us, shortly after the success).

Transferee: a REFER the user accepts (``[calls] accept_transfer``) places a new call to
the target (with Referred-By, and Replaces when given), reports its progress by NOTIFY
(100, 180, then the final status) and hangs up the old call once the new one is answered.
Every step is a ``transfer`` event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..sip import events as sev
from ..sip.refer import ReferSubscriber, parse_sipfrag, report
from ..sip.replaces import Replaces
from ..sip.subscription import SubscriptionOptions
from ..sip.uri import SipUri
from . import events as ev
from .errors import CallError

if TYPE_CHECKING:
    from ..sip.subscription import Notifier
    from .call import Call

__all__ = ["Transferor", "start", "on_refer"]

log = logging.getLogger(__name__)

_RELEASE_GRACE = 2.0  # s: an attended transfer's replaced call is normally ended by its party


class Transferor:
    """One REFER of ours and its implicit subscription, until the outcome."""

    def __init__(self, call: "Call", target: str, other: "Call | None",
                 held_by_us: bool) -> None:
        self.call = call
        self.target = target
        self.other = other
        self.held_by_us = held_by_us
        self.state = "trying"
        self.status: int | None = None
        self.subscriber: ReferSubscriber | None = None
        self.accepted: asyncio.Future = call.agent.loop.create_future()
        self.done = False

    def _publish(self, state: str, status: int | None, reason: str | None = None) -> None:
        self.state, self.status = state, status
        self.call._publish(ev.Transfer(self.call.call_id, self.target, state, status,
                                       "transferor", reason=reason))

    # -- inputs --------------------------------------------------------------------------
    def on_refer_result(self, event: sev.ReferResult) -> None:
        if not self.accepted.done():
            self.accepted.set_result(event)
        if self.done:
            return
        if event.status >= 300:
            self._finish(False, event.status, f"REFER refused: {event.reason}")
            return
        self._publish("accepted", event.status)
        if not event.subscription:  # RFC 4488: no NOTIFY will come; the far end has it
            self._finish(True, None, "accepted without a subscription")

    def on_subscription_event(self, event: object) -> None:
        if self.done:
            return
        if isinstance(event, sev.NotifyReceived):
            frag = parse_sipfrag(event.body) if event.body else None
            if frag is None:
                return
            status, reason = frag
            if status < 200:
                self._publish("progress", status, reason or None)
            else:
                self._finish(status < 300, status, reason or None)
        elif isinstance(event, sev.SubscriptionState) and event.state == "terminated":
            self._finish(False, None, f"no final NOTIFY ({event.reason or 'terminated'})")

    # -- outcome -------------------------------------------------------------------------
    def _finish(self, ok: bool, status: int | None, reason: str | None) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        self._publish("succeeded" if ok else "failed", status, reason)
        if self.subscriber is not None:
            sub, self.subscriber = self.subscriber, None
            stack = call.agent.stack
            stack.run(sub, sub.unsubscribe(stack.now()))
            call.agent.loop.call_soon(stack.detach, sub)
        if ok:
            call._spawn(self._release())
        elif self.held_by_us and not call.ended and call.on_hold:
            call._spawn(self._resume())

    async def _release(self) -> None:
        if not self.call.ended:
            await self.call.hangup()
        other = self.other
        if other is not None and not other.ended:
            if not await other.wait_ended(_RELEASE_GRACE):
                await other.hangup()

    async def _resume(self) -> None:
        try:
            await self.call.set_hold(False)
        except CallError as exc:
            log.warning("call %s: resume after a failed transfer: %s", self.call.call_id, exc)


async def start(call: "Call", target: SipUri, *, other: "Call | None" = None) -> dict[str, Any]:
    """Transfer ``call``'s party to ``target`` (blind) or to ``other``'s party (attended).
    Returns when the REFER has its answer; the rest comes as ``transfer`` events."""
    agent = call.agent
    if call.ended or call.state != "connected":
        raise CallError("transfer needs a connected call")
    if call.transferor is not None and not call.transferor.done:
        raise CallError("a transfer of this call is already under way")
    ext = call.session.ext("refer")
    if ext is None:
        raise CallError("transfer is not available on this call")
    replaces = None
    if other is not None:
        if other is call or other.ended or other.state != "connected":
            raise CallError("attended transfer needs another connected call")
        replaces = str(Replaces.for_session(other.session))
    held_by_us = False
    if not call.on_hold:  # RFC 5589 §6: the transferee waits on hold
        try:
            await call.set_hold(True)
            held_by_us = True
        except CallError as exc:
            log.info("call %s: not held before the transfer: %s", call.call_id, exc)
    if call.ended or call.session.dialog is None:
        raise CallError("the call ended")
    job = Transferor(call, str(target), other, held_by_us)
    call.transferor = job
    stack = agent.stack
    now = stack.now()
    session = call.session
    try:
        actions = ext.refer(session, now, target, referred_by=str(call.local.uri),
                            replaces=replaces)
    except Exception as exc:  # SessionError and the like: nothing was sent
        job.done = True
        raise CallError(str(exc)) from None
    options = session.options
    sub = ReferSubscriber(SubscriptionOptions(contact=options.contact,
                                              transport=options.transport,
                                              timers=options.timers, caps=options.caps,
                                              user_agent=options.user_agent),
                          session.dialog, ext.last_cseq)
    job.subscriber = sub
    stack.attach(sub, job.on_subscription_event)
    stack.run(sub, sub.subscribe(now))  # first: a NOTIFY may overtake the 202
    call._run(actions)
    job._publish("trying", None)
    try:
        result = await asyncio.wait_for(asyncio.shield(job.accepted),
                                        64 * stack.timers.t1 + 5)
    except asyncio.TimeoutError:
        job._finish(False, 408, "no answer to the REFER")
        raise CallError("no answer to the REFER") from None
    if result.status >= 300:
        raise CallError(f"transfer refused: {result.status} {result.reason}".rstrip())
    return {"call_id": call.call_id, "state": job.state, "status": result.status}


# ======================================================================== transferee
def on_refer(call: "Call", event: sev.ReferReceived) -> None:
    """The far end REFERred us (the REFER is answered already)."""
    target = str(event.target.uri)
    call._publish(ev.Transfer(call.call_id, target, "requested" if event.accepted
                              else "refused", 202 if event.accepted else 603,
                              "transferee"))
    if not event.accepted:
        return
    notifier = event.notifier
    stack = call.agent.stack
    if notifier is not None:
        stack.attach(notifier, lambda e: None)
        now = stack.now()
        stack.run(notifier, notifier.start_implicit(now) + report(notifier, now, 100, "Trying"))
    call._spawn(_follow(call, event, notifier))


async def _follow(call: "Call", event: sev.ReferReceived, notifier: "Notifier | None") -> None:
    agent = call.agent
    stack = agent.stack
    target = str(event.target.uri)
    state = {"ringing": False}

    def notify(status: int, reason: str | None = None) -> None:
        if notifier is not None and notifier.state != "terminated":
            stack.run(notifier, report(notifier, stack.now(), status, reason))
            if status >= 200:
                agent.loop.call_later(64 * stack.timers.t1, stack.detach, notifier)

    def publish(state_name: str, status: int | None, new_id: str | None,
                reason: str | None = None) -> None:
        call._publish(ev.Transfer(call.call_id, target, state_name, status, "transferee",
                                  new_call_id=new_id, reason=reason))

    extra: list[tuple[str, str]] = []
    if event.referred_by:
        extra.append(("Referred-By", event.referred_by))
    if event.replaces:
        extra.append(("Replaces", event.replaces))
    assert isinstance(event.target.uri, SipUri)
    try:
        new = await agent.dial(event.target.uri, account=call.account_name,
                               extra_headers=extra)
    except CallError as exc:
        notify(503, "Service Unavailable")
        publish("failed", 503, None, str(exc))
        return
    done = agent.loop.create_future()

    def watch(e: ev.Event) -> None:
        if e.name == "ringing" and not state["ringing"]:
            state["ringing"] = True
            notify(180, "Ringing")
            publish("progress", 180, new.call_id)
        elif e.name == "answered" and not done.done():
            done.set_result(True)
        elif e.name == "ended" and not done.done():
            done.set_result(False)

    new.observers.append(watch)
    publish("progress", 100, new.call_id)
    answered = await done
    if answered:
        notify(200, "OK")
        publish("succeeded", 200, new.call_id)
        if not call.ended:
            await call.hangup()
        return
    info = new.end_info
    status = int(info.get("status") or (487 if info.get("reason") == "cancelled" else 500))
    notify(status, info.get("phrase") or None)
    publish("failed", status, new.call_id, info.get("phrase") or info.get("reason"))
