# C helpers of the framer kernel (_frame_py.py compiled as _frame_c): the
# Python stand-ins are in _frame_py.py under ``if not cython.compiled``.
# Inline only: no extension module is built from this file.  Each one
# checks that it got an exact bytes object and clamps its range to the
# object's length, so no value can make it read outside the object (the
# callers' ranges are exact; a clamped range gives a wrong answer, never a
# wild read).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE


cdef inline bint _in_bytes(object data, Py_ssize_t start, Py_ssize_t stop) noexcept:
    return (PyBytes_CheckExact(data) and 0 <= start <= stop
            and stop <= PyBytes_GET_SIZE(data))


cdef inline unsigned long long uint_at(object data, Py_ssize_t pos, Py_ssize_t size,
                                       bint big) noexcept:
    """The unsigned integer of ``data[pos:pos + size]`` (0 out of range)."""
    cdef const unsigned char *p
    cdef unsigned long long value = 0
    cdef Py_ssize_t i
    if not _in_bytes(data, pos, pos + size) or size > 8:
        return 0
    p = <const unsigned char *>PyBytes_AS_STRING(data) + pos
    if big:
        for i in range(size):
            value = (value << 8) | p[i]
    else:
        for i in range(size - 1, -1, -1):
            value = (value << 8) | p[i]
    return value


cdef inline Py_ssize_t digits_at(object data, Py_ssize_t start, Py_ssize_t stop) noexcept:
    """``data[start:stop]`` as a decimal count: -1 unless 1..18 ASCII digits."""
    cdef const unsigned char *p
    cdef Py_ssize_t value = 0
    cdef Py_ssize_t i
    if not _in_bytes(data, start, stop) or not 0 < stop - start <= 18:
        return -1
    p = <const unsigned char *>PyBytes_AS_STRING(data)
    for i in range(start, stop):
        if not 48 <= p[i] <= 57:
            return -1
        value = value * 10 + (p[i] - 48)
    return value


cdef inline int byte_at(object data, Py_ssize_t pos) noexcept:
    """``data[pos]``; -1 out of range."""
    if not _in_bytes(data, pos, pos + 1):
        return -1
    return (<const unsigned char *>PyBytes_AS_STRING(data))[pos]


cdef inline Py_ssize_t digits_crlf(object data, Py_ssize_t start, Py_ssize_t end) noexcept:
    """Where the CRLF after ``data[start:]``'s 1..18 ASCII digits is, when
    both lie before ``end`` (the well-formed RESP count); -1 otherwise."""
    cdef const unsigned char *p
    cdef Py_ssize_t i, stop
    if not _in_bytes(data, start, end):
        return -1
    p = <const unsigned char *>PyBytes_AS_STRING(data)
    stop = end if end - start <= 18 else start + 18
    i = start
    while i < stop and 48 <= p[i] <= 57:
        i += 1
    if i == start or i + 1 >= end or p[i] != 13 or p[i + 1] != 10:
        return -1
    return i
