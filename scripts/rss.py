#!/usr/bin/env python3
"""Resident memory of the shipped binary per idle keep-alive connection and per open stream.

    python3 scripts/rss.py path/to/switchboard [--connections 2000] [--streams 200]
        [--bare-proxy path/to/bench_server --upstream path/to/bench_upstream]

Starts the binary with the built-in example config (no API keys: the demo providers run in
the same process, so their side of each stream counts too), warms it up, then:

1. opens N keep-alive connections, sends one `GET /health` on each and leaves them idle; the
   figure is (RSS with them open - RSS before) / N;
2. opens M streamed chat completions whose answers the client reads no further than the
   headers (the gateway holds each stream open, its upstream paused by back-pressure); the
   figure is (RSS with them open - RSS before) / M.

With `--bare-proxy` (the `bench_server` and `bench_upstream` programs that
scripts/callgrind.sh builds), the baseline: the bare hyper proxy's RSS per idle keep-alive
connection, each having carried one 1 KiB chat completion through it, and the gateway's
figure for the same request in the same run.

RSS is VmRSS from /proc/PID/status, read after the counts settle. Linux only.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle(pid, seconds=1.5):
    time.sleep(seconds)
    return rss_kib(pid)


def start_program(argv):
    """Starts a bench program that prints its address on its first line."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    host, _, port = line.rpartition(":")
    if not port.isdigit():
        p.kill()
        raise RuntimeError(f"{argv[0]} printed no address: {line!r}")
    return p, (host, int(port))


def chat_request(model):
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "x" * 1000}]}
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + b"cache-control: no-store\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def read_response(s):
    """Reads one response with a content-length body."""
    head = read_head(s)
    top, _, rest = head.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", top)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed in the body")
        rest += chunk


def per_idle_connection(pid, addr, raw, n):
    """(RSS with n idle keep-alive connections that each carried `raw` - before) / n."""
    for _ in range(200):
        s = request(addr, raw)
        read_response(s)
        s.close()
    before = settle(pid)
    conns = []
    for _ in range(n):
        s = request(addr, raw)
        read_response(s)
        conns.append(s)
    with_conns = settle(pid)
    for s in conns:
        s.close()
    return (with_conns - before) * 1024 / n


def start(binary):
    env = dict(os.environ)
    for k in list(env):
        if k.endswith("_API_KEY"):
            del env[k]
    env["RUST_LOG"] = "off"
    p = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(r"listening on http://([0-9.]+):(\d+)", line)
        if m:
            return p, (m.group(1), int(m.group(2)))
    p.kill()
    raise RuntimeError("the gateway did not start")


def request(addr, raw):
    s = socket.create_connection(addr)
    s.sendall(raw)
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the head")
        buf += chunk
    return buf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--bare-proxy", help="bench_server, for the baseline")
    ap.add_argument("--upstream", help="bench_upstream, for the baseline")
    a = ap.parse_args()
    baseline = {}
    if a.bare_proxy:
        if not a.upstream:
            ap.error("--bare-proxy needs --upstream")
        up, up_addr = start_program([a.upstream, "--listen", "127.0.0.1:0"])
        try:
            bare, bare_addr = start_program(
                [a.bare_proxy, "--mode", "bare-proxy", "--upstream",
                 f"http://{up_addr[0]}:{up_addr[1]}", "--listen", "127.0.0.1:0"]
            )
            try:
                baseline["bare_proxy_rss_per_idle_chat_connection_bytes"] = round(
                    per_idle_connection(bare.pid, bare_addr, chat_request("m"), a.connections)
                )
            finally:
                bare.terminate()
                bare.wait(10)
        finally:
            up.terminate()
            up.wait(10)
    proc, addr = start(a.binary)
    try:
        if baseline:
            baseline["gateway_rss_per_idle_chat_connection_bytes"] = round(
                per_idle_connection(
                    proc.pid, addr, chat_request("openai/gpt-4o-mini"), a.connections
                )
            )
            settle(proc.pid, 3)
        health = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
        # Warm up: pools, caches, allocator arenas.
        for _ in range(200):
            s = request(addr, health)
            read_head(s)
            s.close()
        before = settle(proc.pid)
        conns = []
        for _ in range(a.connections):
            s = request(addr, health)
            read_head(s)
            conns.append(s)
        with_conns = settle(proc.pid)
        per_conn = (with_conns - before) * 1024 / a.connections
        for s in conns:
            s.close()
        conns.clear()
        before = settle(proc.pid, 3)
        words = " ".join(["word"] * 4000)
        body = json.dumps(
            {
                "model": "openai/gpt-4o-mini",
                "stream": True,
                "max_tokens": 4000,
                "messages": [{"role": "user", "content": "Repeat: " + words}],
            }
        ).encode()
        raw = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            # Each its own stream: identical requests would otherwise share one upstream
            # answer (the cache's request coalescing).
            + b"cache-control: no-store\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        streams = []
        for _ in range(a.streams):
            s = request(addr, raw)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            read_head(s)
            streams.append(s)
        with_streams = settle(proc.pid)
        per_stream = (with_streams - before) * 1024 / a.streams
        print(
            json.dumps(
                {
                    "idle_connections": a.connections,
                    "rss_per_idle_connection_bytes": round(per_conn),
                    "open_streams": a.streams,
                    "rss_per_open_stream_bytes": round(per_stream),
                    "rss_kib_at_end": with_streams,
                    **baseline,
                }
            )
        )
        for s in streams:
            s.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
