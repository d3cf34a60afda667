"""The implementations the tests run against, bound in one place.

Behaviour tests are written once and run against each implementation
through the ``impl`` / ``our_impl`` fixtures of ``conftest.py``:

``cython``
    asynchat_core with its compiled modules, imported directly: a missing
    build fails the run instead of testing the Python modules twice
    (``pytest --no-compiled`` skips these parameters, for an install made
    without a compiler).
``python``
    asynchat_core with its Python implementation modules.
``stdlib``
    the reference: the interpreter's own asyncore/asynchat up to 3.11, the
    pyasyncore/pyasynchat backports on 3.12+ (the ``test`` extra installs
    them there).

Whole-module tests that take no fixture use whatever
``ASYNCHAT_CORE_NO_EXTENSIONS`` selected; CI runs the suite both ways.
"""
import contextlib
import importlib
import sys
import warnings

import pytest

from asynchat_core import _chat_py, _loop_py, _proxy_py
from asynchat_core import proxy as ac_proxy
from asynchat_core import asynchat as ac_asynchat
from asynchat_core import asyncore as ac_asyncore

OURS = ("python", "cython")
#: event backends of asynchat_core's loop usable here, best first
BACKENDS = ac_asyncore.available_backends()
NAMES = ("stdlib",) + OURS


def _load_reference():
    """(asyncore, asynchat, description) of the reference, or Nones and why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import asynchat
            import asyncore
        except ImportError:
            return None, None, "no asyncore/asynchat here (Python 3.12+: pip install pyasyncore pyasynchat)"
    if asyncore is ac_asyncore or asynchat is ac_asynchat:
        raise RuntimeError("tests must not asynchat_core.install() in-process")
    if sys.version_info < (3, 12):
        what = "CPython %d.%d stdlib" % sys.version_info[:2]
    else:
        what = "pyasyncore/pyasynchat backports"
    return asyncore, asynchat, what


REF_ASYNCORE, REF_ASYNCHAT, REFERENCE = _load_reference()
HAVE_REFERENCE = REF_ASYNCHAT is not None


class Impl:
    """One implementation: its name and the modules that make it up.

    ``asyncore``/``asynchat`` are the modules user code imports; for
    asynchat_core they are the package's own modules, with ``chat`` and
    ``loop`` (its implementation modules) bound into them by ``bind()``.
    """

    def __init__(self, name, asyncore, asynchat, chat=None, loop=None, proxy=None):
        self.name = name
        self.proxy = proxy  # the PROXY protocol parser module
        self.asyncore = asyncore
        self.asynchat = asynchat
        self.chat = chat
        self.loop = loop
        self._classes = {}

    def __repr__(self):
        return "<Impl %s>" % self.name

    @property
    def is_reference(self):
        return self.name == "stdlib"

    @contextlib.contextmanager
    def bind(self):
        """Bind this implementation's modules into asynchat_core for a while."""
        if self.is_reference:
            yield self
            return
        previous_loop = ac_asyncore._use_impl(self.loop)
        previous_proxy = ac_proxy._use_impl(self.proxy)
        try:
            previous_chat = ac_asynchat._use_impl(self.chat)
            try:
                yield self
            finally:
                ac_asynchat._use_impl(previous_chat)
        finally:
            ac_proxy._use_impl(previous_proxy)
            ac_asyncore._use_impl(previous_loop)

    def chat_class(self, *mixins):
        """A class of ``mixins`` over this implementation's ``async_chat`` (cached)."""
        cls = self._classes.get(mixins)
        if cls is None:
            name = "_".join(m.__name__ for m in mixins) + "_" + self.name
            cls = type(name, mixins + (self.asynchat.async_chat,), {})
            self._classes[mixins] = cls
        return cls

    def loop_once(self, map, timeout):
        """One pass of this implementation's loop over ``map``."""
        if self.is_reference:
            self.asyncore.loop(timeout=timeout, use_poll=True, map=map, count=1)
        else:
            self.asyncore.loop(timeout=timeout, map=map, count=1)


def _compiled(name):
    # no fallback: a missing build must fail, not test the Python modules twice
    return importlib.import_module("asynchat_core." + name)


_cache = {}
#: False under ``pytest --no-compiled`` (set by conftest.py)
compiled_enabled = True


def get(name):
    """The ``Impl`` called ``name`` (one of ``NAMES``); None if it is not here."""
    impl = _cache.get(name)
    if impl is None:
        if name == "stdlib":
            if not HAVE_REFERENCE:
                return None
            impl = Impl(name, REF_ASYNCORE, REF_ASYNCHAT)
        elif name == "python":
            impl = Impl(name, ac_asyncore, ac_asynchat, _chat_py, _loop_py, _proxy_py)
        elif name == "cython":
            impl = Impl(name, ac_asyncore, ac_asynchat, _compiled("_chat_c"), _compiled("_loop_c"),
                        _compiled("_proxy_c"))
        else:
            raise ValueError("unknown implementation %r" % (name,))
        _cache[name] = impl
    return impl


def available(names=NAMES):
    """The names in ``names`` that can run here, in order."""
    return [n for n in names
            if (n != "stdlib" or HAVE_REFERENCE) and (n != "cython" or compiled_enabled)]


def bound(name):
    """``get(name).bind()``: for tests that compare implementations in one run."""
    return get(name).bind()


def params(names):
    """A ``pytest.param`` per name, each marked ``implementation``, the
    compiled implementation's also ``compiled``."""
    return [pytest.param(name, id=name,
                         marks=[pytest.mark.implementation]
                         + ([pytest.mark.compiled] if name == "cython" else []))
            for name in names]
