"""Legacy handlers that rely on CPython's ``push()`` trying to send at once.

Each test runs one real-world pattern against three implementations: the
reference (CPython's own asyncore/asynchat up to 3.11, the pyasyncore/
pyasynchat backports of 3.11's modules on 3.12+; impls.py), proving the
test encodes CPython's behaviour, and asynchat_core with its compiled
("cython") and its Python ("python") build.  Servers are written once in
``legacy_servers`` and served from a loop thread over real sockets on
127.0.0.1; clients are real stdlib clients (ftplib, smtplib, poplib) or a
raw line client, with pipelined and one-request-at-a-time variants.

Tests named ``test_ssl_by_library_*`` need the library itself to treat
``ssl.SSLWantReadError``/``SSLWantWriteError`` from its own ``recv``/``send``
as would-block (the handler has no TLS code): CPython 3.11's modules (and
their backports) do not, so their stdlib parameter is a strict xfail.
"""
import ftplib
import poplib
import re
import smtplib
import socket
import ssl
import sys
import threading
import time

import pytest
import trustme

from chat_harness import line_chat
from legacy_servers import (
    CLIENT_TIMEOUT,
    FTP_FILES,
    FTP_LISTING,
    HOST,
    POP3_MESSAGE,
    SMTP_MESSAGE_REPLY,
    FTPHandler,
    LegacyServer,
    LineClient,
    LineHandler,
    POP3Handler,
    SMTPHandler,
    TLSUpgrade,
    handler_factory,
    implicit_tls_factory,
)


VARIANTS = pytest.mark.parametrize("pipelined", [False, True], ids=["single", "pipelined"])


