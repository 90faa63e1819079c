#!/usr/bin/env python3
"""Opens many hostile connections to a running Palisade and measures whether
normal requests are still answered (issue 15: slow and idle connections).

Hostile connections send half a request head and then one byte every few
seconds (slowloris), or nothing at all. Meanwhile a client that connected
before the attack sends requests on its kept-alive connection, and new
clients try to connect; the script prints their latencies and success
counts, how many hostile connections the server held, and the server's RSS.

    ulimit -n 65536   # or the hard limit: the script needs one descriptor a connection
    palisade serve --listen 127.0.0.1:8080 --database sqlite:///tmp/h.db &
    python3 crates/bench/hostile_connections.py --port 8080 --pid $! --connections 20000

Standard library only.
"""

import argparse
import http.client
import resource
import selectors
import socket
import statistics
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_get(connection, path):
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def summary(latencies_ms):
    if not latencies_ms:
        return "none answered"
    ordered = sorted(latencies_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{len(ordered)} answered, median {statistics.median(ordered):.2f} ms, "
        f"p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--pid", type=int, help="the server's pid, for its RSS")
    parser.add_argument("--connections", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=30, help="how long the attack lasts")
    parser.add_argument("--silent", action="store_true", help="hostile connections send nothing")
    parser.add_argument(
        "--head-bytes", type=int, default=0, help="pad each hostile head to this size (unfinished)"
    )
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        print(f"the open-file hard limit is {hard}: opening {hard - 100} hostile connections")
        args.connections = hard - 100
    authority = f"{args.host}:{args.port}"
    if args.pid:
        print(f"server RSS before: {rss_kib(args.pid) / 1024:.1f} MiB")

    kept = http.client.HTTPConnection(args.host, args.port, timeout=10)
    status, ms = timed_get(kept, "/healthz")
    print(f"before the attack: kept-alive GET /healthz {status} in {ms:.2f} ms")

    selector = selectors.DefaultSelector()
    hostile = {}
    opened = refused = 0
    started = time.monotonic()
    for _ in range(args.connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect_ex((args.host, args.port))
            if not args.silent:
                head = f"GET /api/machines HTTP/1.1\r\nHost: {authority}\r\nX-Slow: ".encode()
                sock.send(head + b"a" * max(0, args.head_bytes - len(head)))
        except OSError:
            refused += 1
            sock.close()
            continue
        selector.register(sock, selectors.EVENT_READ)
        hostile[sock.fileno()] = sock
        opened += 1
    print(f"opened {opened} hostile connections in {time.monotonic() - started:.1f} s ({refused} failed)")

    kept_latencies, kept_failures = [], 0
    new_latencies, new_failures = [], 0
    held_samples = []
    peak_rss = 0
    last_trickle = time.monotonic()
    while time.monotonic() - started < args.seconds:
        # The server closing a hostile connection shows as a readable EOF.
        for key, _ in selector.select(timeout=0.05):
            sock = key.fileobj
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                hostile.pop(sock.fileno(), None)
                sock.close()
        if not args.silent and time.monotonic() - last_trickle > 2:
            for sock in list(hostile.values()):
                try:
                    sock.send(b"a")
                except OSError:
                    pass
            last_trickle = time.monotonic()
        held_samples.append(len(hostile))
        try:
            status, ms = timed_get(kept, "/healthz")
            if status == 200:
                kept_latencies.append(ms)
        except (OSError, http.client.HTTPException):
            kept_failures += 1
            kept = http.client.HTTPConnection(args.host, args.port, timeout=10)
        try:
            fresh = http.client.HTTPConnection(args.host, args.port, timeout=2)
            status, ms = timed_get(fresh, "/healthz")
            fresh.close()
            if status == 200:
                new_latencies.append(ms)
        except (OSError, http.client.HTTPException):
            new_failures += 1
        if args.pid:
            peak_rss = max(peak_rss, rss_kib(args.pid))

    print(f"hostile connections still open: at the start {held_samples[0]}, at the end {held_samples[-1]}")
    print(f"kept-alive client during the attack: {summary(kept_latencies)}; {kept_failures} failed")
    print(f"new connections during the attack: {summary(new_latencies)}; {new_failures} refused or failed")
    if args.pid:
        print(f"server RSS at peak: {peak_rss / 1024:.1f} MiB, after: {rss_kib(args.pid) / 1024:.1f} MiB")
    for sock in hostile.values():
        sock.close()


if __name__ == "__main__":
    main()
