"""Run a server in N worker processes (POSIX): one loop per process.

``serve(factory, address, workers=None)`` binds ``address`` and forks
``workers`` processes (default: ``os.cpu_count()``).  Each worker runs its
own ``asyncore.loop()`` over its own socket map and calls
``factory(listen_sock)`` once to create its listener(s) on the listening
socket it is given::

    class Server(asyncore.dispatcher):
        def handle_accepted(self, sock, addr):
            Handler(sock)

    def factory(sock):
        return workers.listen_on(Server(), sock)

    workers.serve(factory, ("0.0.0.0", 8080), workers=4)

Listening sockets: where the kernel balances connections across sockets
bound with ``SO_REUSEPORT`` (Linux 3.9+; FreeBSD 12+ with
``SO_REUSEPORT_LB``) each worker binds its own, so the kernel spreads
connections without a thundering herd; the parent keeps one bound,
non-listening socket to hold the port (so port 0 works).  Elsewhere the
parent listens once and the workers inherit that one socket.

The supervising parent restarts a worker that dies, after a back-off that
doubles while workers keep dying within ``YOUNG`` seconds of their start
(from ``backoff``, at most
``max_backoff`` seconds), so a crash loop cannot spin.  ``SIGTERM`` or
``SIGINT`` to the parent stops gracefully: each worker stops accepting
(it first accepts what is already queued on its socket), lets its
channels finish for up to ``shutdown_timeout`` seconds, closes what is
left and exits; workers still running after that are killed.  Every exit
and restart is logged in one line (``log``, default stderr).
Handlers can ask ``stopping()`` to end keep-alive connections early.
"""
import errno
import os
import select
import signal
import socket
import sys
import time

from . import asyncore

__all__ = ["serve", "listen_on", "on_stop", "stopping", "reuse_port_supported", "worker_index"]

# FreeBSD's balancing option, from <sys/socket.h>: the socket module names
# it only from Python 3.14 on
_FREEBSD_REUSEPORT_LB = 0x10000
_balancing = None  # the option that balances here (0: none), found on first use
_stopping = False
_worker_index = None
#: a worker that dies sooner than this (seconds) doubles its slot's back-off
YOUNG = 1.0
_stop_callbacks = []


def _balancing_option():
    """The socket option whose listeners the kernel balances connections
    across (Linux's ``SO_REUSEPORT``, FreeBSD 12+'s ``SO_REUSEPORT_LB``),
    or 0 where there is none or the kernel refuses it."""
    global _balancing
    if _balancing is None:
        option = getattr(socket, "SO_REUSEPORT_LB", None)
        if option is None and sys.platform.startswith("freebsd"):
            option = _FREEBSD_REUSEPORT_LB
        if option is None and sys.platform.startswith("linux"):
            option = getattr(socket, "SO_REUSEPORT", None)
        if option is not None:
            try:  # an older kernel refuses the option: share one socket then
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, option, 1)
            except OSError:
                option = None
        _balancing = option or 0
    return _balancing


def reuse_port_supported():
    """Whether each worker can have its own ``SO_REUSEPORT`` listener here
    (the kernel balances only on Linux and on FreeBSD's ``SO_REUSEPORT_LB``)."""
    return bool(_balancing_option())


def stopping():
    """True in a worker that is shutting down (stop keeping connections alive)."""
    return _stopping


def on_stop(callback):
    """Call ``callback()`` in this worker when its graceful stop begins, after
    its listeners closed (e.g. to close idle keep-alive connections)."""
    _stop_callbacks.append(callback)


def worker_index():
    """This worker's slot, 0 to N-1 (None in the parent or a single process)."""
    return _worker_index


def listen_on(listener, sock, map=None):
    """Make the dispatcher ``listener`` accept on the listening ``sock``; returns it."""
    listener.set_socket(sock, map)
    listener.accepting = True
    listener.addr = sock.getsockname()
    return listener


def _log_stderr(line):
    sys.stderr.write("asynchat_core.workers: %s\n" % line)
    sys.stderr.flush()


