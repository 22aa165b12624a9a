"""softphone: a terminal SIP softphone (Textual TUI, headless CLI, real RTP audio)."""

__version__ = "0.1.0"
