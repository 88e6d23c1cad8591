#!/usr/bin/env python3
"""gRPC calls with raw bytes through sluice, by python3-grpcio (a real gRPC client).

  grpc_probe.py --target 127.0.0.1:PORT --method /pkg.Svc/Method [--kind unary|server-stream|
                client-stream|bidi] [--count N] [--calls N] [--metadata k=v ...]
                [--tls-ca ca.pem --authority example.test] [--payload text] [--timeout 5]

Prints one line of JSON for the last call: {"code": "OK" | "<StatusCode name>", "details": ...,
"responses": [...], plus every initial and trailing metadata key (binary values in hex)}, and
with --calls N > 1 also "codes": {name: count} and "served": {x-served-by: count} over all
calls. Exit code 0 whatever the status.
"""
import argparse
import json

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--kind", default="unary",
                   choices=["unary", "server-stream", "client-stream", "bidi"])
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--parallel", type=int, default=0,
                   help="unary only: N calls at once; prints codes and the wall time")
    p.add_argument("--metadata", action="append", default=[])
    p.add_argument("--tls-ca")
    p.add_argument("--authority")
    p.add_argument("--payload", default="ping")
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    options = [("grpc.enable_retries", 0)]
    if a.authority:
        options.append(("grpc.ssl_target_name_override", a.authority))
        options.append(("grpc.default_authority", a.authority))
    if a.tls_ca:
        with open(a.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(a.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.target, options=options)
    ident = lambda b: b
    metadata = [tuple(m.split("=", 1)) for m in a.metadata]
    payload = a.payload.encode()
    if a.parallel:
        import time
        from concurrent import futures
        call = channel.unary_unary(a.method, ident, ident)
        t0 = time.monotonic()
        with futures.ThreadPoolExecutor(max_workers=a.parallel) as pool:
            fs = [pool.submit(call.future(payload, metadata=metadata, timeout=a.timeout).exception)
                  for _ in range(a.parallel)]
            errors = [f.result() for f in fs]
        codes = {}
        for e in errors:
            name = "OK" if e is None else e.code().name
            codes[name] = codes.get(name, 0) + 1
        print(json.dumps({"codes": codes, "seconds": round(time.monotonic() - t0, 3)}))
        channel.close()
        return
    codes = {}
    served = {}
    out = {}
    for _ in range(a.calls):
        out = {"responses": []}
        call = None
        try:
            if a.kind == "unary":
                r, call = channel.unary_unary(a.method, ident, ident).with_call(
                    payload, metadata=metadata, timeout=a.timeout)
                out["responses"].append(r.decode(errors="replace"))
            elif a.kind == "client-stream":
                r, call = channel.stream_unary(a.method, ident, ident).with_call(
                    iter([payload] * a.count), metadata=metadata, timeout=a.timeout)
                out["responses"].append(r.decode(errors="replace"))
            else:
                if a.kind == "server-stream":
                    call = channel.unary_stream(a.method, ident, ident)(
                        str(a.count).encode(), metadata=metadata, timeout=a.timeout)
                else:
                    call = channel.stream_stream(a.method, ident, ident)(
                        iter([payload + str(i).encode() for i in range(a.count)]),
                        metadata=metadata, timeout=a.timeout)
                for r in call:
                    out["responses"].append(r.decode(errors="replace"))
            out.update({"code": "OK", "details": ""})
            md = list(call.initial_metadata() or []) + list(call.trailing_metadata() or [])
        except grpc.RpcError as e:
            out.update({"code": e.code().name, "details": e.details() or ""})
            md = list(e.initial_metadata() or []) + list(e.trailing_metadata() or [])
        for k, v in md:
            out[k] = v if isinstance(v, str) else v.hex()
        codes[out["code"]] = codes.get(out["code"], 0) + 1
        by = out.get("x-served-by", "none")
        served[by] = served.get(by, 0) + 1
    if a.calls > 1:
        out["codes"] = codes
        out["served"] = served
    channel.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
