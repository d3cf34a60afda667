"""TLS channels: implicit TLS, STARTTLS and clients for asyncore/asynchat.

Two mixins, put first in a class's bases:

* ``TLSMixin`` for channels (``asyncore.dispatcher``,
  ``dispatcher_with_send``, ``asynchat.async_chat``): ``start_tls()``
  upgrades the channel (STARTTLS, or implicit TLS from ``__init__``),
  ``connect_tls()`` connects a client and then runs the handshake.  The
  handshake, ``close_notify`` and every "want read / want write" of the TLS
  layer are driven by the loop: nothing here ever blocks it.
* ``TLSListenerMixin`` for listeners: ``accept()`` hands out TLS sockets
  whose handshake a ``TLSMixin`` handler then drives (implicit TLS, wrapped
  at accept).

Failures of the TLS layer (a failed or timed-out handshake, a plaintext or
garbage peer, a protocol error later on) go to one hook,
``handle_tls_error(exc)``, which by default logs one line and closes.  The
reference and a migration guide for hand-written ``SSLConnection`` mixins
are in ``docs/tls.md``.
"""

import contextlib
import errno
import socket
import ssl
import sys
import threading

from . import _runner, asyncore
from ._impl import chat_impl as _kernels

__all__ = ["TLSMixin", "TLSListenerMixin"]

# channel states
_PLAIN = 0  # no TLS (yet): the library's own behaviour
_FLUSHING = 1  # wrapped by start_tls(); plaintext replies still going out
_HANDSHAKE = 2  # wrapped; the loop drives do_handshake()
_OPEN = 3  # handshake done
_CLOSING = 4  # close(): our close_notify waits for room in the socket
_FAILED = 5  # handle_tls_error() ran; nothing more is read or written
_CLOSED = 6

# the peer ended the stream: close_notify, a ragged EOF, a vanished peer
_EOF_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
_NO_LOCK = contextlib.nullcontext()
_WANT_ERRORS = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_object_delattr = object.__delattr__
# send() errors that mean "try later" on the plaintext path
_RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})


