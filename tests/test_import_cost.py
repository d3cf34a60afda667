"""What importing asynchat_core loads, and the TLS behaviour that made it
load ``ssl`` (issue 18).

``from asynchat_core import asynchat, asyncore`` took about five times the
stdlib's import, mostly for modules a plain server never uses: ``ssl``,
``typing``, ``traceback``, ``threading``, ``sysconfig``, and (compiled
build) the Python build's own modules.  These tests check which modules the
import loads, not how long it takes (``benchmarks/import_time.py`` measures
that); each runs in a fresh interpreter, since this one has loaded them all.
"""
import os
import subprocess
import sys

import pytest

import impls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: modules the import must leave unloaded, in both builds
HEAVY = ("ssl", "_ssl", "typing", "traceback", "threading", "sysconfig")
#: nor Cython's shadow module, which the Python build's modules imported as
#: ``cython`` where Cython is installed (it loads typing), nor the framers
#: (``framing``, its ``struct``, the framer kernel) before one is used
OURS = ("cython", "Cython", "Cython.Shadow", "asynchat_core.framing",
        "asynchat_core._frame_py", "asynchat_core._frame_c")
#: and the compiled build must not load the Python build
PYTHON_BUILD = ("asynchat_core._chat_py", "asynchat_core._loop_py", "asynchat_core._frame_py")


def _child(build, code):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ASYNCHAT_CORE_NO_EXTENSIONS", None)
    if build == "python":
        env["ASYNCHAT_CORE_NO_EXTENSIONS"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("build", impls.params(impls.OURS))
def test_import_loads_no_heavy_module(build):
    # (where Cython is installed, as in the test environments, this also
    # checks that the Python build runs on asynchat_core/_cython.py's stand-in)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from asynchat_core import asynchat, asyncore\n"
        "import asynchat_core\n"
        "assert asynchat_core.IMPLEMENTATION == %r, asynchat_core.IMPLEMENTATION\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n" % build
    )
    loaded = set(_child(build, code).split())
    unwanted = set(HEAVY) | set(OURS) | (set(PYTHON_BUILD) if build == "cython" else set())
    assert sorted(loaded & unwanted) == []


@pytest.mark.parametrize("build", impls.params(impls.OURS))
def test_framers_load_when_used(build):
    # framing and the framer kernel of the build are imported on first use:
    # a framer terminator set before the first read, one set by a hook, and
    # push_resp all work in a fresh interpreter
    kernel = "asynchat_core._frame_c" if build == "cython" else "asynchat_core._frame_py"
    code = """
import socket, sys
from asynchat_core import asynchat
assert "asynchat_core.framing" not in sys.modules

class Chat(asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock, map={})
        self.got = []
        self.set_terminator(b"\\n")
    def collect_incoming_data(self, data):
        self.got.append(data)
    def found_terminator(self):
        from asynchat_core import framing
        self.got.append(b"|")
        self.set_terminator(framing.Netstring())
    def found_message(self, payload):
        self.got.append(payload)

a, b = socket.socketpair()
chan = Chat(a)
b.sendall(b"line\\n3:abc,2:de,")
chan.handle_read()
print(b"".join(chan.got).decode(), %(kernel)r in sys.modules)
chan.push_resp([b"ok", 1])
print(b.recv(100))
b.close()
chan.close()
""" % {"kernel": kernel}
    assert _child(build, code).split() == ["line|abcde", "True", repr(b"*2\r\n$2\r\nok\r\n:1\r\n")]


@pytest.mark.parametrize("build", impls.params(impls.OURS))
def test_tls_would_block_when_ssl_is_imported_after_asynchat_core(build):
    # ssl is not imported by asynchat_core any more: a TLS socket's
    # SSLWantReadError/SSLWantWriteError must still mean "try later" in the
    # library's own recv/send path when the application imports ssl after
    # asynchat_core (the usual order)
    code = """
import socket, sys
from asynchat_core import asynchat, asyncore
assert "ssl" not in sys.modules
import ssl

class WantsPeer:
    # a TLS socket in mid-handshake, as the library sees it
    def __init__(self, sock):
        self.sock = sock
    def fileno(self):
        return self.sock.fileno()
    def recv(self, n):
        raise ssl.SSLWantReadError(ssl.SSL_ERROR_WANT_READ, "want read")
    def send(self, data, *flags):
        raise ssl.SSLWantWriteError(ssl.SSL_ERROR_WANT_WRITE, "want write")
    def close(self):
        self.sock.close()

class Chat(asynchat.async_chat):
    errors = 0
    def handle_error(self):
        Chat.errors += 1
        raise
    def collect_incoming_data(self, data):
        pass
    def found_terminator(self):
        pass

a, b = socket.socketpair()
chan = Chat(a, map={})
chan.set_terminator(b"\\n")
chan.socket = WantsPeer(a)
sent = asyncore.dispatcher.send(chan, b"x")
chan.handle_read()
chan.push(b"reply\\n")
print(sent, Chat.errors, chan.connected, bool(chan.producer_fifo))
b.close()
"""
    # send took nothing, no error was reported, the channel stays open and
    # the reply waits in the queue
    assert _child(build, code).split() == ["0", "0", "True", "True"]
