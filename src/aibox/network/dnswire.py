"""A minimal DNS client: build one query, send it over UDP or TCP, read the reply.

Enough for health checks and probes (RFC 1035 wire format, A and AAAA answers,
no compression on the way out); not a resolver.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from dataclasses import dataclass

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "NULL": 10, "TXT": 16, "AAAA": 28, "ANY": 255}
RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}


@dataclass(frozen=True)
class DnsReply:
    rcode: str
    addresses: tuple[str, ...]


def build_query(name: str, qtype: str, query_id: int) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(
        bytes([len(label)]) + label.encode("ascii")
        for label in name.rstrip(".").split(".")
        if label
    )
    return header + labels + b"\x00" + struct.pack("!HH", TYPES[qtype], 1)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def parse_reply(data: bytes, query_id: int) -> DnsReply:
    """Return the rcode and the A/AAAA addresses of a reply; ValueError if malformed."""
    if len(data) < 12:
        raise ValueError("DNS reply shorter than its header")
    reply_id, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", data[:12])
    if reply_id != query_id:
        raise ValueError(f"DNS reply id {reply_id} does not match query id {query_id}")
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(data, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, _, _, length = struct.unpack("!HHIH", data[offset : offset + 10])
        offset += 10
        rdata = data[offset : offset + length]
        offset += length
        if rtype in (1, 28):
            addresses.append(str(ipaddress.ip_address(rdata)))
    rcode = RCODES.get(flags & 0x0F, str(flags & 0x0F))
    return DnsReply(rcode=rcode, addresses=tuple(addresses))


def query(
    server: str,
    name: str,
    qtype: str = "A",
    *,
    port: int = 53,
    tcp: bool = False,
    timeout: float = 2.0,
) -> DnsReply:
    """Send one query to ``server`` and return the reply; OSError on no answer."""
    query_id = secrets.randbelow(0x10000)
    packet = build_query(name, qtype, query_id)
    if tcp:
        with socket.create_connection((server, port), timeout=timeout) as conn:
            conn.sendall(struct.pack("!H", len(packet)) + packet)
            length = struct.unpack("!H", _read_exact(conn, 2))[0]
            return parse_reply(_read_exact(conn, length), query_id)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        data, _ = sock.recvfrom(4096)
        return parse_reply(data, query_id)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("DNS server closed the connection mid-reply")
        chunks += chunk
    return chunks
