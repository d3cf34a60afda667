"""``python -m asynchat_core``: what is installed here, and how it was chosen.

Prints the version, the implementation in use (and why), the event
backends this platform offers (best first, the default first), the Python
and the platform.  ``--version`` prints the version line only.
"""
import argparse
import importlib.util
import os
import platform
import sys


def _why(implementation):
    from asynchat_core import _impl

    if implementation == "cython":
        return "the compiled build"
    if sys.implementation.name != "cpython":
        return "the Python build; the compiled build is for CPython only"
    if _impl.gil_disabled_build():
        return ("the Python build; nothing is compiled for free-threaded CPython "
                "(docs/platforms.md)")
    if os.environ.get(_impl.ENV_VAR, "") not in ("", "0"):
        return "the Python build, chosen by %s=%s" % (_impl.ENV_VAR, os.environ[_impl.ENV_VAR])
    return ("the Python build; the compiled build is not installed (no C compiler at install "
            "time?)")


def _legacy_modules():
    # what a plain ``import asyncore`` finds without install(): the stdlib's
    # (up to 3.11), a backport from PyPI (pyasyncore), or nothing (3.12+)
    spec = importlib.util.find_spec("asyncore")
    if spec is None or not spec.origin:
        return "none (Python 3.12+ without pyasyncore); asynchat_core.install() provides it"
    kind = "backport (pyasyncore)" if "site-packages" in spec.origin else "stdlib"
    return "%s at %s; asynchat_core.install() replaces it" % (kind, spec.origin)


def main(argv=None):
    """Print the report (or the version); return the exit status."""
    import asynchat_core
    from asynchat_core import asyncore

    version = "asynchat_core %s" % asynchat_core.__version__
    parser = argparse.ArgumentParser(
        prog="python -m asynchat_core",
        description="Show the asynchat_core version, implementation, event backends and platform. "
                    "The benchmark is python -m asynchat_core.bench.")
    parser.add_argument("--version", action="version", version=version)
    parser.parse_args(argv)
    backends = asyncore.available_backends()
    lines = [
        version,
        "implementation: %s (%s)" % (asynchat_core.IMPLEMENTATION,
                                     _why(asynchat_core.IMPLEMENTATION)),
        "backends: %s (default: %s)" % (", ".join(backends),
                                        asyncore.default_backend or backends[0]),
        "python: %s %s (%s)" % (platform.python_implementation(), sys.version.split()[0],
                                sys.executable),
        "platform: %s" % platform.platform(),
        "plain 'import asyncore' finds: %s" % _legacy_modules(),
        "package: %s" % os.path.dirname(os.path.abspath(asynchat_core.__file__)),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
