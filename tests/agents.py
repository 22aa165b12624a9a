"""In-process user agents for tests: the engine under the Phone, with its events and the
SIP it put on the wire recorded."""

from __future__ import annotations

from typing import Any

from softphone.config import Config
from softphone.ua.agent import UserAgent


def make_agent(config: Config, account: Any = None, *, events: list | None = None,
               wire: list | None = None, auto_answer: bool = False, answer_delay: float = 0.0,
               user: str | None = None, listen: str | None = None) -> UserAgent:
    """``events`` collects (name, fields) of every event; ``wire`` (direction, bytes)."""
    publish = (lambda e: events.append((e.name, e.to_dict()))) if events is not None \
        else (lambda e: None)
    tracer = (lambda direction, data, peer: wire.append((direction, data))) \
        if wire is not None else None
    return UserAgent(config, listen=listen, accounts=[account] if account is not None else [],
                     publish=publish, tracer=tracer, auto_answer=auto_answer,
                     answer_delay=answer_delay, user=user)


async def register(agent: UserAgent, timeout: float = 5.0) -> bool:
    """Register the agent's (first) account and wait for the outcome."""
    account = agent.account(None)
    await account.register()
    return await account.wait_registered(timeout)


def port_of(agent: UserAgent) -> int:
    return agent.stack.transport.port
