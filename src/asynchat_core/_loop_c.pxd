# Types for asynchat_core/_loop_py.py compiled as asynchat_core._loop_c
# (setup.py PURE_MODE copies it to src/asynchat_core/_loop_c.py, beside this
# augmenting .pxd).  Declarations only: the logic is in _loop_py.py.
import cython

from asynchat_core._cbits cimport ac_nest, ac_unnest, ac_sock_recv, ac_sock_send, ac_type_lookup
from asynchat_core._cbits cimport ac_acache_fill_count, ac_call0, ac_getattr, ac_truth_init
from asynchat_core._cbits cimport PyThread_get_thread_ident as _get_ident
from asynchat_core._cbits cimport ac_method, ac_callm0

# event bits and deliver kinds as C ints (their public twins stay objects)
cdef int _IN, _PRI, _OUT, _ERR, _HUP, _NVAL, _GONE, _WANT_READ, _WANT_WRITE, _WANT_WRITE_EXPT
cdef int _SELECT_READ, _SELECT_WRITE, _AFTER_READ
cdef int _DELIVER_READ, _DELIVER_WRITE
cdef object _MSG_NOSIGNAL, _socket_type, _object_getattribute
cdef bint _watches_made

cdef inline object _map_get(object map, object fd)

@cython.locals(sent=Py_ssize_t)
cpdef sock_send(chan, sock, data)
cpdef sock_recv(chan, sock, buffer_size)

# the library's own read path as C calls (_loop_py.py, set_read_kernel)
ctypedef object (*ac_read_kernel)(object)
cpdef dispatcher_handle_read_event(self)
cdef object _own_read_event
cdef int set_read_kernel(object func, ac_read_kernel kernel,
                         object readable, ac_read_kernel readable_kernel,
                         object writable, ac_read_kernel writable_kernel) except -1
# handle_read, readable and writable: one record each (the name, the
# library's Python function, its C function, the lookup cache's slot of that
# name's calls), and _call_own, which runs the C function when the lookup
# finds exactly the library's own
cdef extern from *:
    """
    typedef struct {
        PyObject *name;   /* a reference */
        PyObject *func;   /* a reference: what the lookup must find */
        PyObject *(*kernel)(PyObject *);
        void *hint;       /* ac_method_h's slot (_cbits.pxd) */
    } ac_own;
    static void ac_own_set(ac_own *own, PyObject *name, PyObject *func,
                           PyObject *(*kernel)(PyObject *)) {
        PyObject *old_name = own->name, *old_func = own->func;
        Py_INCREF(name);
        Py_INCREF(func);
        own->name = name;
        own->func = func;
        own->kernel = kernel;
        Py_XDECREF(old_name);
        Py_XDECREF(old_func);
    }
    #define ac_own_method(obj, own, unbound) \
        ac_method_h((obj), (own)->name, (unbound), &(own)->hint)
    #define ac_own_found(meth, own) \
        ((PyObject *)(meth) == (own)->func && (own)->kernel != NULL)
    #define ac_own_call(obj, own) ((own)->kernel(obj))
    """
    ctypedef struct ac_own:
        pass
    void ac_own_set(ac_own *own, object name, object func, ac_read_kernel kernel)
    object ac_own_method(object obj, ac_own *own, int *unbound)
    bint ac_own_found(object meth, ac_own *own) noexcept
    object ac_own_call(object obj, ac_own *own)
cdef ac_own _own_read, _own_readable, _own_writable
@cython.locals(unbound=cython.int)
cdef object _call_own(object obj, ac_own *own)


# time.monotonic() read in C where CPython's clock is known (Linux:
# CLOCK_MONOTONIC, nanoseconds converted as _PyTime_AsSecondsDouble does);
# -1.0 elsewhere or if the clock fails: _clock then calls _monotonic
cdef extern from *:
    """
    #if defined(__linux__)
    #include <time.h>
    static double ac_monotonic(void) {
        struct timespec ts;
        int64_t ns;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0 || ts.tv_sec < 0
                || ts.tv_sec > INT64_MAX / 1000000000 - 1)
            return -1.0;
        ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        if (ns % 1000000000 == 0)
            return (double)(ns / 1000000000);
        return (double)ns / 1e9;
    }
    #else
    static double ac_monotonic(void) { return -1.0; }
    #endif
    """
    double ac_monotonic() noexcept
cdef object _time_monotonic
@cython.locals(now=cython.double)
cdef double _clock() except? -1.0


