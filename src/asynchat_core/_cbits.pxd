# C-only helpers shared by the compiled build's modules (setup.py
# PURE_MODE): what has no Python meaning lives here, cimported by the
# augmenting .pxd files (_loop_c.pxd, _chat_c.pxd).  Each twin defines a
# Python stand-in for the names it uses under ``if not cython.compiled:``,
# so compiled, the cimported C function is the one called.  Everything is
# inline or extern: no extension module is built from this file.

from cpython.exc cimport PyErr_CheckSignals

# Calls between compiled functions and C-level descriptors run no Python
# frame, and Py_EnterRecursiveCall did not stop such a cycle in testing (a
# class whose handle_read is dispatcher.handle_read_event overflowed the C
# stack): every entry point Python can reach by name (a def, a descriptor
# slot) counts its nesting, per thread, and raises RecursionError far below
# any thread's stack size.  The library's direct C-to-C calls need no check:
# a cycle of compiled code must pass through a call by name.  ac_nest()
# returns the counter's address, so ac_unnest() reads no thread-local again
# (one read per guarded entry).  In the pure-mode sources:
#     if cython.compiled:
#         nest = ac_nest()
#     try: ... finally:
#         if cython.compiled:
#             ac_unnest(nest)
# (The counter is static: one per module that cimports this file, each
# bounded.)
cdef extern from *:
    """
    #if defined(_MSC_VER)
    #define AC_THREAD_LOCAL __declspec(thread)
    #elif (defined(__GNUC__) || defined(__clang__)) && defined(__ELF__) && defined(__GLIBC__)
    /* initial-exec: the counter is read at a fixed offset from the thread
       pointer, not through __tls_get_addr (about 20 instructions a guarded
       entry, issue 18).  It takes 4 bytes, per module that cimports this,
       of the static TLS surplus glibc keeps for dlopen'ed modules
       (rtld.optional_static_tls, 512 bytes by default); other C libraries
       keep the general-dynamic model */
    #define AC_THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))
    #else
    #define AC_THREAD_LOCAL __thread
    #endif
    #define AC_MAX_NESTING 256
    static AC_THREAD_LOCAL int ac_nesting = 0;
    static int *ac_nest(void) {
        int *depth = &ac_nesting;
        if (*depth >= AC_MAX_NESTING) {
            PyErr_SetString(PyExc_RecursionError,
                            "asynchat_core: kernel calls nested too deeply "
                            "(a method or descriptor that calls itself?)");
            return NULL;
        }
        ++*depth;
        return depth;
    }
    static void ac_unnest(int *depth) { if (*depth > 0) --*depth; }
    """
    int *ac_nest() except NULL
    void ac_unnest(int *depth) noexcept

# Truth tests (issue 18): Cython tests an object's truth with
# PyObject_IsTrue whenever it is not True, False or None, and the per-event
# path tests deques (``while fifo``, what writable() returns), bytes (``not
# first``) and ints (``not sent``) several times a request.  For an object
# of one of these exact types the answer is its length (bytes, list, tuple,
# deque: ob_size, which is what their len() and bool() read) or, for an
# int on 3.9-3.11, whether its ob_size is 0: what PyObject_IsTrue would
# compute, without its slot dispatch.  A subclass (which may define
# __bool__ or __len__) and every other type go to PyObject_IsTrue.  The
# deque type is not exported by CPython: ac_truth_init(collections.deque)
# records it (and keeps it alive, so the pointer cannot be reused) when the
# module is imported; until then deques take the generic path.  Every
# truth test in a module that cimports this file goes through ac_truth
# (the define below), so the pure-mode sources say nothing about it.
cdef extern from *:
    """
    /* the per-event helpers, inlined where the compiler would call them
       (the lookup cache's below too) */
    #if defined(__GNUC__) || defined(__clang__)
    #define AC_HOT static inline __attribute__((always_inline))
    #else
    #define AC_HOT static inline
    #endif
    static PyTypeObject *ac_deque_type = NULL;
    AC_HOT int ac_truth(PyObject *o) {
        PyTypeObject *tp = Py_TYPE(o);
        if (tp == &PyBytes_Type || tp == ac_deque_type || tp == &PyList_Type
                || tp == &PyTuple_Type)
            return Py_SIZE(o) != 0;
    #if PY_VERSION_HEX < 0x030C0000
        if (tp == &PyLong_Type)
            return Py_SIZE(o) != 0;
    #endif
        return (PyObject_IsTrue)(o);
    }
    #define PyObject_IsTrue(o) ac_truth(o)
    static int ac_truth_init(PyObject *deque_type) {
        if (!PyType_Check(deque_type)) {
            PyErr_SetString(PyExc_TypeError, "ac_truth_init: not a type");
            return -1;
        }
        if (ac_deque_type == NULL) {
            Py_INCREF(deque_type);
            ac_deque_type = (PyTypeObject *)deque_type;
        }
        return 0;
    }
    """
    int ac_truth_init(object deque_type) except -1


# C locks: taking a free one costs no Python call; waiting releases the GIL.
cdef extern from "pythread.h":
    ctypedef void *PyThread_type_lock
    ctypedef enum PyLockStatus:
        PY_LOCK_FAILURE
        PY_LOCK_ACQUIRED
        PY_LOCK_INTR
    PyThread_type_lock PyThread_allocate_lock()
    void PyThread_free_lock(PyThread_type_lock)
    PyLockStatus PyThread_acquire_lock_timed(
        PyThread_type_lock lock, long long microseconds, int intr_flag) nogil
    void PyThread_release_lock(PyThread_type_lock) nogil
    unsigned long PyThread_get_thread_ident()


cdef inline bint lock_try(PyThread_type_lock lock) noexcept:
    """Take ``lock`` if that needs no wait."""
    return PyThread_acquire_lock_timed(lock, 0, 0) == PY_LOCK_ACQUIRED


