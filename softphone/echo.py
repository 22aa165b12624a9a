"""The built-in echo service: a second UA in the same process that answers and echoes.

Dialing ``echo`` goes through the full SIP and RTP path on loopback, so it tests the
microphone, the speaker, the codecs and the network stack in one go, with no server.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .sip.uri import SipUri

if TYPE_CHECKING:
    from .config import Config
    from .ua import UserAgent

__all__ = ["EchoService", "ECHO_TARGET"]

ECHO_TARGET = "echo"


class EchoService:
    """Starts lazily on first use; one per process."""

    def __init__(self, config: "Config") -> None:
        # no accounts, loopback only, every codec we have
        self.config = replace(config, accounts=())
        self.ua: "UserAgent | None" = None

    async def uri(self) -> SipUri:
        if self.ua is None:
            from .media.devices import EchoBridge
            from .ua import UserAgent

            def devices(call):
                bridge = EchoBridge()
                return bridge.source, bridge.sink

            network = replace(self.config.network, listen="127.0.0.1:0", public_address=None)
            ua = UserAgent(replace(self.config, network=network), None, listen="127.0.0.1:0",
                           media_factory=devices, auto_answer=True, user="echo")
            await ua.start()
            self.ua = ua
        return SipUri(user="echo", host="127.0.0.1", port=self.ua.transport.port)

    async def close(self) -> None:
        if self.ua is not None:
            await self.ua.close(unregister=False, timeout=2.0)
            self.ua = None
