"""Legacy-style asyncore/asynchat servers, written once for any implementation.

Each handler is a mixin over "some ``async_chat``": ``Impl.chat_class``
builds it on the reference module or on asynchat_core (bound to one
implementation by the test fixture).  The handlers do what real legacy code
does with ``push()``: push a reply and then block on the peer (an FTP PASV
accept, a TLS handshake on a data connection), push and then switch the
socket to TLS, write to ``self.socket`` right after a push, swap the socket,
close in the middle of pipelined input.  All of it relies on CPython's
``push()`` sending at once.

``LegacyServer`` serves one private socket map from a thread; the clients
are real stdlib clients (ftplib, smtplib, poplib) or ``LineClient``.
"""
import socket
import ssl
import threading
import time
import traceback


HOST = "127.0.0.1"
#: how long a server blocks on its peer (PASV accept, data-connection TLS)
ACCEPT_TIMEOUT = 3.0
#: how long a client waits for one reply
CLIENT_TIMEOUT = 3.0


# --- the server thread ------------------------------------------------------

class LegacyServer:
    """A private socket map served by a loop thread, plus what handlers record.

    Create listeners with ``listen()`` before ``start()``: once the thread
    runs, only the loop thread (and, on purpose, the push-from-threads
    test) touches the channels.  ``stop()`` joins the thread, which closes
    every channel of the map on its way out.
    """

    def __init__(self, impl, tls=None):
        self.impl = impl
        self.tls = tls  # server-side ssl.SSLContext, or None
        self.map = {}
        self.errors = []  # tracebacks from handle_error and the loop
        self.events = []  # what handlers report ("tls up", "pasv timeout", ...)
        self.log = []  # ("collect", bytes) / ("found", terminator) per callback
        self.messages = []  # SMTP messages received
        self.channels = []  # every handler created, in order
        self.parked = []  # accepted sockets a handler may swap in
        self._stop = threading.Event()
        self._thread = None

    def listen(self, factory, port=0):
        """A listener on 127.0.0.1 calling ``factory(sock, server)`` per accept."""
        server = self

        class Listener(self.impl.asyncore.dispatcher):
            def handle_accepted(self, sock, addr):
                factory(sock, server)

            def handle_error(self):
                server.errors.append(traceback.format_exc())
                self.close()

        listener = Listener(map=self.map)
        listener.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.set_reuse_addr()
        listener.bind((HOST, port))
        listener.listen(5)
        return listener.socket.getsockname()[1]

    def start(self):
        self._thread = threading.Thread(target=self._run, name="legacy-loop", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            while not self._stop.is_set():
                if self.map:
                    self.impl.loop_once(self.map, 0.01)
                else:
                    time.sleep(0.01)
        except BaseException:
            self.errors.append(traceback.format_exc())
        finally:
            self.impl.asyncore.close_all(self.map, ignore_all=True)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            # a handler may be blocked on its peer for ACCEPT_TIMEOUT
            self._thread.join(ACCEPT_TIMEOUT + 3)
            if self._thread.is_alive():
                raise AssertionError("loop thread did not stop")
            self._thread = None
        else:
            self.impl.asyncore.close_all(self.map, ignore_all=True)
        for sock in self.parked:
            sock.close()
        del self.parked[:]

    def wait_for(self, predicate, timeout=CLIENT_TIMEOUT):
        """Poll ``predicate()`` until true; False on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


# --- handler mixins ----------------------------------------------------------

class LineHandler:
    """CRLF commands dispatched to ``cmd_<VERB>(arg)``; logs every callback.

    Constructed as ``Handler(sock, server)``; the next class in the MRO is
    an ``async_chat``.
    """

    greeting = None
    unknown_reply = b"500 unknown command\r\n"

    def __init__(self, sock, server):
        self.server = server
        self._parts = []
        super().__init__(sock, map=server.map)
        self.set_terminator(b"\r\n")
        if self.greeting:
            self.push(self.greeting)
        # listed once the greeting was pushed (clients wait for this)
        server.channels.append(self)

    def collect_incoming_data(self, data):
        self.server.log.append(("collect", bytes(data)))
        self._parts.append(bytes(data))

    def found_terminator(self):
        self.server.log.append(("found", self.get_terminator()))
        data = b"".join(self._parts)
        self._parts = []
        self.handle_frame(data)

    def handle_frame(self, data):
        self.handle_line(data)

    def handle_line(self, line):
        verb, _, arg = line.partition(b" ")
        method = getattr(self, "cmd_" + verb.decode("ascii", "replace").upper(), None)
        if method is None:
            self.push(self.unknown_reply)
        else:
            method(arg)

    def tls_active(self):
        return isinstance(self.socket, ssl.SSLSocket)

    def handle_error(self):
        self.server.errors.append(traceback.format_exc())
        self.close()


class TLSUpgrade:
    """The SSLConnection pattern of legacy STARTTLS servers.

    ``secure_connection()`` replaces ``self.socket`` by a server-side TLS
    socket (``del_channel()``/``set_socket()``) whose handshake is then
    driven without blocking from ``handle_read``/``handle_write``;
    ``recv``/``send`` map the TLS "want read/write" errors to would-block
    and TLS EOF to a close, so the library itself never sees them.
    """

    _tls_handshaking = False
    _tls_want_write = False

    def secure_connection(self):
        plain = self.socket
        self.del_channel()
        wrapped = self.server.tls.wrap_socket(
            plain, server_side=True, do_handshake_on_connect=False)
        self.set_socket(wrapped)
        self._tls_handshaking = True
        self.server.events.append("tls wrapped")

    def _continue_handshake(self):
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_want_write = False
        except ssl.SSLWantWriteError:
            self._tls_want_write = True
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
            self.server.events.append("tls eof in handshake")
            self.handle_close()
        else:
            self._tls_handshaking = False
            self._tls_want_write = False
            self.server.events.append("tls up")

    def handle_read(self):
        if self._tls_handshaking:
            self._continue_handshake()
        else:
            super().handle_read()

    def handle_write(self):
        if self._tls_handshaking:
            self._continue_handshake()
        else:
            super().handle_write()

    def writable(self):
        if self._tls_handshaking:
            return self._tls_want_write
        return super().writable()

    def recv(self, buffer_size):
        try:
            return super().recv(buffer_size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return b""  # nothing decrypted yet: handle_read finds no data
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.handle_close()
            return b""

    def send(self, data):
        try:
            return super().send(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.handle_close()
            return 0


FTP_FILES = {
    b"file.bin": bytes(range(256)) * 64,
    b"notes.txt": b"".join(b"line %d of the notes\r\n" % i for i in range(50)),
}
FTP_LISTING = b"".join(
    b"-rw-r--r-- 1 owner group %d Jan 01 00:00 %s\r\n" % (len(data), name)
    for name, data in sorted(FTP_FILES.items()))


class FTPHandler(LineHandler):
    """A minimal FTP server: enough for ftplib's login/retrlines/retrbinary,
    AUTH TLS/PBSZ/PROT P, and a PASV that blocks in accept() right after
    pushing its 227 reply (as test_ftplib's dummy server does)."""

    greeting = b"220 legacy ftp ready\r\n"
    data_sock = None
    protect_data = False

    def cmd_USER(self, arg):
        self.push(b"331 password please\r\n")

    def cmd_PASS(self, arg):
        self.push(b"230 logged in\r\n")

    def cmd_TYPE(self, arg):
        self.push(b"200 type set to " + arg + b"\r\n")

    def cmd_NOOP(self, arg):
        self.push(b"200 NOOP ok\r\n")

    def cmd_FEAT(self, arg):
        # one push per line, as real servers do
        self.push(b"211-Features:\r\n")
        if self.server.tls is not None:
            self.push(b" AUTH TLS\r\n")
            self.push(b" PBSZ\r\n")
            self.push(b" PROT\r\n")
        self.push(b"211 End\r\n")

    def cmd_AUTH(self, arg):
        if self.server.tls is None or arg.upper() != b"TLS" or self.tls_active():
            self.push(b"504 AUTH not available\r\n")
            return
        self.push(b"234 AUTH TLS successful\r\n")
        self.secure_connection()

    def cmd_PBSZ(self, arg):
        self.push(b"200 PBSZ=0\r\n")

    def cmd_PROT(self, arg):
        self.protect_data = arg.upper() == b"P"
        self.push(b"200 protection level set\r\n")

    def cmd_PASV(self, arg):
        self._drop_data()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((HOST, 0))
            listener.listen(1)
            listener.settimeout(ACCEPT_TIMEOUT)
            port = listener.getsockname()[1]
            self.push(b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n"
                      % (port >> 8, port & 0xFF))
            # block until the client, which must first read the 227, connects
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                self.server.events.append("pasv accept timed out")
                self.push(b"425 no data connection\r\n")
                return
        finally:
            listener.close()
        conn.settimeout(ACCEPT_TIMEOUT)
        self.data_sock = conn
        self.server.events.append("pasv accepted")

    def cmd_LIST(self, arg):
        self._transfer(FTP_LISTING)

    def cmd_RETR(self, arg):
        data = FTP_FILES.get(arg)
        if data is None:
            self.push(b"550 no such file\r\n")
            return
        self._transfer(data)

    def cmd_QUIT(self, arg):
        self.push(b"221 goodbye\r\n")
        self.close_when_done()

    def _transfer(self, payload):
        conn = self.data_sock
        self.data_sock = None
        if conn is None:
            self.push(b"425 use PASV first\r\n")
            return
        self.push(b"150 opening data connection\r\n")
        try:
            if self.protect_data:
                # blocking handshake: the client starts it once it has the 150
                conn = self.server.tls.wrap_socket(conn, server_side=True)
            conn.sendall(payload)
            if self.protect_data:
                conn.unwrap()  # close_notify, or ftplib's unwrap() fails
        except OSError as exc:
            self.server.events.append("data transfer failed: %r" % (exc,))
            self.push(b"426 transfer aborted\r\n")
            return
        finally:
            conn.close()
        self.push(b"226 transfer complete\r\n")

    def _drop_data(self):
        if self.data_sock is not None:
            self.data_sock.close()
            self.data_sock = None

    def close(self):
        self._drop_data()
        super().close()


SMTP_MESSAGE_REPLY = b"250 OK message queued\r\n"


class SMTPHandler(LineHandler):
    """A minimal SMTP server (EHLO/STARTTLS/MAIL/RCPT/DATA/QUIT) in the
    style of smtpd.SMTPChannel: multi-line replies are one push per line,
    DATA switches the terminator."""

    greeting = b"220 legacy smtp ready\r\n"
    in_data = False

    def cmd_EHLO(self, arg):
        self.push(b"250-localhost\r\n")
        if self.server.tls is not None and not self.tls_active():
            self.push(b"250-STARTTLS\r\n")
        self.push(b"250 HELP\r\n")

    def cmd_HELO(self, arg):
        self.push(b"250 localhost\r\n")

    def cmd_STARTTLS(self, arg):
        if self.server.tls is None or self.tls_active():
            self.push(b"454 TLS not available\r\n")
            return
        self.push(b"220 Ready to start TLS\r\n")
        self.secure_connection()

    def cmd_MAIL(self, arg):
        self.push(b"250 OK\r\n")

    def cmd_RCPT(self, arg):
        self.push(b"250 OK\r\n")

    def cmd_RSET(self, arg):
        self.push(b"250 OK\r\n")

    def cmd_NOOP(self, arg):
        self.push(b"250 OK\r\n")

    def cmd_DATA(self, arg):
        self.push(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        self.in_data = True
        self.set_terminator(b"\r\n.\r\n")

    def cmd_QUIT(self, arg):
        self.push(b"221 Bye\r\n")
        self.close_when_done()

    def handle_frame(self, data):
        if self.in_data:
            self.in_data = False
            self.set_terminator(b"\r\n")
            self.server.messages.append(data)
            self.push(SMTP_MESSAGE_REPLY)
        else:
            self.handle_line(data)


POP3_MESSAGE = b"Subject: legacy\r\n\r\nfirst line\r\n.dot-stuffed line\r\nlast line\r\n"


class POP3Handler(LineHandler):
    """A minimal POP3 server (CAPA/USER/PASS/STLS/STAT/RETR/QUIT)."""

    greeting = b"+OK legacy pop3 ready\r\n"
    unknown_reply = b"-ERR unknown command\r\n"

    def cmd_CAPA(self, arg):
        self.push(b"+OK capability list follows\r\n")
        self.push(b"USER\r\n")
        if self.server.tls is not None and not self.tls_active():
            self.push(b"STLS\r\n")
        self.push(b".\r\n")

    def cmd_USER(self, arg):
        self.push(b"+OK send PASS\r\n")

    def cmd_PASS(self, arg):
        self.push(b"+OK logged in\r\n")

    def cmd_STLS(self, arg):
        if self.server.tls is None or self.tls_active():
            self.push(b"-ERR TLS not available\r\n")
            return
        self.push(b"+OK Begin TLS negotiation\r\n")
        self.secure_connection()

    def cmd_NOOP(self, arg):
        self.push(b"+OK\r\n")

    def cmd_STAT(self, arg):
        self.push(b"+OK 1 %d\r\n" % len(POP3_MESSAGE))

    def cmd_RETR(self, arg):
        if arg != b"1":
            self.push(b"-ERR no such message\r\n")
            return
        self.push(b"+OK %d octets\r\n" % len(POP3_MESSAGE))
        for line in POP3_MESSAGE.split(b"\r\n")[:-1]:
            if line.startswith(b"."):
                line = b"." + line  # byte-stuffing
            self.push(line + b"\r\n")
        self.push(b".\r\n")

    def cmd_QUIT(self, arg):
        self.push(b"+OK bye\r\n")
        self.close_when_done()


def handler_factory(impl, *mixins):
    """``factory(sock, server)`` for ``LegacyServer.listen``."""
    cls = impl.chat_class(*mixins)
    return lambda sock, server: cls(sock, server)


def implicit_tls_factory(impl, *mixins):
    """Accept, wrap in TLS (handshake not done), hand the TLS socket to a
    handler that has no TLS code at all: the library's own recv/send run
    on the ``ssl.SSLSocket``."""
    cls = impl.chat_class(*mixins)

    def factory(sock, server):
        try:
            wrapped = server.tls.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        cls(wrapped, server)

    return factory


# --- a raw line client ---------------------------------------------------------

class LineClient:
    """A blocking client socket reading CRLF lines, with a deadline per read."""

    def __init__(self, port, timeout=CLIENT_TIMEOUT, sock=None):
        self.sock = sock if sock is not None else socket.create_connection(
            (HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buffer = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed; have %r" % (self.buffer,))
        self.buffer += chunk

    def read_line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def read_lines(self, count):
        return [self.read_line() for _ in range(count)]

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_eof(self):
        """Everything until the peer closes (EOF or reset)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                chunk = b""
            if not chunk:
                data, self.buffer = self.buffer, b""
                return data
            self.buffer += chunk

    def start_tls(self, context):
        """Wrap the connection in TLS (client side, blocking handshake).

        Returns the plaintext already received but not read (normally b"").
        """
        leftover, self.buffer = self.buffer, b""
        self.sock = context.wrap_socket(self.sock, server_hostname=HOST)
        return leftover