def _bind(address, family, reuse_port, backlog=None):
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # asked for where nothing balances: the plain option, if any
            option = _balancing_option() or getattr(socket, "SO_REUSEPORT", None)
            if option is None:
                raise OSError(errno.ENOPROTOOPT, "no SO_REUSEPORT on this platform")
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _describe(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return "killed by %s" % name
    return "exited with code %d" % os.WEXITSTATUS(status)


class _Supervisor:
    def __init__(self, factory, address, workers, family, backlog, reuse_port,
                 shutdown_timeout, backoff, max_backoff, log, ready):
        self.factory = factory
        self.workers = workers
        self.family = family
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.shutdown_timeout = shutdown_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log
        self.ready = ready
        if reuse_port:
            # holds the port (port 0 picks one for all workers); never
            # listens, so the kernel sends it no connections
            self.sock = _bind(address, family, True)
        else:
            self.sock = _bind(address, family, False, backlog)
        self.address = self.sock.getsockname()
        self.pids = {}  # pid -> slot
        self.started = {}  # slot -> monotonic start time
        self.delay = {}  # slot -> current back-off
        self.due = {}  # slot -> monotonic time of a pending restart
        self.stop_signal = None

    # -- parent
    def run(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake = (wake_r, wake_w)
        # each worker writes a byte here once its factory returned
        self.up = os.pipe()
        os.set_blocking(self.up[0], False)
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            signal.signal(signal.SIGCHLD, lambda s, f: None)
            signal.signal(signal.SIGTERM, self._on_stop)
            signal.signal(signal.SIGINT, self._on_stop)
            for slot in range(self.workers):
                self._spawn(slot)
            self._wait_up(self.workers, time.monotonic() + 30.0)
            if self.ready is not None and self.stop_signal is None:
                self.ready(self.address)
            while self.stop_signal is None:
                self._reap()
                now = time.monotonic()
                for slot, when in list(self.due.items()):
                    if when <= now:
                        del self.due[slot]
                        self._spawn(slot)
                timeout = min([w - now for w in self.due.values()] + [1.0])
                self._wait(max(timeout, 0.0))
            return self._shutdown()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, handler in previous.items():
                signal.signal(s, handler)
            for fd in (wake_r, wake_w) + self.up:
                os.close(fd)
            self.sock.close()

    def _on_stop(self, signum, frame):
        if self.stop_signal is None:
            self.stop_signal = signum

    def _wait(self, timeout):
        """Sleep until a signal, a worker coming up, or ``timeout``; returns
        how many workers came up."""
        try:
            select.select([self.wake[0], self.up[0]], [], [], timeout)
        except InterruptedError:
            pass
        up = 0
        for fd in (self.wake[0], self.up[0]):
            try:
                while True:
                    data = os.read(fd, 512)
                    if not data:
                        break
                    if fd == self.up[0]:
                        up += len(data)
            except (BlockingIOError, InterruptedError):
                pass
        return up

    def _wait_up(self, count, deadline):
        # ready() means listening: wait for every first worker's byte, and
        # stop waiting once one dies first (the main loop restarts it)
        while count > 0 and self.stop_signal is None and time.monotonic() < deadline:
            count -= self._wait(min(0.2, max(0.0, deadline - time.monotonic())))
            if count > 0 and self._reap():
                return

    def _spawn(self, slot):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                code = self._child(slot)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        self.pids[pid] = slot
        self.started[slot] = time.monotonic()

    def _reap(self):
        """Collect exited workers and schedule their restarts; returns how many."""
        reaped = 0
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self.pids.pop(pid, None)
            if slot is None:
                continue
            reaped += 1
            lived = time.monotonic() - self.started[slot]
            if self.stop_signal is not None:
                self.log("worker %d (pid %d) %s" % (slot, pid, _describe(status)))
                continue
            # back-off: doubles while the slot's workers die young
            delay = self.delay.get(slot, 0.0)
            if lived < YOUNG:
                delay = min(self.max_backoff, delay * 2 or self.backoff)
            else:
                delay = self.backoff
            self.delay[slot] = delay
            self.due[slot] = time.monotonic() + delay
            self.log("worker %d (pid %d) %s after %.1fs; restarting in %.2fs"
                     % (slot, pid, _describe(status), lived, delay))
        return reaped

    def _shutdown(self):
        self.log("%s: stopping %d workers (deadline %.1fs)"
                 % (signal.Signals(self.stop_signal).name, len(self.pids), self.shutdown_timeout))
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.shutdown_timeout + 2.0
        while self.pids and time.monotonic() < deadline:
            self._reap()
            if self.pids:
                self._wait(min(0.1, max(0.0, deadline - time.monotonic())))
        for pid, slot in list(self.pids.items()):
            self.log("worker %d (pid %d) did not stop in time: killed" % (slot, pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.pids:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            slot = self.pids.pop(pid, None)
            if slot is not None:
                self.log("worker %d (pid %d) %s" % (slot, pid, _describe(status)))
        return 0

    # -- worker
    def _child(self, slot):  # pragma: no cover - runs in the child
        global _stopping, _worker_index
        _worker_index = slot
        _stopping = False
        del _stop_callbacks[:]
        os.close(self.wake[0])
        os.close(self.wake[1])
        os.close(self.up[0])
        signal.set_wakeup_fd(-1)
        _die_with_parent()
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        asyncore.socket_map.clear()  # (the parent's channels are not ours)
        if self.reuse_port:
            listen_sock = _bind(self.address, self.family, True, self.backlog)
            self.sock.close()
        else:
            listen_sock = self.sock
        listen_sock.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        map = asyncore.socket_map
        waker = _Waker(wake_r, map)

        def on_stop(signum, frame):
            global _stopping
            _stopping = True

        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards it as SIGTERM
        listeners = self.factory(listen_sock)
        if not isinstance(listeners, (list, tuple)):
            listeners = [listeners]
        os.write(self.up[1], b"u")
        os.close(self.up[1])
        while not _stopping:
            asyncore.loop(timeout=30.0, map=map, count=1)
        # stop accepting: take what the kernel already queued on our
        # socket (closing a listener resets those connections), then close
        for listener in listeners:
            _drain_accept_queue(listener)
            listener.close()
        for callback in list(_stop_callbacks):
            try:
                callback()
            except Exception:
                import traceback

                traceback.print_exc()
        deadline = time.monotonic() + self.shutdown_timeout
        while len(map) > 1 and time.monotonic() < deadline:
            asyncore.loop(timeout=min(0.1, max(0.0, deadline - time.monotonic())),
                          map=map, count=1)
        left = len(map) - 1
        waker.close()
        asyncore.close_all(map, ignore_all=True)
        wake_w.close()
        if left:
            sys.stderr.write("asynchat_core.workers: worker %d closed %d channels at the "
                             "shutdown deadline\n" % (slot, left))
        return 0


def _die_with_parent():  # pragma: no cover - runs in the child
    # Linux: a worker whose supervisor is gone (killed with SIGKILL) gets
    # SIGTERM and stops gracefully instead of serving on unsupervised
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _drain_accept_queue(listener, limit=10000):
    sock = listener.socket
    for _ in range(limit):
        if sock is None or sock.fileno() < 0:
            return
        try:
            ready, _w, _x = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return
        if not ready:
            return
        try:
            listener.handle_accept()
        except Exception:
            listener.handle_error()
        sock = listener.socket


class _Waker(asyncore.dispatcher):
    # signal.set_wakeup_fd's socket: a signal wakes the worker's loop at once
    def readable(self):
        return True

    def writable(self):
        return False

    def handle_read(self):
        try:
            self.recv(512)
        except OSError:
            pass

    def handle_close(self):
        pass


def serve(factory, address, workers=None, *, family=None, backlog=1024, reuse_port=None,
          shutdown_timeout=10.0, backoff=0.1, max_backoff=10.0, log=None, ready=None):
    """Run ``factory(listen_sock)`` in ``workers`` processes, each with its own
    loop, and supervise them until ``SIGTERM``/``SIGINT``; returns 0.

    ``reuse_port``: None picks ``SO_REUSEPORT`` where the kernel balances
    with it (``reuse_port_supported()``), else one inherited socket.
    ``ready(address)`` is called in the parent once every worker's factory
    returned, so all of them listen (or once one died first, or after 30 s; ``address``:
    the bound address, port 0 resolved).
    ``log(line)`` gets one line per worker exit and restart.
    """
    if os.name != "posix":
        raise OSError(errno.ENOSYS, "asynchat_core.workers needs fork() (POSIX)")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if family is None:
        family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    if reuse_port is None:
        reuse_port = reuse_port_supported()
    sup = _Supervisor(factory, address, workers, family, backlog, reuse_port,
                      shutdown_timeout, backoff, max_backoff, log or _log_stderr, ready)
    return sup.run()
