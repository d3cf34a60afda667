"""asynchat_core.tls against real clients and hostile peers.

Servers (tests/tls_servers.py) are built on ``TLSMixin`` and
``TLSListenerMixin`` and served from a loop thread over real sockets on
127.0.0.1; clients are ftplib, smtplib, poplib, ``ssl``-wrapped sockets,
``openssl s_client`` and ``TLSMixin`` client channels.  Certificates come
from trustme.  Every test runs with the compiled ("cython") and the Python
("python") build of the chat code, bound like tests/test_legacy_patterns.py
does; the loop follows ASYNCHAT_CORE_NO_EXTENSIONS (CI runs the suite both
ways).
"""
import contextlib
import ftplib
import os
import poplib
import selectors
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest
import trustme

from asynchat_core import asynchat, asyncore, tls
from tls_servers import (
    BULK_REPLY_SIZE,
    BULK_REQUESTS,
    CLIENT_TIMEOUT,
    FTP_FILE,
    FTP_LISTING,
    HOST,
    POP3_MESSAGE,
    ChatEcho,
    FlowControlledSend,
    FTPHandler,
    HardenedChat,
    ImplicitChatEcho,
    LoopThread,
    PlainEcho,
    POP3Handler,
    Recording,
    SendEcho,
    SMTPHandler,
    bulk_request,
)

@pytest.fixture
def impl(our_impl):
    """The name of each of asynchat_core's implementations, bound for the test."""
    return our_impl.name


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca):
    return ca.issue_cert(HOST, "localhost")


