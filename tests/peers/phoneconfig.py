"""Config files for softphone processes under test (accounts at a test Kamailio)."""

from __future__ import annotations

from pathlib import Path

from .net import free_udp_port

RTP_PORTS = (34000, 40000)  # away from the harness's 20000-32767 pool


def write_config(path: Path, kam=None, user: str | None = None, *, password: str | None = None,
                 register: bool = True, transport: str = "udp", codecs: list[str] | None = None,
                 listen: str | None = None, extra: str = "", account_extra: str = "",
                 network_extra: str = "") -> Path:
    """One account ``user`` at ``kam`` (or none), a free loopback listen port, null audio.
    A ``tls`` account registers at the Kamailio's TLS port. ``account_extra`` and
    ``network_extra`` are lines added to the account and to [network]; ``extra`` ends the
    file (whole tables)."""
    lines: list[str] = []
    if user is not None:
        sub = kam.subscriber(user)
        lines += [
            "[[accounts]]",
            f'name = "u{user}"',
            f'aor = "sip:{user}@{kam.domain}"',
            f'password = "{password if password is not None else sub.password}"',
            f'registrar = "{kam.tls_uri if transport == "tls" else f"sip:{kam.host}:{kam.port}"}"',
            f'transport = "{transport}"',
            f"register = {'true' if register else 'false'}",
            "expires = 300",
            account_extra,
            "",
        ]
    lines += ["[network]", f'listen = "{listen or f"127.0.0.1:{free_udp_port()}"}"',
              f"rtp_ports = [{RTP_PORTS[0]}, {RTP_PORTS[1]}]", network_extra, "", "[audio]",
              'backend = "null"']
    if codecs:
        lines.append("codecs = [" + ", ".join(f'"{c}"' for c in codecs) + "]")
    lines.append(extra)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
