"""Build script: compiles the Cython kernels in src/asynchat_core/.

Set ASYNCHAT_CORE_DEBUG_BUILD=1 for a sanitizer/trace build (-O1, ASan, UBSan,
CYTHON_TRACE) used by the hardening tests.
"""
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# ASYNCHAT_CORE_REQUIRE_EXTENSIONS=1 turns a failed compile into a build error
# (wheel builders set it: a platform wheel without its kernels is a bug).
REQUIRE_EXT = os.environ.get("ASYNCHAT_CORE_REQUIRE_EXTENSIONS", "") not in ("", "0")


class optional_build_ext(build_ext):
    """Build the kernels if possible; without a compiler, install the pure twin."""

    _warned = False

    def run(self):
        try:
            build_ext.run(self)
        except Exception as exc:  # no compiler at all: DistutilsPlatformError etc.
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            build_ext.build_extension(self, ext)
        except Exception as exc:  # CompileError, LinkError, DistutilsExecError
            self._fallback(exc)

    def _fallback(self, exc):
        if REQUIRE_EXT:
            raise exc
        if not optional_build_ext._warned:
            optional_build_ext._warned = True
            detail = str(exc)
            if len(detail) > 160:  # compiler command lines are long; keep the end
                detail = "..." + detail[-157:]
            sys.stderr.write(
                "WARNING: asynchat_core: could not compile the Cython kernels "
                "(%s: %s); installing the pure-Python implementation, which is "
                "slower but behaves the same.\n" % (type(exc).__name__, detail)
            )

KERNELS = ["_chat_c", "_loop_c"]


def _free_threaded():
    # CPython built with --disable-gil (3.13t, 3.14t, ...): the kernels are
    # not declared free-threading safe (importing them would turn the GIL
    # back on for the whole process), so nothing is compiled there and
    # asynchat_core._impl selects the pure-Python twin (docs/platforms.md).
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _extensions():
    if sys.implementation.name != "cpython":
        return []  # pure-Python twin is selected automatically off CPython
    if _free_threaded():
        if REQUIRE_EXT:
            raise SystemExit("asynchat_core: no compiled kernels for a free-threaded CPython "
                             "(ASYNCHAT_CORE_REQUIRE_EXTENSIONS is set)")
        sys.stderr.write("NOTE: asynchat_core: free-threaded CPython; installing the "
                         "pure-Python implementation only (docs/platforms.md).\n")
        return []
    from Cython.Build import cythonize

    debug = os.environ.get("ASYNCHAT_CORE_DEBUG_BUILD", "") not in ("", "0")
    compile_args, link_args, macros = [], [], []
    directives = {"language_level": 3, "embedsignature": True}
    if debug:
        sanitize = "-fsanitize=address,undefined"
        compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", sanitize]
        link_args = [sanitize]
        macros = [("CYTHON_TRACE_NOGIL", "1")]
        directives["linetrace"] = True
    exts = [
        Extension(
            "asynchat_core." + name,
            ["src/asynchat_core/%s.pyx" % name],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            define_macros=macros,
        )
        for name in KERNELS
    ]
    return cythonize(exts, include_path=["src"], compiler_directives=directives)


setup(ext_modules=_extensions(), cmdclass={"build_ext": optional_build_ext})