cdef inline int lock_wait(PyThread_type_lock lock) except -1:
    """Take ``lock``, waiting without the GIL; signal handlers run meanwhile
    (an exception one raises propagates, the lock not taken)."""
    cdef PyLockStatus got
    while True:
        with nogil:
            got = PyThread_acquire_lock_timed(lock, -1, 1)
        if got == PY_LOCK_ACQUIRED:
            return 0
        PyErr_CheckSignals()


# ---------------------------------------------------------------------------
# byte scanning (chat): what _chat_py.py does with bytes methods, done on the
# bytes' memory.  Each checks that it got exact bytes objects (else it says
# so, and _chat_py.py takes its generic Python path, which is all the Python
# stand-ins do) and clamps every offset to the object's length itself, so no
# Python value can make it read outside the object.

from cpython.bytes cimport (
    PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE,
)
from cpython.object cimport PyObject_Size
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.long cimport PyLong_CheckExact
from cpython.method cimport PyMethod_Check, PyMethod_GET_FUNCTION
from cpython.object cimport PyObject
from libc.string cimport memchr, memcmp

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    # no except clause: an overflow is a value to the callers (they clear it)
    Py_ssize_t _long_as_ssize "PyLong_AsSsize_t"(object)


cdef inline Py_ssize_t _clamp_start(Py_ssize_t start, Py_ssize_t length) noexcept:
    # a slice start as Python reads it (negative: from the end)
    if start < 0:
        start += length
        return start if start > 0 else 0
    return start if start < length else length


cdef inline Py_ssize_t find_bytes(object data, Py_ssize_t pos, object term) noexcept:
    """``data.find(term, pos)``: memchr for the first byte, memcmp for the
    rest; -2 unless both are bytes objects."""
    cdef Py_ssize_t hay_len, needle_len
    cdef const char *base
    cdef const char *needle
    cdef const char *p
    cdef const char *last
    if not (PyBytes_CheckExact(data) and PyBytes_CheckExact(term)):
        return -2
    hay_len = PyBytes_GET_SIZE(data)
    needle_len = PyBytes_GET_SIZE(term)
    base = PyBytes_AS_STRING(data)
    needle = PyBytes_AS_STRING(term)
    if pos < 0 or pos > hay_len:
        if pos > hay_len:
            return -1
        pos = _clamp_start(pos, hay_len)
    if needle_len == 0:
        return pos
    if needle_len > hay_len - pos:
        return -1
    p = base + pos
    if needle_len == 1:
        p = <const char *>memchr(p, needle[0], <size_t>(hay_len - pos))
        return -1 if p == NULL else p - base
    last = base + (hay_len - needle_len)  # last possible start
    while p <= last:
        p = <const char *>memchr(p, needle[0], <size_t>(last - p + 1))
        if p == NULL:
            return -1
        if memcmp(p + 1, needle + 1, <size_t>(needle_len - 1)) == 0:
            return p - base
        p += 1
    return -1


cdef inline Py_ssize_t prefix_at_end_bytes(object data, Py_ssize_t pos, object term) noexcept:
    """Longest proper prefix of ``term`` that ``data[pos:]`` ends with (0:
    none); -2 unless both are bytes objects."""
    cdef Py_ssize_t hay_len, size
    cdef const char *hay
    cdef const char *needle
    if not (PyBytes_CheckExact(data) and PyBytes_CheckExact(term)):
        return -2
    needle = PyBytes_AS_STRING(term)
    size = PyBytes_GET_SIZE(term) - 1
    pos = _clamp_start(pos, PyBytes_GET_SIZE(data))
    hay = PyBytes_AS_STRING(data) + pos
    hay_len = PyBytes_GET_SIZE(data) - pos
    if size > hay_len:
        size = hay_len
    while size > 0:
        if memcmp(hay + (hay_len - size), needle, <size_t>size) == 0:
            return size
        size -= 1
    return 0


cdef inline object bytes_slice(object data, Py_ssize_t start, Py_ssize_t stop):
    """``data[start:stop]`` of a bytes object, the object itself when that is
    all of it; None unless ``data`` is a bytes object."""
    cdef Py_ssize_t length
    if not PyBytes_CheckExact(data):
        return None
    length = PyBytes_GET_SIZE(data)
    if not (0 <= start <= stop <= length):  # (the callers' bounds are exact)
        start = _clamp_start(start, length)
        stop = _clamp_start(stop, length)
        if stop <= start:
            return b""
    if start == 0 and stop == length:
        return data
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, stop - start)


cdef inline Py_ssize_t buffer_size(object data) except -1:
    """``len(data)``, read straight from a bytes object."""
    if PyBytes_CheckExact(data):
        return PyBytes_GET_SIZE(data)
    return PyObject_Size(data)


cdef inline Py_ssize_t exact_count(object term) noexcept:
    """``term`` as a byte count if it is exactly an ``int`` in
    0..PY_SSIZE_T_MAX, else -1 (a subclass may lie in comparisons)."""
    cdef Py_ssize_t count
    if type(term) is not int:
        return -1
    count = _long_as_ssize(term)
    if count == -1 and PyErr_Occurred() != NULL:
        PyErr_Clear()  # past PY_SSIZE_T_MAX
        return -1
    return count if count >= 0 else -1


# ``ac_out_buffer_size`` as the push and the drain use it.  CPython compares,
# chunks and slices with the attribute itself, so any integer works there
# (slicing clamps it to the C range, as this does); a value with no
# ``__index__`` gives NOT_A_SIZE, and the caller fails as CPython does.
cdef extern from *:
    """
    #define AC_NOT_A_SIZE PY_SSIZE_T_MIN
    """
    const Py_ssize_t NOT_A_SIZE "AC_NOT_A_SIZE"
    Py_ssize_t _index_clamped "PyNumber_AsSsize_t"(object, PyObject *) except? -1

