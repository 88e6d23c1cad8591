#!/usr/bin/env python3
"""A gRPC test service (python3-grpcio, raw bytes, no generated code) for the e2e tests.

  grpc_service.py --port P --name v1 [--fail-every N] [--max-streams N]
                  [--tls-cert c.pem --tls-key k.pem]

Service test.Echo:
  Unary         -> b"<name>:<request>"; every Nth call (--fail-every) fails UNAVAILABLE instead
  ServerStream  -> request "k" (a number): k replies b"<name>:<i>"
  ClientStream  -> b"<name>:<count of requests>:<total bytes>"
  Bidi          -> each request echoed as b"<name>:<request>"
  Sleep         -> waits <request> milliseconds, then b"<name>:slept"
Every call sends initial metadata x-served-by: <name> and trailing metadata
x-trailer-bin: b"\\x00\\x01<name>" (binary metadata). Prints "listening on PORT" once serving, then
runs until SIGTERM/SIGINT. Port 0 picks a free port.
"""
import argparse
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", required=True)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--max-streams", type=int, default=0)  # SETTINGS_MAX_CONCURRENT_STREAMS
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    name = a.name.encode()
    lock = threading.Lock()
    calls = [0]

    def start(context):
        context.send_initial_metadata((("x-served-by", a.name),))
        context.set_trailing_metadata((("x-trailer-bin", b"\x00\x01" + name),))

    def unary(request, context):
        start(context)
        with lock:
            calls[0] += 1
            n = calls[0]
        if a.fail_every and n % a.fail_every == 0:
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure %d" % n)
        return name + b":" + request

    def server_stream(request, context):
        start(context)
        for i in range(int(request or b"0")):
            yield name + b":" + str(i).encode()

    def client_stream(requests, context):
        start(context)
        count = total = 0
        for r in requests:
            count += 1
            total += len(r)
        return name + (":%d:%d" % (count, total)).encode()

    def bidi(requests, context):
        start(context)
        for r in requests:
            yield name + b":" + r

    def sleep(request, context):
        time.sleep(int(request or b"0") / 1000.0)
        start(context)
        return name + b":slept"

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    })
    options = [("grpc.max_concurrent_streams", a.max_streams)] if a.max_streams else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    server.add_generic_rpc_handlers((handler,))
    address = "127.0.0.1:%d" % a.port
    if a.tls_cert:
        with open(a.tls_cert, "rb") as c, open(a.tls_key, "rb") as k:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    server.start()
    print("listening on %d" % port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