def make_server_ctx(server_cert, alpn=None, sni_log=None, client_ca=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    if client_ca is not None:
        client_ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if sni_log is not None:
        ctx.sni_callback = lambda sslobj, name, context: sni_log.append(name)
    return ctx


@pytest.fixture(scope="module")
def server_ctx(server_cert):
    return make_server_ctx(server_cert)


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def server(impl, server_ctx):
    srv = LoopThread(tls=server_ctx)
    yield srv
    srv.stop()
    assert srv.errors == [], srv.errors[0]


def tls_errors(srv):
    return [m for t, m in srv.logs if "TLS error" in m]


def assert_no_tracebacks(srv):
    assert srv.errors == []
    for kind, message in srv.logs:
        assert "uncaptured" not in message and "Traceback" not in message, message
        assert "\n" not in message, message


@contextlib.contextmanager
def serving(srv, handler, **listen_kw):
    """``srv`` (a LoopThread) listening with ``handler`` and running: yields
    ``(srv, port)``, stops it after."""
    try:
        port = srv.listen(handler, **listen_kw)
        srv.start()
        yield srv, port
    finally:
        srv.stop()


def tls_client(port, client_ctx, hostname=HOST, **kw):
    raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    return client_ctx.wrap_socket(raw, server_hostname=hostname, **kw)


def read_until(sock, marker, limit=1 << 24):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed; have %r" % data[-200:])
        data += chunk
        assert len(data) < limit
    return data


def wait_closed(sock, timeout=CLIENT_TIMEOUT):
    """Block until the peer closes ``sock`` (EOF or reset); True if it did."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    except socket.timeout:
        return False
    return True


# --- implicit TLS, every base class ---------------------------------------------

ECHO_CLASSES = {
    "chat-listener": (ChatEcho, True),  # TLSListenerMixin wraps at accept
    "chat-start_tls": (ImplicitChatEcho, False),  # start_tls() in __init__
    "dispatcher_with_send": (SendEcho, True),
    "dispatcher": (PlainEcho, True),
}


@pytest.mark.parametrize("kind", sorted(ECHO_CLASSES))
def test_implicit_tls_echo(server, client_ctx, kind):
    cls, on_listener = ECHO_CLASSES[kind]
    port = server.listen(cls, implicit_tls=on_listener)
    server.start()
    with tls_client(port, client_ctx) as c:
        assert c.version() == "TLSv1.3"
        c.sendall(b"hello\nworld\n")
        assert read_until(c, b"world\n") == b"hello\nworld\n"
        big = os.urandom(100000).hex().encode()[:150000] + b"\n"
        c.sendall(big)
        assert read_until(c, b"\n") == big
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert ("tls up", "TLSv1.3") in server.events or kind.startswith("dispatcher")
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def _dict_materialised(obj):
    # CPython 3.11+ keeps a plain instance's attributes in a values array
    # until something reads obj.__dict__; gc shows that dict once it exists
    # (read here without touching __dict__, which would create it)
    import gc

    return any(type(r) is dict and "_tls_state" in r for r in gc.get_referents(obj))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="managed instance dicts: 3.11+")
def test_established_channel_keeps_its_instance_dict_unmaterialised(server, client_ctx):
    # the handshake's end drops the TLS layer's readable/writable shadows:
    # popping them from __dict__ would create the instance dict, and every
    # later lookup on the channel (the compiled build's lookup cache
    # included, issue 18) would take the slow generic path.  A class of its
    # own: a class's shared keys fill up with the attributes other tests'
    # instances set, and CPython then materialises the dict of new ones
    class FreshEcho(ChatEcho):
        pass

    port = server.listen(FreshEcho, implicit_tls=True)
    server.start()
    with tls_client(port, client_ctx) as c:
        c.sendall(b"ping\n")
        assert read_until(c, b"ping\n") == b"ping\n"
        chan = server.channels[0]
        assert server.call(lambda: (chan.tls_established, _dict_materialised(chan))) == (
            True, False)


class _Between(asynchat.async_chat):
    # sits between TLSMixin and async_chat in the MRO: what super() finds
    pass


class BetweenEcho(Recording, tls.TLSMixin, _Between):
    init_channel = ChatEcho.init_channel
    collect_incoming_data = ChatEcho.collect_incoming_data
    found_terminator = ChatEcho.found_terminator
    implicit = False


def test_read_event_follows_a_base_patched_after_use(impl, server_ctx, client_ctx, monkeypatch):
    # the established read event calls asyncore's handle_read_event directly
    # while the class's record says super() would find it (issue 18): a base
    # patched afterwards is found again, as super() would
    seen = []

    def counting(self):
        seen.append(self)
        asyncore.dispatcher.handle_read_event(self)

    with serving(LoopThread(tls=server_ctx), BetweenEcho, implicit_tls=True) as (srv, port):
        with tls_client(port, client_ctx) as c:
            c.sendall(b"one\n")
            assert read_until(c, b"one\n") == b"one\n"
            assert seen == []
            srv.call(lambda: monkeypatch.setattr(_Between, "handle_read_event", counting,
                                                 raising=False))
            c.sendall(b"two\n")
            assert read_until(c, b"two\n") == b"two\n"
            assert seen and seen[0] is srv.channels[0]
            srv.call(lambda: monkeypatch.delattr(_Between, "handle_read_event"))
            del seen[:]
            c.sendall(b"three\n")
            assert read_until(c, b"three\n") == b"three\n"
            assert seen == []
        assert_no_tracebacks(srv)


def test_tls_socket_flags_follow_a_property_patched_on_the_class(
        impl, server_ctx, client_ctx, monkeypatch):
    # the compiled build reads the TLS socket's flags in its instance dict
    # while its class has no descriptor under their names (issue 18): a
    # property put on the class afterwards is asked, as Python would
    reads = []

    def gate(sock):
        reads.append(sock)
        return False

    with serving(LoopThread(tls=server_ctx), ChatEcho, implicit_tls=True) as (srv, port):
        with tls_client(port, client_ctx) as c:
            c.sendall(b"one\n")
            assert read_until(c, b"one\n") == b"one\n"
            srv.call(lambda: monkeypatch.setattr(tls._TLSSocket, "tls_gate", property(gate)))
            c.sendall(b"two\n")
            assert read_until(c, b"two\n") == b"two\n"
            assert reads and reads[0] is srv.channels[0].socket
            srv.call(monkeypatch.undo)
            del reads[:]
            c.sendall(b"three\n")
            assert read_until(c, b"three\n") == b"three\n"
            assert reads == []
        assert_no_tracebacks(srv)


def test_version_cipher_peercert_alpn_on_server_channel(impl, server_cert, client_ctx, ca):
    ctx = make_server_ctx(server_cert, alpn=["x-test", "http/1.1"], client_ca=ca)
    with serving(LoopThread(tls=ctx), ChatEcho, implicit_tls=True) as (srv, port):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(ctx)
        ctx.set_alpn_protocols(["h2", "x-test"])
        ca.issue_cert("client.example").configure_cert(ctx)  # mutual TLS
        with tls_client(port, ctx) as c:
            c.sendall(b"ping\n")
            read_until(c, b"ping\n")
            chan = srv.channels[0]
            info = srv.call(lambda: (chan.tls_version(), chan.cipher(), chan.getpeercert(),
                                     chan.selected_alpn_protocol(), chan.tls_active,
                                     chan.tls_established))
            assert c.selected_alpn_protocol() == "x-test"
        version, cipher, peercert, alpn, active, established = info
        assert version == "TLSv1.3"
        assert cipher[1] == "TLSv1.3" and cipher[2] >= 128
        assert ("DNS", "client.example") in peercert["subjectAltName"]
        assert alpn == "x-test"
        assert active and established
    assert srv.errors == []


def test_post_handshake_authentication(impl, server_cert, ca):
    # handshake messages after the handshake, in both directions, through
    # the channel's ordinary reads and writes
    ctx = make_server_ctx(server_cert, client_ca=ca)
    ctx.post_handshake_auth = True
    with serving(LoopThread(tls=ctx), ChatEcho, implicit_tls=True) as (srv, port):
        cctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(cctx)
        ca.issue_cert("late.example").configure_cert(cctx)
        cctx.post_handshake_auth = True
        with tls_client(port, cctx) as c:
            c.sendall(b"WHO\n")
            assert read_until(c, b"\n") == b"peer \n"  # no certificate yet
            c.sendall(b"PHA\n")
            assert read_until(c, b"\n") == b"pha requested\n"
            c.sendall(b"WHO\n")
            assert read_until(c, b"\n") == b"peer late.example\n"
        assert srv.wait_for(lambda: srv.channel_count() == 0)
        assert tls_errors(srv) == []
        assert_no_tracebacks(srv)


# --- real stdlib clients ----------------------------------------------------------

def test_ftplib_ftp_tls_auth_prot_p_transfer(server, client_ctx):
    port = server.listen(FTPHandler)
    server.start()
    ftp = ftplib.FTP_TLS(context=client_ctx, timeout=CLIENT_TIMEOUT)
    ftp.connect(HOST, port)
    try:
        ftp.login("user", "secret")  # AUTH TLS first (FTP_TLS.login)
        assert isinstance(ftp.sock, ssl.SSLSocket)
        ftp.prot_p()
        chunks = []
        ftp.retrbinary("RETR file.bin", chunks.append)
        assert b"".join(chunks) == FTP_FILE
        lines = []
        ftp.retrlines("LIST", lines.append)
        assert (lines[0] + "\r\n").encode() == FTP_LISTING
        ftp.quit()
    finally:
        ftp.close()
    verbs = [e[1].split(" ")[0] for e in server.events if e[0] == "ftp"]
    assert verbs[:2] == ["AUTH", "USER"]
    assert "PROT" in verbs and verbs.count("PASV") == 2
    assert [e for e in server.events if e[0] == "data tls up"] == [("data tls up", "TLSv1.3")] * 2
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def test_smtplib_starttls(server, client_ctx):
    port = server.listen(SMTPHandler)
    server.start()
    with smtplib.SMTP(HOST, port, timeout=CLIENT_TIMEOUT) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        code, _ = smtp.starttls(context=client_ctx)
        assert code == 220
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        smtp.sendmail("a@example.com", ["b@example.com"], "Subject: x\r\n\r\nbody over TLS\r\n")
    messages = [e[1] for e in server.events if e[0] == "message"]
    assert len(messages) == 1 and b"body over TLS" in messages[0]
    assert ("tls up", "TLSv1.3") in server.events
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def test_poplib_stls(server, client_ctx):
    port = server.listen(POP3Handler)
    server.start()
    pop = poplib.POP3(HOST, port, timeout=CLIENT_TIMEOUT)
    try:
        assert "STLS" in pop.capa()
        pop.stls(context=client_ctx)
        assert "STLS" not in pop.capa()
        pop.user("user")
        pop.pass_("secret")
        assert pop.stat() == (1, len(POP3_MESSAGE))
        _, lines, _ = pop.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == POP3_MESSAGE
        pop.quit()
    finally:
        pop.close()
    assert ("tls up", "TLSv1.3") in server.events
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert_no_tracebacks(server)


OPENSSL = shutil.which("openssl")
S_CLIENT_MODES = {
    # mode: (handler, on a TLSListenerMixin, s_client -starttls argument)
    "implicit": (ChatEcho, True, None),
    "smtp": (SMTPHandler, False, "smtp"),
    "pop3": (POP3Handler, False, "pop3"),
    "ftp": (FTPHandler, False, "ftp"),
}


@pytest.mark.skipif(OPENSSL is None, reason="no openssl binary (CI installs the Debian package)")
@pytest.mark.parametrize("mode", sorted(S_CLIENT_MODES))
def test_openssl_s_client(server, ca, tmp_path, mode):
    handler, on_listener, starttls = S_CLIENT_MODES[mode]
    port = server.listen(handler, implicit_tls=on_listener)
    server.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cmd = [OPENSSL, "s_client", "-connect", "%s:%d" % (HOST, port), "-servername", "localhost",
           "-CAfile", str(ca_file), "-verify_return_error", "-verify_hostname", "localhost",
           "-ign_eof"]  # read replies until the server closes (after QUIT)
    if starttls:
        cmd += ["-starttls", starttls]
    line = {"implicit": b"via s_client\n", "smtp": b"NOOP\r\n", "pop3": b"NOOP\r\n",
            "ftp": b"PBSZ 0\r\n"}[mode]
    quit_line = b"QUIT\r\n"
    proc = subprocess.run(cmd, input=line + quit_line, capture_output=True, timeout=30)
    out = proc.stdout
    assert b"Verify return code: 0 (ok)" in out, proc.stderr.decode(errors="replace")
    assert b"TLSv1.3" in out
    expected = {"implicit": b"via s_client\nbye\n", "smtp": b"250 OK\r\n221 bye\r\n",
                "pop3": b"+OK\r\n+OK bye\r\n", "ftp": b"200 PBSZ=0\r\n221 bye\r\n"}[mode]
    assert out.endswith(expected) or expected in out, out[-400:]
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


# --- STARTTLS ordering and the injection defence ----------------------------------

def plain_line_client(port):
    s = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    return s


def test_starttls_replies_queued_before_are_plaintext_after_encrypted(server, client_ctx):
    port = server.listen(ChatEcho)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS+\n")
    plain = read_until(s, b"220 still plain\n")
    assert plain == b"220 ready\n220 still plain\n"
    c = client_ctx.wrap_socket(s, server_hostname=HOST)
    with c:
        assert read_until(c, b"\n") == b"encrypted hello\n"
        c.sendall(b"after\n")
        assert read_until(c, b"after\n") == b"after\n"
    assert_no_tracebacks(server)


def test_starttls_waits_for_a_large_plaintext_reply(server, client_ctx):
    port = server.listen(ChatEcho)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS-BIG\n")
    assert server.wait_for(lambda: ("flushing", True) in server.events)
    time.sleep(0.2)  # the loop waits for room, holding the encrypted push back
    plain = b""
    while len(plain) < (4 << 20) + 1:
        chunk = s.recv(1 << 20)
        assert chunk
        plain += chunk
    assert plain == b"P" * (4 << 20) + b"\n"
    with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
        assert read_until(c, b"\n") == b"encrypted hello\n"
    assert_no_tracebacks(server)


def test_starttls_on_dispatcher_with_send(server, client_ctx):
    port = server.listen(SendEcho)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS\n")
    assert read_until(s, b"\n") == b"220 ready\n"
    with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
        c.sendall(b"secret\n")
        assert read_until(c, b"\n") == b"secret\n"
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert_no_tracebacks(server)


@pytest.mark.parametrize("base", ["chat", "smtp"])
def test_plaintext_pipelined_with_starttls_is_never_executed(server, client_ctx, base):
    if base == "chat":
        port = server.listen(ChatEcho)
        server.start()
        s = plain_line_client(port)
        s.sendall(b"STARTTLS\nINJECTED one\nINJECTED two\n")  # one segment
        assert read_until(s, b"\n") == b"220 ready\n"
        with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
            c.sendall(b"after\n")
            assert read_until(c, b"after\n") == b"after\n"
        lines = [e[1] for e in server.events if e[0] == "line"]
        assert lines == [b"STARTTLS", b"after"]
    else:
        port = server.listen(SMTPHandler)
        server.start()
        s = plain_line_client(port)
        read_until(s, b"\r\n")
        # CVE-2011-0411: a command pipelined in plaintext after STARTTLS
        s.sendall(b"EHLO x\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\n")
        data = read_until(s, b"220 2.0.0 Ready to start TLS\r\n")
        assert data.endswith(b"250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n")
        with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
            c.sendall(b"NOOP\r\n")
            assert read_until(c, b"\r\n") == b"250 OK\r\n"
        cmds = [e[1] for e in server.events if e[0] == "smtp"]
        assert cmds == [b"EHLO x", b"STARTTLS", b"NOOP"]
    assert_no_tracebacks(server)


def test_plaintext_sent_after_starttls_reply_fails_the_handshake(server, client_ctx):
    port = server.listen(ChatEcho)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS\n")
    assert read_until(s, b"\n") == b"220 ready\n"
    s.sendall(b"INJECTED\n")  # arrives where the ClientHello belongs
    assert wait_closed(s)
    s.close()
    assert server.wait_for(lambda: server.channel_count() == 0)
    lines = [e[1] for e in server.events if e[0] == "line"]
    assert lines == [b"STARTTLS"]
    assert len(tls_errors(server)) == 1
    assert_no_tracebacks(server)


# --- hostile peers --------------------------------------------------------------

GARBAGE = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello-not-a-client-hello" + b"\x00" * 100,
    bytes(range(256)) * 4,
]


@pytest.mark.parametrize("kind", ["chat-listener", "chat-start_tls", "dispatcher"])
def test_garbage_instead_of_client_hello(server, kind):
    cls, on_listener = ECHO_CLASSES[kind]
    port = server.listen(cls, implicit_tls=on_listener)
    server.start()
    for payload in GARBAGE:
        s = plain_line_client(port)
        s.sendall(payload)
        assert wait_closed(s)
        s.close()
    assert server.wait_for(lambda: server.channel_count() == 0)
    errors = tls_errors(server)
    assert len(errors) == len(GARBAGE), server.logs
    assert all(t == "error" for t, m in server.logs if "TLS error" in m)
    assert [e for e in server.events if e[0] == "tls error"] == [("tls error", "SSLError")] * 3
    assert_no_tracebacks(server)


def test_peer_closing_or_resetting_during_handshake(server):
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    s = plain_line_client(port)
    s.close()
    s = plain_line_client(port)
    s.sendall(b"\x16\x03")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    # (a connection reset before accept() may never become a channel: the
    # listener logs one line for it)
    assert server.wait_for(lambda: len(tls_errors(server)) == 2), server.logs
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert_no_tracebacks(server)


class Stalled(ChatEcho):
    tls_handshake_timeout = 0.5


def test_stalled_handshake_closed_at_deadline_cpu_idle(impl, server_ctx):
    # a long loop timeout: only the library's timer can wake the loop
    with serving(LoopThread(tls=server_ctx, loop_timeout=30.0),
                 Stalled, implicit_tls=True) as (srv, port):
        s = plain_line_client(port)
        s.sendall(b"\x16")  # one byte of a record header, then nothing
        assert srv.wait_for(lambda: srv.channel_count() == 1)
        wall0, cpu0 = time.monotonic(), time.process_time()
        assert wait_closed(s, timeout=10)  # blocks in recv: no CPU here
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        s.close()
        # generous bounds, against a hang and a spin, not a speed claim: the
        # deadline is 0.5 s, and a loop that sleeps uses next to no CPU in
        # it, while one that spins uses about the whole stall
        assert 0.3 < wall < 5.0, wall
        assert cpu < max(0.25, wall / 2), "loop used %.3fs CPU during a %.2fs stall" % (cpu, wall)
        assert srv.wait_for(lambda: srv.channel_count() == 0)
        errors = tls_errors(srv)
        assert len(errors) == 1 and "handshake not done after 0.5s" in errors[0], srv.logs
        assert [e for e in srv.events if e[0] == "tls error"] == [("tls error", "TimeoutError")]
        assert_no_tracebacks(srv)


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count fds")
def test_thousand_concurrent_handshakes_fds_back_to_baseline(server, client_ctx):
    n = 1000
    port = server.listen(ChatEcho, implicit_tls=True, backlog=n)
    server.start()
    server.call(lambda: None)  # the loop runs (its epoll fd exists)
    baseline = _open_fds()
    sel = selectors.DefaultSelector()
    clients = []
    try:
        for _ in range(n):
            raw = socket.socket()
            raw.setblocking(False)
            raw.connect_ex((HOST, port))
            clients.append(raw)
        # handshakes: each client socket is driven without blocking
        pending = {}
        for raw in clients:
            c = client_ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)
            pending[c.fileno()] = c
            sel.register(c, selectors.EVENT_WRITE)
        done = []
        deadline = time.monotonic() + 120
        while pending:
            assert time.monotonic() < deadline, "%d handshakes left" % len(pending)
            for key, _ in sel.select(1.0):
                c = key.fileobj
                try:
                    c.do_handshake()
                except ssl.SSLWantReadError:
                    sel.modify(c, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    sel.modify(c, selectors.EVENT_WRITE)
                except OSError as exc:  # e.g. not connected yet
                    if exc.errno not in (107, 11):  # ENOTCONN, EAGAIN
                        raise
                else:
                    sel.unregister(c)
                    done.append(pending.pop(c.fileno()))
        assert server.wait_for(lambda: server.channel_count() == n, timeout=30)
        # every channel works: one line each
        for c in done:
            c.setblocking(True)
            c.settimeout(CLIENT_TIMEOUT)
            c.sendall(b"ping\n")
        for c in done:
            assert read_until(c, b"\n") == b"ping\n"
        clients = done
    finally:
        sel.close()
        for c in clients:
            c.close()
    assert server.wait_for(lambda: server.channel_count() == 0, timeout=30)
    assert server.wait_for(lambda: _open_fds() <= baseline, timeout=10), (_open_fds(), baseline)
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def _bio_handshake(sock, ctx):
    """A client handshake through memory BIOs, so raw records can be cut."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data
            incoming.write(data)
    if outgoing.pending:
        sock.sendall(outgoing.read())
    return obj, outgoing


def test_peer_resetting_mid_record(server, client_ctx):
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    for cut in (1, 5, 100, 4000):
        s = plain_line_client(port)
        obj, outgoing = _bio_handshake(s, client_ctx)
        obj.write(b"x" * 8000 + b"\n")
        record = outgoing.read()
        s.sendall(record[:cut])
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST in the middle of the record
    assert server.wait_for(lambda: len(server.channels) == 4 and server.channel_count() == 0)
    # the server is still up and serving
    with tls_client(port, client_ctx) as c:
        c.sendall(b"still here\n")
        assert read_until(c, b"\n") == b"still here\n"
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


# --- input and output through the TLS layer ----------------------------------------

class SmallReads(ChatEcho):
    ac_in_buffer_size = 256  # much less than one TLS record


def test_bytes_buffered_in_the_ssl_object_are_consumed(impl, server_ctx, client_ctx):
    # 200 lines in one record; each recv takes 256 bytes of it and the rest
    # waits inside the SSL object, where epoll cannot see it
    with serving(LoopThread(tls=server_ctx, loop_timeout=30.0),
                 SmallReads, implicit_tls=True) as (srv, port):
        with tls_client(port, client_ctx) as c:
            lines = b"".join(b"line %03d %s\n" % (i, b"." * 40) for i in range(200))
            assert len(lines) < 16384
            c.sendall(lines)  # one write: one record
            got = read_until(c, b"line 199 " + b"." * 40 + b"\n")
            assert got == lines
        assert_no_tracebacks(srv)


def test_pipelined_replies_are_coalesced_into_few_tls_writes(server, client_ctx, monkeypatch):
    sends = []
    original = tls._TLSSocket.send

    def counting_send(self, data, flags=0):
        sent = original(self, data, flags)
        sends.append((len(data), sent))
        return sent

    monkeypatch.setattr(tls._TLSSocket, "send", counting_send)
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    with tls_client(port, client_ctx) as c:
        request = b"".join(b"req %03d\n" % i for i in range(100))
        c.sendall(request)  # 100 pipelined requests in one record
        assert read_until(c, b"req 099\n") == request
        # a lone request is answered at once (nothing is held back)
        c.sendall(b"alone\n")
        assert read_until(c, b"\n") == b"alone\n"
    # (the loop thread records a send after the client may have read it)
    assert server.wait_for(lambda: sum(s for _, s in sends) == len(request) + len(b"alone\n"))
    assert len(sends) <= 3, sends  # 101 replies


@pytest.mark.parametrize("size", [700, 3000, 20000])
def test_pipelined_replies_to_a_peer_that_reads_late(server, client_ctx, size):
    # replies joined into one send() meet a full socket: the TLS write must
    # be retried with the same bytes, whatever the output queue does
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    lines = [(b"%05d" % i) + b"x" * size + b"\n" for i in range(300)]
    request = b"".join(lines)
    with tls_client(port, client_ctx) as c:
        c.sendall(request)  # the server answers into a socket nobody reads
        # every request read and answered before the client reads a byte
        assert server.wait_for(
            lambda: sum(1 for e in server.events if e[0] == "line") == len(lines))
        got = read_until(c, lines[-1])
        assert len(got) == len(request)
        assert got == request
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def test_a_blocked_tls_write_retried_with_a_shorter_piece(server, client_ctx):
    # async_chat retries a joined send that met a full socket with only its
    # held part; OpenSSL refuses a retry shorter than the record it keeps
    # (BAD_WRITE_RETRY).  The channel's socket must turn it into a correct
    # stream: every byte once, in order.
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    stream = b"".join(b"%08d" % i for i in range(2000000))  # 16 MB, position-coded
    state = {"offset": 0}

    def attempt(size):
        chan = server.channels[0]
        start = state["offset"]
        try:
            sent = chan.socket.send(stream[start:start + size])
        except ssl.SSLWantWriteError:
            return None
        state["offset"] = start + sent
        return sent

    with tls_client(port, client_ctx) as c:
        c.sendall(b"ping\n")
        read_until(c, b"ping\n")
        while server.call(lambda: attempt(40000)) is not None:  # fill the socket
            assert state["offset"] < len(stream)
        # the retry the kernel makes: the same start, fewer bytes
        assert server.call(lambda: attempt(100)) is None
        received = []

        def reader():
            got = 0
            while got < len(stream):
                chunk = c.recv(1 << 20)
                if not chunk:
                    break
                received.append(chunk)
                got += len(chunk)

        import threading
        t = threading.Thread(target=reader)
        t.start()
        sizes = [100, 5, 40000, 17, 30000]
        i = 0
        deadline = time.monotonic() + 20
        while state["offset"] < len(stream) and time.monotonic() < deadline:
            if server.call(lambda: attempt(sizes[i % len(sizes)])) is None:
                time.sleep(0.001)
            i += 1
        t.join(20)
        assert b"".join(received) == stream
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


def test_orderly_close_sends_close_notify(server, client_ctx):
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    # with ragged EOFs not suppressed, only a close_notify gives b""
    with tls_client(port, client_ctx, suppress_ragged_eofs=False) as c:
        c.sendall(b"QUIT\n")
        assert read_until(c, b"bye\n") == b"bye\n"
        assert c.recv(100) == b""
    with tls_client(port, client_ctx, suppress_ragged_eofs=False) as c:
        c.sendall(b"CLOSE\n")
        assert c.recv(100) == b""
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert_no_tracebacks(server)
    assert tls_errors(server) == []


def test_ragged_eof_from_peer_is_a_clean_close(server, client_ctx):
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    c = tls_client(port, client_ctx)
    c.sendall(b"hi\n")
    read_until(c, b"hi\n")
    c.close()  # SSLSocket.close sends no close_notify: a ragged EOF
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert tls_errors(server) == []
    assert_no_tracebacks(server)


class QuickShutdown(ChatEcho):
    tls_shutdown_timeout = 0.5


def test_close_notify_wait_is_bounded(server, client_ctx):
    port = server.listen(QuickShutdown, implicit_tls=True)
    server.start()
    c = tls_client(port, client_ctx)
    try:
        c.sendall(b"ping\n")
        read_until(c, b"ping\n")
        chan = server.channels[0]

        def fill_then_close():
            # the client reads nothing: write until the socket takes no more
            # (the loop itself stops at epoll's writability threshold, where
            # a close_notify still fits)
            try:
                while True:
                    chan.socket.send(b"z" * 65536)
            except ssl.SSLWantWriteError:
                pass
            chan.close()  # close_notify cannot go out yet: the channel waits
            return chan in server.map.values()

        t0 = time.monotonic()
        lingering = server.call(fill_then_close)
        assert lingering and not chan.connected
        assert server.wait_for(lambda: server.channel_count() == 0, timeout=5)
        waited = time.monotonic() - t0
        assert 0.3 < waited < 3.0, waited
    finally:
        c.close()
    assert_no_tracebacks(server)


def test_close_notify_goes_out_once_the_peer_reads(server, client_ctx):
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    c = tls_client(port, client_ctx, suppress_ragged_eofs=False)
    try:
        c.sendall(b"ping\n")
        read_until(c, b"ping\n")
        chan = server.channels[0]

        def fill_then_close():
            sent = 0
            try:
                while True:
                    sent += chan.socket.send(b"z" * 65536)
            except ssl.SSLWantWriteError:
                pass
            chan.close()
            return sent, chan in server.map.values()

        sent, lingering = server.call(fill_then_close)
        assert lingering
        received = 0
        while True:
            data = c.recv(1 << 20)  # SSLEOFError here would mean no close_notify
            if not data:
                break
            received += len(data)
        assert received >= sent
        assert server.wait_for(lambda: server.channel_count() == 0, timeout=1.5)
    finally:
        c.close()
    assert_no_tracebacks(server)


# --- the error hook ------------------------------------------------------------------

class CustomHook(ChatEcho):
    def handle_tls_error(self, exc):
        self.server.events.append(("custom hook", type(exc).__name__))
        self.close()


def test_handle_tls_error_is_overridable(server):
    port = server.listen(CustomHook, implicit_tls=True)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"EHLO plaintext on a TLS port\r\n")
    assert wait_closed(s)
    s.close()
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert server.events == [("custom hook", "SSLError")]
    assert server.logs == []  # the override logs nothing


