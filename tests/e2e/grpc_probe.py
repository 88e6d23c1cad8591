#!/usr/bin/env python3
"""One gRPC unary call with raw bytes through sluice, by python3-grpcio (a real gRPC client).

Prints one line of JSON: {"code": "OK" | "<StatusCode name>", "details": ..., "response": ...,
plus every initial and trailing metadata key}. Exit code 0 whatever the call's status; 2 on usage.

  grpc_probe.py --target 127.0.0.1:PORT --method /pkg.Svc/Method [--metadata k=v ...]
                [--tls-ca ca.pem --authority example.test] [--payload text] [--timeout 5]
"""
import argparse
import json

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--method", required=True)
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
    call = channel.unary_unary(a.method, request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    metadata = [tuple(m.split("=", 1)) for m in a.metadata]
    out = {}
    try:
        response, c = call.with_call(a.payload.encode(), metadata=metadata, timeout=a.timeout)
        out.update({"code": "OK", "details": "", "response": response.decode(errors="replace")})
        for k, v in list(c.initial_metadata() or []) + list(c.trailing_metadata() or []):
            out[k] = v if isinstance(v, str) else v.hex()
    except grpc.RpcError as e:
        out.update({"code": e.code().name, "details": e.details() or ""})
        for k, v in list(e.initial_metadata() or []) + list(e.trailing_metadata() or []):
            out[k] = v if isinstance(v, str) else v.hex()
    channel.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