from cpython.number cimport PyIndex_Check


cdef inline Py_ssize_t out_size(object value) except? -1:
    """``value`` as an integer clamped to the C range, never NOT_A_SIZE
    unless it has no ``__index__``."""
    cdef Py_ssize_t size
    if PyLong_CheckExact(value):  # the usual case, without a new reference
        size = _long_as_ssize(value)
        if not (size == -1 and PyErr_Occurred() != NULL):
            return size + 1 if size == NOT_A_SIZE else size
        PyErr_Clear()  # past the C range: clamped below
    elif not PyIndex_Check(value):
        return NOT_A_SIZE
    size = _index_clamped(value, NULL)  # NULL: clamp instead of raising
    return size + 1 if size == NOT_A_SIZE else size


cdef inline bint is_method_of(object bound, object function) noexcept:
    """``bound`` is ``function`` bound to an object (not overridden)."""
    return PyMethod_Check(bound) and PyMethod_GET_FUNCTION(bound) == <PyObject *>function


# ---------------------------------------------------------------------------
# Per-type records (issue 18).
#
# A fact about a class (what one of its attributes resolves to on the class)
# is kept in an ``ac_type_record`` together with the class (a borrowed
# pointer) and the class's ``tp_version_tag``.  CPython gives a class a new
# tag whenever the class or any base is modified (PyType_Modified), and tags
# are never reused, so "same pointer, same non-zero tag" means "the same
# class, unchanged since the fact was recorded": a freed class whose address
# is reused gets another tag.  A tag of 0 (the class has none: tags ran out,
# or it never went through the type cache) is never valid: the caller takes
# its generic path every time.  Dict versions are not used (Cython's cpdef
# override trap: CPython 3.12+ stopped maintaining them).
#
# Only class-level facts go into a record: what an *instance* holds (its
# __dict__) is not covered by the tag, so a fact that an instance could
# shadow must still be checked on the instance.

cdef extern from *:
    """
    typedef struct {
        void *tp;
        unsigned int tag;
        int bits;
    } ac_type_record;

    static inline unsigned int ac_type_tag(PyObject *tp) {
        PyTypeObject *t = (PyTypeObject *)tp;
    #if PY_VERSION_HEX >= 0x030D0000
        /* 3.13 dropped the flag: a tag is valid while non-zero (a change
           of the class resets it to 0) */
        return t->tp_version_tag;
    #else
        return PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG) ? t->tp_version_tag : 0;
    #endif
    }

    /* the record's bits if it describes ``tp`` as it is now, else -1 */
    static inline int ac_record_bits(ac_type_record *rec, PyObject *tp) {
        if (rec->tp == (void *)tp && rec->tag != 0 && ac_type_tag(tp) == rec->tag)
            return rec->bits;
        return -1;
    }

    /* record ``bits`` for ``tp`` as it is now (call after the lookups the
       bits come from: they give the class its tag) */
    static inline void ac_record_set(ac_type_record *rec, PyObject *tp, int bits) {
        rec->tp = (void *)tp;
        rec->tag = ac_type_tag(tp);
        rec->bits = bits;
    }

    /* what the class's MRO holds for ``name`` (no __get__ applied, no
       Python code run; it gives the class its tag), or ``missing`` */
    static inline PyObject *ac_type_lookup(PyObject *tp, PyObject *name, PyObject *missing) {
        PyObject *found = _PyType_Lookup((PyTypeObject *)tp, name);
        if (found == NULL)
            found = missing;
        Py_INCREF(found);
        return found;
    }
    """
    ctypedef struct ac_type_record:
        void *tp
        unsigned int tag
        int bits
    int ac_record_bits(ac_type_record *rec, object tp) noexcept
    void ac_record_set(ac_type_record *rec, object tp, int bits) noexcept
    object ac_type_lookup(object tp, object name, object missing)

# The plain-socket fast path (issue 18, levers 7 and 8).