# --- client channels ------------------------------------------------------------------

class ClientChannel(Recording, tls.TLSMixin, asynchat.async_chat):
    """A TLS client channel: pushes a greeting once the handshake is done."""

    def __init__(self, server, address, context, hostname):
        self.server = server
        self.received = []
        self.connected_tcp = False
        self.info = None
        asynchat.async_chat.__init__(self, map=server.map)
        self.set_terminator(b"\n")
        self.buf = []
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.push(b"early\n")  # queued before the handshake: goes out encrypted
        self.connect_tls(address, context, server_hostname=hostname)

    def handle_connect(self):
        self.connected_tcp = True

    def handle_tls_established(self):
        self.info = (self.tls_version(), self.cipher(), self.getpeercert(),
                     self.selected_alpn_protocol())
        self.server.events.append(("client tls up", self.tls_version()))
        self.push(b"hello\n")

    def collect_incoming_data(self, data):
        self.buf.append(data)

    def found_terminator(self):
        self.received.append(b"".join(self.buf))
        self.buf = []


def test_client_channel_sni_alpn_and_verification(impl, server_cert, ca):
    sni = []
    with serving(LoopThread(tls=make_server_ctx(server_cert, alpn=["x-test"], sni_log=sni)),
                 ChatEcho, implicit_tls=True) as (srv, port):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(ctx)
        ctx.set_alpn_protocols(["x-test"])
        client = srv.call(lambda: ClientChannel(srv, (HOST, port), ctx, "localhost"))
        assert srv.wait_for(lambda: client.received == [b"early", b"hello"])
        assert client.connected_tcp
        version, cipher, peercert, alpn = client.info
        assert version == "TLSv1.3" and alpn == "x-test"
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        assert sni == ["localhost"]
        srv.call(client.close)
        assert srv.wait_for(lambda: srv.channel_count() == 0)
        assert tls_errors(srv) == []
        assert_no_tracebacks(srv)


