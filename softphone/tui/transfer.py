"""Where to transfer a call: a target to type (blind), or another call (attended)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from .state import CallView

__all__ = ["TransferScreen"]


class TransferScreen(ModalScreen):
    """Dismissed with ``{"target": …}`` (blind), ``{"to_call": …}`` (attended), or None."""

    DEFAULT_CSS = """
    TransferScreen { align: center middle; }
    #transfer-box { width: 70; height: auto; border: round $primary; padding: 1 2;
                    background: $panel; }
    #transfer-box Button { width: 100%; margin: 1 0 0 0; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, call: CallView, others: list[CallView]) -> None:
        super().__init__()
        self.call = call
        self.others = others

    def compose(self) -> ComposeResult:
        with Vertical(id="transfer-box"):
            yield Static(f"Transfer {self.call.party}", id="transfer-title")
            yield Input(placeholder="to: sip:user@host · user@host · number   (Enter: blind)",
                        id="transfer-target")
            for index, other in enumerate(self.others):
                yield Button(f"Join with {other.party} (attended)", id=f"transfer-call-{index}")

    def on_mount(self) -> None:
        self.query_one("#transfer-target", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        target = event.value.strip()
        if target:
            self.dismiss({"target": target})

    def on_button_pressed(self, event: Button.Pressed) -> None:
        index = int(str(event.button.id).rsplit("-", 1)[1])
        self.dismiss({"to_call": self.others[index].call_id})

    def action_cancel(self) -> None:
        self.dismiss(None)
