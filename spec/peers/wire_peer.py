#!/usr/bin/env python3
"""wire_peer.py -- a second implementation of the link frame codec,
written from docs/WIRE.md alone (not from the engine's sources).

    wire_peer.py SOCKET_PATH COUNT

Connects to an engine listening on the Unix socket SOCKET_PATH, says
hello as node "py" (wire v1..v2, no contracts), subscribes to "swaps.*",
prints each of the first COUNT v2 messages it receives as
"msg TOPIC SOURCE KIND SEQ TRACE_HEX", then sends one v2 message on
"py.out" (raw payload "hello from python", trace 0x01 * 16, span 0x02 * 8)
and prints "sent", and exits.  Everything it cannot decode is an error.
"""
import socket
import struct
import sys

HELLO, MSG, SUB, UNSUB, CLOSE = 0xFF01, 0xFF02, 0xFF03, 0xFF04, 0xFF05


def frame(ftype, body):
    return struct.pack("<HI", ftype, len(body)) + body


def hello(node):
    n = node.encode()
    body = b"MYCL" + struct.pack("<BBHB", 1, 2, 0, len(n)) + n
    body += struct.pack("<IHHH", 0, 0, 0, 0)  # no contracts, no types
    return frame(HELLO, body)


def decode_hello(body):
    if body[:4] != b"MYCL":
        raise ValueError("bad magic")
    vmin, vmax, _flags, node_len = struct.unpack_from("<BBHB", body, 4)
    node = body[9:9 + node_len].decode()
    sid, sver, smin, ntypes = struct.unpack_from("<IHHH", body, 9 + node_len)
    if len(body) != 19 + node_len + 34 * ntypes:
        raise ValueError("type list length")
    return node, vmin, vmax


def pad8(n):
    return (n + 7) & ~7


def decode_msg(body):
    (frame_len, mtype, kind, _flags) = struct.unpack_from("<IHBB", body, 0)
    trace, span, parent = body[8:24], body[24:32], body[32:40]
    seq, ts = struct.unpack_from("<QQ", body, 40)
    payload_len, topic_len, source_len, version = struct.unpack_from(
        "<IHBB", body, 56)
    if frame_len != len(body) or version != 2:
        raise ValueError("bad header")
    if 64 + pad8(payload_len) + topic_len + source_len != frame_len:
        raise ValueError("lengths do not add up")
    off = 64 + pad8(payload_len)
    topic = body[off:off + topic_len].decode()
    source = body[off + topic_len:off + topic_len + source_len].decode()
    return topic, source, kind, seq, trace.hex()


def encode_msg(topic, source, payload, trace, span, seq):
    t, s = topic.encode(), source.encode()
    padded = payload + b"\0" * (pad8(len(payload)) - len(payload))
    frame_len = 64 + len(padded) + len(t) + len(s)
    hdr = struct.pack("<IHBB", frame_len, 0, 1, 0) + trace + span + b"\0" * 8
    hdr += struct.pack("<QQ", seq, 0)
    hdr += struct.pack("<IHBB", len(payload), len(t), len(s), 2)
    return frame(MSG, hdr + padded + t + s)


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    sock.sendall(hello("py") + frame(SUB, b"swaps.*"))
    buf, got = b"", 0
    while got < count:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the engine closed the link")
        buf += data
        while len(buf) >= 6:
            ftype, length = struct.unpack_from("<HI", buf, 0)
            if len(buf) < 6 + length:
                break
            body, buf = buf[6:6 + length], buf[6 + length:]
            if ftype == HELLO:
                node, vmin, vmax = decode_hello(body)
                print("hello %s %d..%d" % (node, vmin, vmax), flush=True)
            elif ftype in (SUB, UNSUB):
                print("%s %s" % ("sub" if ftype == SUB else "unsub",
                                 body.decode()), flush=True)
            elif ftype == MSG and got < count:
                print("msg %s %s %d %d %s" % decode_msg(body), flush=True)
                got += 1
            elif ftype == CLOSE:
                raise SystemExit("closed: " + body.decode())
    sock.sendall(encode_msg("py.out", "pyproducer", b"hello from python",
                            b"\x01" * 16, b"\x02" * 8, 1))
    print("sent", flush=True)
    sock.close()


if __name__ == "__main__":
    main()
