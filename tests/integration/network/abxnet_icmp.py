"""Send one ICMP echo request from inside a container and print what came back.

Usage: ``python3 abxnet_icmp.py raw|dgram ADDRESS``. ``raw`` needs CAP_NET_RAW,
``dgram`` (a Linux ping socket) needs the caller's group inside
``net.ipv4.ping_group_range``. The single output line is one of:

- ``reply``: an echo reply from ADDRESS arrived (exit code 0);
- ``unreachable type 3 code N from SOURCE``: an ICMP error arrived instead;
- ``socket failed: ...`` / ``send failed: ...`` / ``receive failed: ...``: an
  ``OSError`` (a rejected ping socket reports the ICMP error this way);
- ``timeout``: nothing arrived within 3 seconds.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

ECHO_REQUEST = 8
ECHO_REPLY = 0
DESTINATION_UNREACHABLE = 3
TIMEOUT = 3.0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(identifier: int) -> bytes:
    payload = b"abxnet-icmp"
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, identifier, 1)
    return (
        struct.pack(
            "!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), identifier, 1
        )
        + payload
    )


def probe_raw(address: str) -> str:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as exc:
        return f"socket failed: {exc}"
    identifier = os.getpid() & 0xFFFF
    try:
        sock.sendto(echo_request(identifier), (address, 0))
    except OSError as exc:
        return f"send failed: {exc}"
    deadline = time.monotonic() + TIMEOUT
    # A raw socket receives every ICMP packet, so skip those meant for others.
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet, (source, _) = sock.recvfrom(2048)
        except TimeoutError:
            break
        except OSError as exc:
            return f"receive failed: {exc}"
        header_length = (packet[0] & 0x0F) * 4
        kind, code = packet[header_length], packet[header_length + 1]
        if kind == ECHO_REPLY and source == address:
            (reply_id,) = struct.unpack_from("!H", packet, header_length + 4)
            if reply_id == identifier:
                return "reply"
        if kind == DESTINATION_UNREACHABLE:
            return f"unreachable type {kind} code {code} from {source}"
    return "timeout"


def probe_dgram(address: str) -> str:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    except OSError as exc:
        return f"socket failed: {exc}"
    sock.settimeout(TIMEOUT)
    try:
        # Connected, so the kernel reports an ICMP error on this socket.
        sock.connect((address, 0))
        sock.send(echo_request(0))
    except OSError as exc:
        return f"send failed: {exc}"
    try:
        packet = sock.recv(2048)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"receive failed: {exc}"
    return "reply" if packet[0] == ECHO_REPLY else f"unexpected type {packet[0]}"


def main() -> int:
    kind, address = sys.argv[1], sys.argv[2]
    result = probe_raw(address) if kind == "raw" else probe_dgram(address)
    print(result)
    return 0 if result == "reply" else 1


if __name__ == "__main__":
    sys.exit(main())
