#!/usr/bin/env python3
"""Capture the content header frames of dead-lettered messages from a real RabbitMQ.

Speaks raw AMQP 0-9-1 over a socket (standard library only), runs three dead-lettering
scenarios on a fresh node and writes, for each message it gets back, the exact payload of
the content header frame as one line of hex (NAME.hex) and a decoded listing (NAME.txt):

  expired         message with expiration "100" in queue `src` (x-dead-letter-exchange "dlx"),
                  dead-lettered into `dead` (bound to `dlx` with key `src`)
  rejected-twice  one message rejected (requeue=false) three times between queues r1 and r2,
                  which dead-letter into each other through the default exchange
  maxlen          the older of two messages pushed out of `m` (x-max-length 1) into `mdead`
  headers-sorted  (extra) an expired message whose own headers were written out of order

The decoded listing gives every property in wire order, then every header table entry in
wire order with its field type letter as RabbitMQ writes it (t b B s u I i l f d D S A T F V x),
recursively (the x-death array of tables included). Time values are kept as captured.

Usage:
  scripts/capture-rabbitmq-x-death.py [--host 127.0.0.1] [--port 5672] \
      [--out tests/fixtures/rabbitmq-x-death]
  scripts/capture-rabbitmq-x-death.py --decode FILE.hex    # print the decoding of a .hex file

The node must be fresh (the scenarios declare queues on vhost "/" and expect them empty) and
accept guest/guest from the client's address. See tests/fixtures/rabbitmq-x-death/README.md.
"""

import argparse
import os
import socket
import struct
import sys
import time

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

