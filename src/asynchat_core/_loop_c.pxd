# Types for asynchat_core/_loop_py.py compiled as asynchat_core._loop_c
# (setup.py PURE_MODE copies it to src/asynchat_core/_loop_c.py, beside this
# augmenting .pxd).  Declarations only: the logic is in _loop_py.py.
import cython

from asynchat_core._cbits cimport ac_nest, ac_unnest, ac_sock_recv, ac_sock_send
from asynchat_core._cbits cimport PyThread_get_thread_ident as _get_ident

# event bits and deliver kinds as C ints (their public twins stay objects)
cdef int _IN, _PRI, _OUT, _ERR, _HUP, _NVAL, _GONE, _WANT_READ, _WANT_WRITE, _WANT_WRITE_EXPT
cdef int _DELIVER_READ, _DELIVER_WRITE
cdef object _MSG_NOSIGNAL, _socket_type

@cython.locals(sent=Py_ssize_t)
cpdef sock_send(chan, sock, data)


cdef class EpollPoller:
    cdef object _ep


cdef class PollPoller:
    cdef object _p


cdef class SelectPoller:
    cdef dict _masks
    cdef set _r, _w, _x


cdef class KqueuePoller:
    cdef object _kq
    cdef dict _masks


cdef class TimerHandle:
    cdef public double when
    cdef public unsigned long long seq
    cdef public object callback, args, queue
    cdef public bint cancelled, keepalive


cdef class TimerQueue:
    cdef list _heap
    cdef public unsigned long long seq
    cdef public Py_ssize_t live


cdef class IdleWatch:
    cdef public object channel, callback, handle
    cdef public double timeout, last


@cython.final  # its methods are then called directly from C, and inlined
cdef class _RLock:
    cdef bint _held
    cdef unsigned long _owner
    cdef Py_ssize_t _depth
    cdef list _queue
    cdef object _mutex, _taken

    cpdef bint acquire(self) except -1
    @cython.locals(me="unsigned long")
    cpdef bint try_acquire(self) noexcept
    @cython.locals(me="unsigned long", handed=bint)
    cdef bint _wait(self) except -1
    cpdef release(self)


cdef class Entry:
    cdef public object fd, obj, watch, resume
    cdef public int kmask, muted
    cdef public bint polled, always, closed_once
    cdef public double paused_until, backoff



cdef class Loop:
    cdef public object map, backend, poller, timers, known_readable, known_writable
    cdef public object reraised, disconnected
    # behind read-only properties: the C code iterates them as dict/set
    cdef dict _entries, _polled, _always, _kinds
    cdef set _dirty
    cdef public object generation
    cdef public bint rebuild_needed, poll_mode
    cdef public double next_sweep
    cdef public unsigned long long passes
    # the C code calls these locks' C methods: Python may read, never set them
    cdef _RLock _lock, _guard
    cdef readonly _RLock _life
    cdef Py_ssize_t _users
    cdef bint _closed, _close_pending

    @cython.locals(old=int)
    cpdef _set_kernel(self, Entry entry, int mask)
    @cython.locals(mask=int)
    cpdef int _interest(self, Entry entry, double now) except? -1
    @cython.locals(entry=Entry, entries=dict)
    cpdef _flush(self, double now)
    cpdef _close_channel(self, Entry entry)
    cpdef bint _deliver(self, Entry entry, int kind, double now) except? -1
    @cython.locals(kmask=int, delivered=bint)
    cpdef _dispatch(self, Entry entry, int ev, double now)
    @cython.locals(read_done=bint)
    cpdef _dispatch_poll(self, Entry entry, int ev, double now)
    @cython.locals(lock=_RLock, guard=_RLock)
    cpdef run_once(self, timeout)
    @cython.locals(now=cython.double, entry=Entry)
    cpdef _sync(self, timeout)
    @cython.locals(now=cython.double, entry=Entry, entries=dict, ev=int)
    cpdef _process(self, events)
