"""Coverage-guided (atheris/libFuzzer) harness for the compiled chat code.

Each input is decoded into a terminator, a read size, a list of received
chunks and a list of callback actions.  The script runs against the compiled
build and the Python build; any difference in callbacks, buffered
input, terminator or bytes sent is a crash, as is any exception other than
the deliberate ones.  Build the extension with ASYNCHAT_CORE_DEBUG_BUILD=1
to combine this with ASan/UBSan (see .ci/sanitize.sh for the environment).

    pip install atheris            # wheels exist for CPython 3.8-3.11 on Linux
    python fuzz/fuzz_kernels.py -atheris_runs=200000 fuzz/corpus
    python fuzz/fuzz_kernels.py -max_total_time=600          # nightly

Only the chat code is instrumented (``atheris.instrument_imports`` wraps the
Python build; the Cython module's coverage comes from the libFuzzer
comparison hooks on the inputs).
"""
import errno
import sys

import atheris

with atheris.instrument_imports():
    from asynchat_core import _chat_c, _chat_py
    from asynchat_core import asynchat as ac_asynchat

TERMS = [b"\n", b"\r\n", b"\r\n.\r\n", b"ab", b"aab", b"\x00", None, b"", 0, 1, 2, 5, 64]


class Stop(Exception):
    """Raised on purpose by a scripted callback."""


class Sock:
    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.wire = bytearray()
        self.closed = False

    def fileno(self):
        return 99999

    def setblocking(self, flag):
        pass

    def getpeername(self):
        return ("127.0.0.1", 1)

    def recv(self, size):
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if not self.chunks:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = self.chunks.pop(0)
        if len(item) > size:
            self.chunks.insert(0, item[size:])
            item = item[:size]
        return item

    def send(self, data):
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        self.wire += data
        return len(data)

    def close(self):
        self.closed = True


class Chan(ac_asynchat.async_chat):
    def collect_incoming_data(self, data):
        self.log.append(("c", bytes(data)))
        self.act()

    def found_terminator(self):
        self.log.append(("f", self.terminator))
        self.act()

    def act(self):
        if not self.plan:
            return
        op, arg = self.plan.pop(0)
        if op == 0:
            self.set_terminator(TERMS[arg % len(TERMS)])
        elif op == 1:
            self.push(b"p%d" % arg)
        elif op == 2:
            self.discard_buffers()
        elif op == 3:
            self.close()
        elif op == 4:
            self.close_when_done()
        elif op == 5:
            self.ac_in_buffer = b"ab\n" * (arg % 4)
        elif op == 6:
            raise Stop()

    def handle_error(self):
        self.log.append(("e", sys.exc_info()[0].__name__))
        self.close()

    def handle_close(self):
        self.log.append(("x",))
        self.close()


def run(module, term, in_size, chunks, plan, cap):
    previous = ac_asynchat._use_impl(module)
    try:
        sock = Sock(chunks)
        chan = Chan(sock, map={})
        chan.log = []
        chan.plan = list(plan)
        chan.ac_in_buffer_size = in_size
        chan.ac_max_frame_size = cap
        chan.set_terminator(term)
        for _ in range(len(chunks) * 4 + 8):
            if not sock.chunks or sock.closed:
                break
            try:
                chan.handle_read()
            except Stop:
                chan.log.append(("raised",))
            except ac_asynchat.FrameTooLarge:
                chan.log.append(("too large",))
                break
            except Exception as exc:
                # e.g. TypeError when a callback swaps an int terminator for
                # bytes mid-count: the stdlib raises the same; both kernels must
                chan.log.append(("raised", type(exc).__name__))
        return chan.log, bytes(chan.ac_in_buffer), chan.terminator, bytes(sock.wire)
    finally:
        ac_asynchat._use_impl(previous)


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    term = TERMS[fdp.ConsumeIntInRange(0, len(TERMS) - 1)]
    in_size = fdp.ConsumeIntInRange(1, 64)
    cap = fdp.PickValueInList([None, None, 8, 64, 1000])
    plan = [(fdp.ConsumeIntInRange(0, 6), fdp.ConsumeIntInRange(0, 20))
            for _ in range(fdp.ConsumeIntInRange(0, 6))]
    chunks = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 200))
        if chunk:
            chunks.append(chunk)
    if cap is not None and isinstance(term, int) and term > cap:
        return  # set_terminator raises FrameTooLarge on both: nothing to compare
    c = run(_chat_c, term, in_size, chunks, plan, cap)
    p = run(_chat_py, term, in_size, chunks, plan, cap)
    if c != p:
        raise AssertionError("kernels differ\ncython: %r\npython: %r" % (c, p))


def main():
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
