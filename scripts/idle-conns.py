#!/usr/bin/env python3
"""Opens N idle TCP connections (never sending a byte) to a running hub's proxy port and reports
the hub's open file descriptors: right after, and after waiting `--wait` seconds (set it past the
hub's --read-header-timeout to see the idle connections closed). Also counts how many of the
connections the hub answered with 429 (beyond --max-connections).

    yurthub --sandbox --proxy-port 10261 &   # or any hub
    scripts/idle-conns.py --pid $(pgrep -n yurthub) --port 10261 -n 3000 --wait 35
"""
import argparse
import os
import resource
import socket
import time


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, default=10261)
    p.add_argument("-n", type=int, default=3000)
    p.add_argument("--wait", type=float, default=0)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, a.n + 256)), hard))
    base = fds(a.pid)
    conns = []
    for _ in range(a.n):
        s = socket.create_connection(("127.0.0.1", a.port))
        conns.append(s)
    time.sleep(1)
    held = fds(a.pid)
    refused = 0
    for s in conns:
        try:
            data = s.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 429"):
            refused += 1
    print(f"hub fds before: {base}; with {a.n} idle connections: {held}; answered 429: {refused}")
    if a.wait:
        time.sleep(a.wait)
        print(f"hub fds {a.wait:.0f} s later (connections still open on the client side): {fds(a.pid)}")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
