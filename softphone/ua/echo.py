"""The built-in echo service: a second user agent in the same process that answers and
sends back what it hears.

Dialing ``echo`` goes through the full SIP and RTP path on loopback, so it tests the
microphone, the speaker, the codecs and the network stack in one go, with no server.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..sip.uri import SipUri

if TYPE_CHECKING:
    from ..config import Config
    from .agent import UserAgent

__all__ = ["EchoService"]


class EchoService:
    """Starts on first use; one per phone."""

    def __init__(self, config: "Config") -> None:
        # no accounts, loopback only (no TLS listener), every codec we have
        network = replace(config.network, listen="127.0.0.1:0", public_address=None,
                          tls_listen=None)
        self.config = replace(config, accounts=(), network=network)
        self.agent: "UserAgent | None" = None

    async def uri(self) -> SipUri:
        if self.agent is None:
            from ..media.devices import EchoBridge
            from .agent import UserAgent

            def devices(call):
                bridge = EchoBridge()
                return bridge.source, bridge.sink

            agent = UserAgent(self.config, listen="127.0.0.1:0", devices=devices,
                              auto_answer=True, user="echo")
            await agent.start(preload_media=False)
            self.agent = agent
        return SipUri(user="echo", host="127.0.0.1", port=self.agent.stack.transport.port)

    async def close(self) -> None:
        if self.agent is not None:
            await self.agent.close(unregister=False, timeout=2.0)
            self.agent = None