def test_client_channel_hostname_mismatch_goes_to_the_hook(impl, server_ctx, client_ctx):
    with serving(LoopThread(tls=server_ctx), ChatEcho, implicit_tls=True) as (srv, port):
        client = srv.call(lambda: ClientChannel(srv, (HOST, port), client_ctx, "wrong.example"))
        assert srv.wait_for(lambda: ("tls error", "SSLCertVerificationError") in srv.events)
        assert srv.wait_for(lambda: srv.channel_count() == 0)
        assert client.received == [] and client.info is None
        client_errors = [m for m in tls_errors(srv) if "certificate verify failed" in m]
        assert len(client_errors) == 1 and "Hostname mismatch" in client_errors[0]
        assert_no_tracebacks(srv)


def test_client_channel_default_context_verifies(impl, server_ctx):
    # the default context trusts only the system CAs: our test CA fails
    with serving(LoopThread(tls=server_ctx), ChatEcho, implicit_tls=True) as (srv, port):

        def make():
            chan = ClientChannel.__new__(ClientChannel)
            chan.server = srv
            chan.received, chan.connected_tcp, chan.info, chan.buf = [], False, None, []
            asynchat.async_chat.__init__(chan, map=srv.map)
            chan.set_terminator(b"\n")
            chan.create_socket(socket.AF_INET, socket.SOCK_STREAM)
            chan.connect_tls((HOST, port))  # context=None, hostname from the address
            return chan

        srv.call(make)
        assert srv.wait_for(lambda: ("tls error", "SSLCertVerificationError") in srv.events)
        assert srv.wait_for(lambda: srv.channel_count() == 0)
        assert_no_tracebacks(srv)


