"""Scenario 1 ("kernel"): the chat code in process, no sockets.

A fake socket hands pre-built chunks to ``handle_read`` (its ``recv``
returns the next chunk) and accepts or refuses ``send`` calls, so only
``async_chat`` and the handlers run.  Each workload is built against a
module pair, so the same code measures every implementation.
"""
import errno
import time
from typing import Any

from .servers import make_chat_servers

LINE32 = b"x" * 30 + b"\r\n"
RECORD100 = bytes(range(100))
RESP_BLOCK = (
    b"PING\r\n"
    b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000042\r\n$3\r\nxxx\r\n"
    b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000042\r\n"
)
RESP_BLOCK_COMMANDS = 3


class FakeSocket:
    """Stands in for a connected socket: recv cycles through ``chunks``."""

    def __init__(self, chunks=(b"",), send_limit=65536):
        self.chunks = list(chunks)
        self.index = 0
        self.send_limit = send_limit
        self.blocked = False
        self.sends = 0
        self.sent = 0

    def recv(self, size):
        """Return the next chunk, cycling (``size`` is ignored)."""
        chunk = self.chunks[self.index]
        self.index = (self.index + 1) % len(self.chunks)
        return chunk

    def send(self, data):
        """Accept up to ``send_limit`` bytes, or raise EAGAIN while blocked."""
        if self.blocked:
            raise BlockingIOError(errno.EAGAIN, "would block")
        self.sends += 1
        n = min(len(data), self.send_limit)
        self.sent += n
        return n

    def fileno(self):
        """No real descriptor: -1."""
        return -1

    def close(self):
        """Nothing to release."""
        pass


def _stream_chunks(unit, total, read_size):
    stream = unit * (total // len(unit))
    return [stream[i:i + read_size] for i in range(0, len(stream), read_size)]


def _attach(chan, fake):
    chan.socket = fake
    chan.connected = True
    return chan


def make_workloads(asyncore, asynchat):
    """Return ``{name: (setup, unit)}``; ``setup()`` gives ``run()`` -> frames done."""
    classes, _ = make_chat_servers(asyncore, asynchat)
    Chat: Any = asynchat.async_chat  # chosen at run time: an untyped base

    class LineCounter(Chat):
        # minimal handlers: the cost measured is the chat code's
        def __init__(self):
            asynchat.async_chat.__init__(self, map={})
            self.frames = 0
            self.last = None
            self.set_terminator(b"\r\n")

        def collect_incoming_data(self, data):
            self.last = data

        def found_terminator(self):
            self.frames += 1

    class RecordCounter(LineCounter):
        def __init__(self):
            LineCounter.__init__(self)
            self.set_terminator(100)

        def found_terminator(self):
            self.frames += 1
            self.set_terminator(100)

    def reader(channel_class, chunks, frames_per_pass):
        def setup():
            chan = _attach(channel_class(), FakeSocket(chunks))
            reads = len(chunks)

            def run():
                handle_read = chan.handle_read
                for _ in range(reads):
                    handle_read()
                return frames_per_pass
            return run
        return setup

    def lines(read_size):
        chunks = _stream_chunks(LINE32, 1 << 18, read_size)
        return reader(LineCounter, chunks, (1 << 18) // 32)

    def records():
        total = 100 * 2621  # ~256 KiB in 64 KiB reads: records straddle reads
        chunks = _stream_chunks(RECORD100, total, 65536)
        return reader(RecordCounter, chunks, total // 100)

    def resp():
        blocks = (1 << 18) // len(RESP_BLOCK)
        chunks = _stream_chunks(RESP_BLOCK, blocks * len(RESP_BLOCK), 16384)

        def setup():
            chan = classes["resp"](None, {}, map={})
            fake = FakeSocket(chunks)
            _attach(chan, fake)
            reads = len(chunks)

            def run():
                handle_read = chan.handle_read
                for _ in range(reads):
                    handle_read()
                return blocks * RESP_BLOCK_COMMANDS
            run.fake = fake  # type: ignore[attr-defined]  # for tests to inspect
            return run
        return setup

    def drain(payload, count):
        def setup():
            chan = _attach(asynchat.async_chat(map={}), FakeSocket())
            fake = chan.socket

            def run():
                # the peer is slow: pushes queue up, then drain on writability
                fake.blocked = True
                for _ in range(count):
                    chan.push(payload)
                fake.blocked = False
                fifo = chan.producer_fifo
                for _ in range(count + 64):
                    if not fifo:
                        break
                    chan.handle_write()
                else:
                    raise RuntimeError("output queue did not drain")
                return count
            run.fake = fake  # type: ignore[attr-defined]  # for tests to inspect
            return run
        return setup

    return {
        "lines32-64k": (lines(65536), "frames/s"),
        "lines32-4k": (lines(4096), "frames/s"),
        "records100": (records(), "frames/s"),
        "resp-mix": (resp(), "commands/s"),
        "push-small": (drain(b"y" * 32, 1024), "frames/s"),
        "push-large": (drain(b"z" * (1 << 20), 4), "frames/s"),
    }


PAYLOAD_BYTES = {"push-small": 32, "push-large": 1 << 20}


def measure(setup, seconds, repeats=5):
    """Best rate (frames/s) of ``repeats`` timed batches filling ``seconds``."""
    run = setup()
    run()  # warm up
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    per_batch = max(1, int((seconds / repeats) / max(elapsed, 1e-6)))
    best = 0.0
    fake = getattr(run, "fake", None)
    sends = frames_total = 0
    for _ in range(repeats):
        if fake is not None:
            fake.sends = 0
        start = time.perf_counter()
        done = 0
        for _ in range(per_batch):
            done += run()
        elapsed = time.perf_counter() - start
        best = max(best, done / elapsed)
        if fake is not None:
            sends += fake.sends
            frames_total += done
    result = {"rate": best}
    if fake is not None and frames_total:
        result["sends_per_frame"] = sends / frames_total
    return result


def run_all(asyncore, asynchat, names=None, seconds=0.5):
    """Measure the workloads ``names`` (all by default); return a dict of results."""
    workloads = make_workloads(asyncore, asynchat)
    results = {}
    for name, (setup, unit) in workloads.items():
        if names and name not in names:
            continue
        result = measure(setup, seconds)
        result["unit"] = unit
        if name in PAYLOAD_BYTES:
            result["bytes_per_s"] = result["rate"] * PAYLOAD_BYTES[name]
        results[name] = result
    return results
