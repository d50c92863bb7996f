import sys
import sysconfig

from setuptools import setup

# Everything declarative lives in pyproject.toml; this file only hooks in the
# cffi builder, which setuptools cannot express in TOML.
options = {}
# cffi compiles the engine against Python's limited API (the module is _darknet_engine.abi3.so)
# except on debug and free-threaded interpreters; tag the wheel to match, cp39-abi3, so that
# one wheel per platform serves every CPython >= 3.9 (requires-python).
if (sys.implementation.name == "cpython" and not hasattr(sys, "gettotalrefcount")
        and not sysconfig.get_config_var("Py_GIL_DISABLED")):
    options["bdist_wheel"] = {"py_limited_api": "cp39"}

setup(cffi_modules=["build_ext.py:ffibuilder"], options=options)
