"""Half-close: a client that shuts down its write side after its request
still receives a 16 MiB reply in full, with no busy loop.

With stdlib-compatible defaults, the server's ``recv()`` returns ``b""`` at
the client's FIN, which calls ``handle_close()``; ``async_chat``'s default
``handle_close`` closes at once and the queued reply is lost.  The server
must override ``handle_close`` to finish sending first: stop reading and
call ``close_when_done()`` (which closes after the queue drains).
"""
import os
import socket
import threading
import time

import pytest

from asynchat_core import asynchat, asyncore

MiB = 1024 * 1024
REPLY = 16 * MiB


def _pattern(n):
    block = bytes(range(251)) * 64
    return (block * (n // len(block) + 1))[:n]


class Replier(asynchat.async_chat):
    """Replies REPLY bytes to one request line; survives the peer's FIN."""

    def __init__(self, sock, map, finish_on_eof):
        asynchat.async_chat.__init__(self, sock, map=map)
        self.set_terminator(b"\n")
        self.finish_on_eof = finish_on_eof
        self.peer_done = False
        self.reads = 0

    def collect_incoming_data(self, data):
        pass

    def found_terminator(self):
        self.push_with_producer(asynchat.simple_producer(_pattern(REPLY), 256 * 1024))

    def readable(self):
        # after the FIN there is nothing left to read: asking again would
        # report readable (EOF) forever, a busy loop
        return not self.peer_done

    def handle_read(self):
        self.reads += 1
        asynchat.async_chat.handle_read(self)

    def handle_close(self):
        if self.finish_on_eof and self.connected and self.producer_fifo:
            self.peer_done = True
            self.close_when_done()
            return
        self.close()


class Listener(asyncore.dispatcher):
    def __init__(self, map, finish_on_eof):
        asyncore.dispatcher.__init__(self, map=map)
        self.create_socket()
        self.bind(("127.0.0.1", 0))
        self.listen(5)
        self.finish_on_eof = finish_on_eof
        self.channels = []

    def handle_accepted(self, sock, addr):
        self.channels.append(Replier(sock, self._map, self.finish_on_eof))


def _serve(finish_on_eof, backend=None):
    map = {}
    server = Listener(map, finish_on_eof)
    port = server.socket.getsockname()[1]
    received = bytearray()
    errors = []

    def client():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(b"GET\n")
                s.shutdown(socket.SHUT_WR)
                while True:
                    data = s.recv(1024 * 1024)
                    if not data:
                        break
                    received.extend(data)
        except OSError as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    cpu0 = time.process_time()
    passes = 0
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        asyncore.loop(timeout=0.05, map=map, count=1, backend=backend)
        passes += 1
        if len(map) == 1 and server.channels:
            break
    t.join(30)
    cpu = time.process_time() - cpu0
    channels = server.channels
    asyncore.close_all(map)
    return received, errors, channels, passes, cpu


def test_half_closed_client_gets_the_whole_reply():
    received, errors, channels, passes, cpu = _serve(finish_on_eof=True)
    assert not errors
    assert len(received) == REPLY + 0 and bytes(received) == _pattern(REPLY)
    (chan,) = channels
    # no busy loop: a read for the request, one for the FIN, none after
    assert chan.reads <= 4
    assert passes < 2000
    print("half-close: 16 MiB in %d loop passes, %.2f s CPU (both sides)" % (passes, cpu))


def test_default_handle_close_drops_the_reply():
    # the stdlib-compatible default, documented: close at EOF, reply cut short
    received, errors, channels, passes, cpu = _serve(finish_on_eof=False)
    assert len(received) < REPLY


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only figure")
def test_half_close_does_not_spin_while_peer_reads_slowly():
    # the client reads slowly; the server must sleep in the poller meanwhile
    map = {}
    server = Listener(map, True)
    port = server.socket.getsockname()[1]
    got = []

    def client():
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"GET\n")
            s.shutdown(socket.SHUT_WR)
            time.sleep(1.0)  # reply piles up, socket buffers fill
            n = 0
            while True:
                data = s.recv(1024 * 1024)
                if not data:
                    break
                n += len(data)
            got.append(n)

    t = threading.Thread(target=client)
    t.start()
    start = time.monotonic()
    passes = 0
    while time.monotonic() - start < 0.8:
        asyncore.loop(timeout=0.05, map=map, count=1)
        # the first passes fill the socket buffers 64 KiB at a time; count
        # only once they are full and the read side is done
        if time.monotonic() - start > 0.3:
            passes += 1
    # each pass now waits out its timeout (about 10 passes); a busy loop
    # returns at once and makes thousands
    assert passes < 100
    while t.is_alive() and time.monotonic() - start < 30:
        asyncore.loop(timeout=0.05, map=map, count=1)
    t.join(30)
    asyncore.close_all(map)
    assert got == [REPLY]
