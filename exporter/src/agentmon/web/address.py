"""``--web.listen-address``: parsed into the address, port and family the server binds."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


class ListenAddressError(ValueError):
    """A --web.listen-address that cannot be used; one-line message."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int
    family: socket.AddressFamily

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else (
            f"{self.host}:{self.port}")


def parse_listen_address(text: str) -> ListenAddress:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all IPv4 interfaces). Port 0 = any free."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ListenAddressError(f"bad listen address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenAddressError(f"bad listen address {text!r}: write IPv6 as [ADDRESS]:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ListenAddressError(f"bad listen address {text!r}: port must be 0..65535")
    port = int(port_text)
    if host in ("", "0.0.0.0"):  # noqa: S104 - listening everywhere is the operator's choice
        return ListenAddress("0.0.0.0", port, socket.AF_INET)  # noqa: S104
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ListenAddressError(f"bad listen address {text!r}: host must be an IP address, "
                                 "localhost or empty") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return ListenAddress(str(ip), port, family)
