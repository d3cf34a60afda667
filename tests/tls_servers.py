"""Servers built on ``asynchat_core.tls`` for tests/test_tls.py.

A ``LoopThread`` serves one private socket map from a thread; it can run
functions in the loop thread (``call``), which is where channels must be
created once it runs.  The handlers are small but real protocol servers:
a line echo (on ``async_chat``, ``dispatcher_with_send`` and a plain
``dispatcher``), SMTP with STARTTLS, POP3 with STLS, and FTP with AUTH TLS,
PROT P and TLS data connections: enough for smtplib, poplib, ftplib and
``openssl s_client -starttls``.  Every handler records what it saw in
``LoopThread.events`` and its log lines in ``LoopThread.logs``.
"""
import queue
import socket
import threading
import time
import traceback

from asynchat_core import asynchat, asyncore
from asynchat_core.tls import TLSListenerMixin, TLSMixin

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 10.0


class _Waker(asyncore.dispatcher):
    """The read end of a socketpair: wakes the loop for stop() and call()."""

    def __init__(self, sock, owner, map):
        asyncore.dispatcher.__init__(self, sock, map)
        self.owner = owner

    def writable(self):
        return False

    def handle_read(self):
        try:
            self.recv(4096)
        except OSError:
            pass
        self.owner._run_calls()

    def handle_close(self):
        self.close()


