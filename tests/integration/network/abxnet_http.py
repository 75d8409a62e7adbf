"""A tiny HTTP server for tests: replies 200 on every ``--port`` and logs requests.

Run as a script inside a network namespace; each request appends
``port method path`` to ``--log``.
"""

from __future__ import annotations

import argparse
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

    servers = [ThreadingHTTPServer((args.bind, port), Handler) for port in args.port]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.log, "a") as log:
        log.write("ready\n")
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