# recv(2)/send(2) on a plain, non-blocking socket.socket without its method
# call (lever 8).  _socket's object layout (Modules/socketmodule.h,
# PySocketSockObject: the descriptor, family, type, proto, the error handler,
# then the timeout in nanoseconds, 0 = non-blocking) is not a public header,
# so it is mirrored here and checked against the socket's own methods on the
# first plain socket seen (fileno(), family, type, proto, gettimeout()); if
# they disagree the fast path stays off and the methods are called.  The
# errors are the methods' own: OSError from errno (PyErr_SetFromErrno picks
# the subclass, as socketmodule's set_error does), EINTR retried after the
# signal handlers ran, a closed or detached socket (descriptor -1) EBADF.
# The GIL is kept: the call cannot block.  Receiving goes into one static
# 64 KiB buffer and copies out what arrived (lever 7): no 64 KiB allocation
# and shrink per read.  Off where there is no GIL (the buffer is shared) and
# on Windows (another descriptor type).
cdef extern from *:
    """
    #if !defined(_WIN32) && !defined(Py_GIL_DISABLED)
    #include <sys/socket.h>
    #include <errno.h>
    #define AC_FAST_SOCK 1
    typedef struct {
        PyObject_HEAD
        int sock_fd;
        int sock_family;
        int sock_type;
        int sock_proto;
        PyObject *(*errorhandler)(void);
        int64_t sock_timeout;
    } ac_sock_mirror;
    #define AC_RECV_MAX 65536
    static char ac_recv_buf[AC_RECV_MAX];
    static int ac_sock_layout = 0;  /* 0: not checked yet, 1: matches, -1: off */

    static int ac_int_attr(PyObject *obj, const char *name, int call, long *out) {
        PyObject *v = call ? PyObject_CallMethod(obj, name, NULL)
                           : PyObject_GetAttrString(obj, name);
        if (v == NULL) return -1;
        *out = PyLong_AsLong(v);
        Py_DECREF(v);
        return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
    }

    /* 1 if the mirror reads this socket right, 0 if not, -1: cannot tell yet */
    static int ac_sock_check(PyObject *sock) {
        ac_sock_mirror *m = (ac_sock_mirror *)sock;
        long fd, family, type, proto;
        PyObject *t;
        double timeout;
        int ok;
        if (ac_int_attr(sock, "fileno", 1, &fd) < 0
                || ac_int_attr(sock, "family", 0, &family) < 0
                || ac_int_attr(sock, "type", 0, &type) < 0
                || ac_int_attr(sock, "proto", 0, &proto) < 0) {
            PyErr_Clear();
            return -1;
        }
        if (fd < 0) return -1;  /* closed: nothing to compare */
        t = PyObject_CallMethod(sock, "gettimeout", NULL);
        if (t == NULL) { PyErr_Clear(); return -1; }
        if (t == Py_None) timeout = -1.0;
        else timeout = PyFloat_AsDouble(t);
        Py_DECREF(t);
        if (timeout == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
        ok = m->sock_fd == fd && m->sock_family == family
             && m->sock_type == type && m->sock_proto == proto
             && m->errorhandler != NULL  /* (always set: the slot is where we think) */
             && ((timeout < 0 && m->sock_timeout < 0)
                 || (timeout >= 0 && m->sock_timeout == (int64_t)(timeout * 1e9 + 0.5)));
        return ok;
    }

    /* the method ``name`` of ``sock``'s class is still _socket.socket's
       own (socket.socket is a Python class: mock.patch.object(socket.socket,
       "send", ...) replaces it for every socket, and must be called); the
       type's method cache makes each lookup cheap.  socket.socket has
       __slots__, so no instance can shadow the method. */
    static PyObject *ac_str_recv = NULL, *ac_str_send = NULL;
    /* per method (0 recv, 1 send): the class and its base as last found
       to hold _socket's own method (see the per-type records above) */
    static ac_type_record ac_sock_own[2], ac_sock_own_base[2];
    static int ac_sock_method_is_own(PyObject *sock, int sending) {
        PyTypeObject *tp = Py_TYPE(sock);
        PyObject *own, *name = sending ? ac_str_send : ac_str_recv;
        if (tp->tp_getattro != PyObject_GenericGetAttr || tp->tp_base == NULL) return 0;
        if (ac_record_bits(&ac_sock_own[sending], (PyObject *)tp) == 1
                && ac_record_bits(&ac_sock_own_base[sending], (PyObject *)tp->tp_base) == 1)
            return 1;
        own = _PyType_Lookup(tp->tp_base, name);
        if (own == NULL || _PyType_Lookup(tp, name) != own) return 0;
        /* (after the lookups, which give both classes their tags) */
        ac_record_set(&ac_sock_own[sending], (PyObject *)tp, 1);
        ac_record_set(&ac_sock_own_base[sending], (PyObject *)tp->tp_base, 1);
        return 1;
    }

    /* the mirror may be used on this socket, whose type the caller has
       checked is exactly socket.socket, for its recv (0) or send (1): 1 yes,
       0 no */
    static int ac_sock_usable(PyObject *sock, int sending) {
        if (ac_sock_layout == 0) {
            int r;
            if (ac_str_recv == NULL) {
                ac_str_recv = PyUnicode_InternFromString("recv");
                ac_str_send = PyUnicode_InternFromString("send");
                if (ac_str_recv == NULL || ac_str_send == NULL) {
                    PyErr_Clear();
                    Py_CLEAR(ac_str_recv);
                    Py_CLEAR(ac_str_send);
                    return 0;
                }
            }
            r = ac_sock_check(sock);
            if (r < 0) return 0;
            ac_sock_layout = r ? 1 : -1;
        }
        return ac_sock_layout > 0 && ((ac_sock_mirror *)sock)->sock_timeout == 0
               && ac_sock_method_is_own(sock, sending);
    }

    /* sock.recv(size) for 0 < size <= 64 KiB; Py_None: use the method */
    static PyObject *ac_sock_recv(PyObject *sock, PyObject *size_obj) {
        Py_ssize_t size, n;
        int fd;
        if (!PyLong_CheckExact(size_obj) || !ac_sock_usable(sock, 0)) Py_RETURN_NONE;
        size = PyLong_AsSsize_t(size_obj);
        if (size <= 0 || size > AC_RECV_MAX) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        for (;;) {
            fd = ((ac_sock_mirror *)sock)->sock_fd;
            n = recv(fd, ac_recv_buf, (size_t)size, 0);
            if (n >= 0) return PyBytes_FromStringAndSize(ac_recv_buf, n);
            if (errno != EINTR) return PyErr_SetFromErrno(PyExc_OSError);
            if (PyErr_CheckSignals() < 0) return NULL;
        }
    }

    /* sock.send(data, flags) for bytes data; -2: use the method */
    static Py_ssize_t ac_sock_send(PyObject *sock, PyObject *data, int flags) {
        Py_ssize_t n;
        int fd;
        if (!PyBytes_CheckExact(data) || !ac_sock_usable(sock, 1)) return -2;
        for (;;) {
            fd = ((ac_sock_mirror *)sock)->sock_fd;
            n = send(fd, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), flags);
            if (n >= 0) return n;
            if (errno != EINTR) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
            if (PyErr_CheckSignals() < 0) return -1;
        }
    }
    #else
    #define AC_FAST_SOCK 0
    static PyObject *ac_sock_recv(PyObject *sock, PyObject *size_obj) { Py_RETURN_NONE; }
    static Py_ssize_t ac_sock_send(PyObject *sock, PyObject *data, int flags) { return -2; }
    #endif
    """
    object ac_sock_recv(object sock, object size)
    Py_ssize_t ac_sock_send(object sock, object data, int flags) except -1