# The loop's readable/writable found as an instance's attribute lookup finds
# them in its type (the MRO's own dicts, through the type's method cache),
# never through a metaclass's __getattribute__: ac_type_lookup (_cbits.pxd).
cdef extern from *:
    """
    /* the loop's per-pass check of a class it serves: do readable and
       writable still resolve to the objects recorded?  No references
       taken, so a few tens of instructions for both */
    static int ac_predicates_same(PyObject *cls, PyObject *name1, PyObject *value1,
                                  PyObject *name2, PyObject *value2) {
        PyObject *found;
        if (!PyType_Check(cls)) return 0;
        found = _PyType_Lookup((PyTypeObject *)cls, name1);
        if ((found ? found : Py_None) != value1) return 0;
        found = _PyType_Lookup((PyTypeObject *)cls, name2);
        return (found ? found : Py_None) == value2;
    }
    """
    bint ac_predicates_same(object cls, object name1, object value1,
                            object name2, object value2) noexcept


# epoll_wait(2) into a C array (issue 18, lever 9): what select.epoll.poll()
# does (Modules/selectmodule.c, pyepoll_poll: the timeout rounded up to
# milliseconds, FD_SETSIZE - 1 events at most, EINTR retried with the
# remaining time after the signal handlers ran, the GIL released for the
# wait), without a list of tuples.  A timeout that is not None or a plain
# float/int in 0..1e6 seconds gives -2: the caller calls poll() instead.
cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/epoll.h>
    #include <sys/select.h>
    #include <errno.h>
    #include <math.h>
    #include <time.h>
    #define AC_EPOLL_MAX (FD_SETSIZE - 1)
    /* the kernel writes straight into the poller's array: no copy, and no
       12 KiB array on the stack of every (possibly nested) wait */
    typedef struct epoll_event ac_ready;
    #define ac_ready_fd(r) ((r).data.fd)
    #define ac_ready_events(r) ((unsigned int)(r).events)

    static int64_t ac_monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }

    static int ac_epoll_wait(int epfd, ac_ready *out, PyObject *timeout_obj) {
        int64_t ns = -1, deadline = 0;
        int ms = -1, nfds;
        if (timeout_obj != Py_None) {
            double d;
            if (PyFloat_CheckExact(timeout_obj)) {
                d = PyFloat_AS_DOUBLE(timeout_obj);
            } else if (PyLong_CheckExact(timeout_obj)) {
                long v = PyLong_AsLong(timeout_obj);
                if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return -2; }
                if (v < 0 || v > 1000000) return -2;
                d = (double)v;
            } else {
                return -2;
            }
            if (!(d >= 0.0 && d <= 1e6)) return -2;  /* NaN, negative, huge */
            ns = (int64_t)ceil(d * 1e9);
            ms = (int)((ns + 999999) / 1000000);
            deadline = ac_monotonic_ns() + ns;
        }
        for (;;) {
            Py_BEGIN_ALLOW_THREADS
            errno = 0;
            nfds = epoll_wait(epfd, out, AC_EPOLL_MAX, ms);
            Py_END_ALLOW_THREADS
            if (errno != EINTR) break;
            if (PyErr_CheckSignals()) return -1;
            if (ns >= 0) {
                int64_t left = deadline - ac_monotonic_ns();
                if (left < 0) { nfds = 0; break; }
                ms = (int)((left + 999999) / 1000000);
            }
        }
        if (nfds < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
        return nfds;
    }
    static ac_ready *ac_ready_new(void) {
        ac_ready *r = PyMem_New(ac_ready, AC_EPOLL_MAX);
        if (r == NULL) PyErr_NoMemory();
        return r;
    }
    static void ac_ready_free(ac_ready *r) { PyMem_Free(r); }
    #else
    #define AC_EPOLL_MAX 1
    typedef struct { unsigned int events; int fd; } ac_ready;
    #define ac_ready_fd(r) ((r).fd)
    #define ac_ready_events(r) ((r).events)
    static int ac_epoll_wait(int epfd, ac_ready *out, PyObject *timeout_obj) { return -2; }
    static ac_ready *ac_ready_new(void) { return (ac_ready *)PyMem_Malloc(sizeof(ac_ready)); }
    static void ac_ready_free(ac_ready *r) { PyMem_Free(r); }
    #endif
    """
    enum: AC_EPOLL_MAX
    ctypedef struct ac_ready:
        pass
    int ac_ready_fd(ac_ready) noexcept
    unsigned int ac_ready_events(ac_ready) noexcept
    int ac_epoll_wait(int epfd, ac_ready *out, object timeout) except -1
    ac_ready *ac_ready_new() except NULL
    void ac_ready_free(ac_ready *) noexcept


cdef class EpollPoller:
    cdef object _ep
    cdef int _epfd
    cdef bint _busy
    cdef ac_ready *_ready  # AC_EPOLL_MAX events, PyMem_Malloc'd by __init__
    cdef int _wait_ready(self, timeout) except -1


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
    # readonly: the loop reads it on an untyped ``timers`` (no property call)
    cdef readonly list _heap
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


@cython.final
cdef class _Pause:
    cdef public double until, backoff
    cdef public object resume


cdef class Entry:
    cdef public object fd, obj, cls, watch
    cdef public _Pause pause  # None but after an accept() back-off
    cdef public int kmask, muted
    cdef public bint polled, always, closed_once
    # in Loop._queued (compiled: the dispatch queues its fd once a pass)
    cdef bint queued



@cython.final
cdef class _Kind:
    cdef public object cls, readable, writable
    cdef public bint polled
    cdef public Py_ssize_t count


# The loop's entries by fd as well as in its dict (Loop._by_fd, a list: an
# index instead of a dict lookup per event): the slot of an exact int fd in
# 0..AC_FD_SLOTS-1, else -1 (that fd has no slot: the dict only).  The
# bound keeps a map key such as 10**9 from growing the list.
cdef extern from *:
    """
    #define AC_FD_SLOTS 65536
    static Py_ssize_t ac_fd_slot(PyObject *fd) {
        long v;
        int overflow = 0;
        if (!PyLong_CheckExact(fd)) return -1;
        v = PyLong_AsLongAndOverflow(fd, &overflow);
        if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
        if (overflow || v < 0 || v >= AC_FD_SLOTS) return -1;
        return (Py_ssize_t)v;
    }
    """
    Py_ssize_t ac_fd_slot(object fd) noexcept


# del lst[:] for the loop's own queue (an exact list), keeping its item
# array for the next pass's appends (no free and malloc a pass).  The items
# are released after the list is empty, from a copy: a finaliser that runs
# then sees (and may append to) a valid empty list.
cdef extern from *:
    """
    #define AC_LIST_EMPTY_HELD 64
    static int ac_list_empty(PyObject *op) {
        PyListObject *lst = (PyListObject *)op;
        PyObject *held[AC_LIST_EMPTY_HELD];
        Py_ssize_t i, n;
        if (!PyList_CheckExact(op)) {
            PyErr_SetString(PyExc_TypeError, "ac_list_empty: a list is required");
            return -1;
        }
        n = Py_SIZE(lst);
        if (n > AC_LIST_EMPTY_HELD) return PyList_SetSlice(op, 0, n, NULL);
        for (i = 0; i < n; i++) held[i] = lst->ob_item[i];
        Py_SET_SIZE(lst, 0);
        for (i = 0; i < n; i++) Py_DECREF(held[i]);
        return 0;
    }
    """
    int ac_list_empty(object lst) except -1


cdef class Loop:
    cdef public object map, backend, poller, timers, known_readable, known_writable
    cdef public object reraised, disconnected
    # behind read-only properties: the C code iterates them as dict/set
    cdef dict _entries, _polled, _always, _kinds
    # fd -> Entry again, as a list (None where no entry; only fds with a
    # slot, ac_fd_slot): kept with _entries by _add, _drop and _release
    cdef list _by_fd
    # the fds the dispatch made dirty, each once (Entry.queued), and the
    # list _flush emptied, the next one's: a list, not the set's add and walk
    cdef list _queued, _spare_queued
    cdef set _dirty, _spare  # _spare: the set _flush emptied, the next one's dirty set
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
    @cython.locals(mask=int, pause=_Pause)
    cpdef int _interest(self, Entry entry, double now) except? -1
    @cython.locals(entry=Entry, entries=dict, mask=int, todo=object, spare=set, pause=_Pause,
                   by_fd=list, slot=Py_ssize_t, queued=list, spare_list=list)
    cpdef _flush(self, double now)
    cpdef _close_channel(self, Entry entry)
    cpdef bint _deliver(self, Entry entry, int kind, double now) except? -1
    cpdef _failed(self, Entry entry, obj, err, double now)
    @cython.locals(kmask=int, delivered=bint, pause=_Pause)
    @cython.locals(unbound=cython.int)
    cpdef _dispatch(self, Entry entry, int ev, double now)
    @cython.locals(read_done=bint, pause=_Pause)
    cpdef _dispatch_poll(self, Entry entry, int ev, double now)
    @cython.locals(lock=_RLock, guard=_RLock, ep=EpollPoller, n=int, now=cython.double,
                   entry=Entry, kind=_Kind, changed=list, entries=dict, ev=int)
    cpdef run_once(self, timeout)
    cpdef _judge(self, _Kind kind)
    @cython.locals(kind=_Kind)
    cpdef _bind(self, Entry entry, obj)
    @cython.locals(kind=_Kind)
    cpdef _unbind(self, Entry entry)
    cpdef _rebind(self, Entry entry)
    @cython.locals(kind=_Kind, entry=Entry, kinds=list, readable=object, writable=object)
    cpdef _reclass(self, list changed)
    @cython.locals(entry=Entry)
    cdef _ask_polled(self, double now)
    @cython.locals(now=cython.double, entry=Entry, entries=dict, ev=int, i=int, fd=int,
                   timers=object, by_fd=list)
    cdef _process_ready(self, EpollPoller ep, int n)
    @cython.locals(entry=Entry)
    cdef _process_rest(self, double now)