# --- issue 22: back-pressure, early client output, threads, misuse -------------------

BACK_PRESSURE = {
    "async_chat-high-water": HardenedChat,
    "dispatcher_with_send-flow-control": FlowControlledSend,
}


def _connect(port, client_ctx, transport):
    raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    if transport == "plain":
        return raw
    return client_ctx.wrap_socket(raw, server_hostname=HOST)


def _stall(srv, c):
    """Send the bulk request from client ``c`` in one write (one TLS record)
    and wait until the server's channel has stopped reading."""
    request = bulk_request()
    assert len(request) == 16000
    c.sendall(request)
    assert srv.wait_for(lambda: srv.channels and srv.channels[0].stalled())


def _read_exactly(sock, size):
    """Read ``size`` bytes; AssertionError naming the count if the stream stops."""
    got = 0
    data = []
    sock.settimeout(CLIENT_TIMEOUT)
    while got < size:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError("transfer stopped at %d of %d bytes" % (got, size))
        if not chunk:
            raise AssertionError("peer closed at %d of %d bytes" % (got, size))
        data.append(chunk)
        got += len(chunk)
    return b"".join(data)


@pytest.mark.parametrize("transport", ["tls", "plain"])
@pytest.mark.parametrize("handler", sorted(BACK_PRESSURE))
def test_late_reader_behind_back_pressure_gets_every_byte(
        impl, server_ctx, client_ctx, handler, transport):
    # Issue 22, 1: one TLS record of 500 pipelined requests (16,000 bytes),
    # each answered with 16 KiB, to a peer that starts reading late.  The
    # handler stops reading while its replies wait (async_chat's high water,
    # the README's hardening configuration; dispatcher_with_send's usual
    # flow-control readable()), so most requests wait decrypted inside the
    # SSL object, where epoll cannot see them.  Plain TCP is the reference:
    # it delivers everything.  The loop runs on a 30 s timeout, so a channel
    # that waits for nothing costs no CPU; one that spins shows.
    # (max_connections: the listener's part of the hardening settings)
    with serving(LoopThread(tls=server_ctx, loop_timeout=30.0), BACK_PRESSURE[handler],
                 implicit_tls=transport == "tls", max_connections=100) as (srv, port):
        wall0, cpu0 = time.monotonic(), time.process_time()
        c = _connect(port, client_ctx, transport)
        try:
            _stall(srv, c)
            # the peer does not read: the loop must sleep.  (A measuring
            # window, not a synchronisation; the bound is generous: a spin
            # uses the whole window.)
            window0 = time.process_time()
            time.sleep(0.5)
            idle_cpu = time.process_time() - window0
            assert idle_cpu < 0.25, "loop spun: %.2f s CPU in 0.5 s" % idle_cpu
            total = BULK_REQUESTS * BULK_REPLY_SIZE
            got = _read_exactly(c, total)
            assert got.count(b"\n") == BULK_REQUESTS
        finally:
            c.close()
        assert srv.wait_for(lambda: srv.channel_count() == 0), "channel not freed"
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        # guards against a spin, not a speed figure: the whole test (the
        # client's own reading and decryption included) uses less CPU time
        # than half its wall time
        assert cpu < wall / 2, (cpu, wall)
        assert tls_errors(srv) == []
        assert_no_tracebacks(srv)