# Lookups by name with a per-(type, name) cache (issue 18, lever 1).
#
# A lookup on a channel costs two probes: the class's MRO (the type cache)
# and the instance's own attributes.  The cache keeps, per class and name,
# what the MRO holds (valid while the class keeps its ``tp_version_tag``:
# see the records above) and where the name sits in the class's shared
# instance keys.  On CPython 3.11-3.13 a plain instance keeps its attributes in
# a values array indexed by those shared keys until something materialises
# its ``__dict__``; the keys only grow by appending, so "same keys object,
# name at index i" gives the instance's value as values[i] (NULL: unset),
# and "same keys object, same entry count, name absent" proves the
# instance cannot hold the name.  That is the check the interpreter's own
# specialised LOAD_ATTR/LOAD_METHOD make.  3.12 keeps the values pointer
# tagged in the dict slot, 3.13 inside the object (with a "valid" flag);
# the accessors below read each version's way.  Everything else (another
# Python, a materialised ``__dict__``, a class with its own
# ``__getattribute__``/``__getattr__``, a data descriptor under the name,
# a class whose tag is 0) takes CPython's generic lookup, which is the
# answer this cache gives whenever it answers.  The layout is mirrored
# (the internal headers are not part of the API) and checked once against
# a probe object (ac_acache_layout_ok) before any use.
cdef extern from *:
    """
    /* (AC_HOT: defined with ac_truth above) */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 \
        && !defined(Py_GIL_DISABLED) && !defined(PYPY_VERSION)
    #define AC_ACACHE 1
    typedef struct {  /* CPython 3.11-3.13's struct _dictkeysobject (GIL builds) */
        Py_ssize_t refcnt;
        uint8_t log2_size;
        uint8_t log2_index_bytes;
        uint8_t kind;
        uint32_t version;
        Py_ssize_t usable;
        Py_ssize_t nentries;
        char indices[];
    } ac_keys;
    typedef struct { PyObject *key; PyObject *value; } ac_ukey;
    #define AC_KEYS_SPLIT 2
    #define AC_CLS_NONE 0     /* not recorded, or only the generic path */
    #define AC_CLS_METHOD 1   /* a method descriptor (a function) */
    #define AC_CLS_PLAIN 2    /* a value with no __get__ */
    #define AC_CLS_MISSING 3  /* nothing: only an instance attribute */
    typedef struct {
        PyTypeObject *tp;     /* borrowed: valid while tag matches */
        unsigned int tag;
        PyObject *name;       /* borrowed: the callers' interned constants */
        int cls_kind;
        PyObject *cls_value;  /* strong: what the MRO holds (or NULL) */
        void *keys;           /* the shared keys the index refers to */
        Py_ssize_t nentries;  /* their entry count when index is -1 */
        Py_ssize_t index;     /* the name's entry, or -1: absent */
    } ac_acache_entry;
    /* 4-way set associative: a request's ~30 (class, name) pairs hashed
       by address into a direct-mapped table collide in almost every
       process layout, and two pairs sharing a slot refill it on every
       event (measured: 2,000 instructions per request more in one clone
       than in another of the same commit) */
    #define AC_ACACHE_SETS 128
    #define AC_ACACHE_WAYS 4
    static ac_acache_entry ac_acache[AC_ACACHE_SETS * AC_ACACHE_WAYS];
    static int ac_acache_layout = 0;  /* 0: not checked, 1: matches, -1: off */
    static unsigned int ac_acache_victim = 0;  /* the way a full set gives up */
    static Py_ssize_t ac_acache_fills = 0;  /* records written, for the tests */

    static inline ac_acache_entry *ac_acache_set(PyTypeObject *tp, PyObject *name) {
        size_t h = ((size_t)tp >> 4) * 31u ^ ((size_t)name >> 4);
        return &ac_acache[((h ^ (h >> 9)) & (AC_ACACHE_SETS - 1)) * AC_ACACHE_WAYS];
    }

    /* the way recording (tp, name), else NULL */
    static inline ac_acache_entry *ac_acache_find(PyTypeObject *tp, PyObject *name) {
        ac_acache_entry *e = ac_acache_set(tp, name);
        int w;
        for (w = 0; w < AC_ACACHE_WAYS; w++, e++)
            if (e->tp == tp && e->name == name) return e;
        return NULL;
    }

    /* the way to record (tp, name) in: its own, an empty one, or a victim */
    static ac_acache_entry *ac_acache_way(PyTypeObject *tp, PyObject *name) {
        ac_acache_entry *set = ac_acache_set(tp, name);
        ac_acache_entry *e = ac_acache_find(tp, name);
        int w;
        if (e != NULL) return e;
        for (w = 0; w < AC_ACACHE_WAYS; w++)
            if (set[w].tp == NULL) return &set[w];
        ac_acache_victim++;
        return &set[ac_acache_victim % AC_ACACHE_WAYS];
    }

    /* a managed-dict instance's materialised __dict__, or NULL */
    static inline PyObject *ac_obj_dict(PyObject *obj) {
        PyObject *slot = ((PyObject **)obj)[-3];
    #if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
        if ((uintptr_t)slot & 1) return NULL;  /* 3.12: the tagged values pointer */
    #endif
        return slot;
    }

    /* a managed-dict instance's values array (indexed by the class's shared
       keys), or NULL */
    #if PY_VERSION_HEX >= 0x030D0000
    typedef struct {  /* 3.13's struct _dictvalues */
        uint8_t capacity;
        uint8_t size;
        uint8_t embedded;
        uint8_t valid;
        PyObject *values[1];
    } ac_values313;
    #define AC_TPFLAGS_INLINE_VALUES (1UL << 2)
    #endif
    static inline PyObject **ac_obj_values(PyObject *obj, PyTypeObject *tp) {
    #if PY_VERSION_HEX >= 0x030D0000
        ac_values313 *v;
        if (!(tp->tp_flags & AC_TPFLAGS_INLINE_VALUES) || tp->tp_basicsize != sizeof(PyObject))
            return NULL;
        v = (ac_values313 *)((char *)obj + sizeof(PyObject));
        return v->valid ? v->values : NULL;
    #elif PY_VERSION_HEX >= 0x030C0000
        uintptr_t slot = (uintptr_t)((PyObject **)obj)[-3];
        (void)tp;
        return (slot & 1) ? (PyObject **)(slot + 1) : NULL;
    #else
        (void)tp;
        return ((PyObject ***)obj)[-4];
    #endif
    }

    /* the entry of ``name`` in split keys ``k``: -1 absent, -2 cannot tell */
    static Py_ssize_t ac_keys_index(ac_keys *k, PyObject *name) {
        ac_ukey *e;
        Py_ssize_t i;
        int unsure = 0;
        if (k->kind != AC_KEYS_SPLIT || k->nentries < 0) return -2;
        e = (ac_ukey *)(k->indices + ((size_t)1 << k->log2_index_bytes));
        for (i = 0; i < k->nentries; i++) {
            PyObject *key = e[i].key;
            if (key == name) return i;
            if (key == NULL) continue;
            if (!PyUnicode_CheckExact(key)) { unsure = 1; continue; }
            /* (exact str: compared without running Python code) */
            if (PyUnicode_GET_LENGTH(key) == PyUnicode_GET_LENGTH(name)
                    && PyUnicode_Compare(key, name) == 0) return i;
        }
        return unsure ? -2 : -1;
    }

    /* the mirror reads a 3.11 instance's attributes right: checked on a
       probe instance of a fresh class, before the cache is used */
    static int ac_acache_layout_ok(void) {
        PyObject *cls = NULL, *inst = NULL, *val = NULL, *name = NULL, *other = NULL, *d = NULL;
        PyTypeObject *tp;
        ac_keys *k;
        PyObject **values;
        Py_ssize_t i;
        int ok = 0;
        if (ac_acache_layout != 0) return ac_acache_layout > 0;
        cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){}", "_ac_probe",
                                    (PyObject *)&PyBaseObject_Type);
        if (cls == NULL) goto done;
        inst = PyObject_CallNoArgs(cls);
        val = PyList_New(0);
        name = PyUnicode_InternFromString("ac_probe_value");
        other = PyUnicode_InternFromString("ac_probe_absent");
        if (inst == NULL || val == NULL || name == NULL || other == NULL) goto done;
        if (PyObject_SetAttr(inst, name, val) < 0) goto done;
        tp = Py_TYPE(inst);
        if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE))
            goto done;
        if (ac_obj_dict(inst) != NULL) goto done;
        values = ac_obj_values(inst, tp);
        k = (ac_keys *)((PyHeapTypeObject *)tp)->ht_cached_keys;
        if (values == NULL || k == NULL) goto done;
        i = ac_keys_index(k, name);
        if (i < 0 || values[i] != val || ac_keys_index(k, other) != -1) goto done;
        d = PyObject_GenericGetDict(inst, NULL);
        if (d == NULL || ac_obj_dict(inst) != d) goto done;
        if (PyDict_GetItemWithError(d, name) != val) goto done;
        ok = 1;
    done:
        if (PyErr_Occurred()) PyErr_Clear();
        Py_XDECREF(d); Py_XDECREF(other); Py_XDECREF(name); Py_XDECREF(val);
        Py_XDECREF(inst); Py_XDECREF(cls);
        ac_acache_layout = ok ? 1 : -1;
        return ok;
    }

    /* the instance's own value for e's name: 0 with *found (NULL: it has
       none), or -1: not answerable from the entry */
    AC_HOT int ac_acache_inst(PyObject *obj, PyTypeObject *tp, ac_acache_entry *e,
                              PyObject **found) {
        PyObject **values;
        ac_keys *k;
        if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) || ac_obj_dict(obj) != NULL)
            return -1;
        values = ac_obj_values(obj, tp);
        k = (ac_keys *)((PyHeapTypeObject *)tp)->ht_cached_keys;
        if (values == NULL || k == NULL || (void *)k != e->keys) return -1;
        if (e->index >= 0) {
            /* (the entry still names it: a check that costs a compare) */
            ac_ukey *entries = (ac_ukey *)(k->indices + ((size_t)1 << k->log2_index_bytes));
            if (e->index >= k->nentries || entries[e->index].key != e->name) return -1;
            *found = values[e->index];
            return 0;
        }
        if (k->nentries != e->nentries) return -1;
        *found = NULL;
        return 0;
    }

    /* the entry for (type(obj), name), if it describes them now.  hint
       (may be NULL) is the calling site's own memory of the entry it used
       last: a site looks up one name, on objects of (mostly) one class, so
       checking that entry first skips the hash and the set's search; it is
       only a guess, checked like any way of the set */
    AC_HOT ac_acache_entry *ac_acache_get(PyObject *obj, PyObject *name, void **hint) {
        PyTypeObject *tp = Py_TYPE(obj);
        ac_acache_entry *e = hint != NULL ? (ac_acache_entry *)*hint : NULL;
        if (e == NULL || e->tp != tp || e->name != name) {
            e = ac_acache_find(tp, name);
            if (e != NULL && hint != NULL) *hint = (void *)e;
        }
        if (e == NULL || e->cls_kind == AC_CLS_NONE || e->tag == 0
                || ac_type_tag((PyObject *)tp) != e->tag
                || tp->tp_getattro != PyObject_GenericGetAttr)
            return NULL;
        return e;
    }

    /* record (type(obj), name) after a generic lookup of it; never fails */
    static void ac_acache_fill(PyObject *obj, PyObject *name) {
        PyTypeObject *tp = Py_TYPE(obj);
        ac_acache_entry *e;
        PyObject *descr, *old;
        ac_keys *k;
        Py_ssize_t index;
        int kind;
        if (!PyUnicode_CheckExact(name) || tp->tp_getattro != PyObject_GenericGetAttr
                || !(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT)
                || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)
                || ac_obj_dict(obj) != NULL || ac_obj_values(obj, tp) == NULL)
            return;
        if (!ac_acache_layout_ok()) return;
        k = (ac_keys *)((PyHeapTypeObject *)tp)->ht_cached_keys;
        if (k == NULL) return;
        descr = _PyType_Lookup(tp, name);  /* borrowed; gives the class its tag */
        if (ac_type_tag((PyObject *)tp) == 0)
            return;
        if (descr == NULL)
            kind = AC_CLS_MISSING;
        else if (PyType_HasFeature(Py_TYPE(descr), Py_TPFLAGS_METHOD_DESCRIPTOR))
            kind = AC_CLS_METHOD;
        else if (Py_TYPE(descr)->tp_descr_get == NULL)
            kind = AC_CLS_PLAIN;
        else
            return;  /* a descriptor: the generic path runs it */
        index = ac_keys_index(k, name);
        if (index == -2) return;
        e = ac_acache_way(tp, name);
        ac_acache_fills++;
        old = e->cls_value;
        Py_XINCREF(descr);
        e->tp = tp;
        e->tag = ac_type_tag((PyObject *)tp);
        e->name = name;
        e->cls_kind = kind;
        e->cls_value = descr;
        e->keys = (void *)k;
        e->nentries = k->nentries;
        e->index = index;
        Py_XDECREF(old);  /* last: a finaliser it runs sees a whole entry */
    }
    #else
    #define AC_ACACHE 0
    #endif

    #if PY_VERSION_HEX >= 0x030D0000
    /* exported, but declared in an internal header from 3.13 on */
    PyAPI_FUNC(int) _PyObject_GetMethod(PyObject *obj, PyObject *name, PyObject **method);
    #endif

    /* A method found as CPython's method call finds it (the instance's
       attributes, then the class; a __getattribute__ or __getattr__ on the
       class is asked as usual), without creating a bound method: a
       function found on the class comes back unbound (*unbound = 1: call it
       with the object first), anything else as the attribute's value
       (*unbound = 0: what getattr gives, which is a bound method when the
       class has its own __getattribute__).  So "is this the library's own
       function?" is one lookup and an identity test, and an override found
       on the class is called by vectorcall with the object. */
    AC_HOT PyObject *ac_method_h(PyObject *obj, PyObject *name, int *unbound,
                                 void **hint) {
        PyObject *meth = NULL;
    #if AC_ACACHE
        ac_acache_entry *e = ac_acache_get(obj, name, hint);
        if (e != NULL && e->cls_kind != AC_CLS_PLAIN
                && ac_acache_inst(obj, Py_TYPE(obj), e, &meth) == 0) {
            if (meth != NULL) {
                *unbound = 0;  /* the instance's own attribute */
                Py_INCREF(meth);
                return meth;
            }
            if (e->cls_kind == AC_CLS_METHOD) {
                *unbound = 1;
                Py_INCREF(e->cls_value);
                return e->cls_value;
            }
        }
        meth = NULL;
    #else
        (void)hint;
    #endif
        *unbound = _PyObject_GetMethod(obj, name, &meth);
    #if AC_ACACHE
        if (meth != NULL) ac_acache_fill(obj, name);
    #endif
        return meth;  /* NULL: the exception is set */
    }

    /* getattr(obj, name), as CPython's lookup gives it */
    AC_HOT PyObject *ac_getattr_h(PyObject *obj, PyObject *name, void **hint) {
        PyObject *value = NULL;
    #if AC_ACACHE
        ac_acache_entry *e = ac_acache_get(obj, name, hint);
        if (e != NULL && ac_acache_inst(obj, Py_TYPE(obj), e, &value) == 0) {
            if (value != NULL) {
                Py_INCREF(value);
                return value;
            }
            if (e->cls_kind == AC_CLS_PLAIN) {
                Py_INCREF(e->cls_value);
                return e->cls_value;
            }
        }
    #else
        (void)hint;
    #endif
        value = PyObject_GetAttr(obj, name);
    #if AC_ACACHE
        if (value != NULL) ac_acache_fill(obj, name);
    #endif
        return value;
    }

    /* meth(), or meth(arg) when arg is not NULL, for what ac_method(obj,
       ...) or ac_method_or gave: with obj first when unbound (a function
       found on the class), as the bound method getattr gives would call it */
    static inline PyObject *ac_callm1(PyObject *meth, int unbound, PyObject *obj,
                                      PyObject *arg) {
        PyObject *args[2];
        size_t n = arg != NULL;
        args[0] = obj;
        args[1] = arg;
        if (unbound)
            return PyObject_Vectorcall(meth, args, n + 1, NULL);
        return PyObject_Vectorcall(meth, args + 1, n, NULL);
    }

    /* obj.<name>(), obj.<name>(arg): CPython's method call (as
       PyObject_VectorcallMethod makes it), the method found by ac_method */
    static PyObject *ac_call_h(PyObject *obj, PyObject *name, PyObject *arg, void **hint) {
        PyObject *method, *result;
        int unbound = 0;
        method = ac_method_h(obj, name, &unbound, hint);
        if (method == NULL) return NULL;
        result = ac_callm1(method, unbound, obj, arg);
        Py_DECREF(method);
        return result;
    }
    /* 1: the lookup cache is on; 0: its layout not checked yet; -1: off */
    static int ac_acache_state(void) {
    #if AC_ACACHE
        return ac_acache_layout;
    #else
        return -1;
    #endif
    }
    /* how many records this module's cache has written so far */
    static Py_ssize_t ac_acache_fill_count(void) {
    #if AC_ACACHE
        return ac_acache_fills;
    #else
        return 0;
    #endif
    }
    /* Each call site of the compiled modules gets a hint of its own (a
       static slot, in the statement expression GCC and clang have); other
       compilers look up without one */
    #if defined(__GNUC__) || defined(__clang__)
    #define AC_SITE(call) __extension__ ({ static void *ac_site_hint = NULL; call; })
    #else
    #define AC_SITE(call) ((void)0, call)
    #define ac_site_hint ac_no_hint
    static void *ac_no_hint = NULL;
    #endif
    #define ac_getattr(obj, name) AC_SITE(ac_getattr_h((obj), (name), &ac_site_hint))
    #define ac_method(obj, name, unbound) \
        AC_SITE(ac_method_h((obj), (name), (unbound), &ac_site_hint))
    #define ac_call0(obj, name) AC_SITE(ac_call_h((obj), (name), NULL, &ac_site_hint))
    #define ac_call1(obj, name, arg) AC_SITE(ac_call_h((obj), (name), (arg), &ac_site_hint))
    #define ac_call(obj, name, arg) ac_call_h((obj), (name), (arg), NULL)
    """
    object ac_method(object obj, object name, int *unbound)
    object ac_getattr(object obj, object name)
    object ac_call0(object obj, object name)
    int ac_acache_state() noexcept
    Py_ssize_t ac_acache_fill_count() noexcept
    object ac_call1(object obj, object name, object arg)


