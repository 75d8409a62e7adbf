"""A tiny DNS server for tests: replies to every A query with one address and logs
every query.

Run as a script (also inside a network namespace): it listens on UDP and TCP on
each ``--port`` and appends ``proto port qtype qname`` per query to ``--log``.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import threading


def _question(data: bytes) -> tuple[str, int, int]:
    offset = 12
    labels = []
    while data[offset]:
        length = data[offset]
        labels.append(data[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    qtype = struct.unpack("!H", data[offset + 1 : offset + 3])[0]
    return ".".join(labels), qtype, offset + 5


def _answer(data: bytes, address: str) -> bytes:
    _, qtype, end = _question(data)
    query_id = struct.unpack("!H", data[:2])[0]
    if qtype != 1:
        return struct.pack("!HHHHHH", query_id, 0x8180, 1, 0, 0, 0) + data[12:end]
    header = struct.pack("!HHHHHH", query_id, 0x8180, 1, 1, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(address)
    return header + data[12:end] + record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--answer", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    lock = threading.Lock()

    def record(proto: str, port: int, data: bytes) -> None:
        try:
            name, qtype, _ = _question(data)
        except (IndexError, struct.error):
            name, qtype = "?", 0
        with lock, open(args.log, "a") as log:
            log.write(f"{proto} {port} {qtype} {name}\n")

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            port = self.server.server_address[1]
            record("udp", port, data)
            sock.sendto(_answer(data, args.answer), self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            port = self.server.server_address[1]
            try:
                length = struct.unpack("!H", self.request.recv(2))[0]
                data = self.request.recv(length)
            except (struct.error, OSError):
                record("tcp", port, b"")
                return
            record("tcp", port, data)
            reply = _answer(data, args.answer)
            self.request.sendall(struct.pack("!H", len(reply)) + reply)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    servers: list[socketserver.BaseServer] = []
    for port in args.port:
        servers.append(socketserver.ThreadingUDPServer((args.bind, port), Udp))
        servers.append(socketserver.ThreadingTCPServer((args.bind, port), Tcp))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.log, "a") as log:
        log.write("ready\n")
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