@pytest.mark.parametrize("handler", sorted(BACK_PRESSURE))
def test_peer_resetting_while_reading_is_paused_frees_the_channel(
        impl, server_ctx, client_ctx, handler):
    # Issue 22, 1: the peer goes away (a reset) while the channel holds
    # undelivered input and queued output: closed, no traceback (a write
    # that meets the reset is a disconnect, not an SSLEOFError traceback)
    with serving(LoopThread(tls=server_ctx, loop_timeout=30.0),
                 BACK_PRESSURE[handler], implicit_tls=True) as (srv, port):
        c = tls_client(port, client_ctx)
        _stall(srv, c)
        c.close()  # unread replies in its buffer: a reset
        assert srv.wait_for(lambda: srv.channel_count() == 0), "channel not freed"
        assert_no_tracebacks(srv)


@pytest.mark.parametrize("handler", sorted(BACK_PRESSURE))
def test_peer_closing_after_reading_what_came_frees_the_channel(
        impl, server_ctx, client_ctx, handler):
    # Issue 22, 1, as the review saw it: the peer reads what arrives until
    # nothing more comes (1 s of silence, or all of it), then closes with
    # nothing unread (a FIN, no reset).  The channel must end, its
    # descriptor freed, with the loop idle.
    with serving(LoopThread(tls=server_ctx, loop_timeout=30.0),
                 BACK_PRESSURE[handler], implicit_tls=True) as (srv, port):
        c = tls_client(port, client_ctx)
        got = 0
        try:
            _stall(srv, c)
            c.settimeout(1.0)
            while got < BULK_REQUESTS * BULK_REPLY_SIZE:
                try:
                    chunk = c.recv(1 << 20)
                except socket.timeout:
                    break  # the server stopped sending
                if not chunk:
                    break
                got += len(chunk)
        finally:
            c.close()
        cpu0, wall0 = time.process_time(), time.monotonic()
        freed = srv.wait_for(lambda: srv.channel_count() == 0, timeout=3.0)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        assert freed, "channel not freed after the peer closed (%d bytes received, " \
            "%.1f s CPU in %.1f s)" % (got, cpu, wall)
        assert got == BULK_REQUESTS * BULK_REPLY_SIZE
        assert_no_tracebacks(srv)


