"""The built-in TLS load client: pipelined blocks, every echoed byte checked.

Each connection completes its handshake (certificate and host name
verified against the run's CA) before the clock starts, then sends a block
of ``depth`` requests, reads until the whole block is answered, and sends
it again.  Every reply byte is compared with the byte expected at that
position (the echoed line, or the fixed HTTP response), so a server that
drops, reorders, duplicates or corrupts data fails the run instead of
being counted.  Echo lines differ per connection and per position in the
block.  One process, one epoll; it stops ``duration`` seconds after a
short warm-up.
"""
import os
import select
import socket
import ssl
import time

from .client import HTTP_REQUEST
from .servers import HTTP_RESPONSE


class VerifyError(AssertionError):
    """A reply differed from what was sent (echo) or from the fixed response (HTTP)."""


def echo_block(conn, depth, size):
    """``depth`` distinct lines of ``size`` bytes (newline included) for connection ``conn``."""
    lines = []
    for i in range(depth):
        head = b"c%04d m%04d " % (conn, i)
        fill = bytes((97 + (conn + i + k) % 26) for k in range(26))
        body = (head + fill * (size // 26 + 1))[:size - 1]
        lines.append(body + b"\n")
    return b"".join(lines)


def _mismatch(fd, got, want, pos):
    if pos + len(got) > len(want):
        return ("%d reply bytes on connection fd %d where %d were owed"
                % (len(got), fd, len(want) - pos))
    first = next(i for i in range(len(got)) if got[i] != want[pos + i])
    return ("reply mismatch on connection fd %d at byte %d of a %d-byte block: got %r, expected %r"
            % (fd, pos + first, len(want), bytes(got[first:first + 16]),
               want[pos + first:pos + first + 16]))


def client_context(cafile):
    """A verifying client context: the run's CA, host name checked."""
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def _connect(port, ctx, hostname):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=hostname)  # blocking handshake, before timing
    sock.setblocking(False)
    return sock


def run_tls_client(kind, port, conns, depth, duration, cafile, size=1024,
                   hostname="localhost", warmup=0.2):
    """Drive the TLS server on ``port``; return counts, rate, verified bytes and client CPU."""
    ctx = client_context(cafile)
    socks = {}
    expected = {}   # fd -> the bytes one block of replies must equal
    requests = {}   # fd -> one block of requests
    state = {}      # fd -> [request bytes sent, reply bytes checked]
    ep = select.epoll()
    if kind == "echo":
        reply_size = size
    elif kind == "http":
        reply_size = len(HTTP_RESPONSE)
    else:
        raise ValueError(kind)
    buf = bytearray(1 << 16)
    try:
        for c in range(conns):
            sock = _connect(port, ctx, hostname)
            fd = sock.fileno()
            socks[fd] = sock
            if kind == "echo":
                block = echo_block(c, depth, size)
                requests[fd] = memoryview(block)
                expected[fd] = block
            else:
                requests[fd] = memoryview(HTTP_REQUEST * depth)
                expected[fd] = HTTP_RESPONSE * depth
            state[fd] = [0, 0]
            ep.register(fd, select.EPOLLIN | select.EPOLLOUT)
        version = next(iter(socks.values())).version() if socks else None
        cipher = next(iter(socks.values())).cipher()[0] if socks else None
        received = 0
        verified = 0
        cpu0 = os.times()
        start = time.perf_counter()
        window_start = start + warmup
        deadline = window_start + duration
        mark = None
        now = start
        while now < deadline:
            for fd, events in ep.poll(0.5):
                sock = socks[fd]
                st = state[fd]
                want = expected[fd]
                block = requests[fd]
                if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    # drain every record that is already here
                    while True:
                        try:
                            n = sock.recv_into(buf)
                        except (ssl.SSLWantReadError, BlockingIOError):
                            break
                        except ssl.SSLWantWriteError:
                            break
                        if not n:
                            raise ConnectionError("server closed the connection (fd %d)" % fd)
                        pos = st[1]
                        # bytearray against bytes compares with memcmp (a memoryview would
                        # compare item by item)
                        if pos + n > len(want) or buf[:n] != want[pos:pos + n]:
                            raise VerifyError(_mismatch(fd, buf[:n], want, pos))
                        received += n
                        verified += n
                        pos += n
                        if pos == len(want):
                            # whole block answered and checked: send it again
                            pos = 0
                            st[0] = 0
                            ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)
                        st[1] = pos
                if events & select.EPOLLOUT and st[0] < len(block):
                    try:
                        st[0] += sock.send(block[st[0]:])
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        pass
                    if st[0] == len(block):
                        ep.modify(fd, select.EPOLLIN)
            now = time.perf_counter()
            if mark is None and now >= window_start:
                mark = received
        cpu1 = os.times()
    finally:
        for sock in socks.values():
            sock.close()
        ep.close()
    window_bytes = received - (mark or 0)
    elapsed = now - (window_start if mark is not None else start)
    return {
        "requests": received // reply_size,
        "rate": (window_bytes // reply_size) / elapsed,
        "elapsed": now - start,
        "client_cpu": (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / (now - start),
        "reply_size": reply_size,
        "verified_bytes": verified,
        "tls_version": version,
        "cipher": cipher,
    }