class LoopThread:
    """A socket map served by ``asyncore.loop`` in a thread."""

    def __init__(self, tls=None, loop_timeout=0.5):
        self.tls = tls  # server ssl.SSLContext
        self.map = {}
        self.loop_timeout = loop_timeout
        self.events = []  # what handlers report
        self.logs = []  # (type, message) of every log_info call
        self.errors = []  # tracebacks: handle_error, loop failures
        self.channels = []
        self._calls = queue.Queue()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        _Waker(self._wake_r, self, self.map)
        self._thread = None

    # -- lifetime
    def start(self):
        self._thread = threading.Thread(target=self._run, name="tls-loop", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set():
                asyncore.loop(timeout=self.loop_timeout, map=self.map, count=1)
        except BaseException:
            self.errors.append(traceback.format_exc())
        finally:
            asyncore.close_all(self.map, ignore_all=True)

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def stop(self):
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(10)
            if self._thread.is_alive():
                raise AssertionError("loop thread did not stop")
            self._thread = None
        else:
            asyncore.close_all(self.map, ignore_all=True)
        self._wake_w.close()

    # -- running code in the loop thread
    def _run_calls(self):
        while True:
            try:
                fn, box, done = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                box.append(fn())
            except BaseException as exc:  # handed to the caller
                box.append(exc)
                box.append("raised")
            done.set()

    def call(self, fn, timeout=CLIENT_TIMEOUT):
        """Run ``fn()`` in the loop thread and return its result."""
        if self._thread is None:
            return fn()
        box, done = [], threading.Event()
        self._calls.put((fn, box, done))
        self._wake()
        if not done.wait(timeout):
            raise AssertionError("loop thread did not run the call")
        if len(box) == 2:
            raise box[0]
        return box[0]

    def wait_for(self, predicate, timeout=CLIENT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def channel_count(self):
        """Channels in the map besides the waker and listeners."""
        return sum(1 for c in list(self.map.values())
                   if not isinstance(c, _Waker) and not c.accepting)

    # -- listeners
    def listen(self, factory, implicit_tls=False, backlog=128, max_connections=None):
        """A listener on 127.0.0.1 calling ``factory(sock, server)``; with
        ``implicit_tls`` it is a ``TLSListenerMixin`` (wrap at accept)."""
        server = self
        bases = (TLSListenerMixin, asyncore.dispatcher) if implicit_tls else (asyncore.dispatcher,)

        class Listener(*bases):
            tls_context = server.tls

            def handle_accepted(self, sock, addr):
                factory(sock, server)

            def log_info(self, message, type="info"):
                server.logs.append((type, message))

            def handle_error(self):
                server.errors.append(traceback.format_exc())
                self.close()

        listener = Listener(map=self.map)
        if max_connections is not None:
            listener.max_connections = max_connections
        listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.set_reuse_addr()
        listener.bind((HOST, 0))
        listener.listen(backlog)
        return listener.socket.getsockname()[1]


class Recording:
    """Mixed in front of TLSMixin: keeps log lines and tracebacks."""

    tls_handshake_timeout = 10.0

    def __init__(self, sock, server):
        self.server = server
        server.channels.append(self)
        self.init_channel(sock)

    def init_channel(self, sock):
        super().__init__(sock, map=self.server.map)

    def log_info(self, message, type="info"):
        self.server.logs.append((type, message))

    def handle_error(self):
        # everything that is not a TLS error reaches this as a traceback
        self.server.errors.append(traceback.format_exc())
        super().handle_error()

    def handle_tls_established(self):
        self.server.events.append(("tls up", self.tls_version()))

    def handle_tls_error(self, exc):
        self.server.events.append(("tls error", type(exc).__name__))
        super().handle_tls_error(exc)


# --- line echo on three bases ------------------------------------------------

class ChatEcho(Recording, TLSMixin, asynchat.async_chat):
    """CRLF or LF lines echoed back; "STARTTLS" upgrades; "QUIT" closes."""

    implicit = False  # start_tls() in __init__ (plain listener)

    def init_channel(self, sock):
        asynchat.async_chat.__init__(self, sock, map=self.server.map)
        self.set_terminator(b"\n")
        self.buf = []
        if self.implicit:
            self.start_tls(self.server.tls)

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        line = b"".join(self.buf)
        self.buf = []
        self.server.events.append(("line", line))
        word = line.strip()
        if word == b"STARTTLS":
            if self.tls_active:  # (docs/tls.md: answer a repeated STARTTLS)
                self.push(b"503 TLS already active\n")
            else:
                self.push(b"220 ready\n")
                self.start_tls(self.server.tls)
        elif word == b"STARTTLS+":
            # several replies and a producer queued before the upgrade go
            # out in plaintext; the push after it is encrypted
            self.push(b"220 ready\n")
            self.push_with_producer(asynchat.simple_producer(b"220 still plain\n", 4))
            self.start_tls(self.server.tls)
            self.push(b"encrypted hello\n")
        elif word == b"STARTTLS-BIG":
            # more plaintext than the socket takes: the upgrade waits for it
            self.push(b"P" * (4 << 20) + b"\n")
            self.start_tls(self.server.tls)
            self.push(b"encrypted hello\n")
            self.server.events.append(("flushing", self._tls_plain_out != b""))
        elif word == b"PHA":
            # TLS 1.3 post-handshake authentication: a handshake message
            # goes out with this reply; the answer arrives with later reads
            self.socket.verify_client_post_handshake()
            self.push(b"pha requested\n")
        elif word == b"WHO":
            cert = self.getpeercert()
            names = [v for k, v in (cert or {}).get("subjectAltName", ()) if k == "DNS"]
            self.push(b"peer " + ",".join(names).encode() + b"\n")
        elif word == b"CLOSE":
            self.close()
        elif word == b"QUIT":
            self.push(b"bye\n")
            self.close_when_done()
        else:
            self.push(line + b"\n")


class ImplicitChatEcho(ChatEcho):
    implicit = True


class SendEcho(Recording, TLSMixin, asyncore.dispatcher_with_send):
    """Echo on dispatcher_with_send: every read is sent back."""

    def init_channel(self, sock):
        asyncore.dispatcher_with_send.__init__(self, sock, map=self.server.map)

    def handle_read(self):
        data = self.recv(4096)
        if data == b"STARTTLS\n" and not self.tls_active:
            self.send(b"220 ready\n")
            self.start_tls(self.server.tls)
        elif data:
            self.send(data)


class PlainEcho(Recording, TLSMixin, asyncore.dispatcher):
    """Echo on a bare dispatcher with its own output buffer."""

    def init_channel(self, sock):
        asyncore.dispatcher.__init__(self, sock, map=self.server.map)
        self.out = b""

    def writable(self):
        return super().writable() and bool(self.out)

    def handle_read(self):
        data = self.recv(4096)
        if data:
            self.out += data
            self.handle_write()

    def handle_write(self):
        if self.out:
            self.out = self.out[self.send(self.out):]

    def handle_close(self):
        self.close()


# --- SMTP with STARTTLS -----------------------------------------------------------

class SMTPHandler(Recording, TLSMixin, asynchat.async_chat):
    def init_channel(self, sock):
        asynchat.async_chat.__init__(self, sock, map=self.server.map)
        self.set_terminator(b"\r\n")
        self.buf = []
        self.in_data = False
        self.push(b"220 localhost ESMTP test\r\n")

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        line = b"".join(self.buf)
        self.buf = []
        if self.in_data:
            self.in_data = False
            self.set_terminator(b"\r\n")
            self.server.events.append(("message", line))
            self.push(b"250 OK queued\r\n")
            return
        self.server.events.append(("smtp", line))
        verb = line.split(b" ", 1)[0].upper()
        if verb in (b"EHLO", b"HELO"):
            if self.tls_active:
                self.push(b"250-localhost\r\n250 8BITMIME\r\n")
            else:
                self.push(b"250-localhost\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
        elif verb == b"STARTTLS":
            self.push(b"220 2.0.0 Ready to start TLS\r\n")
            self.start_tls(self.server.tls)
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.push(b"250 OK\r\n")
        elif verb == b"DATA":
            self.push(b"354 go ahead\r\n")
            self.in_data = True
            self.set_terminator(b"\r\n.\r\n")
        elif verb == b"QUIT":
            self.push(b"221 bye\r\n")
            self.close_when_done()
        else:
            self.push(b"500 unknown\r\n")


# --- POP3 with STLS ---------------------------------------------------------------

POP3_MESSAGE = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello over TLS\r\n"


class POP3Handler(Recording, TLSMixin, asynchat.async_chat):
    def init_channel(self, sock):
        asynchat.async_chat.__init__(self, sock, map=self.server.map)
        self.set_terminator(b"\r\n")
        self.buf = []
        self.push(b"+OK POP3 ready\r\n")

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        line = b"".join(self.buf)
        self.buf = []
        self.server.events.append(("pop3", line))
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"CAPA":
            self.push(b"+OK\r\nUSER\r\n" + (b"" if self.tls_active else b"STLS\r\n") + b".\r\n")
        elif verb == b"STLS":
            self.push(b"+OK begin TLS\r\n")
            self.start_tls(self.server.tls)
        elif verb in (b"USER", b"PASS", b"NOOP"):
            self.push(b"+OK\r\n")
        elif verb == b"STAT":
            self.push(b"+OK 1 %d\r\n" % len(POP3_MESSAGE))
        elif verb == b"RETR":
            self.push(b"+OK %d octets\r\n" % len(POP3_MESSAGE) + POP3_MESSAGE + b".\r\n")
        elif verb == b"QUIT":
            self.push(b"+OK bye\r\n")
            self.close_when_done()
        else:
            self.push(b"-ERR unknown\r\n")


# --- FTP with AUTH TLS, PROT P and TLS data connections -----------------------------

FTP_FILE = bytes(range(256)) * 512  # 128 KiB
FTP_LISTING = b"-rw-r--r-- 1 owner group %d Jan 01 00:00 file.bin\r\n" % len(FTP_FILE)


class FTPData(TLSMixin, asyncore.dispatcher_with_send):
    """One passive data connection: TLS (PROT P) wrapped at accept."""

    def __init__(self, sock, control):
        self.control = control
        asyncore.dispatcher_with_send.__init__(self, sock, map=control.server.map)
        self.payload = None
        if control.prot_private:
            self.start_tls(control.server.tls)

    def log_info(self, message, type="info"):
        self.control.server.logs.append((type, message))

    def handle_tls_established(self):
        self.control.server.events.append(("data tls up", self.tls_version()))

    def writable(self):
        return super().writable() and (self.payload is not None or bool(self.out_buffer))

    def handle_read(self):
        self.recv(4096)

    def send_file(self, data):
        self.payload = data
        self.send(data)

    def handle_write(self):
        super().handle_write()
        if self.payload is not None and not self.out_buffer:
            self.payload = None
            self.close()

    def close(self):
        done = self.connected or self.tls_established
        super().close()
        if done and not self.control.closed_data:
            self.control.closed_data = True
            self.control.push(b"226 Transfer complete\r\n")

    def handle_close(self):
        self.close()


class FTPPassive(asyncore.dispatcher):
    def __init__(self, control):
        asyncore.dispatcher.__init__(self, map=control.server.map)
        self.control = control
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind((HOST, 0))
        self.listen(1)

    def handle_accepted(self, sock, addr):
        self.close()
        self.control.data = FTPData(sock, self.control)
        self.control.data_ready()

    def handle_close(self):
        self.close()


class FTPHandler(Recording, TLSMixin, asynchat.async_chat):
    def init_channel(self, sock):
        asynchat.async_chat.__init__(self, sock, map=self.server.map)
        self.set_terminator(b"\r\n")
        self.buf = []
        self.prot_private = False
        self.data = None
        self.pending_transfer = None
        self.closed_data = False
        self.push(b"220 FTP test server\r\n")

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        line = b"".join(self.buf).decode("latin-1")
        self.buf = []
        self.server.events.append(("ftp", line))
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "AUTH" and arg.upper() in ("TLS", "SSL"):
            self.push(b"234 AUTH TLS successful\r\n")
            self.start_tls(self.server.tls)
        elif verb in ("USER",):
            self.push(b"331 password please\r\n")
        elif verb == "PASS":
            self.push(b"230 logged in\r\n")
        elif verb == "PBSZ":
            self.push(b"200 PBSZ=0\r\n")
        elif verb == "PROT":
            self.prot_private = arg.upper() == "P"
            self.push(b"200 Protection set\r\n")
        elif verb == "TYPE":
            self.push(b"200 type set\r\n")
        elif verb == "PASV":
            passive = FTPPassive(self)
            port = passive.socket.getsockname()[1]
            self.data = None
            self.closed_data = False
            self.push(b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n" % (port >> 8, port & 255))
        elif verb in ("RETR", "LIST"):
            self.pending_transfer = FTP_FILE if verb == "RETR" else FTP_LISTING
            self.push(b"150 opening data connection\r\n")
            if self.data is not None:
                self.data_ready()
        elif verb == "QUIT":
            self.push(b"221 bye\r\n")
            self.close_when_done()
        else:
            self.push(b"502 not implemented\r\n")

    def data_ready(self):
        if self.data is not None and self.pending_transfer is not None:
            payload, self.pending_transfer = self.pending_transfer, None
            self.data.send_file(payload)


# --- back-pressure: handlers that stop reading while output waits --------------------

BULK_REQUESTS = 500  # pipelined "GET 16384" lines of 32 bytes: 16,000 bytes, one TLS record
BULK_REQUEST_SIZE = 32
BULK_REPLY_SIZE = 16384  # 500 replies: 8,192,000 bytes


def bulk_request():
    line = b"GET %d" % BULK_REPLY_SIZE
    return (line + b" " * (BULK_REQUEST_SIZE - len(line) - 1) + b"\n") * BULK_REQUESTS


def bulk_reply(line):
    """The reply to one "GET n" line: n bytes ending in a newline."""
    return b"R" * (int(line.split()[1]) - 1) + b"\n"


class HardenedChat(ChatEcho):
    """The README's hardening configuration ("Limits for hostile peers"):
    a frame cap, 1 MiB output high water with a 4096-byte input buffer,
    and an idle timeout; "GET n" is answered with n bytes."""

    ac_max_frame_size = 64 * 1024
    ac_out_high_water = 1 << 20
    ac_in_buffer_size = 4096

    def init_channel(self, sock):
        super().init_channel(sock)
        asyncore.set_idle_timeout(self, 60)

    def found_terminator(self):
        line = b"".join(self.buf)
        if line.startswith(b"GET "):
            self.buf = []
            self.push(bulk_reply(line))
        else:
            super().found_terminator()

    def stalled(self):
        """Reading paused by back-pressure, with replies waiting."""
        return not asynchat.async_chat.readable(self) and bool(self.producer_fifo)


class FlowControlledSend(Recording, TLSMixin, asyncore.dispatcher_with_send):
    """dispatcher_with_send with the usual flow control: no reading while
    output is queued; recv(4096); "GET n" is answered with n bytes."""

    def init_channel(self, sock):
        self.out_buffer = b""
        self.partial = b""
        asyncore.dispatcher_with_send.__init__(self, sock, map=self.server.map)

    def readable(self):
        return not self.out_buffer

    def handle_read(self):
        data = self.recv(4096)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(b"GET "):
                self.send(bulk_reply(line))

    def handle_close(self):
        self.close()

    def stalled(self):
        return bool(self.out_buffer)