class _TLSSocket(ssl.SSLSocket):
    """An ``ssl.SSLSocket`` that remembers which way the TLS layer is stuck.

    Sockets from ``wrap_socket`` get this class (``__class__`` is swapped;
    the layout is the same), so the channel can turn "want read" from a
    ``send`` and "want write" from a ``recv`` (renegotiation, key updates)
    into the right readable/writable interest instead of spinning.
    ``tls_gate`` holds application data back while the handshake runs
    (an ``SSL_write`` would otherwise run the handshake itself) and after
    ``close_notify``.
    """

    tls_gate = False
    tls_read_wants_write = False
    tls_write_wants_read = False
    tls_slow = False  # gate closed, or a blocked write to finish: send() slow path
    proxy_header = None  # set by _adopt() (asynchat_core.proxy)

    def getpeername(self):
        # the client a PROXY protocol header named, as before the wrap
        header = self.proxy_header
        if header is not None and header.source is not None:
            return header.source
        return super().getpeername()

    # recv()/send(): compiled in the compiled build (_chat_py.py, the TLS
    # layer's kernels: no Python frame per call); the same code runs as
    # Python in the Python build
    recv = _kernels.tls_sock_recv
    send = _kernels.tls_sock_send

    def set_gate(self, closed):
        """Hold application data back (True) or let it through (False)."""
        self.tls_gate = closed
        self._update_slow()

    def _update_slow(self):
        self.tls_slow = self.tls_gate or self.tls_retry is not None or bool(self.tls_ahead)

    # An SSL_write that could not finish has written part of the buffer
    # (whole records) and keeps the next record inside OpenSSL; it must be
    # retried with a buffer that starts with the same bytes and is at least
    # as long (SSL_R_BAD_LENGTH / BAD_WRITE_RETRY otherwise), and then
    # reports the whole buffer sent.  async_chat retries with the whole
    # refused buffer, but a handler's own send() calls or a queue edited in
    # between (discard_buffers, out_buffer) may not.  So the socket keeps the failed
    # buffer, retries with whichever is longer, and acknowledges bytes
    # written beyond the caller's piece when the caller gets to them.
    tls_retry = None  # the buffer an SSL_write left unfinished
    tls_ahead = b""  # bytes written that no caller has been told of yet

    def _note_retry(self, buf, exc):
        if isinstance(exc, ssl.SSLWantReadError):
            self.tls_write_wants_read = True
        retry = self.tls_retry
        if retry is None or len(buf) >= len(retry):
            self.tls_retry = buf if type(buf) is bytes else bytes(buf)
        self.tls_slow = True

    def _send_retry(self, data, flags):
        ahead = self.tls_ahead
        if ahead:
            count = min(len(ahead), len(data))
            if bytes(data[:count]) != ahead[:count]:
                # the caller dropped what it had queued (discard_buffers):
                # those bytes are on the wire already; go on with the new
                self.tls_ahead = b""
                self._update_slow()
                return self.send(data, flags)
            self.tls_ahead = ahead[count:]
            self._update_slow()
            return count
        retry = self.tls_retry
        size = min(len(retry), len(data))
        same = bytes(data[:size]) == retry[:size]
        buf = data if same and len(data) >= len(retry) else retry
        try:
            sent = ssl.SSLSocket.send(self, buf, flags)
        except _WANT_ERRORS as exc:
            self._note_retry(buf, exc)
            raise
        except _EOF_ERRORS as exc:
            raise _peer_gone(exc) from None
        self.tls_retry = None
        if not same:
            self._update_slow()
            return 0  # the old bytes went out; the caller's are still to send
        if sent > len(data):
            self.tls_ahead = bytes(buf[len(data):sent])
            self._update_slow()
            return len(data)
        self._update_slow()
        return sent

    def tls_flush_retry(self):
        """Finish a pending SSL_write (before close_notify); raises want errors."""
        retry = self.tls_retry
        if retry is not None:
            ssl.SSLSocket.send(self, retry)
            self.tls_retry = None
            self._update_slow()


def _peer_gone(exc):
    # a write to a peer that went away (SSLEOFError: the transport broke
    # under OpenSSL): what a plain socket raises, which the library's send
    # paths turn into handle_close(), as for plain TCP
    return BrokenPipeError(errno.EPIPE, "TLS peer went away (%s)" % _describe(exc))


def _adopt(sock, origin=None):
    """Give ``sock`` (an ``ssl.SSLSocket``) the ``_TLSSocket`` behaviour,
    and the PROXY protocol header of ``origin``, the socket it wraps."""
    if type(sock) is ssl.SSLSocket:
        sock.__class__ = _TLSSocket
        # every flag in the instance's dict, where the compiled kernels
        # read them (_chat_py.py, _tls_sock_plain_of)
        sock.tls_gate = sock.tls_slow = False
        sock.tls_read_wants_write = sock.tls_write_wants_read = False
    header = getattr(origin, "proxy_header", None)
    if header is not None:  # (asynchat_core.proxy.ProxiedSocket)
        sock.proxy_header = header
        sock.proxy_peer = origin.proxy_peer
    return sock


_CUSTOM_CLASS = (
    "asynchat_core.tls needs ssl.SSLSocket sockets, not %s (SSLContext.sslsocket_class): "
    "the channel drives the SSL object itself and would bypass the subclass's methods"
)


def _check_context(context):
    """Refuse a context whose ``sslsocket_class`` is not ``ssl.SSLSocket``."""
    cls = getattr(context, "sslsocket_class", ssl.SSLSocket)
    if cls is not ssl.SSLSocket:
        raise TypeError(_CUSTOM_CLASS % cls.__qualname__)