# Lookups with a default (issue 19): ``getattr(obj, name, default)`` through
# the cache above.  Exactly getattr's rule: only AttributeError means
# missing (any other exception propagates), and whatever the lookup finds
# is the value, None included (a class-level ``found_message = None`` is a
# value).  A name the cache has seen missing (nothing in the MRO, nothing
# on the instance: the entry's keys say so) gives the default without
# raising and clearing an AttributeError; else the generic lookup runs, and
# a miss it reports records the entry for next time.
cdef extern from *:
    """
    /* after a lookup of name failed: the default (a new reference) if the
       error is an AttributeError, else NULL with the error kept */
    static PyObject *ac_missing_or_error(PyObject *obj, PyObject *name, PyObject *dflt) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
    #if AC_ACACHE
        ac_acache_fill(obj, name);  /* (needs no exception set) */
    #else
        (void)obj; (void)name;
    #endif
        Py_INCREF(dflt);
        return dflt;
    }

    /* 1: the cache proves obj has no attribute name (getattr would raise
       AttributeError without running Python code) */
    static inline int ac_known_missing(PyObject *obj, PyObject *name) {
    #if AC_ACACHE
        PyObject *found = NULL;
        ac_acache_entry *e = ac_acache_get(obj, name, NULL);
        return e != NULL && e->cls_kind == AC_CLS_MISSING
               && ac_acache_inst(obj, Py_TYPE(obj), e, &found) == 0 && found == NULL;
    #else
        (void)obj; (void)name;
        return 0;
    #endif
    }

    /* getattr(obj, name, dflt) */
    static inline PyObject *ac_getattr_or(PyObject *obj, PyObject *name, PyObject *dflt) {
        PyObject *value;
        if (ac_known_missing(obj, name)) {
            Py_INCREF(dflt);
            return dflt;
        }
        value = ac_getattr_h(obj, name, NULL);
        return value != NULL ? value : ac_missing_or_error(obj, name, dflt);
    }

    /* ac_method with getattr(obj, name, dflt)'s rule: dflt (with *unbound
       = 0) when the name is missing; call what it gives with ac_callm1 */
    static inline PyObject *ac_method_or(PyObject *obj, PyObject *name, PyObject *dflt,
                                         int *unbound) {
        PyObject *meth;
        *unbound = 0;
        if (ac_known_missing(obj, name)) {
            Py_INCREF(dflt);
            return dflt;
        }
        meth = ac_method_h(obj, name, unbound, NULL);
        if (meth != NULL) return meth;
        *unbound = 0;
        return ac_missing_or_error(obj, name, dflt);
    }
    /* (ac_callm1, which calls what ac_method_or gives, is above ac_call) */
    """
    object ac_getattr_or(object obj, object name, object dflt)
    object ac_method_or(object obj, object name, object dflt, int *unbound)
    object ac_callm1(object meth, int unbound, object obj, object arg)