# ---------------------------------------------------------------------------------------------
# Encoding


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    assert len(b) < 256
    return struct.pack(">B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


def field_value(v):
    """(letter, value) pairs are written as given; plain values get a natural type."""
    if isinstance(v, tuple):
        letter, val = v
    elif isinstance(v, bool):
        letter, val = "t", v
    elif isinstance(v, int):
        letter, val = "l", v
    elif isinstance(v, (str, bytes)):
        letter, val = "S", v
    elif isinstance(v, dict):
        letter, val = "F", v
    elif isinstance(v, list):
        letter, val = "A", v
    else:
        raise TypeError(v)
    enc = {
        "t": lambda x: struct.pack(">B", 1 if x else 0),
        "b": lambda x: struct.pack(">b", x),
        "B": lambda x: struct.pack(">B", x),
        "s": lambda x: struct.pack(">h", x),
        "u": lambda x: struct.pack(">H", x),
        "I": lambda x: struct.pack(">i", x),
        "i": lambda x: struct.pack(">I", x),
        "l": lambda x: struct.pack(">q", x),
        "T": lambda x: struct.pack(">Q", x),
        "S": longstr,
        "x": longstr,
        "F": table,
        "A": lambda xs: longstr(b"".join(field_value(e) for e in xs)),
        "V": lambda x: b"",
    }[letter]
    return letter.encode() + enc(val)


def table(d):
    body = b"".join(shortstr(k) + field_value(v) for k, v in d.items())
    return longstr(body)


def bits(*flags):
    n = 0
    for i, f in enumerate(flags):
        if f:
            n |= 1 << i
    return struct.pack(">B", n)


def frame(ftype, channel, payload):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([FRAME_END])


def method(class_id, method_id, args=b""):
    return struct.pack(">HH", class_id, method_id) + args


PROPERTIES = [
    # (name, wire type), in wire order; flag bit 15 is the first
    ("content-type", "shortstr"),
    ("content-encoding", "shortstr"),
    ("headers", "table"),
    ("delivery-mode", "octet"),
    ("priority", "octet"),
    ("correlation-id", "shortstr"),
    ("reply-to", "shortstr"),
    ("expiration", "shortstr"),
    ("message-id", "shortstr"),
    ("timestamp", "timestamp"),
    ("type", "shortstr"),
    ("user-id", "shortstr"),
    ("app-id", "shortstr"),
    ("cluster-id", "shortstr"),
]


def content_header(body_size, props):
    flags = 0
    plist = b""
    for i, (name, wtype) in enumerate(PROPERTIES):
        if name not in props:
            continue
        flags |= 1 << (15 - i)
        v = props[name]
        if wtype == "shortstr":
            plist += shortstr(v)
        elif wtype == "table":
            plist += table(v)
        elif wtype == "octet":
            plist += struct.pack(">B", v)
        elif wtype == "timestamp":
            plist += struct.pack(">Q", v)
    return struct.pack(">HHQH", 60, 0, body_size, flags) + plist


# ---------------------------------------------------------------------------------------------
# Decoding


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated at offset %d (need %d bytes)" % (self.pos, n))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def shortstr(self):
        return self.take(self.unpack(">B"))

    def longstr(self):
        return self.take(self.unpack(">I"))

    def done(self):
        return self.pos == len(self.data)


def q(b):
    """A byte string as a double-quoted literal (UTF-8 shown as is, other bytes escaped)."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + b.hex()
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def decode_value(r, letter, indent, lines, label):
    pad = "  " * indent
    simple = {
        "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q",
        "f": ">f", "d": ">d",
    }
    if letter == "t":
        lines.append("%s%s t %s" % (pad, label, "true" if r.unpack(">B") else "false"))
    elif letter in simple:
        lines.append("%s%s %s %r" % (pad, label, letter, r.unpack(simple[letter])))
    elif letter == "D":
        scale = r.unpack(">B")
        value = r.unpack(">i")
        lines.append("%s%s D scale=%d value=%d" % (pad, label, scale, value))
    elif letter == "T":
        ts = r.unpack(">Q")
        lines.append("%s%s T %d (%s)" % (
            pad, label, ts, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))))
    elif letter in "Sx":
        lines.append("%s%s %s %s" % (pad, label, letter, q(r.longstr())))
    elif letter == "V":
        lines.append("%s%s V" % (pad, label))
    elif letter == "F":
        raw = r.longstr()
        lines.append("%s%s F (%d bytes)" % (pad, label, len(raw)))
        decode_table(Reader(raw), indent + 1, lines)
    elif letter == "A":
        raw = r.longstr()
        sub = Reader(raw)
        items = []
        count = 0
        while not sub.done():
            decode_value(sub, chr(sub.unpack(">B")), indent + 1, items, "[%d]" % count)
            count += 1
        lines.append("%s%s A (%d bytes, %d elements)" % (pad, label, len(raw), count))
        lines.extend(items)
    else:
        raise ValueError("unknown field type %r" % letter)


def decode_table(r, indent, lines):
    while not r.done():
        name = r.shortstr()
        letter = chr(r.unpack(">B"))
        decode_value(r, letter, indent, lines, q(name))


def decode_content_header(payload):
    """Lines describing a content header frame payload, every field in wire order."""
    r = Reader(payload)
    lines = []
    class_id = r.unpack(">H")
    weight = r.unpack(">H")
    body_size = r.unpack(">Q")
    flags = r.unpack(">H")
    if flags & 1:
        raise ValueError("property flags continuation bit set (not used by AMQP 0-9-1 basic)")
    present = [name for i, (name, _) in enumerate(PROPERTIES) if flags & (1 << (15 - i))]
    lines.append("class-id %d" % class_id)
    lines.append("weight %d" % weight)
    lines.append("body-size %d" % body_size)
    lines.append("property-flags 0x%04x (%s)" % (flags, ", ".join(present) or "none"))
    for name, wtype in PROPERTIES:
        if name not in present:
            continue
        if wtype == "shortstr":
            lines.append("%s shortstr %s" % (name, q(r.shortstr())))
        elif wtype == "octet":
            lines.append("%s octet %d" % (name, r.unpack(">B")))
        elif wtype == "timestamp":
            lines.append("%s timestamp %d" % (name, r.unpack(">Q")))
        elif wtype == "table":
            raw = r.longstr()
            lines.append("%s table (%d bytes)" % (name, len(raw)))
            decode_table(Reader(raw), 1, lines)
    if not r.done():
        raise ValueError("%d trailing bytes in content header" % (len(payload) - r.pos))
    return lines


# ---------------------------------------------------------------------------------------------
# A minimal AMQP 0-9-1 client


class ServerClosed(Exception):
    pass


class Connection:
    def __init__(self, host, port, vhost="/", user="guest", password="guest"):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, 10, 10)  # connection.start
        client_props = {
            "product": "capture-rabbitmq-x-death.py",
            "capabilities": {"basic.nack": True, "publisher_confirms": True},
        }
        self.send_method(0, 10, 11, table(client_props) + shortstr("PLAIN")
                         + longstr(b"\x00" + user.encode() + b"\x00" + password.encode())
                         + shortstr("en_US"))
        tune = Reader(self.expect(0, 10, 30))  # connection.tune
        channel_max, frame_max, _heartbeat = tune.unpack(">H"), tune.unpack(">I"), tune.unpack(">H")
        self.frame_max = frame_max or 131072
        self.send_method(0, 10, 31, struct.pack(">HIH", channel_max, self.frame_max, 0))
        self.send_method(0, 10, 40, shortstr(vhost) + shortstr("") + bits(False))
        self.expect(0, 10, 41)  # connection.open-ok
        self.send_method(1, 20, 10, shortstr(""))
        self.expect(1, 20, 11)  # channel.open-ok

    # -- frames

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ServerClosed("socket closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        while True:
            ftype, channel, size = struct.unpack(">BHI", self.read_exact(7))
            payload = self.read_exact(size)
            if self.read_exact(1)[0] != FRAME_END:
                raise ValueError("bad frame end")
            if ftype == FRAME_HEARTBEAT:
                continue
            return ftype, channel, payload

    def send_method(self, channel, class_id, method_id, args=b""):
        self.sock.sendall(frame(FRAME_METHOD, channel, method(class_id, method_id, args)))

    def read_method(self, channel):
        ftype, ch, payload = self.read_frame()
        if ftype != FRAME_METHOD or ch != channel:
            raise ValueError("expected a method frame on channel %d, got type %d on %d"
                             % (channel, ftype, ch))
        class_id, method_id = struct.unpack(">HH", payload[:4])
        if (class_id, method_id) in ((10, 50), (20, 40)):
            r = Reader(payload[4:])
            code, text = r.unpack(">H"), r.shortstr()
            raise ServerClosed("%s.close %d %s" % ("connection" if class_id == 10 else "channel",
                                                   code, text.decode()))
        return class_id, method_id, payload[4:]

    def expect(self, channel, class_id, method_id):
        c, m, args = self.read_method(channel)
        if (c, m) != (class_id, method_id):
            raise ValueError("expected %d.%d, got %d.%d" % (class_id, method_id, c, m))
        return args

    # -- channel 1 operations

    def exchange_declare(self, name, etype, arguments=None):
        self.send_method(1, 40, 10, struct.pack(">H", 0) + shortstr(name) + shortstr(etype)
                         + bits(False, False, False, False, False) + table(arguments or {}))
        self.expect(1, 40, 11)

    def queue_declare(self, name, arguments=None):
        self.send_method(1, 50, 10, struct.pack(">H", 0) + shortstr(name)
                         + bits(False, False, False, False, False) + table(arguments or {}))
        r = Reader(self.expect(1, 50, 11))
        r.shortstr()
        return r.unpack(">I")  # message count

    def queue_bind(self, queue, exchange, routing_key):
        self.send_method(1, 50, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr(exchange)
                         + shortstr(routing_key) + bits(False) + table({}))
        self.expect(1, 50, 21)

    def confirm_select(self):
        self.send_method(1, 85, 10, bits(False))
        self.expect(1, 85, 11)
        self.next_publish_seq = 1

    def publish(self, exchange, routing_key, body, props):
        """Publishes and waits for the broker's confirm; returns the content header sent."""
        header = content_header(len(body), props)
        self.sock.sendall(
            frame(FRAME_METHOD, 1, method(60, 40, struct.pack(">H", 0) + shortstr(exchange)
                                          + shortstr(routing_key) + bits(False, False)))
            + frame(FRAME_HEADER, 1, header)
            + frame(FRAME_BODY, 1, body))
        r = Reader(self.expect(1, 60, 80))  # basic.ack (publisher confirm)
        tag = r.unpack(">Q")
        if tag != self.next_publish_seq:
            raise ValueError("confirm for %d, expected %d" % (tag, self.next_publish_seq))
        self.next_publish_seq += 1
        return header

    def get(self, queue, timeout=10.0):
        """basic.get (no-ack off), polling until a message comes. Returns a dict."""
        deadline = time.monotonic() + timeout
        while True:
            self.send_method(1, 60, 70, struct.pack(">H", 0) + shortstr(queue) + bits(False))
            c, m, args = self.read_method(1)
            if (c, m) == (60, 72):  # get-empty
                if time.monotonic() > deadline:
                    raise TimeoutError("queue %s stayed empty" % queue)
                time.sleep(0.05)
                continue
            if (c, m) != (60, 71):
                raise ValueError("expected basic.get-ok, got %d.%d" % (c, m))
            r = Reader(args)
            got = {
                "get_ok_payload": method(60, 71, args),
                "delivery-tag": r.unpack(">Q"),
                "redelivered": bool(r.unpack(">B") & 1),
                "exchange": r.shortstr(),
                "routing-key": r.shortstr(),
                "message-count": r.unpack(">I"),
            }
            ftype, ch, header = self.read_frame()
            if ftype != FRAME_HEADER or ch != 1:
                raise ValueError("expected a content header frame, got type %d" % ftype)
            body_size = struct.unpack(">Q", header[4:12])[0]
            body = b""
            while len(body) < body_size:
                ftype, ch, chunk = self.read_frame()
                if ftype != FRAME_BODY:
                    raise ValueError("expected a body frame, got type %d" % ftype)
                body += chunk
            got["header"] = header
            got["body"] = body
            return got

    def ack(self, tag):
        self.send_method(1, 60, 80, struct.pack(">Q", tag) + bits(False))

    def reject(self, tag):
        self.send_method(1, 60, 90, struct.pack(">Q", tag) + bits(False))  # requeue=false

    def close(self):
        self.send_method(0, 10, 50, struct.pack(">H", 200) + shortstr("bye")
                         + struct.pack(">HH", 0, 0))
        self.expect(0, 10, 51)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Scenarios


def describe(name, scenario, published, got, history=()):
    lines = ["# %s: %s" % (name, scenario), ""]
    lines.append("## published (content header frame payload sent by this script)")
    lines.append("hex " + published.hex())
    lines.extend(decode_content_header(published))
    for title, step in history:
        lines.append("")
        lines.append("## " + title)
        lines.append("get-ok exchange shortstr %s routing-key shortstr %s"
                     % (q(step["exchange"]), q(step["routing-key"])))
        lines.append("hex " + step["header"].hex())
        lines.extend(decode_content_header(step["header"]))
    lines.append("")
    lines.append("## basic.get-ok (method frame payload, class 60 method 71)")
    lines.append("hex " + got["get_ok_payload"].hex())
    lines.append("delivery-tag longlong %d" % got["delivery-tag"])
    lines.append("redelivered bit %s" % ("true" if got["redelivered"] else "false"))
    lines.append("exchange shortstr %s" % q(got["exchange"]))
    lines.append("routing-key shortstr %s" % q(got["routing-key"]))
    lines.append("message-count long %d" % got["message-count"])
    lines.append("")
    lines.append("## content header frame payload received (= %s.hex)" % name)
    lines.append("hex " + got["header"].hex())
    lines.extend(decode_content_header(got["header"]))
    lines.append("")
    lines.append("## body")
    lines.append(q(got["body"]))
    return "\n".join(lines) + "\n"


def write(out, name, text, header):
    with open(os.path.join(out, name + ".hex"), "w") as f:
        f.write(header.hex() + "\n")
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write(text)
    print("wrote %s/%s.hex and .txt" % (out, name))


def scenario_expired(c, out):
    c.exchange_declare("dlx", "direct")
    c.queue_declare("dead")
    c.queue_bind("dead", "dlx", "src")
    c.queue_declare("src", {"x-dead-letter-exchange": ("S", "dlx")})
    published = c.publish("", "src", b"expired body", {
        "content-type": "text/plain",
        "headers": {"app": ("S", "capture")},
        "delivery-mode": 2,
        "expiration": "100",
    })
    got = c.get("dead")
    c.ack(got["delivery-tag"])
    text = describe(
        "expired",
        'published to the default exchange with routing key "src" (queue src: '
        'x-dead-letter-exchange S "dlx"), expired after 100 ms, dead-lettered through exchange '
        '"dlx" (direct) into queue "dead" (bound with key "src"), taken with basic.get from "dead"',
        published, got)
    write(out, "expired", text, got["header"])


def scenario_rejected_twice(c, out):
    c.queue_declare("r1", {"x-dead-letter-exchange": ("S", ""),
                           "x-dead-letter-routing-key": ("S", "r2")})
    c.queue_declare("r2", {"x-dead-letter-exchange": ("S", ""),
                           "x-dead-letter-routing-key": ("S", "r1")})
    published = c.publish("", "r1", b"rejected body", {"delivery-mode": 1})
    history = []
    for n, queue in enumerate(("r1", "r2", "r1"), 1):
        got = c.get(queue)
        history.append(("intermediate %d: content header received by basic.get from %s "
                        "(then basic.reject requeue=false)" % (n, queue), got))
        c.reject(got["delivery-tag"])
    got = c.get("r2")
    c.ack(got["delivery-tag"])
    text = describe(
        "rejected-twice",
        'published to the default exchange with routing key "r1"; queues r1 (x-dead-letter-'
        'exchange S "", x-dead-letter-routing-key S "r2") and r2 (x-dead-letter-exchange S "", '
        'x-dead-letter-routing-key S "r1"); basic.get + basic.reject(requeue=false) from r1, r2, '
        'r1, then basic.get from r2',
        published, got, history)
    write(out, "rejected-twice", text, got["header"])


def scenario_maxlen(c, out):
    c.queue_declare("mdead")
    c.queue_declare("m", {"x-max-length": ("I", 1),
                          "x-dead-letter-exchange": ("S", ""),
                          "x-dead-letter-routing-key": ("S", "mdead")})
    published = c.publish("", "m", b"first", {})
    c.publish("", "m", b"second", {})
    got = c.get("mdead")
    c.ack(got["delivery-tag"])
    text = describe(
        "maxlen",
        'two messages ("first", then "second", no properties) published to the default '
        'exchange with routing key "m" (queue m: x-max-length I 1, x-dead-letter-exchange S "", '
        'x-dead-letter-routing-key S "mdead", default overflow drop-head); "first" was pushed '
        'out into queue "mdead" and taken with basic.get from there',
        published, got)
    write(out, "maxlen", text, got["header"])


def scenario_headers_sorted(c, out):
    """Extra: user headers in non-sorted order, of several types, and more properties."""
    c.queue_declare("hdead")
    c.queue_declare("hsrc", {"x-dead-letter-exchange": ("S", ""),
                             "x-dead-letter-routing-key": ("S", "hdead")})
    published = c.publish("", "hsrc", b"sorted body", {
        "headers": {"zeta": ("S", "z"), "Alpha": ("I", 7), "mid": ("s", 3),
                    "flag": ("t", True), "when": ("T", 1700000000), "big": ("l", 1 << 40)},
        "priority": 3,
        "expiration": "50",
        "message-id": "m1",
    })
    got = c.get("hdead")
    c.ack(got["delivery-tag"])
    text = describe(
        "headers-sorted",
        'headers written in the order zeta, Alpha, mid, flag, when, big (types S I s t T l), '
        'with priority 3, expiration "50" and message-id "m1", published to the default '
        'exchange with routing key "hsrc" (queue hsrc: x-dead-letter-exchange S "", '
        'x-dead-letter-routing-key S "hdead"), expired, taken with basic.get from "hdead"',
        published, got)
    write(out, "headers-sorted", text, got["header"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--out", default="tests/fixtures/rabbitmq-x-death")
    ap.add_argument("--decode", metavar="FILE.hex",
                    help="only print the decoding of a content header payload in hex")
    args = ap.parse_args()
    if args.decode:
        with open(args.decode) as f:
            print("\n".join(decode_content_header(bytes.fromhex(f.read().strip()))))
        return
    os.makedirs(args.out, exist_ok=True)
    c = Connection(args.host, args.port)
    c.confirm_select()
    scenario_expired(c, args.out)
    scenario_rejected_twice(c, args.out)
    scenario_maxlen(c, args.out)
    scenario_headers_sorted(c, args.out)
    c.close()


if __name__ == "__main__":
    sys.exit(main())