@pytest.fixture(scope="module")
def tls():
    """(server context, client context) for a trustme CA and 127.0.0.1/localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@pytest.fixture
def server(impl, tls):
    srv = LegacyServer(impl, tls=tls[0])
    yield srv
    srv.stop()
    # shown with a failing test's report
    print("server events:", srv.events)
    for tb in srv.errors:
        print("server error:", tb)


@pytest.fixture
def client_tls(tls):
    return tls[1]


def needs_library_ssl(request, impl):
    if impl.name == "stdlib":
        request.applymarker(pytest.mark.xfail(
            strict=True,
            reason="CPython 3.11's dispatcher.recv/send raise SSLWantReadError "
                   "(errno 2, not EWOULDBLOCK) and async_chat reports it to "
                   "handle_error: the library must handle it itself"))


def normalise_227(lines):
    return [re.sub(rb"\(.*\)", b"(h,p)", line) if line.startswith(b"227 ") else line
            for line in lines]


def pasv_port(line):
    numbers = re.search(rb"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", line)
    assert numbers, line
    return int(numbers.group(5)) * 256 + int(numbers.group(6))


def read_data(port):
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as data:
        chunks = []
        while True:
            chunk = data.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# --- 1. push, then block on the peer --------------------------------------------

def test_pasv_then_accept_ftplib(impl, server):
    """ftplib.FTP against a PASV that pushes its 227 and then blocks in
    accept() until the client connects: test_ftplib's DummyFTPHandler.cmd_pasv
    (and many small FTP servers) do exactly this.  ftplib reads the 227
    before it connects, so the 227 must be on the wire before accept()."""
    port = server.listen(handler_factory(impl, FTPHandler))
    server.start()
    ftp = ftplib.FTP(timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(HOST, port)
        ftp.login("user", "secret")
        listing = []
        ftp.retrlines("LIST", listing.append)
        chunks = []
        ftp.retrbinary("RETR file.bin", chunks.append)
        ftp.quit()
    finally:
        ftp.close()
    assert listing == FTP_LISTING.decode().splitlines()
    assert b"".join(chunks) == FTP_FILES[b"file.bin"]
    assert server.events.count("pasv accepted") == 2
    assert server.errors == []


@VARIANTS
def test_pasv_then_accept_raw(impl, server, pipelined, monkeypatch):
    """The same PASV handler with a raw client, sending one command at a time
    or the whole session (USER..QUIT) in one send(): with pipelining the
    RETR is already buffered while PASV blocks in accept().

    Pipelined, asynchat_core holds the 227 while the handler blocks (README
    deviation 1): a server that blocks on a pipelining peer turns
    ``ac_coalesce_pushes`` off, which this test does."""
    if pipelined and impl.name != "stdlib":
        monkeypatch.setattr(impl.asynchat.async_chat, "ac_coalesce_pushes", False)
    port = server.listen(handler_factory(impl, FTPHandler))
    server.start()
    commands = [b"USER u\r\n", b"PASS p\r\n", b"TYPE I\r\n", b"PASV\r\n",
                b"RETR notes.txt\r\n", b"QUIT\r\n"]
    with LineClient(port) as client:
        transcript = [client.read_line()]
        if pipelined:
            client.send(b"".join(commands))
            while not transcript[-1].startswith(b"227") and len(transcript) < 6:
                transcript.append(client.read_line())
            data = read_data(pasv_port(transcript[-1]))
            transcript += [client.read_line() for _ in range(3)]
        else:
            for command in commands[:4]:
                client.send(command)
                transcript.append(client.read_line())
            port227 = pasv_port(transcript[-1])
            with socket.create_connection((HOST, port227), timeout=CLIENT_TIMEOUT) as conn:
                client.send(commands[4])
                transcript.append(client.read_line())
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            transcript.append(client.read_line())
            client.send(commands[5])
            transcript.append(client.read_line())
        assert client.read_to_eof() == b""
    assert normalise_227(transcript) == [
        b"220 legacy ftp ready\r\n", b"331 password please\r\n", b"230 logged in\r\n",
        b"200 type set to I\r\n", b"227 Entering Passive Mode (h,p).\r\n",
        b"150 opening data connection\r\n", b"226 transfer complete\r\n", b"221 goodbye\r\n",
    ]
    assert data == FTP_FILES[b"notes.txt"]
    assert server.errors == []


# --- 2. push, then STARTTLS ----------------------------------------------------

def test_starttls_smtplib(impl, server, client_tls):
    """smtplib.SMTP.starttls() + sendmail against an smtpd-style channel whose
    STARTTLS pushes "220 Ready to start TLS" and then wraps self.socket
    (the SSLConnection pattern of test_ftplib/test_poplib's TLS servers).
    The 220 must leave in plaintext before the socket is wrapped."""
    port = server.listen(handler_factory(impl, TLSUpgrade, SMTPHandler))
    server.start()
    message = b"Subject: legacy\r\n\r\nhello over tls\r\n"
    with smtplib.SMTP(HOST, port, local_hostname="client.example",
                      timeout=CLIENT_TIMEOUT) as smtp:
        code, _ = smtp.starttls(context=client_tls)
        assert code == 220
        assert smtp.sendmail("a@example.org", ["b@example.org"], message) == {}
    assert server.messages == [message[:-2]]
    assert "tls up" in server.events
    assert server.errors == []


def test_starttls_poplib(impl, server, client_tls):
    """poplib.POP3.stls() + retr against a channel whose STLS pushes
    "+OK Begin TLS negotiation" and then wraps self.socket (test_poplib's
    DummyPOP3Handler.cmd_stls does this)."""
    port = server.listen(handler_factory(impl, TLSUpgrade, POP3Handler))
    server.start()
    pop = poplib.POP3(HOST, port, timeout=CLIENT_TIMEOUT)
    try:
        assert pop.stls(context=client_tls).startswith(b"+OK Begin TLS")
        pop.user("u")
        pop.pass_("p")
        assert pop.stat() == (1, len(POP3_MESSAGE))
        _, lines, _ = pop.retr(1)
        pop.quit()
    finally:
        pop.close()
    assert b"".join(line + b"\r\n" for line in lines) == POP3_MESSAGE
    assert "tls up" in server.events
    assert server.errors == []


def test_starttls_ftplib(impl, server, client_tls):
    """ftplib.FTP_TLS: AUTH TLS (234 pushed, then self.socket wrapped), PBSZ,
    PROT P, then a PASV (227 pushed, then a blocking accept) and a RETR
    whose 150 is pushed before a blocking TLS handshake on the data
    connection, which ftplib starts only after reading the 150 (test_ftplib's
    DummyTLS_FTPHandler and pyftpdlib's TLS_FTPHandler work like this)."""
    port = server.listen(handler_factory(impl, TLSUpgrade, FTPHandler))
    server.start()
    ftp = ftplib.FTP_TLS(context=client_tls, timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(HOST, port)
        assert ftp.auth().startswith("234")
        ftp.login("user", "secret")
        ftp.prot_p()
        chunks = []
        ftp.retrbinary("RETR file.bin", chunks.append)
        ftp.quit()
    finally:
        ftp.close()
    assert b"".join(chunks) == FTP_FILES[b"file.bin"]
    assert "tls up" in server.events
    assert server.errors == []


POP3_RETR_LINES = [b"+OK %d octets\r\n" % len(POP3_MESSAGE)] + [
    (b"." + line if line.startswith(b".") else line) + b"\r\n"
    for line in POP3_MESSAGE.split(b"\r\n")[:-1]] + [b".\r\n"]

# per protocol: handler, greeting, the pipelined batch ending in the
# STARTTLS command and its replies, the pipelined batches sent over TLS and
# their replies, and the pieces of the injection test
STARTTLS = {
    "smtp": dict(
        handler=SMTPHandler,
        greeting=b"220 legacy smtp ready\r\n",
        before=(b"EHLO c\r\nSTARTTLS\r\n",
                [b"250-localhost\r\n", b"250-STARTTLS\r\n", b"250 HELP\r\n",
                 b"220 Ready to start TLS\r\n"]),
        after=[
            (b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
             [b"250-localhost\r\n", b"250 HELP\r\n", b"250 OK\r\n", b"250 OK\r\n",
              b"354 End data with <CR><LF>.<CR><LF>\r\n"]),
            (b"Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n", [SMTP_MESSAGE_REPLY, b"221 Bye\r\n"]),
        ],
        tls_command=b"STARTTLS\r\n",
        tls_reply=b"220 Ready to start TLS\r\n",
        noop_reply=b"250 OK\r\n",
        quit_reply=b"221 Bye\r\n",
    ),
    "pop3": dict(
        handler=POP3Handler,
        greeting=b"+OK legacy pop3 ready\r\n",
        before=(b"CAPA\r\nSTLS\r\n",
                [b"+OK capability list follows\r\n", b"USER\r\n", b"STLS\r\n", b".\r\n",
                 b"+OK Begin TLS negotiation\r\n"]),
        after=[
            (b"USER u\r\nPASS p\r\nSTAT\r\nRETR 1\r\nQUIT\r\n",
             [b"+OK send PASS\r\n", b"+OK logged in\r\n",
              b"+OK 1 %d\r\n" % len(POP3_MESSAGE)] + POP3_RETR_LINES + [b"+OK bye\r\n"]),
        ],
        tls_command=b"STLS\r\n",
        tls_reply=b"+OK Begin TLS negotiation\r\n",
        noop_reply=b"+OK\r\n",
        quit_reply=b"+OK bye\r\n",
    ),
    "ftp": dict(
        handler=FTPHandler,
        greeting=b"220 legacy ftp ready\r\n",
        before=(b"FEAT\r\nAUTH TLS\r\n",
                [b"211-Features:\r\n", b" AUTH TLS\r\n", b" PBSZ\r\n", b" PROT\r\n",
                 b"211 End\r\n", b"234 AUTH TLS successful\r\n"]),
        after=[
            (b"USER u\r\nPASS p\r\nPBSZ 0\r\nPROT P\r\nNOOP\r\nQUIT\r\n",
             [b"331 password please\r\n", b"230 logged in\r\n", b"200 PBSZ=0\r\n",
              b"200 protection level set\r\n", b"200 NOOP ok\r\n", b"221 goodbye\r\n"]),
        ],
        tls_command=b"AUTH TLS\r\n",
        tls_reply=b"234 AUTH TLS successful\r\n",
        noop_reply=b"200 NOOP ok\r\n",
        quit_reply=b"221 goodbye\r\n",
    ),
}
PROTOCOLS = pytest.mark.parametrize("protocol", sorted(STARTTLS))


@PROTOCOLS
def test_starttls_raw_pipelined(impl, server, client_tls, protocol):
    """The STARTTLS servers above with a pipelining client (RFC 2920 style):
    commands before the STARTTLS command go in the same send() as it, and
    after the handshake whole sessions go in one TLS send()."""
    spec = STARTTLS[protocol]
    port = server.listen(handler_factory(impl, TLSUpgrade, spec["handler"]))
    server.start()
    with LineClient(port) as client:
        assert client.read_line() == spec["greeting"]
        batch, replies = spec["before"]
        client.send(batch)
        assert client.read_lines(len(replies)) == replies
        assert client.start_tls(client_tls) == b""
        for batch, replies in spec["after"]:
            client.send(batch)
            assert client.read_lines(len(replies)) == replies
        assert client.read_to_eof() == b""
    if protocol == "smtp":
        assert server.messages == [b"Subject: t\r\n\r\nhello"]
    assert "tls up" in server.events
    assert server.errors == []


@PROTOCOLS
def test_starttls_injection_reply_is_plaintext(impl, server, client_tls, protocol):
    """The STARTTLS plaintext-injection attack (CVE-2011-0411 class): the
    client sends "STARTTLS\\r\\nNOOP\\r\\n" in one send(), then starts the
    handshake.  Whatever happens to the injected NOOP (CPython's asynchat
    executes it and sends its reply inside TLS), the STARTTLS reply must
    arrive in plaintext before the handshake, and the handshake must work."""
    spec = STARTTLS[protocol]
    port = server.listen(handler_factory(impl, TLSUpgrade, spec["handler"]))
    server.start()
    with LineClient(port) as client:
        assert client.read_line() == spec["greeting"]
        client.send(spec["tls_command"] + b"NOOP\r\n")
        assert client.read_line() == spec["tls_reply"]
        client.start_tls(client_tls)
        client.send(b"QUIT\r\n")
        rest = client.read_to_eof()
        after = [line + b"\r\n" for line in rest.split(b"\r\n")[:-1]]
    print("after the handshake:", after)
    assert after in ([spec["quit_reply"]], [spec["noop_reply"], spec["quit_reply"]]), after
    assert "tls up" in server.events
    assert server.errors == []


def sequenced_tls_client(cls, server, opened):
    """``cls`` (POP3_SSL or SMTP_SSL) starting its handshake only once the
    server's handler exists and has pushed its greeting, so the greeting's
    send() meets an unfinished handshake every time (without this the race
    with the ClientHello decides, as TLS 1.3 lets a server write right after
    its own Finished).  Sockets go to ``opened`` to be closed even when the
    constructor fails."""

    class Sequenced(cls):
        def _create_socket(self, timeout):  # poplib
            return self._start_tls(poplib.POP3._create_socket(self, timeout))

        def _get_socket(self, host, port, timeout):  # smtplib
            return self._start_tls(smtplib.SMTP._get_socket(self, host, port, timeout))

        def _start_tls(self, sock):
            opened.append(sock)
            assert server.wait_for(lambda: server.channels), "no handler was created"
            wrapped = self.context.wrap_socket(sock, server_hostname=HOST)
            opened.append(wrapped)
            return wrapped

    return Sequenced


@pytest.mark.parametrize("protocol", ["pop3", "smtp"])
def test_ssl_by_library_implicit_tls_client(request, impl, server, client_tls, protocol):
    """Implicit TLS (POP3S/SMTPS servers): the listener wraps each accepted
    socket (handshake not done) and hands the ssl.SSLSocket to a handler with
    no TLS code, which pushes its greeting at once.  The library's own
    recv/send run on the SSLSocket and must treat SSLWantReadError/
    SSLWantWriteError as would-block: the greeting's send() meets the
    unfinished handshake, and a read event may bring only handshake records.
    NEEDS THE LIBRARY TO HANDLE SSL ERRORS (CPython 3.11 fails: strict xfail)."""
    needs_library_ssl(request, impl)
    handler = POP3Handler if protocol == "pop3" else SMTPHandler
    port = server.listen(implicit_tls_factory(impl, handler))
    server.start()
    opened = []
    try:
        if protocol == "pop3":
            pop = sequenced_tls_client(poplib.POP3_SSL, server, opened)(
                HOST, port, context=client_tls, timeout=CLIENT_TIMEOUT)
            pop.user("u")
            pop.pass_("p")
            assert pop.stat() == (1, len(POP3_MESSAGE))
            _, lines, _ = pop.retr(1)
            pop.quit()
            assert b"".join(line + b"\r\n" for line in lines) == POP3_MESSAGE
        else:
            message = b"Subject: implicit\r\n\r\nhello\r\n"
            with sequenced_tls_client(smtplib.SMTP_SSL, server, opened)(
                    HOST, port, local_hostname="client.example", context=client_tls,
                    timeout=CLIENT_TIMEOUT) as smtp:
                assert smtp.sendmail("a@example.org", ["b@example.org"], message) == {}
            assert server.messages == [message[:-2]]
    finally:
        for sock in opened:
            sock.close()
    assert server.errors == []


def test_ssl_by_library_implicit_tls_raw_pipelined(request, impl, server, client_tls):
    """Implicit TLS with a client that pipelines the whole POP3 session in one
    TLS send(); the handshake starts after the greeting was pushed, as above.
    NEEDS THE LIBRARY TO HANDLE SSL ERRORS (CPython 3.11 fails: strict xfail)."""
    needs_library_ssl(request, impl)
    port = server.listen(implicit_tls_factory(impl, POP3Handler))
    server.start()
    with LineClient(port) as client:
        assert server.wait_for(lambda: server.channels)
        client.start_tls(client_tls)
        assert client.read_line() == b"+OK legacy pop3 ready\r\n"
        batch, replies = STARTTLS["pop3"]["after"][0]
        client.send(batch)
        assert client.read_lines(len(replies)) == replies
        assert client.read_to_eof() == b""
    assert server.errors == []


class SmallThenBig(LineHandler):
    """Tiny replies for pipelined requests, then one large reply."""

    def cmd_SMALL(self, arg):
        self.push(b"s" + arg + b"\r\n")

    def cmd_BIG(self, arg):
        self.push(b"B" + arg + b"x" * 40000 + b"\r\n")


def test_ssl_by_library_blocked_write_retried_whole(request, impl, server, client_tls):
    """A handler with no TLS code on an ssl.SSLSocket, a peer that pipelines
    and reads late (small socket buffers).  Each read brings five SMALL
    requests and a BIG one: the SMALL replies are held and go out joined
    with the BIG reply in one SSL_write.  When the full socket refuses it,
    the retry must start with the same bytes and be at least as long, or
    OpenSSL fails the connection (BAD_LENGTH / BAD_WRITE_RETRY): the
    library must put the whole refused buffer back, not only the held part.
    NEEDS THE LIBRARY TO HANDLE SSL ERRORS (CPython 3.11 fails: strict xfail)."""
    needs_library_ssl(request, impl)
    cls = impl.chat_class(SmallThenBig)

    def factory(sock, srv):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        cls(srv.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), srv)

    port = server.listen(factory)
    server.start()
    rounds = 40
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    raw.settimeout(CLIENT_TIMEOUT)
    raw.connect((HOST, port))
    with LineClient(port, sock=raw) as client:
        client.start_tls(client_tls)
        for i in range(rounds):
            # one TLS record each, so one read on the server each
            client.send(b"".join(b"SMALL %d.%d\r\n" % (i, j) for j in range(5))
                        + b"BIG %d\r\n" % i)
            assert server.wait_for(lambda: len(server.log) >= (i + 1) * 12), server.log[-3:]
            # once the socket is full, the joined send of this round is
            # refused; reading a little lets the loop retry it from a write
            # event (not joined with a later reply, which would hide the bug)
            client.buffer += client.sock.recv(8192)
            time.sleep(0.02)
        for i in range(rounds):
            assert client.read_lines(5) == [b"s%d.%d\r\n" % (i, j) for j in range(5)]
            assert client.read_line() == b"B%d" % i + b"x" * 40000 + b"\r\n"
    assert server.errors == []


# --- 3. push, then write to self.socket ------------------------------------------

class PushThenWrite(LineHandler):
    """push() a header, then write the next bytes straight to self.socket."""

    greeting = b"+ ready\r\n"

    def cmd_GO(self, arg):
        self.push(b"A" + arg + b"\r\n")
        self.socket.send(b"B" + arg + b"\r\n")


@VARIANTS
def test_push_then_direct_socket_send(impl, server, pipelined):
    """found_terminator pushes "A" and then calls self.socket.send("B"), as
    handlers do that push a response header and write the body themselves
    (sendfile()-style responses, pyftpdlib's sendfile path, medusa-style
    file producers bypassed for speed).  A must reach the client before B."""
    port = server.listen(handler_factory(impl, PushThenWrite))
    server.start()
    requests = [b"GO %d\r\n" % i for i in range(1, 4)]
    expected = b"".join(b"A%d\r\nB%d\r\n" % (i, i) for i in range(1, 4))
    with LineClient(port) as client:
        assert client.read_line() == b"+ ready\r\n"
        if pipelined:
            client.send(b"".join(requests))
            received = client.read_exactly(len(expected))
        else:
            received = b""
            for request in requests:
                client.send(request)
                received += client.read_exactly(len(expected) // 3)
    assert received == expected
    assert server.errors == []


# --- 4. a mock socket that counts send() calls -------------------------------------

class FakeSocket:
    """The peer as test_smtpd's mock socket: recv() hands out queued bytes,
    send() records every call and accepts everything."""

    _next_fd = 200000

    def __init__(self):
        FakeSocket._next_fd += 1
        self._fd = FakeSocket._next_fd
        self.incoming = []
        self.sends = []
        self.closed = False

    def fileno(self):
        return self._fd

    def setblocking(self, flag):
        pass

    def getpeername(self):
        return ("127.0.0.1", 2525)

    def getsockopt(self, *args):
        return 0

    def setsockopt(self, *args):
        pass

    def recv(self, size):
        if not self.incoming:
            raise BlockingIOError("nothing queued")
        return self.incoming.pop(0)

    def send(self, data, *flags):
        self.sends.append(bytes(data))
        return len(data)

    def close(self):
        self.closed = True


class EhloHandler(LineHandler):
    greeting = b"220 fake ready\r\n"

    def cmd_EHLO(self, arg):
        self.push(b"250-fake.example\r\n")
        self.push(b"250-8BITMIME\r\n")
        self.push(b"250 HELP\r\n")


EHLO_REPLY = [b"250-fake.example\r\n", b"250-8BITMIME\r\n", b"250 HELP\r\n"]


@VARIANTS
def test_mock_socket_send_per_push(impl, pipelined):
    """test_smtpd's pattern: a channel over a mock socket, one request queued
    and handle_read() called by hand, then assertions on the socket's sends
    (``socket.last`` is the last send()).  With one request per handle_read
    CPython makes exactly one send() per push; with two requests in one
    recv() the last send() still carries only the last reply line."""
    srv = LegacyServer(impl)
    fake = FakeSocket()
    chan = impl.chat_class(EhloHandler)(fake, srv)
    try:
        assert fake.sends == [b"220 fake ready\r\n"]
        if pipelined:
            fake.incoming.append(b"EHLO a\r\nEHLO b\r\n")
            chan.handle_read()
            assert b"".join(fake.sends[1:]) == b"".join(EHLO_REPLY * 2)
            assert fake.sends[-1] == b"250 HELP\r\n"
        else:
            for name in (b"a", b"b", b"c"):
                before = len(fake.sends)
                fake.incoming.append(b"EHLO " + name + b"\r\n")
                chan.handle_read()
                assert fake.sends[before:] == EHLO_REPLY
            assert fake.sends == [b"220 fake ready\r\n"] + EHLO_REPLY * 3
    finally:
        chan.close()
        srv.stop()
    assert fake.closed
    assert srv.errors == []


# --- 5. close / terminator change / socket swap in the middle of pipelined input -----

class EchoCloser(LineHandler):
    greeting = b"+ ready\r\n"

    def handle_line(self, line):
        if line == b"CLOSE":
            self.push(b"bye\r\n")
            self.server.log.append(("close",))
            self.close()
        else:
            self.push(b"echo " + line + b"\r\n")


@VARIANTS
def test_close_mid_buffer(impl, server, pipelined):
    """A handler that answers a fatal command with a last reply and close()s
    at once (a 421 "closing" in FTP/SMTP servers), while more pipelined
    commands sit in ac_in_buffer.  CPython sends the reply, closes, and still
    runs the rest of the buffer through collect/found (pushes then go
    nowhere)."""
    port = server.listen(handler_factory(impl, EchoCloser))
    server.start()
    lines = [b"A", b"B", b"CLOSE", b"C", b"D"]
    with LineClient(port) as client:
        received = client.read_line()
        if pipelined:
            client.send(b"".join(line + b"\r\n" for line in lines))
            received += client.read_to_eof()
        else:
            for line in lines[:2]:
                client.send(line + b"\r\n")
                received += client.read_line()
            client.send(b"CLOSE\r\n")
            received += client.read_to_eof()
    assert received == b"+ ready\r\necho A\r\necho B\r\nbye\r\n"
    expected_log = [("collect", b"A"), ("found", b"\r\n"),
                    ("collect", b"B"), ("found", b"\r\n"),
                    ("collect", b"CLOSE"), ("found", b"\r\n"), ("close",)]
    if pipelined:
        expected_log += [("collect", b"C"), ("found", b"\r\n"),
                         ("collect", b"D"), ("found", b"\r\n")]
    assert server.wait_for(lambda: len(server.log) >= len(expected_log), 1.0)
    assert server.log == expected_log
    assert server.errors == []


class FrameSwitcher(LineHandler):
    """LEN n: the next n bytes are a body; SEP: the next frame ends at ";;"."""

    greeting = b"+ ready\r\n"
    mode = None

    def handle_frame(self, data):
        mode, self.mode = self.mode, None
        if mode == "len":
            self.set_terminator(b"\r\n")
            self.push(b"body " + data + b"\r\n")
        elif mode == "sep":
            self.set_terminator(b"\r\n")
            self.push(b"sep " + data.replace(b"\r\n", b"\\n") + b"\r\n")
        else:
            self.handle_line(data)

    def cmd_LEN(self, arg):
        self.push(b"ok len\r\n")
        self.set_terminator(int(arg))
        self.mode = "len"

    def cmd_SEP(self, arg):
        self.push(b"ok sep\r\n")
        self.set_terminator(b";;")
        self.mode = "sep"

    def cmd_PING(self, arg):
        self.push(b"pong\r\n")


@VARIANTS
def test_terminator_change_mid_buffer(impl, server, pipelined):
    """Handlers that switch the terminator from found_terminator while the
    rest of the pipelined input is already buffered: smtpd's DATA (line
    terminator to "\\r\\n.\\r\\n"), HTTP servers reading a Content-Length body
    (integer terminator).  Replies and the exact collect/found sequence
    must be CPython's."""
    port = server.listen(handler_factory(impl, FrameSwitcher))
    server.start()
    pieces = [b"LEN 5\r\n", b"hello", b"SEP\r\n", b"x\r\ny;;", b"LEN 3\r\n", b"abc", b"PING\r\n"]
    expected = [b"+ ready\r\n", b"ok len\r\n", b"body hello\r\n", b"ok sep\r\n",
                b"sep x\\ny\r\n", b"ok len\r\n", b"body abc\r\n", b"pong\r\n"]
    with LineClient(port) as client:
        received = [client.read_line()]
        if pipelined:
            client.send(b"".join(pieces))
            received += client.read_lines(len(expected) - 1)
        else:
            for piece in pieces:
                client.send(piece)
                received.append(client.read_line())
    assert received == expected
    assert server.log == [
        ("collect", b"LEN 5"), ("found", b"\r\n"), ("collect", b"hello"), ("found", 0),
        ("collect", b"SEP"), ("found", b"\r\n"), ("collect", b"x\r\ny"), ("found", b";;"),
        ("collect", b"LEN 3"), ("found", b"\r\n"), ("collect", b"abc"), ("found", 0),
        ("collect", b"PING"), ("found", b"\r\n"),
    ]
    assert server.errors == []


class Swapper(LineHandler):
    """SWAP: push a reply, then replace self.socket by a parked connection."""

    greeting = b"+ ready\r\n"

    def handle_line(self, line):
        if line != b"SWAP":
            self.push(b"echo " + line + b"\r\n")
            return
        self.push(b"swapping\r\n")
        old = self.socket
        self.del_channel()
        new = self.server.parked.pop(0)
        new.setblocking(False)
        self.set_socket(new)
        old.close()
        self.server.log.append(("swapped",))


def swap_factory(impl):
    cls = impl.chat_class(Swapper)

    def factory(sock, server):
        if server.channels:
            sock.sendall(b"parked\r\n")  # still blocking: accept() made it so
            server.parked.append(sock)
        else:
            cls(sock, server)

    return factory


@VARIANTS
def test_swap_socket_mid_buffer(impl, server, pipelined):
    """A handler that pushes a reply and then replaces self.socket
    (del_channel/set_socket) while pipelined input is still buffered: what
    every STARTTLS handler does, here with a plain second connection so the
    bytes each socket carries are visible.  CPython sends the reply on the
    old socket; later replies go to the new one."""
    port = server.listen(swap_factory(impl))
    server.start()
    with LineClient(port) as first:
        assert first.read_line() == b"+ ready\r\n"
        with LineClient(port) as second:
            assert second.read_line() == b"parked\r\n"
            if pipelined:
                first.send(b"A\r\nSWAP\r\nB\r\nC\r\n")
            else:
                first.send(b"A\r\n")
                assert first.read_line() == b"echo A\r\n"
                first.send(b"SWAP\r\n")
            on_first = first.read_to_eof()
            if not pipelined:
                on_first = b"echo A\r\n" + on_first
                second.send(b"B\r\n")
                assert second.read_line() == b"echo B\r\n"
                second.send(b"C\r\n")
                on_second = b"echo B\r\n" + second.read_line()
            else:
                on_second = second.read_exactly(len(b"echo B\r\necho C\r\n"))
    assert on_first == b"echo A\r\nswapping\r\n"
    assert on_second == b"echo B\r\necho C\r\n"
    assert server.log == [("collect", b"A"), ("found", b"\r\n"),
                          ("collect", b"SWAP"), ("found", b"\r\n"), ("swapped",),
                          ("collect", b"B"), ("found", b"\r\n"),
                          ("collect", b"C"), ("found", b"\r\n")]
    assert server.errors == []


# --- 6. push() from other threads --------------------------------------------------

class Pinger(LineHandler):
    greeting = b"+ ready\r\n"

    def cmd_PING(self, arg):
        self.push(b"pong " + arg + b"\r\n")


PER_WORKER = 500
PINGS = 200


def pushes_from_threads_round(server, port, pings):
    """One connection: two workers push PER_WORKER lines each while the loop
    thread serves the channel; returns the problems seen (empty if none)."""
    ping_count = PINGS if pings else 0
    worker_errors = []
    known = len(server.channels)
    with LineClient(port, timeout=3.0) as client:
        assert client.read_line() == b"+ ready\r\n"
        assert server.wait_for(lambda: len(server.channels) > known)
        chan = server.channels[known]
        barrier = threading.Barrier(3)

        def work(n):
            try:
                barrier.wait(timeout=2)
                for i in range(PER_WORKER):
                    chan.push(b"w%d %03d\r\n" % (n, i))
            except BaseException as exc:
                worker_errors.append(repr(exc))

        workers = [threading.Thread(target=work, args=(n,)) for n in (1, 2)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # make the threads interleave finely
        lines = []
        try:
            for worker in workers:
                worker.start()
            barrier.wait(timeout=2)
            if pings:
                client.send(b"".join(b"PING %03d\r\n" % i for i in range(ping_count)))
            try:
                while len(lines) < 2 * PER_WORKER + ping_count:
                    lines.append(client.read_line())
                # anything sent twice arrives after the expected count
                client.sock.settimeout(0.2)
                while True:
                    lines.append(client.read_line())
            except (socket.timeout, EOFError):
                pass
        finally:
            sys.setswitchinterval(interval)
            for worker in workers:
                worker.join(5)
    sources = {b"w1": [], b"w2": [], b"pong": []}
    for line in lines:
        source, _, number = line.rstrip(b"\r\n").partition(b" ")
        sources.setdefault(source, []).append(int(number))
    problems = []
    for source, count in ((b"w1", PER_WORKER), (b"w2", PER_WORKER), (b"pong", ping_count)):
        got = sources[source]
        if got != list(range(count)):
            problems.append("%s: %d lines, %d distinct, in order: %s" % (
                source.decode(), len(got), len(set(got)), got == sorted(got)))
    if worker_errors or server.errors:
        problems.append("errors: %r %r" % (worker_errors, server.errors))
    return problems


@pytest.mark.parametrize("pings", [False, True], ids=["quiet", "pipelined"])
def test_push_from_worker_threads(impl, server, pings):
    """Two worker threads each push 500 numbered lines to one channel while
    the loop thread serves it (and, pipelined, answers a batch of PINGs in
    the same read): monitoring/chat servers that push results from worker
    threads.  Every line must arrive exactly once, in each source's order.
    A race can pass by luck, so up to three connections are tried in turn.
    Not asserted on the stdlib: CPython 3.11's initiate_send is not
    thread-safe either and duplicates or loses lines on most runs (xfail)."""
    port = server.listen(handler_factory(impl, Pinger))
    server.start()
    for attempt in range(3):
        problems = pushes_from_threads_round(server, port, pings)
        if problems:
            break
    if problems and impl.name == "stdlib":
        pytest.xfail("CPython 3.11 itself fails here: %s" % "; ".join(problems))
    assert not problems, "connection %d: %s" % (attempt + 1, "; ".join(problems))


def test_deviation_reply_held_only_while_pipelined_input_follows(impl):
    """README deviation 1, pinned: a reply pushed for a frame that more input
    in the same read follows reaches the socket with the next reply (so a
    handler that blocks on the peer right after such a push waits); a reply
    to the last frame is on the socket before push() returns."""
    a, b = socket.socketpair()
    b.setblocking(False)
    seen = []

    class Probe(line_chat(impl.asynchat)):
        def found_terminator(self):
            self.push(b"reply\n")
            try:
                seen.append(b.recv(100))
            except BlockingIOError:
                seen.append(None)

    chan = Probe(a)
    try:
        b.sendall(b"one\ntwo\n")
        chan.handle_read()
        b.sendall(b"three\n")
        chan.handle_read()
    finally:
        chan.close()
        b.close()
    if impl.name == "stdlib":
        assert seen == [b"reply\n", b"reply\n", b"reply\n"]
    else:
        assert seen == [None, b"reply\nreply\n", b"reply\n"]
