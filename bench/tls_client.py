#!/usr/bin/env python3
"""TLS clients for tls_bench.sh (responses are read with keepalive_client.read_response).

check  N sequential GET requests on ONE TLS keep-alive connection, the server certificate verified
       against --ca for 127.0.0.1; then one new connection offering the session ticket the first
       one received, with one "Connection: close" request. Prints one JSON line: protocol, cipher,
       answers by body, whether a ticket came, whether the second connection resumed and whether
       the server closed it after its answer. Fails (exit 1) on any non-200 answer, a close on the
       first connection, or a run over --timeout-s.
idle   opens --conns TLS connections (--parallel being set up at once), sends one request on each
       and reads its 200 answer, prints "READY conns=.. failed=.. unfinished=.. setup_ms=..", then
       holds them open and silent until SIGTERM/SIGINT or --hold-s, and prints "IDLE held=..
       closed_by_server=.. hold_ended_by=..". Set-up is bounded by --setup-s. With --mark-at K
       it prints "MARK conns=.. failed=.." once K are set up and pauses --mark-s seconds, so the
       caller can read the server's memory half-way.
"""
import argparse
import concurrent.futures
import json
import selectors
import signal
import socket
import ssl
import sys
import threading
import time

from keepalive_client import read_response


def request_bytes(host, port):
    return (f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"User-Agent: sluice-bench\r\nAccept: */*\r\n\r\n").encode()


def connect(ctx, host, port, timeout_s, session=None):
    raw = socket.create_connection((host, port), timeout=timeout_s)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname=host, session=session)
    except BaseException:
        raw.close()
        raise


def get_one(sock, request, buf=b""):
    """Sends one request on sock and checks the answer is a keep-alive 200; returns (body, rest)."""
    sock.sendall(request)
    status, headers, body, buf = read_response(sock, buf)
    if status != 200:
        raise RuntimeError(f"status {status}")
    if headers.get("connection", "").lower() == "close":
        raise RuntimeError("server asked to close the connection")
    return body.decode("latin-1").strip(), buf


def check(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    request = request_bytes(args.host, args.port)
    deadline = time.monotonic() + args.timeout_s
    bodies = {}
    sock = connect(ctx, args.host, args.port, args.timeout_s)
    try:
        buf = b""
        for i in range(args.count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run exceeded {args.timeout_s}s after {i} requests")
            body, buf = get_one(sock, request, buf)
            bodies[body] = bodies.get(body, 0) + 1
        out = {"requests": args.count, "connections": 1, "bodies": bodies,
               "protocol": sock.version(), "cipher": sock.cipher()[0]}
        session = sock.session
    finally:
        sock.close()
    # A second connection offers the ticket and asks to close: the proxy must answer 200 and close.
    out["ticket"] = bool(session is not None and session.has_ticket)
    again = connect(ctx, args.host, args.port, args.timeout_s, session=session if out["ticket"] else None)
    try:
        again.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        status, _, _, rest = read_response(again, b"")
        if status != 200:
            raise RuntimeError(f"Connection: close request: status {status}")
        out["resumed"] = again.session_reused
        again.settimeout(3)
        try:
            out["closes"] = rest == b"" and again.recv(1) == b""
        except TimeoutError:
            out["closes"] = False
        except (OSError, ssl.SSLError):  # a reset or an abrupt end: closed, though not cleanly
            out["closes"] = True
    finally:
        again.close()
    print(json.dumps(out))
    return 0


def idle(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # check mode verifies; here the client's own cost stays low
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    request = request_bytes(args.host, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    setup_end = t0 + args.setup_s

    def open_one(_):
        if stop.is_set() or time.monotonic() > setup_end:
            return None
        sock = connect(ctx, args.host, args.port, max(1.0, setup_end - time.monotonic()))
        try:
            get_one(sock, request)
        except BaseException:
            sock.close()
            raise
        return sock

    held, failed, first_error = [], 0, ""
    mark = args.mark_at if 0 < args.mark_at < args.conns else args.conns
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        for start, end in ((0, mark), (mark, args.conns)):
            for fut in [pool.submit(open_one, i) for i in range(start, end)]:
                try:
                    sock = fut.result()
                except Exception as e:  # noqa: BLE001 - counted, the first one is reported
                    failed += 1
                    first_error = first_error or f"{type(e).__name__}: {e}"
                    continue
                if sock is not None:
                    held.append(sock)
            if end == mark < args.conns and not stop.is_set():
                print(f"MARK conns={len(held)} failed={failed}", flush=True)
                stop.wait(args.mark_s)
    unfinished = args.conns - len(held) - failed
    print(f"READY conns={len(held)} failed={failed} unfinished={unfinished} "
          f"setup_ms={int((time.monotonic() - t0) * 1000)}", flush=True)
    if first_error:
        print(f"first failure: {first_error}", file=sys.stderr, flush=True)

    # Hold: anything readable on an idle connection is the server closing it (or talking).
    sel = selectors.DefaultSelector()
    for sock in held:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    open_socks = set(held)
    closed_by_server = 0
    hold_end = time.monotonic() + args.hold_s
    while not stop.is_set() and time.monotonic() < hold_end:
        for key, _ in sel.select(timeout=min(0.2, max(0.0, hold_end - time.monotonic()))):
            sock = key.fileobj
            try:
                gone = sock.recv(4096) == b""
            except (ssl.SSLWantReadError, BlockingIOError):
                gone = False
            except (OSError, ssl.SSLError):
                gone = True
            if gone:
                closed_by_server += 1
                sel.unregister(sock)
                open_socks.discard(sock)
                sock.close()
    print(f"IDLE held={len(open_socks)} closed_by_server={closed_by_server} "
          f"hold_ended_by={'signal' if stop.is_set() else 'timeout'}", flush=True)
    for sock in open_socks:
        sock.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["check", "idle"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", help="CA file to verify the server with (check)")
    ap.add_argument("--count", type=int, default=400, help="requests (check)")
    ap.add_argument("--timeout-s", type=float, default=30.0, help="bound on the check run")
    ap.add_argument("--conns", type=int, default=1000, help="idle connections (idle)")
    ap.add_argument("--parallel", type=int, default=32, help="connections set up at once (idle)")
    ap.add_argument("--setup-s", type=float, default=60.0, help="bound on opening them (idle)")
    ap.add_argument("--hold-s", type=float, default=120.0, help="bound on holding them (idle)")
    ap.add_argument("--mark-at", type=int, default=0,
                    help="after this many, print 'MARK conns=.. failed=..' and pause --mark-s (idle)")
    ap.add_argument("--mark-s", type=float, default=3.0)
    args = ap.parse_args()
    if args.mode == "check":
        if not args.ca:
            ap.error("check needs --ca")
        try:
            return check(args)
        except Exception as e:  # noqa: BLE001 - report any failure as one line
            print(f"tls_client check: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return idle(args)


if __name__ == "__main__":
    sys.exit(main())
