#!/usr/bin/env python3
"""An HTTPS upstream for the e2e tests: HTTP/1.1 keep-alive over TLS on 127.0.0.1, a free port.

Prints "port N" once listening. Paths under /slow answer after 0.3 s. Every answer says how many TLS handshakes it has completed and how
many of them resumed a session, and whether the client presented a certificate:
  handshakes=H resumed=R client_cert=yes|no path=/...
With --client-ca, a client certificate signed by that CA is required (mTLS). Stops on SIGTERM or
when its parent (the test) dies, and after --max-seconds in any case.
"""
import argparse
import http.server
import os
import signal
import socketserver
import ssl
import sys
import threading

counts = {"handshakes": 0, "resumed": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            counts["handshakes"] += 1
            if self.connection.session_reused:
                counts["resumed"] += 1

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/slow"):
            threading.Event().wait(0.3)  # concurrent requests need connections of their own
        cert = "yes" if self.connection.getpeercert() else "no"
        with lock:
            body = (f"handshakes={counts['handshakes']} resumed={counts['resumed']} "
                    f"client_cert={cert} path={self.path} "
                    f"proto={self.headers.get('X-Forwarded-Proto')}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca")
    p.add_argument("--max-seconds", type=float, default=120)
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    server = Server(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"port {server.server_address[1]}", flush=True)
    parent = os.getppid()

    def watchdog():
        waited = 0.0
        while waited < a.max_seconds and os.getppid() == parent:
            threading.Event().wait(0.2)
            waited += 0.2
        server.shutdown()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=watchdog, daemon=True).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