# A C method of one argument called as its descriptor would call it, minus
# the vectorcall's dispatch (issue 18: push's append to an exact deque, about
# 150 instructions a request through the descriptor).  Only a method
# descriptor whose flags are exactly METH_O, on an object of its own type
# exactly (what the descriptor's self check would accept without a subclass
# question), takes the direct call; anything else is called as Python calls
# it, with self first.
cdef extern from *:
    """
    static inline PyObject *ac_call_o(PyObject *descr, PyObject *self, PyObject *arg) {
        PyObject *args[2];
        if (Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
            PyMethodDescrObject *d = (PyMethodDescrObject *)descr;
            if ((d->d_method->ml_flags & ~METH_COEXIST) == METH_O
                    && Py_IS_TYPE(self, PyDescr_TYPE(d)))
                return d->d_method->ml_meth(self, arg);
        }
        args[0] = self;
        args[1] = arg;
        return PyObject_Vectorcall(descr, args, 2, NULL);
    }
    """
    object ac_call_o(object descr, object self, object arg)


# meth() for what ac_method(obj, ...) gave (ac_callm1 without an argument)
cdef extern from *:
    """
    #define ac_callm0(meth, unbound, obj) ac_callm1((meth), (unbound), (obj), NULL)
    """
    object ac_callm0(object meth, int unbound, object obj)
