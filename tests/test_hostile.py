"""Hostile peers against a real server in a subprocess.

* flood: with ``ac_max_frame_size = 64 KiB`` a client streaming up to
  100 MiB with no terminator is cut off after at most the cap plus one read,
  the server's RSS grows < 8 MiB, and a well-behaved client is still served
  during the attack (its latency is a benchmark: benchmarks/flood_latency.py);
* idle clients: clients that send one byte per second, never a line, are
  closed by a 0.5 s idle timeout (each is idle for longer than that);
* slowloris: clients that trickle bytes faster than the idle timeout, so it
  never fires, are cut off by the defence the README documents for them,
  ``ac_max_frame_size``.

``ASYNCHAT_CORE_NIGHTLY=1`` runs more attackers and 1,000 tricklers.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
NIGHTLY = os.environ.get("ASYNCHAT_CORE_NIGHTLY", "") not in ("", "0")
KiB, MiB = 1024, 1024 * 1024
CAP = 64 * KiB
IN_BUFFER = 65536  # async_chat.ac_in_buffer_size, the size of one read


class ServerProcess:
    def __init__(self, *args):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "hardening_server.py")] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        line = self.proc.stdout.readline().decode()
        assert line.startswith("PORT "), line
        self.port = int(line.split()[1])

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def request(sock, line, reader):
    sock.sendall(line + b"\n")
    return reader.readline()


def stats(server):
    with server.connect() as s, s.makefile("rb") as r:
        return json.loads(request(s, b"STATS", r))


@pytest.fixture
def capped_server():
    server = ServerProcess("--cap", str(CAP))
    yield server
    server.stop()


def flood(server, total, results):
    """Send up to ``total`` bytes with no terminator; record how far it got."""
    sent = 0
    block = b"x" * (256 * KiB)
    try:
        with server.connect() as s:
            while sent < total:
                sent += s.send(block)
    except OSError:
        pass  # reset or broken pipe: the server cut us off
    results.append(sent)


ATTACKER = """
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
stop, results = [], []
def attack():
    while not stop:
        sent = 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                while sent < 100 * 1024 * 1024:
                    sent += s.send(b"x" * 262144)
        except OSError:
            pass
        results.append(sent)
ts = [threading.Thread(target=attack) for _ in range(n)]
for t in ts: t.start()
sys.stdin.read()
stop.append(1)
for t in ts: t.join()
print(" ".join(map(str, results)))
"""


def test_flood_is_cut_off_at_the_cap(capped_server):
    results = []
    flood(capped_server, 100 * MiB, results)
    # the kernel's socket buffers hold a few MiB; the server never read more
    assert results[0] < 100 * MiB
    figures = stats(capped_server)
    assert figures["frame_errors"] == 1
    assert 0 < figures["max_read_by_cut"] <= CAP + IN_BUFFER
    assert figures["channels"] == 2  # the listener and the STATS connection


def test_flood_does_not_hurt_other_clients(capped_server):
    with capped_server.connect() as s, s.makefile("rb") as r:
        for i in range(50):  # warm up: imports, allocator pools
            assert request(s, b"ECHO warm%d" % i, r) == b"warm%d\n" % i
    before = stats(capped_server)["rss_kib"]

    attackers = 16 if NIGHTLY else 4
    rounds = 8 if NIGHTLY else 3
    # attackers in their own process, so this process's GIL only serves the
    # measured client
    proc = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, str(capped_server.port), str(attackers)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    latencies = []
    try:
        with capped_server.connect() as s, s.makefile("rb") as r:
            deadline = time.monotonic() + (10 if NIGHTLY else 2)
            i = 0
            while time.monotonic() < deadline or (
                    stats(capped_server)["frame_errors"] < attackers * rounds
                    and time.monotonic() < deadline + 60):
                t0 = time.perf_counter()
                assert request(s, b"ECHO ping%d" % i, r) == b"ping%d\n" % i
                latencies.append(time.perf_counter() - t0)
                i += 1
                time.sleep(0.002)
    finally:
        out, _ = proc.communicate(b"", timeout=60)
    results = [int(x) for x in out.split()]
    figures = stats(capped_server)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print("flood: %d attacks, %d requests, p50 %.2f ms, p99 %.2f ms, RSS +%d KiB"
          % (len(results), len(latencies), latencies[len(latencies) // 2] * 1e3,
             p99 * 1e3, figures["rss_kib"] - before))
    assert figures["frame_errors"] == len(results) >= attackers * rounds
    assert all(sent < 100 * MiB for sent in results)
    assert figures["max_read_by_cut"] <= CAP + IN_BUFFER
    assert figures["other_errors"] == []
    assert figures["rss_kib"] - before < 8 * 1024
    # Not a speed claim (benchmarks/flood_latency.py measures the latency,
    # with a 50 ms p99 goal): this generous bound only catches a client
    # starved by the flood.
    assert p99 < 2.0


def test_clients_idle_longer_than_the_timeout_are_closed():
    clients = 1000 if NIGHTLY else 200
    server = ServerProcess("--idle", "0.5")
    socks = []
    try:
        for _ in range(clients):
            socks.append(server.connect())
        start = time.monotonic()
        closed = set()
        while len(closed) < clients and time.monotonic() - start < 10:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    s.send(b"x")  # one byte per second per client, never a full line
                    s.settimeout(0)
                    if s.recv(1) == b"":
                        closed.add(i)
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(i)
            time.sleep(1.0)
        elapsed = time.monotonic() - start
        assert len(closed) == clients, "%d of %d still open" % (clients - len(closed), clients)
        # closed by the 0.5 s idle timeout, not by some other limit
        assert elapsed < 5
        figures = stats(server)
        assert figures["channels"] == 2
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_slowloris_trickling_faster_than_the_idle_timeout_is_cut_by_the_frame_cap():
    """Bytes every 0.1 s against a 0.5 s idle timeout: every byte is traffic,
    so the timeout never fires.  The frame cap (README: "against a
    slowloris that trickles bytes, bound the frame") cuts each client once
    its line passes the cap."""
    clients = 50
    cap = 2048
    server = ServerProcess("--idle", "0.5", "--cap", str(cap))
    socks = []
    try:
        for _ in range(clients):
            socks.append(server.connect())
        for s in socks:
            s.settimeout(0)
        trickled = [0] * clients
        cut = set()
        # generous: 100 rounds of 0.1 s trickle 25 KiB each, 12x the cap
        for _ in range(100):
            for i, s in enumerate(socks):
                if i in cut:
                    continue
                try:
                    trickled[i] += s.send(b"x" * 256)  # never a newline
                    if s.recv(1) == b"":
                        cut.add(i)
                except BlockingIOError:
                    pass
                except OSError:
                    cut.add(i)
            if len(cut) == clients:
                break
            time.sleep(0.1)  # the trickle's pace, faster than the idle timeout
        assert len(cut) == clients, "%d of %d never cut off" % (clients - len(cut), clients)
        figures = stats(server)
        # cut by the frame cap, each one, not by the idle timeout
        assert figures["frame_errors"] == clients
        assert 0 < figures["max_read_by_cut"] <= cap + IN_BUFFER
        assert all(sent > cap for sent in trickled)
        assert figures["channels"] == 2
    finally:
        for s in socks:
            s.close()
        server.stop()
