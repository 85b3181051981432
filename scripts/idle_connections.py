#!/usr/bin/env python3
"""Opens N idle MQTT (or AMQP) connections to a broker, holds them, and reports the broker's
RSS growth per connection. Usage:
  idle_connections.py --pid PID --port PORT [--protocol mqtt|amqp] [--count 10000]
                      [--timeout 10] [--partial]
The broker process is only read (/proc/PID/status), never signalled.
If a connection fails (refused, closed, no CONNACK / open-ok within --timeout seconds, e.g.
because the broker ran out of file descriptors), the script says which one and exits with
status 1; with --partial it then still reports the RSS growth for the connections it holds."""
import argparse, socket, struct, time, resource, sys

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def mqtt_connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x00"  # v3.1.1, clean session, keepalive 0
    payload = struct.pack("!H", len(cid)) + cid
    body = var + payload
    return bytes([0x10, len(body)]) + body

def amqp_open(sock):
    def frame(kind, channel, payload):
        return struct.pack("!BHI", kind, channel, len(payload)) + payload + b"\xce"
    def read_frame():
        head = recv_exact(sock, 7)
        kind, channel, size = struct.unpack("!BHI", head)
        payload = recv_exact(sock, size + 1)
        return kind, payload[:-1]
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    read_frame()  # start
    resp = b"\x00guest\x00guest"
    start_ok = struct.pack("!HH", 10, 11) + struct.pack("!I", 0) + b"\x05PLAIN" + struct.pack("!I", len(resp)) + resp + b"\x05en_US"
    sock.sendall(frame(1, 0, start_ok))
    _, tune = read_frame()
    channel_max, frame_max, _ = struct.unpack("!HIH", tune[4:12])
    sock.sendall(frame(1, 0, struct.pack("!HHHIH", 10, 31, channel_max, frame_max, 0)))
    sock.sendall(frame(1, 0, struct.pack("!HH", 10, 40) + b"\x01/" + b"\x00" + b"\x00"))
    read_frame()  # open-ok
    sock.sendall(frame(1, 1, struct.pack("!HH", 20, 10) + b"\x00"))
    read_frame()  # channel.open-ok

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--protocol", choices=["mqtt", "amqp"], default="mqtt")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds to wait for each connection to be accepted and answered")
    ap.add_argument("--partial", action="store_true",
                    help="on a failed connection, report RSS for the connections already open")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1000), hard))
    time.sleep(args.settle)
    before = rss_kib(args.pid)
    socks = []
    failure = None
    for i in range(args.count):
        s = None
        try:
            s = socket.create_connection((args.host, args.port), timeout=args.timeout)
            if args.protocol == "mqtt":
                s.sendall(mqtt_connect_packet(f"idle-{i}"))
                ack = recv_exact(s, 4)
                if ack[0] != 0x20 or ack[3] != 0:
                    raise ConnectionError(f"CONNACK refused: {ack!r}")
            else:
                amqp_open(s)
            socks.append(s)
        except OSError as e:  # ConnectionError and socket.timeout are OSErrors
            if s is not None:
                s.close()
            failure = f"connection {i + 1} of {args.count} failed: {type(e).__name__}: {e}"
            print(f"{args.protocol}: {failure}", file=sys.stderr)
            break
    opened = len(socks)
    if failure is None or (args.partial and opened > 0):
        time.sleep(args.settle)
        after = rss_kib(args.pid)
        per = (after - before) / opened
        print(f"{args.protocol}: {opened} idle connections: RSS {before} KiB -> {after} KiB, "
              f"{per:.2f} KiB per connection")
    for s in socks:
        s.close()
    if failure is not None:
        sys.exit(1)

main()