class EarlyClient(tls.TLSMixin, asyncore.dispatcher_with_send):
    """A client that sends a credential as soon as it can (issue 22, 2)."""

    early = b"AUTH PLAIN c2VjcmV0\r\n"

    def __init__(self, srv, address, context, when):
        asyncore.dispatcher_with_send.__init__(self, map=srv.map)
        self.srv = srv
        self.when = when
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect_tls(address, context)
        if when == "after connect_tls":
            # TCP is up before the loop has seen the connect complete
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while True:
                try:
                    self.socket.getpeername()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
            self.send_early()

    def send_early(self):
        self.send(self.early)

    def handle_connect(self):
        if self.when == "handle_connect":
            self.send_early()

    def handle_read(self):
        self.recv(4096)

    def log_info(self, message, type="info"):
        self.srv.logs.append((type, message))


class EarlyBareClient(EarlyClient, asyncore.dispatcher):
    """The same on a bare dispatcher with its own output buffer."""

    out = b""

    def send_early(self):
        self.out += self.early
        self.handle_write()

    def writable(self):
        return not self.connected or bool(self.out)

    def handle_write(self):
        if self.out:
            self.out = self.out[asyncore.dispatcher.send(self, self.out):]


@pytest.mark.parametrize("when", ["handle_connect", "after connect_tls"])
@pytest.mark.parametrize("base", ["dispatcher_with_send", "dispatcher"])
def test_client_output_before_the_handshake_goes_out_encrypted(
        impl, server_ctx, ca, when, base):
    # Issue 22, 2: seen on the wire by a raw TCP server that records the
    # first bytes, then runs the handshake and reads the credential
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    cls = EarlyClient if base == "dispatcher_with_send" else EarlyBareClient
    listener = socket.create_server((HOST, 0))
    listener.settimeout(CLIENT_TIMEOUT)
    srv = LoopThread(loop_timeout=30.0)
    try:
        srv.start()
        address = listener.getsockname()
        srv.call(lambda: cls(srv, address, client_ctx, when))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            first = b""
            while len(first) < 5:
                first = conn.recv(5, socket.MSG_PEEK)
                assert first
            assert first[:1] == b"\x16", first  # a TLS handshake record
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                assert read_until(s, b"\r\n") == EarlyClient.early
        assert_no_tracebacks(srv)
    finally:
        srv.stop()
        listener.close()


class ThreadClosed(ChatEcho):
    tls_shutdown_timeout = 0.5


@pytest.mark.parametrize("loop_timeout", [30.0, None])
def test_close_from_another_thread_honours_the_shutdown_timeout(
        impl, server_ctx, client_ctx, loop_timeout):
    # Issue 22, 3: close() from a thread that is not the loop's, while
    # close_notify cannot go out (the peer reads nothing) and the loop
    # sleeps in its wait (30 s, or no timeout at all)
    with serving(LoopThread(tls=server_ctx, loop_timeout=loop_timeout),
                 ThreadClosed, implicit_tls=True) as (srv, port):
        c = tls_client(port, client_ctx)
        try:
            c.sendall(b"ping\n")
            read_until(c, b"ping\n")
            chan = srv.channels[0]

            def fill():
                try:
                    while True:
                        chan.socket.send(b"z" * 65536)
                except ssl.SSLWantWriteError:
                    pass

            srv.call(fill)
            t0 = time.monotonic()
            chan.close()  # this thread: not the loop's
            closed = srv.wait_for(lambda: srv.channel_count() == 0, timeout=5)
            waited = time.monotonic() - t0
            assert closed, "still open after 5 s"
            assert waited < 2.0, waited  # 0.5 s timeout, generous bound
        finally:
            c.close()
        assert_no_tracebacks(srv)


