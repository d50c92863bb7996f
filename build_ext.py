"""cffi builder (API mode, out-of-line) for the vendored darknet engine.

Environment variables read at build time:
  DARKNET_PY_BLAS   scipy-openblas32 (default): GEMM from the scipy-openblas32 wheel;
                    cblas: a system CBLAS, with DARKNET_PY_BLAS_LIBS (default "openblas")
                    naming the libraries to link and CFLAGS/LDFLAGS for their paths;
                    none: the engine's own portable (slow) GEMM.
  DARKNET_PY_GPU    1 asks for the CUDA build.
  DARKNET_PY_DEBUG  1 compiles with -O0 -g (for gdb/valgrind).

Run directly (`python build_ext.py`) it compiles the extension in place into
src/darknet_py/, which is what an editable install does too.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.path.join("vendor", "darknet")
HEADER = os.path.join(HERE, ENGINE, "include", "darknet.h")
MODULE = "darknet_py._darknet_engine"


def header_cdef(path: str = HEADER) -> str:
    """The public header as cffi's cdef sees it: no preprocessor, no C++ guards."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.match(r"#define\s+DN_\w+\s+\d+\s*$", stripped):
                kept.append(stripped)
            continue
        kept.append(line)
    return "\n".join(kept)


def blas_options() -> dict:
    choice = os.environ.get("DARKNET_PY_BLAS", "scipy-openblas32").strip().lower()
    if choice == "scipy-openblas32":
        try:
            import scipy_openblas32
        except ImportError as exc:
            raise SystemExit(
                "darknet_py: the scipy-openblas32 wheel is needed to build with its BLAS "
                "(pip install scipy-openblas32), or set DARKNET_PY_BLAS=cblas|none"
            ) from exc
        return {
            "define_macros": [("DN_BLAS_SCIPY_OPENBLAS", "1")],
            "include_dirs": [scipy_openblas32.get_include_dir()],
            "library_dirs": [scipy_openblas32.get_lib_dir()],
            "libraries": [scipy_openblas32.get_library()],
            # Installed side by side in site-packages; _engine.py also preloads the
            # library so an editable install finds it too.
            "extra_link_args": ["-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib"],
        }
    if choice == "cblas":
        libs = os.environ.get("DARKNET_PY_BLAS_LIBS", "openblas").split()
        return {"define_macros": [("DN_BLAS_CBLAS", "1")], "libraries": libs}
    if choice == "none":
        return {"define_macros": []}
    raise SystemExit(f"darknet_py: DARKNET_PY_BLAS={choice!r} is not one of scipy-openblas32, cblas, none")


def make_builder(absolute_paths: bool = False) -> FFI:
    """The FFI builder; setuptools wants relative source paths, cffi's own
    compile() (which changes into its temporary directory) absolute ones."""
    if os.environ.get("DARKNET_PY_GPU", "0") not in ("", "0"):
        raise SystemExit(
            "darknet_py: DARKNET_PY_GPU=1 asks for the CUDA build, which this version does not "
            "have yet; unset it to build for the CPU"
        )
    root = HERE if absolute_paths else ""
    sources = sorted(
        os.path.join(root, os.path.relpath(p, HERE))
        for p in glob.glob(os.path.join(HERE, ENGINE, "src", "*.c"))
    )
    blas = blas_options()
    debug = os.environ.get("DARKNET_PY_DEBUG", "0") not in ("", "0")
    compile_args = ["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-function"]
    compile_args += ["-O0", "-g"] if debug else ["-O3"]
    ffi = FFI()
    ffi.cdef(header_cdef())
    # Log messages from the engine reach Python through this callback.
    ffi.cdef('extern "Python" void dn_py_log(void *user, int level, const char *message);')
    ffi.set_source(
        MODULE,
        '#include "darknet.h"',
        sources=sources,
        include_dirs=[os.path.join(root, ENGINE, "include"), os.path.join(root, ENGINE, "src")]
        + blas.get("include_dirs", []),
        define_macros=blas.get("define_macros", []),
        library_dirs=blas.get("library_dirs", []),
        libraries=blas.get("libraries", []) + ["m"],
        extra_compile_args=compile_args,
        extra_link_args=blas.get("extra_link_args", []),
    )
    return ffi


ffibuilder = make_builder()


def build_in_place() -> str:
    """Compile into build/cffi and copy the extension into src/darknet_py/."""
    os.chdir(HERE)
    tmpdir = os.path.join(HERE, "build", "cffi")
    built = make_builder(absolute_paths=True).compile(tmpdir=tmpdir, verbose=False)
    target = os.path.join(HERE, "src", "darknet_py", os.path.basename(built))
    shutil.copyfile(built, target + ".tmp")
    os.replace(target + ".tmp", target)
    return target


if __name__ == "__main__":
    print(build_in_place())
    sys.exit(0)
