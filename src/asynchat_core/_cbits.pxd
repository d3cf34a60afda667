# C-only helpers shared by the kernels compiled from the pure twins (setup.py
# PURE_MODE): what has no Python meaning lives here, cimported by the
# augmenting .pxd files (_loop_c.pxd, _chat_c.pxd).  Each twin defines a
# Python stand-in for the names it uses under ``if not cython.compiled:``,
# so compiled, the cimported C function is the one called.  Everything is
# inline or extern: no extension module is built from this file.

from cpython.exc cimport PyErr_CheckSignals

# Calls between compiled functions and C-level descriptors run no Python
# frame, and Py_EnterRecursiveCall did not stop such a cycle in testing (a
# class whose handle_read is dispatcher.handle_read_event overflowed the C
# stack): every entry point counts its own nesting, per thread, and raises
# RecursionError far below any thread's stack size.  (The counter is static:
# one per module that cimports this file, each bounded.)
cdef extern from *:
    """
    #if defined(_MSC_VER)
    #define AC_THREAD_LOCAL __declspec(thread)
    #else
    #define AC_THREAD_LOCAL __thread
    #endif
    #define AC_MAX_NESTING 256
    static AC_THREAD_LOCAL int ac_nesting = 0;
    static int ac_enter(void) {
        if (ac_nesting >= AC_MAX_NESTING) {
            PyErr_SetString(PyExc_RecursionError,
                            "asynchat_core: kernel calls nested too deeply "
                            "(a method or descriptor that calls itself?)");
            return -1;
        }
        ac_nesting++;
        return 0;
    }
    static void ac_leave(void) { if (ac_nesting > 0) ac_nesting--; }
    """
    int ac_enter() except -1
    void ac_leave() noexcept

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
