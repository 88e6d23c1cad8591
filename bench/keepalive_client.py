#!/usr/bin/env python3
"""Sends N sequential GET requests on ONE keep-alive TCP connection and checks every answer.

Used by callgrind.sh (fixed request count per run) and run_bench.sh (sanity check of the 90/10
split). Fails (exit 1) if the server closes the connection, answers non-200, or is too slow, so a
run that silently reconnected can never be mistaken for a keep-alive run.
"""
import argparse
import json
import socket
import sys
import time


def read_response(sock, buf):
    """Reads one HTTP/1.1 response from sock (content-length or chunked body). Returns
    (status, headers, body, rest_of_buffer)."""

    def fill(buf):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return buf + chunk

    while b"\r\n\r\n" not in buf:
        buf = fill(buf)
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf = fill(buf)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf = fill(buf)
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            buf = fill(buf)
        body, buf = buf[:length], buf[length:]
    return status, headers, body, buf


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True, help="number of requests")
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout-s", type=float, default=60.0,
                    help="bound on the whole run and on each socket operation")
    args = ap.parse_args()

    deadline = time.monotonic() + args.timeout_s
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               f"User-Agent: sluice-bench\r\nAccept: */*\r\n\r\n").encode()
    bodies = {}
    buf = b""
    try:
        for i in range(args.count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run exceeded {args.timeout_s}s after {i} requests")
            sock.sendall(request)
            status, headers, body, buf = read_response(sock, buf)
            if status != 200:
                raise RuntimeError(f"request {i}: status {status}")
            if headers.get("connection", "").lower() == "close":
                raise RuntimeError(f"request {i}: server asked to close the connection")
            key = body.decode("latin-1").strip()
            bodies[key] = bodies.get(key, 0) + 1
    except Exception as e:  # noqa: BLE001 - report any failure as one line
        print(f"keepalive_client: {e}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    print(json.dumps({"requests": args.count, "connections": 1, "bodies": bodies}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