class NaiveStartTLS(ChatEcho):
    """STARTTLS as the docs showed it before issue 22: no check."""

    def found_terminator(self):
        line = b"".join(self.buf)
        if line.strip() == b"STARTTLS":
            self.buf = []
            self.push(b"220 ready\n")
            self.server.events.append(("started", self.start_tls(self.server.tls)))
        else:
            super().found_terminator()


def test_a_second_start_tls_is_a_documented_no_op(server, client_ctx):
    # Issue 22, 4: a second STARTTLS over TLS; start_tls() returns False,
    # and there is no traceback and no disconnect
    port = server.listen(NaiveStartTLS)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS\n")
    assert read_until(s, b"\n") == b"220 ready\n"
    with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
        c.sendall(b"STARTTLS\n")
        assert read_until(c, b"\n") == b"220 ready\n"  # (the handler's mistake)
        c.sendall(b"still here\n")
        assert read_until(c, b"still here\n") == b"still here\n"
    assert [e[1] for e in server.events if e[0] == "started"] == [True, False]
    assert_no_tracebacks(server)


def test_a_second_starttls_is_answered_503_as_the_docs_show(server, client_ctx):
    port = server.listen(ChatEcho)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS\n")
    assert read_until(s, b"\n") == b"220 ready\n"
    with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
        c.sendall(b"STARTTLS\n")
        assert read_until(c, b"\n") == b"503 TLS already active\n"
        c.sendall(b"after\n")
        assert read_until(c, b"after\n") == b"after\n"
    assert_no_tracebacks(server)


class CustomSSLSocket(ssl.SSLSocket):
    pass


class BareChat(tls.TLSMixin, asynchat.async_chat):
    pass


def test_a_context_with_a_custom_sslsocket_class_is_refused_up_front(impl, server_cert, ca):
    # Issue 22, 5: refused where it is given, with a clear error, before
    # any connection is made or changed
    server_ctx = make_server_ctx(server_cert)
    server_ctx.sslsocket_class = CustomSSLSocket
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    client_ctx.sslsocket_class = CustomSSLSocket
    srv = LoopThread(tls=server_ctx)
    try:
        with pytest.raises(TypeError, match="sslsocket_class"):
            srv.listen(ChatEcho, implicit_tls=True)  # the listener refuses it
    finally:
        srv.stop()
    a, b = socket.socketpair()
    try:
        chan = BareChat(a, map={})
        with pytest.raises(TypeError, match="sslsocket_class"):
            chan.start_tls(server_ctx)
        assert not chan.tls_active and chan.socket is a
        client = BareChat(map={})
        client.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(TypeError, match="sslsocket_class"):
            client.connect_tls((HOST, 1), client_ctx)
        assert not client.connecting
        client.close()
        wrapped = server_ctx.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
        with pytest.raises(TypeError, match="sslsocket_class"):
            BareChat(wrapped, map={})
        wrapped.close()
        chan.close()
    finally:
        a.close()
        b.close()


class StartTLSRace(ChatEcho):
    """STARTTLS while another thread push()es (issue 22, "also check")."""

    def found_terminator(self):
        line = b"".join(self.buf)
        if line.strip() != b"STARTTLS":
            return super().found_terminator()
        self.buf = []
        self.push(b"220 ready\n")
        started = threading.Event()

        def other_thread():
            started.set()
            self.push(b"from another thread\n")

        take_output = self._tls_take_output

        def take_output_then_race():
            # between taking the plaintext replies and wrapping the socket,
            # another thread pushes; it must wait for the upgrade, not go
            # out in plaintext ahead of the 220 or onto the detached socket
            plain = take_output()
            thread = threading.Thread(target=other_thread)
            thread.start()
            started.wait(CLIENT_TIMEOUT)
            thread.join(0.2)  # (time for the push to do harm, if it can)
            self.server.events.append(("pushed during upgrade", not thread.is_alive()))
            self.race_thread = thread
            return plain

        self._tls_take_output = take_output_then_race
        self.start_tls(self.server.tls)
        del self._tls_take_output


def test_push_from_another_thread_during_start_tls_waits_for_the_upgrade(server, client_ctx):
    port = server.listen(StartTLSRace)
    server.start()
    s = plain_line_client(port)
    s.sendall(b"STARTTLS\n")
    assert read_until(s, b"\n") == b"220 ready\n"
    with client_ctx.wrap_socket(s, server_hostname=HOST) as c:
        assert read_until(c, b"\n") == b"from another thread\n"
    server.channels[0].race_thread.join(CLIENT_TIMEOUT)
    assert ("pushed during upgrade", False) in server.events
    assert_no_tracebacks(server)


def test_close_from_another_thread_waits_for_a_handshake_step(
        server, client_ctx, monkeypatch):
    # a close() from another thread must not close the descriptor while the
    # loop's thread is inside do_handshake() on it
    order = []
    inside = threading.Event()
    original = tls._TLSSocket.do_handshake

    def slow_handshake(self, *args):
        if not inside.is_set():
            inside.set()
            time.sleep(0.3)
            order.append("handshake step done")
        return original(self, *args)

    monkeypatch.setattr(tls._TLSSocket, "do_handshake", slow_handshake, raising=False)
    port = server.listen(ChatEcho, implicit_tls=True)
    server.start()
    raw = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
    c = client_ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)
    try:
        c.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            c.do_handshake()  # the ClientHello goes out
        assert inside.wait(CLIENT_TIMEOUT)
        server.channels[0].close()  # this thread, while the step runs
        order.append("close returned")
    finally:
        c.close()
    assert order == ["handshake step done", "close returned"]
    assert server.wait_for(lambda: server.channel_count() == 0)
    assert_no_tracebacks(server)
