# Augmenting .pxd: types asynchat_core/_proxy_py.py, which setup.py compiles
# in Cython's pure-Python mode as asynchat_core._proxy_c (PURE_MODE there).
# Declarations only: every line of logic is in _proxy_py.py.
#
# Memory safety: the parser reads a bytes object only by index and slice,
# each guarded by a length check in _proxy_py.py; Cython's bounds checks
# stay on (no boundscheck=False here), so even a wrong guard raises
# IndexError instead of reading past the object.

import cython

cdef tuple _INCOMPLETE
cdef dict _V1_FAMILIES
cdef object _AF_UNIX

@cython.locals(buf=bytes, n=Py_ssize_t, first=int)
cpdef tuple parse(object data, int versions=*, Py_ssize_t v2_limit=*)

@cython.locals(end=Py_ssize_t, length=Py_ssize_t, fields=list)
cdef tuple _parse_v1(bytes buf, Py_ssize_t n)

cdef str _v1_host(object family, bytes field)

@cython.locals(k=Py_ssize_t, i=Py_ssize_t, value=long, digit=int)
cdef long _v1_port(bytes field) except -1

@cython.locals(ver_cmd=int, command=int, fam=int, af=int, transport=int,
               total=Py_ssize_t, pos=Py_ssize_t, size=Py_ssize_t, tlvs=list)
cdef tuple _parse_v2(bytes buf, Py_ssize_t n, Py_ssize_t v2_limit)

@cython.locals(end=Py_ssize_t)
cdef str _unix_path(bytes raw)
