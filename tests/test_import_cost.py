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
    # Cython's shadow module, where Cython is installed (a developer's venv),
    # is what the Python build's modules import as ``cython``, and it loads
    # typing: that is Cython's cost, loaded first so only ours is counted
    code = (
        "import sys\n"
        "try:\n"
        "    import cython\n"
        "except ImportError:\n"
        "    pass\n"
        "before = set(sys.modules)\n"
        "from asynchat_core import asynchat, asyncore\n"
        "import asynchat_core\n"
        "assert asynchat_core.IMPLEMENTATION == %r, asynchat_core.IMPLEMENTATION\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n" % build
    )
    loaded = set(_child(build, code).split())
    unwanted = set(HEAVY) | (set(PYTHON_BUILD) if build == "cython" else set())
    assert sorted(loaded & unwanted) == []


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