def _check_socket(sock):
    if type(sock) is not ssl.SSLSocket and not isinstance(sock, _TLSSocket):
        raise TypeError(_CUSTOM_CLASS % type(sock).__qualname__)


def _loop_of(obj):
    """The ``Loop`` serving ``obj``'s map, or None (no loop() ran on it yet)."""
    map = getattr(obj, "_map", None)
    return None if map is None else _runner.loop_of(map)


def _set_gate(sock, closed):
    if isinstance(sock, _TLSSocket):
        sock.set_gate(closed)


def _describe(exc):
    # one line, no traceback: "[SSL: WRONG_VERSION_NUMBER] wrong version number"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class TLSMixin:
    """TLS for a channel; put it before ``dispatcher``/``async_chat`` in the bases.

    Works the same on ``asyncore.dispatcher``, ``dispatcher_with_send`` and
    ``asynchat.async_chat``, with the compiled and the Python build.
    """

    #: Context used by ``start_tls()``/``connect_tls()`` when given none.
    tls_context = None
    #: Seconds a handshake may take before ``handle_tls_error(TimeoutError)``
    #: closes the channel (None: no deadline).
    tls_handshake_timeout = 30.0
    #: Seconds ``close()`` waits for room to send ``close_notify`` (None or
    #: 0: close at once; ``close_notify`` then goes out only if it fits).
    tls_shutdown_timeout = 2.0

    _tls_state = _PLAIN
    _tls_sock = None  # the _TLSSocket, once wrapped
    _tls_timer = None  # handshake or shutdown deadline (call_later handle)
    _tls_want_write = False  # handshake/shutdown waits for writability
    _tls_plain_out = b""  # plaintext replies to send before wrapping
    _tls_wrap_args = None  # (context, server_side, server_hostname)
    _tls_more_pending = False  # decrypted bytes left in the SSL object
    _tls_shadowing = False  # readable/writable shadowed on the instance

    # ------------------------------------------------------------ public API

    def start_tls(self, context=None, *, server_side=True, server_hostname=None):
        """Switch this connected channel to TLS.

        Output already queued (``push``, producers, ``out_buffer``) is sent
        in plaintext first, then the socket is wrapped and the loop drives
        the handshake; output queued from now on goes out encrypted once it
        is done.  Input received but not yet consumed (``ac_in_buffer``,
        ``incoming``) is discarded: plaintext a peer pipelined behind its
        STARTTLS command is never handed to the handler.

        Returns True; returns False and changes nothing if TLS was already
        started on this channel (a repeated STARTTLS: check ``tls_active``
        first and answer it, as SMTP's ``503``).  ``ValueError`` without a
        context on the server side; ``TypeError`` for a context whose
        ``sslsocket_class`` is not ``ssl.SSLSocket``.
        """
        if self._tls_state != _PLAIN:
            return False
        context = self._tls_pick_context(context, server_side)
        _check_context(context)
        if not server_side and server_hostname is None and context.check_hostname:
            raise ValueError("a client channel with check_hostname needs server_hostname")
        self._tls_wrap_args = (context, server_side, server_hostname)
        # async_chat's output lock: a push() from another thread waits
        # until the socket is wrapped (its reply then waits for the
        # handshake), instead of going out in plaintext ahead of the
        # replies taken here, or onto the socket being detached
        with self._tls_guard():
            self._tls_discard_input()
            plain = self._tls_take_output()
            # wrapped at once: from here on the library's own sends are held
            # back (the TLS socket's gate) until the handshake is done
            self._tls_wrap()
            if plain and self._tls_state == _HANDSHAKE:
                self._tls_plain_out = plain
                self._tls_state = _FLUSHING
                self._tls_flush_plain()
        if self._tls_state == _FLUSHING or not server_side:
            self._tls_sync()  # wait for room, not for input
        # a server handshake starts by waiting for input: the channel's own
        # predicates usually say so already, and the first event corrects them
        return True

    def connect_tls(self, address, context=None, *, server_hostname=None):
        """Connect to ``address``, then run a client handshake.

        ``context`` defaults to ``tls_context``, else
        ``ssl.create_default_context()`` (certificate and hostname checks
        on); ``server_hostname`` (SNI and the name checked) defaults to the
        host of ``address``.  ``handle_connect()`` runs when TCP connects,
        ``handle_tls_established()`` when the handshake is done; output
        given before then (``push``, ``send``) waits and goes out encrypted.
        """
        context = self._tls_pick_context(context, False)
        _check_context(context)
        if server_hostname is None and isinstance(address, tuple):
            server_hostname = address[0]
        # Wrapped before the connect, so that no byte can leave in
        # plaintext: a send() from handle_connect(), or one made as soon as
        # TCP is up, meets the TLS socket's gate and waits for the handshake
        # (the socket creates its SSL object when it connects).
        self._tls_wrap_args = (context, False, server_hostname)
        self._tls_wrap()
        if self._tls_state == _HANDSHAKE:
            self.connect(address)
            if self._tls_state == _HANDSHAKE:
                self._tls_sync()  # a client speaks first: wait for writability

    @property
    def tls_active(self):
        """True once the channel's socket is a TLS socket."""
        return self._tls_sock is not None

    @property
    def tls_established(self):
        """True while the handshake is done and the channel not closed."""
        return self._tls_state == _OPEN

    def getpeercert(self, binary_form=False):
        """The peer's certificate (``ssl.SSLSocket.getpeercert``), or None."""
        sock = self._tls_ready()
        return None if sock is None else sock.getpeercert(binary_form)

    def tls_version(self):
        """The negotiated protocol ("TLSv1.3"...), or None."""
        sock = self._tls_ready()
        return None if sock is None else sock.version()

    def cipher(self):
        """``(name, protocol, bits)`` of the negotiated cipher, or None."""
        sock = self._tls_ready()
        return None if sock is None else sock.cipher()

    def selected_alpn_protocol(self):
        """The ALPN protocol both ends agreed on, or None."""
        sock = self._tls_ready()
        return None if sock is None else sock.selected_alpn_protocol()

    # ------------------------------------------------------------------ hooks

    def handle_tls_established(self):
        """The handshake is done; override to react (the default does nothing)."""

    def handle_tls_error(self, exc):
        """The TLS layer failed (``exc``): log one line and close.

        Called for a failed or timed-out handshake, a plaintext or garbage
        peer, a certificate or hostname check that failed, and TLS protocol
        errors later on.  An override should close the channel too.
        """
        self.log_info("TLS error with %s: %s" % (self._tls_peer(), _describe(exc)), "error")
        self.close()

    # ------------------------------------------------------- channel methods

    def set_socket(self, sock, map=None):
        """Adopt ``sock``; a TLS socket whose handshake has not run yet (from
        ``TLSListenerMixin`` or a hand-made ``wrap_socket``) gets its
        handshake driven by the loop."""
        if isinstance(sock, ssl.SSLSocket) and self._tls_state in (_PLAIN, _CLOSED):
            _check_socket(sock)
            self._tls_attach(_adopt(sock), sock.server_side)
        super().set_socket(sock, map)

    # The TLS layer's interest (handshake, close_notify, a renegotiation)
    # is given to the loop by shadowing readable()/writable() with instance
    # attributes while it differs from the channel's own; in steady state
    # the class's predicates answer, so a channel whose class does not
    # override them stays "state-driven" (the loop asks only after its
    # events: README, "The event loop").  Every change is made inside an
    # event of the channel, where the loop asks again afterwards.

    def _tls_readable(self):
        state = self._tls_state
        if state == _OPEN:
            if self._tls_sock.tls_write_wants_read:
                return True
            return type(self).readable(self)
        if state == _HANDSHAKE or state == _CLOSING:
            return not self._tls_want_write
        return False  # flushing plaintext (input now predates the upgrade), failed

    def _tls_writable(self):
        state = self._tls_state
        if state == _OPEN:
            sock = self._tls_sock
            if sock.tls_read_wants_write:
                return True
            if self._tls_more_pending and type(self).readable(self):
                # input waits in the SSL object and the handler takes it
                # again: a write event delivers it (a read event never
                # comes for bytes the kernel no longer holds)
                return True
            if sock.tls_write_wants_read:
                return False  # SSL_write needs the peer first: wait for input
            # (input held back by the handler's readable() waits; its
            # output goes on, and draining it is what lets it read again)
            return type(self).writable(self)
        if state == _HANDSHAKE or state == _CLOSING:
            return self._tls_want_write
        return state == _FLUSHING

    def _tls_sync(self):
        """Shadow or unshadow the predicates after a TLS state change."""
        state = self._tls_state
        if state == _OPEN:
            sock = self._tls_sock
            needed = (sock.tls_read_wants_write or sock.tls_write_wants_read
                      or self._tls_more_pending)
        else:
            needed = state != _PLAIN and state != _CLOSED
        if needed != self._tls_shadowing:
            self._tls_shadowing = needed
            if needed:
                self.readable = self._tls_readable
                self.writable = self._tls_writable
            else:
                # (deleted, not popped from __dict__: reading __dict__
                # materialises the instance dict on 3.11+, which turns every
                # later lookup on the channel into the slow generic one)
                for name in ("readable", "writable"):
                    try:
                        _object_delattr(self, name)
                    except AttributeError:
                        pass

    # The established state's read event is compiled (_chat_py.py,
    # tls_handle_read_event, the same code as Python in the Python build):
    # read, then deliver what the SSL object already holds, and re-shadow
    # only if something changed.  Every other state comes here.
    handle_read_event = _kernels.tls_handle_read_event

    def _tls_read_event_other(self):
        state = self._tls_state
        if state == _HANDSHAKE and not self.connected and self.connecting:
            self.handle_connect_event()  # connect_tls(): TCP is up (or failed: raises)
            state = self._tls_state
            if state == _OPEN:
                _kernels.tls_handle_read_event(self)
                return
        if state == _HANDSHAKE:
            self._tls_step_handshake()
        elif state == _CLOSING:
            self._tls_step_shutdown()
        elif state == _PLAIN:
            super().handle_read_event()
            if self._tls_state == _PLAIN:
                return  # (else start_tls() ran in a handler: follow it)
        self._tls_sync()

    def handle_write_event(self):
        state = self._tls_state
        if state == _HANDSHAKE and not self.connected and self.connecting:
            self.handle_connect_event()  # connect_tls(): TCP is up (or failed: raises)
            state = self._tls_state
        if state == _OPEN:
            sock = self._tls_sock
            if sock.tls_read_wants_write:
                sock.tls_read_wants_write = False
                self.handle_read()  # the read that needed to write first
                self._tls_drain_pending(sock)
            else:
                # Output makes progress whatever waits in the SSL object:
                # a handler that stops reading while its replies are queued
                # (high water, flow control) reads again once they drain,
                # and only then gets the input held there.
                if not self._tls_more_pending or type(self).writable(self):
                    super().handle_write_event()
                if self._tls_more_pending and self._tls_state == _OPEN and self._tls_sock is sock:
                    self._tls_drain_pending(sock)
        elif state == _HANDSHAKE:
            self._tls_step_handshake()
        elif state == _CLOSING:
            self._tls_step_shutdown()
        elif state == _FLUSHING:
            self._tls_flush_plain()
        elif state == _PLAIN:
            super().handle_write_event()
            if self._tls_state == _PLAIN:
                return
        self._tls_sync()

    def handle_error(self):
        """TLS errors go to ``handle_tls_error``; TLS EOF to ``handle_close``."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError) and self._tls_sock is not None:
            if isinstance(exc, _WANT_ERRORS):
                return  # a would-block that reached a hand-written handle_read
            if isinstance(exc, _EOF_ERRORS):
                self.handle_close()
                return
            self._tls_fail(exc)
            return
        super().handle_error()

    def close(self):
        """Close; an established TLS channel sends ``close_notify`` first.

        If the socket has no room for it, the channel waits (at most
        ``tls_shutdown_timeout`` seconds, not reading) for writability; a
        second ``close()`` closes at once.  The peer's own ``close_notify``
        is not waited for (RFC 8446, 6.1).

        From another thread than the loop's, ``close()`` first waits for
        the channel's event in progress, if any (a handshake step), so the
        TLS socket is never used by two threads; the wait for room is then
        bounded by a timer thread, since nothing wakes the loop's own wait.
        """
        lp = _loop_of(self)
        if lp is None:
            self._tls_close(None)
            return
        lock = lp.lock
        if lock.try_acquire():
            # the loop's thread, or no pass runs: nothing dispatches meanwhile
            try:
                self._tls_close(None)
            finally:
                lock.release()
            return
        # another thread is in a pass (dispatching, or asleep in its wait)
        with lp.guard:
            self._tls_close(lp)

    def _tls_close(self, foreign):
        # ``foreign``: the loop another thread runs, or None
        if self._tls_state == _OPEN:
            self._tls_state = _CLOSING
            self._tls_want_write = False
            sock = self._tls_sock
            # replies held for pipelined input go first (async_chat's close
            # would send them; sending needs the gate still open)
            self._tls_flush_held()
            _set_gate(sock, True)
            self.connected = False
            if self._tls_step_shutdown():
                return
            timeout = self.tls_shutdown_timeout
            if timeout:
                self._tls_cancel_timer()
                if foreign is None:
                    self._tls_timer = asyncore.call_later(timeout, self._tls_deadline, _CLOSING)
                else:
                    # the loop may sleep without limit (loop(timeout=None)):
                    # the deadline runs in a thread of its own, under the
                    # loop's guard, as any close() from another thread
                    timer = threading.Timer(timeout, self._tls_foreign_deadline, (foreign,))
                    timer.daemon = True
                    self._tls_timer = timer
                    timer.start()
                self._tls_sync()
                asyncore._loop_touch(self)  # close() may come from outside the channel's events
                return
        self._tls_close_now()

    # -------------------------------------------------------------- internals

    def _tls_flush_held(self):
        # async_chat holds replies to pipelined requests; reading ``socket``
        # sends them (asynchat's output rule 3).  A no-op elsewhere.
        self.socket  # noqa: B018

    def _tls_guard(self):
        # async_chat's output lock (its OutputState is the context manager):
        # held by the library around every recv() and send attempt, so a
        # close() from another thread never runs OpenSSL on this socket at
        # the same time as the loop's thread
        out = getattr(self, "_ac_out", None)
        return _NO_LOCK if out is None else out

    def _tls_pick_context(self, context, server_side):
        if context is None:
            context = self.tls_context
        if context is None:
            if server_side:
                raise ValueError("start_tls() needs a context (or tls_context) on the server side")
            context = ssl.create_default_context()
        return context

    def _tls_peer(self):
        addr = self.addr
        if isinstance(addr, tuple) and len(addr) >= 2:
            return "%s:%s" % (addr[0], addr[1])
        return repr(addr)

    def _tls_ready(self):
        if self._tls_state in (_OPEN, _CLOSING):
            return self._tls_sock
        return None

    def _tls_discard_input(self):
        # the STARTTLS injection defence: what came before the upgrade and
        # was not consumed yet is dropped, never parsed
        if hasattr(self, "producer_fifo"):
            self.ac_in_buffer = b""
            incoming = getattr(self, "incoming", None)
            if isinstance(incoming, list):
                del incoming[:]

    def _tls_take_output(self):
        """Take every queued reply out of the channel's queue, as bytes."""
        pieces = []
        fifo = getattr(self, "producer_fifo", None)
        if fifo is not None:
            self._tls_flush_held()
            while fifo:
                item = fifo.popleft()
                if item is None:
                    fifo.appendleft(None)  # close_when_done: after the upgrade
                    break
                if isinstance(item, (bytes, bytearray, memoryview)):
                    pieces.append(bytes(item))
                elif isinstance(item, str):
                    pieces.append(item.encode(getattr(self, "encoding", "latin-1")))
                else:
                    while True:  # a producer: all of it goes out in plaintext
                        data = item.more()
                        if not data:
                            break
                        pieces.append(bytes(data))
        out = getattr(self, "out_buffer", None)
        if isinstance(out, (bytes, bytearray)) and out:
            pieces.append(bytes(out))
            self.out_buffer = b""
        return b"".join(pieces)

    def _tls_flush_plain(self):
        # the replies queued before start_tls(), written to the descriptor
        # under the TLS socket, whose handshake has not started yet
        data = self._tls_plain_out
        sock = self._tls_sock
        while data:
            try:
                sent = socket.socket.send(sock, data, _MSG_NOSIGNAL)
            except OSError as err:
                if err.errno in _RETRY_ERRNOS:
                    break
                self._tls_plain_out = b""
                self._tls_state = _FAILED
                self.handle_close()  # the peer went away before the upgrade
                return
            data = data[sent:]
        self._tls_plain_out = data
        if not data:
            self._tls_state = _HANDSHAKE

    def _tls_wrap(self):
        context, server_side, server_hostname = self._tls_wrap_args
        self._tls_wrap_args = None
        try:
            wrapped = context.wrap_socket(
                self.socket, server_side=server_side, server_hostname=server_hostname,
                do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            self._tls_state = _FAILED
            self._tls_fail(exc)
            return
        sock = _adopt(wrapped, self.socket)
        # same descriptor: the loop's registration stays valid
        self.socket = sock
        self._tls_attach(sock, server_side)

    def _tls_attach(self, sock, server_side):
        self._tls_sock = sock
        self._tls_more_pending = False
        if sock.version() is not None:
            self._tls_state = _OPEN  # handshake already done by its owner
            return
        _set_gate(sock, True)
        self._tls_state = _HANDSHAKE
        # a server waits for the ClientHello, a client sends its own first
        self._tls_want_write = not server_side
        self._tls_cancel_timer()
        timeout = self.tls_handshake_timeout
        if timeout is not None:
            self._tls_timer = asyncore.call_later(timeout, self._tls_deadline, _HANDSHAKE)

    def _tls_step_handshake(self):
        sock = self._tls_sock
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._tls_want_write = False
        except ssl.SSLWantWriteError:
            self._tls_want_write = True
        except ssl.SSLEOFError as exc:
            self._tls_fail(ConnectionAbortedError(
                "peer closed the connection during the TLS handshake (%s)" % _describe(exc)))
        except (OSError, ValueError) as exc:
            self._tls_fail(exc)
        else:
            self._tls_cancel_timer()
            self._tls_state = _OPEN
            self._tls_want_write = False
            _set_gate(sock, False)
            self.handle_tls_established()
            if self._tls_state == _OPEN and self._tls_sock is sock:
                self._tls_drain_pending(sock)

    def _tls_drain_pending(self, sock):
        # Decrypted bytes the SSL object already holds never make the
        # socket readable again (epoll would not wake us): read them now,
        # a bounded number of times, while the handler's readable() says
        # so.  What is left is marked (_tls_more_pending): a later event of
        # the channel, once the handler reads again, delivers it (the write
        # events that drain its output, or one asked for at once when
        # only the bound stopped us).
        self._tls_more_pending = False
        rounds = 16
        while self._tls_state == _OPEN and self._tls_sock is sock:
            try:
                with self._tls_guard():
                    if sock.pending() <= 0:
                        return
            except (OSError, ValueError):
                return
            if rounds <= 0 or not self._tls_handler_readable():
                self._tls_more_pending = True
                return
            rounds -= 1
            self.handle_read()

    def _tls_handler_readable(self):
        # the handler's own answer, not the TLS layer's shadow
        if self._tls_shadowing:
            return type(self).readable(self)
        return self.readable()

    def _tls_step_shutdown(self):
        """One ``close_notify`` attempt; True once the channel is closed."""
        sock = self._tls_sock
        try:
            with self._tls_guard():
                if isinstance(sock, _TLSSocket):
                    sock.tls_flush_retry()  # OpenSSL sends no alert before it
                sock.unwrap()
        except ssl.SSLWantWriteError:
            self._tls_want_write = True
            return False
        except ssl.SSLWantReadError:
            pass  # ours is out; the peer's is not needed
        except (OSError, ValueError):
            pass  # the peer is gone or the session broken: just close
        self._tls_close_now()
        return True

    def _tls_deadline(self, state):
        self._tls_timer = None
        current = self._tls_state
        if current != state and not (state == _HANDSHAKE and current == _FLUSHING):
            return
        if state == _HANDSHAKE:
            self._tls_fail(TimeoutError(
                "TLS handshake not done after %gs" % self.tls_handshake_timeout))
        elif not self._tls_step_shutdown():  # (a last try: room may have come)
            self._tls_close_now()

    def _tls_foreign_deadline(self, lp):
        with lp.guard:  # no event of the channel meanwhile
            self._tls_deadline(_CLOSING)

    def _tls_fail(self, exc):
        if self._tls_state == _CLOSED:
            return
        self._tls_state = _FAILED
        self._tls_cancel_timer()
        self.handle_tls_error(exc)
        if self._tls_state == _FAILED:
            self._tls_sync()  # the hook kept the channel: no more events

    def _tls_cancel_timer(self):
        timer = self._tls_timer
        if timer is not None:
            self._tls_timer = None
            timer.cancel()

    def _tls_close_now(self):
        if self._tls_state != _PLAIN:
            self._tls_state = _CLOSED
        self._tls_cancel_timer()
        self._tls_sync()  # drops the shadowing predicates (and their cycle)
        super().close()


# (the socket's lookups as ssl gives them: the kernels read the TLS
# socket's flags in its dict while its class still has these)
_kernels.tls_setup(TLSMixin, ssl.SSLSocket.recv, ssl.SSLSocket.send, ssl.SSLWantReadError,
                   ssl.SSLWantWriteError, _EOF_ERRORS, _peer_gone, _OPEN,
                   ssl.SSLSocket.__getattribute__, ssl.SSLSocket.__setattr__)


class TLSListenerMixin:
    """Implicit TLS for a listener; put it before ``dispatcher`` in the bases.

    ``accept()`` wraps each connection with ``tls_context`` (server side,
    handshake not started), so ``handle_accepted(sock, addr)`` receives a
    TLS socket; a ``TLSMixin`` handler built on it runs the handshake in
    the loop.  A connection that cannot even be wrapped is closed and
    logged, and the listener goes on.
    """

    #: The server context (certificate chain loaded); required.
    tls_context = None

    def listen(self, num):
        """Listen; ``TypeError`` first if ``tls_context`` has a custom
        ``sslsocket_class`` (refused up front, not at every connection)."""
        if self.tls_context is not None:
            _check_context(self.tls_context)
        return super().listen(num)

    def accept(self):
        pair = super().accept()
        if pair is None:
            return None
        sock, addr = pair
        context = self.tls_context
        if context is None:
            sock.close()
            raise ValueError("TLSListenerMixin needs tls_context")
        try:
            _check_context(context)
        except TypeError:
            sock.close()
            raise
        try:
            wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            sock.close()
            self.log_info("TLS error with %r: %s" % (addr, _describe(exc)), "error")
            return None
        return _adopt(wrapped, sock), addr
