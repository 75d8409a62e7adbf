"""A tiny HTTP server for tests: replies 200 on every ``--port`` and logs requests.

Run as a script inside a network namespace; each request appends
``port method path`` to ``--log``. ``--bind`` may be an IPv6 address, with a
``%interface`` suffix for a link-local one.
"""

from __future__ import annotations

import argparse
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            with lock, open(args.log, "a") as log:
                log.write(f"{port} {self.command} {self.path}\n")
            body = f"ok {port}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:
            return

    servers = [_server(args.bind, port, Handler) for port in args.port]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.log, "a") as log:
        log.write("ready\n")
    servers[0].serve_forever()


def _server(
    bind: str, port: int, handler: type[BaseHTTPRequestHandler]
) -> ThreadingHTTPServer:
    addresses = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = addresses[0]

    class Server(ThreadingHTTPServer):
        address_family = family

    return Server(address, handler)


if __name__ == "__main__":
    main()
