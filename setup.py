from setuptools import setup

# Everything declarative lives in pyproject.toml; this file only hooks in the
# cffi builder, which setuptools cannot express in TOML.
setup(cffi_modules=["build_ext.py:ffibuilder"])
