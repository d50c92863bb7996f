"""cffi builder (API mode, out-of-line) for the vendored darknet engine.

Environment variables read at build time:
  DARKNET_PY_BLAS   scipy-openblas32 (default): GEMM from the scipy-openblas32 wheel;
                    cblas: a system CBLAS, with DARKNET_PY_BLAS_LIBS (default "openblas")
                    naming the libraries to link and CFLAGS/LDFLAGS for their paths;
                    none: the engine's own portable (slow) GEMM.
  DARKNET_PY_GPU    1 asks for the CUDA build: vendor/darknet/cuda/*.cu compiled by nvcc
                    (found through CUDA_HOME, else on PATH) and linked with cudart and cuBLAS
                    from the nvidia-cuda-runtime / nvidia-cublas wheels or from CUDA_HOME.
                    `DARKNET_PY_GPU=1 pip install .` puts those wheels into pip's isolated
                    build environment (build_backend/darknet_py_backend.py) and makes them
                    run-time dependencies (setup.py); elsewhere install them first
                    (pip install "darknet_py[cuda]").
  DARKNET_PY_CUDA_ARCH  compute capabilities for nvcc, ";"-separated (default
                    "75;80;86;89;90", plus PTX of the newest for later GPUs).
  DARKNET_PY_JOBS   parallel nvcc processes (default: a -jN in MAKEFLAGS, else one per CPU).
  DARKNET_PY_ONEDNN 1 runs the bf16 inference convolutions on oneDNN (onednn.c), compiled
                    against the onednn-devel-cpu-gomp wheel and linked with onednn-cpu-gomp's
                    libdnnl (build_backend/darknet_py_backend.py puts both into pip's isolated
                    build environment; elsewhere `pip install "darknet_py[onednn]"
                    onednn-devel-cpu-gomp` first). The library is found at run time in the
                    environment's lib/ (where the wheel installs it) or through _engine.py's preload.
  DARKNET_PY_DEBUG  1 compiles with -O0 -g (for gdb/valgrind).
  DARKNET_PY_SANITIZE  sanitizers to build the engine with, e.g. "address,undefined" (ASan +
                    UBSan, -O1 -g, stopping at the first report); the interpreter then needs
                    LD_PRELOAD=$(gcc -print-file-name=libasan.so): see .ci/hardening_check.sh.

Run directly (`python build_ext.py`) it compiles the extension in place into
src/darknet_py/, which is what an editable install does too. Under setuptools (setup.py) the
CUDA part waits for the build_ext command (`cuda_build_ext`): pip runs setup.py to ask for the
build requirements and the metadata before the nvidia wheels are installed, and those steps
must neither need them nor spend a minute in nvcc.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from typing import Optional

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.path.join("vendor", "darknet")
HEADER = os.path.join(HERE, ENGINE, "include", "darknet.h")
MODULE = "darknet_py._darknet_engine"
DEFAULT_CUDA_ARCH = "75;80;86;89;90"


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


def onednn_requested() -> bool:
    return os.environ.get("DARKNET_PY_ONEDNN", "0").strip() not in ("", "0")


def _wheel_dir(distribution: str, suffix: str) -> str:
    """The directory of an installed wheel's file whose path ends with `suffix`, less the
    suffix's own directories (include/oneapi/dnnl/dnnl.h -> .../include)."""
    from importlib import metadata

    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError as exc:
        raise SystemExit(f"darknet_py: DARKNET_PY_ONEDNN=1 needs the {distribution} wheel "
                         f"(pip install {distribution})") from exc
    for f in files:
        path = os.path.normpath(str(f.locate()))
        if path.replace(os.sep, "/").endswith("/" + suffix):
            for _ in range(suffix.count("/")):
                path = os.path.dirname(path)
            return path
    raise SystemExit(f"darknet_py: the {distribution} wheel has no {suffix}")


def onednn_options() -> dict:
    """Compiler and linker settings of the oneDNN build (headers and library from the wheels)."""
    include = _wheel_dir("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.h")
    lib = _wheel_dir("onednn-cpu-gomp", "lib/libdnnl.so.3")
    # $ORIGIN/../../..: site-packages/darknet_py -> the environment's lib/, where the wheel puts
    # libdnnl; the build-time directory too unless it is pip's temporary build environment
    rpaths = ["$ORIGIN/../../.."] + ([lib] if not _in_build_env(lib) else [])
    return {
        "define_macros": [("DN_ONEDNN", "1")],
        "include_dirs": [include],
        "library_dirs": [lib],
        "extra_link_args": [os.path.join(lib, "libdnnl.so.3")] + [f"-Wl,-rpath,{p}" for p in rpaths],
    }


# --------------------------------------------------------------------------- CUDA build


def openmp_requested() -> bool:
    """DARKNET_PY_OPENMP=0 builds the engine without threads (a compiler without OpenMP)."""
    return os.environ.get("DARKNET_PY_OPENMP", "1").strip() not in ("", "0")


def gpu_requested() -> bool:
    return os.environ.get("DARKNET_PY_GPU", "0").strip() not in ("", "0")


def find_nvcc() -> tuple[str, str]:
    """(nvcc, CUDA home): CUDA_HOME (or CUDA_PATH) first, else nvcc on PATH."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:
        nvcc = os.path.join(home, "bin", "nvcc")
        if not os.path.isfile(nvcc):
            raise SystemExit(f"darknet_py: CUDA_HOME={home} has no bin/nvcc")
        return nvcc, home
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("darknet_py: DARKNET_PY_GPU=1 needs nvcc: set CUDA_HOME or put nvcc on PATH")
    home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if not os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")):
        # nvcc may be a wrapper script; its dry run names the real installation
        dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True)
        match = re.search(r"TOP=(\S+)", dry.stdout + dry.stderr)
        if match:
            home = os.path.normpath(match.group(1))  # TOP is <home>/bin/..
    return nvcc, home


def nvcc_major(nvcc: str) -> int:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release (\d+)\.", out)
    return int(match.group(1)) if match else 0


def _site_dirs() -> list[str]:
    dirs = []
    for entry in sys.path:
        if entry and os.path.isdir(os.path.join(entry, "nvidia")) and entry not in dirs:
            dirs.append(entry)
    return dirs


def wheel_cuda_dirs(major: int) -> tuple[list[str], list[str]]:
    """(include dirs, lib dirs) of the nvidia-cublas / nvidia-cuda-runtime wheels for CUDA
    `major`: nvidia/cu<major>/{include,lib} (CUDA 13 wheels) or nvidia/{cublas,cuda_runtime}/
    {include,lib} (CUDA 12 wheels)."""
    for site in _site_dirs():
        root = os.path.join(site, "nvidia")
        candidates = [[os.path.join(root, f"cu{major}")],
                      [os.path.join(root, "cublas"), os.path.join(root, "cuda_runtime")]]
        for parts in candidates:
            libs = [os.path.join(p, "lib") for p in parts]
            if glob.glob(os.path.join(libs[0], "libcublas.so*")) and any(
                    glob.glob(os.path.join(d, "libcudart.so*")) for d in libs):
                return [os.path.join(p, "include") for p in parts], libs
    return [], []


def _link_flag(lib_dirs: list[str], name: str) -> str:
    """-lNAME when an unversioned libNAME.so exists, else -l:libNAME.so.<major> (the wheels ship
    only the versioned file)."""
    for d in lib_dirs:
        if os.path.exists(os.path.join(d, f"lib{name}.so")):
            return f"-l{name}"
    for d in lib_dirs:
        found = sorted(glob.glob(os.path.join(d, f"lib{name}.so.[0-9]*")), key=len)
        if found:
            return "-l:" + os.path.basename(found[0])
    raise SystemExit(f"darknet_py: lib{name}.so not found in {lib_dirs}; pip install \"darknet_py[cuda]\" "
                     "(the nvidia-cublas and nvidia-cuda-runtime wheels) or set CUDA_HOME to a full CUDA toolkit")


def nvcc_jobs(count: int) -> int:
    """Parallel nvcc processes for `count` sources: DARKNET_PY_JOBS, else -jN / --jobs=N in
    MAKEFLAGS (as make passes it down), else one per CPU."""
    jobs = os.environ.get("DARKNET_PY_JOBS", "").strip()
    if not jobs:
        match = re.search(r"(?:^|\s)(?:-j\s*|--jobs=)(\d+)", os.environ.get("MAKEFLAGS", ""))
        jobs = match.group(1) if match else ""
    try:
        wanted = int(jobs) if jobs else (os.cpu_count() or 1)
    except ValueError:
        raise SystemExit(f"darknet_py: DARKNET_PY_JOBS={jobs!r} is not a number") from None
    return max(1, min(count, wanted))


def cuda_arch_flags(spec: str) -> list[str]:
    arches = [a.strip() for a in re.split(r"[;, ]+", spec) if a.strip()]
    if not arches or not all(re.fullmatch(r"\d+[a-z]?", a) for a in arches):
        raise SystemExit(f"darknet_py: DARKNET_PY_CUDA_ARCH={spec!r} is not a list like '75;80;86;89;90'")
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in arches]
    newest = max(arches, key=lambda a: int(re.match(r"\d+", a).group(0)))
    flags.append(f"-gencode=arch=compute_{newest},code=compute_{newest}")  # PTX: JIT on newer GPUs
    return flags


def compile_cuda(objdir: str, arch: str, verbose: bool = False) -> list[str]:
    """nvcc -c every vendor/darknet/cuda/*.cu into objdir (skipping up-to-date objects)."""
    nvcc, home = find_nvcc()
    sources = sorted(glob.glob(os.path.join(HERE, ENGINE, "cuda", "*.cu")))
    headers = glob.glob(os.path.join(HERE, ENGINE, "cuda", "*.h")) + glob.glob(os.path.join(HERE, ENGINE, "cuda", "*.cuh"))
    flags = ["-c", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-I", os.path.join(HERE, ENGINE, "cuda")]
    flags += cuda_arch_flags(arch)
    os.makedirs(objdir, exist_ok=True)
    stamp = os.path.join(objdir, "flags.txt")
    same_flags = os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == " ".join(flags)
    newest_header = max((os.path.getmtime(h) for h in headers), default=0)

    def build(source: str) -> str:
        obj = os.path.join(objdir, os.path.basename(source)[:-3] + ".o")
        if same_flags and os.path.exists(obj) and os.path.getmtime(obj) >= max(os.path.getmtime(source), newest_header):
            return obj
        command = [nvcc, *flags, source, "-o", obj]
        if verbose:
            print(" ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"darknet_py: nvcc failed on {source}:\n{done.stdout}{done.stderr}")
        return obj

    with ThreadPoolExecutor(max_workers=nvcc_jobs(len(sources))) as pool:
        objects = list(pool.map(build, sources))
    with open(stamp, "w", encoding="utf-8") as f:
        f.write(" ".join(flags))
    return objects


def _in_build_env(path: str) -> bool:
    """A directory of an isolated build environment (pip: pip-build-env-*, build: build-env-*)."""
    return any(part.startswith(("pip-build-env-", "build-env-")) for part in os.path.normpath(path).split(os.sep))


def requested_cuda_arch() -> str:
    """DARKNET_PY_CUDA_ARCH, else the default list."""
    return os.environ.get("DARKNET_PY_CUDA_ARCH", "").strip() or DEFAULT_CUDA_ARCH


def cuda_options(objdir: str, arch: str) -> dict:
    """Compiler and linker settings of the CUDA build (the .cu objects are compiled here)."""
    nvcc, home = find_nvcc()
    major = nvcc_major(nvcc)
    wheel_includes, wheel_libs = wheel_cuda_dirs(major)
    toolkit_libs = [d for d in (os.path.join(home, "lib64"), os.path.join(home, "lib")) if os.path.isdir(d)]
    lib_dirs = wheel_libs + toolkit_libs
    objects = compile_cuda(objdir, arch)
    # Found at run time: beside the package in site-packages (a wheel install), where the
    # wheels were at build time (editable installs, venvs), then the toolkit. Not the wheels of
    # pip's or build's temporary build environment: that directory is gone after the build,
    # and a path left in /tmp is one anybody could fill (an editable install then finds the
    # installed wheels through _engine.py's preload).
    rpaths = [f"$ORIGIN/../nvidia/cu{major}/lib", "$ORIGIN/../nvidia/cublas/lib",
              "$ORIGIN/../nvidia/cuda_runtime/lib"] + [d for d in lib_dirs if not _in_build_env(d)]
    return {
        "define_macros": [("DN_GPU", "1")],
        # the toolkit's own headers first, so they match the nvcc that compiled the kernels
        "include_dirs": [os.path.join(home, "include")] + wheel_includes,
        "library_dirs": lib_dirs,
        "extra_objects": objects,
        "extra_link_args": [_link_flag(lib_dirs, "cublas"), _link_flag(lib_dirs, "cudart")]
        + [f"-Wl,-rpath,{p}" for p in rpaths],
    }


def add_cuda(ext) -> None:
    """Make setuptools' Extension of the engine the CUDA build (compiling the .cu objects into
    build/cuda) when DARKNET_PY_GPU asks for it; once per extension. cuda_build_ext calls it
    right before the extension is built."""
    if ext.name != MODULE or not gpu_requested() or getattr(ext, "_darknet_py_cuda", False):
        return
    cuda = cuda_options(os.path.join(HERE, "build", "cuda"), requested_cuda_arch())
    ext.define_macros += cuda["define_macros"]
    ext.include_dirs += cuda["include_dirs"]
    ext.library_dirs += cuda["library_dirs"]
    ext.extra_objects += cuda["extra_objects"]
    ext.extra_link_args += cuda["extra_link_args"]
    ext.depends += cuda["extra_objects"]  # a recompiled kernel relinks the extension
    ext._darknet_py_cuda = True


def add_onednn(ext) -> None:
    """Make setuptools' Extension of the engine the oneDNN build when DARKNET_PY_ONEDNN asks for
    it; once per extension, right before it is built (the wheels are not there before)."""
    if ext.name != MODULE or not onednn_requested() or getattr(ext, "_darknet_py_onednn", False):
        return
    onednn = onednn_options()
    ext.define_macros += onednn["define_macros"]
    ext.include_dirs += onednn["include_dirs"]
    ext.library_dirs += onednn["library_dirs"]
    ext.extra_link_args += onednn["extra_link_args"]
    ext._darknet_py_onednn = True


def cuda_build_ext(base: type) -> type:
    """setuptools' build_ext command with add_cuda and add_onednn before the engine is built
    (setup.py)."""

    class build_ext(base):
        def build_extension(self, ext):
            add_cuda(ext)
            add_onednn(ext)
            super().build_extension(ext)

    return build_ext


def _config_stamp(gpu: bool, arch: Optional[str], debug: bool) -> str:
    """build/config.txt, rewritten when the build's configuration changes. The extension
    depends on it: setuptools rebuilds an extension only when a source or dependency is newer,
    and cffi's generated C file is the same for the CPU and the CUDA build, so without it a
    `DARKNET_PY_GPU=1 pip install .` after a CPU `pip install .` of the same tree would keep the
    CPU extension in build/ ("already up-to-date"; seen), and the other way round."""
    keys = ("DARKNET_PY_BLAS", "DARKNET_PY_BLAS_LIBS", "DARKNET_PY_SANITIZE", "DARKNET_PY_OPENMP", "DARKNET_PY_ONEDNN",
            "CUDA_HOME", "CUDA_PATH", "CFLAGS", "LDFLAGS")
    text = f"gpu={int(gpu)} arch={arch if gpu else '-'} debug={int(debug)}\n" + "".join(
        f"{k}={os.environ.get(k, '')}\n" for k in keys)
    path = os.path.join(HERE, "build", "config.txt")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def make_builder(absolute_paths: bool = False, *, gpu: Optional[bool] = None, cuda_arch: Optional[str] = None,
                 cuda_objdir: Optional[str] = None, defer_wheel_options: bool = False) -> FFI:
    """The FFI builder; setuptools wants relative source paths, cffi's own
    compile() (which changes into its temporary directory) absolute ones. `gpu` (default:
    DARKNET_PY_GPU) adds the CUDA build, its objects compiled for `cuda_arch` (default:
    DARKNET_PY_CUDA_ARCH) into `cuda_objdir` (default: build/cuda); with `defer_wheel_options` the
    CUDA and oneDNN options are left to add_cuda and add_onednn at build time (setuptools)."""
    if gpu is None:
        gpu = gpu_requested()
    root = HERE if absolute_paths else ""
    sources = sorted(
        os.path.join(root, os.path.relpath(p, HERE))
        for p in glob.glob(os.path.join(HERE, ENGINE, "src", "*.c"))
    )
    headers = sorted(glob.glob(os.path.join(HERE, ENGINE, "include", "*.h"))
                     + glob.glob(os.path.join(HERE, ENGINE, "src", "*.h")))
    blas = blas_options()
    cuda: dict = {}
    arch = (cuda_arch or requested_cuda_arch()) if gpu else None
    if gpu and not defer_wheel_options:
        cuda = cuda_options(cuda_objdir or os.path.join(HERE, "build", "cuda"), arch)
    debug = os.environ.get("DARKNET_PY_DEBUG", "0") not in ("", "0")
    # -fno-trapping-math: no program reads the floating-point exception flags, so the compiler
    # may turn branches over float operations into selects and vectorise them (values unchanged)
    # -fno-wrapv: Python's own CFLAGS (which setuptools passes first) carry -fwrapv, under which int
    # index arithmetic may wrap, so GCC cannot prove strided accesses affine and leaves such loops
    # scalar (im2col at stride 2, for one). The engine has no signed overflow (UBSan runs it in CI).
    compile_args = ["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-fno-trapping-math",
                    "-fno-wrapv"]
    compile_args += ["-O0", "-g"] if debug else ["-O3"]
    link_args: list[str] = []
    if openmp_requested():
        # the engine's threads (dn_network_set_threads); the wheel repair bundles libgomp
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    sanitize = os.environ.get("DARKNET_PY_SANITIZE", "").strip()
    if sanitize:
        if not re.fullmatch(r"[a-z]+(,[a-z]+)*", sanitize):
            raise SystemExit(f"darknet_py: DARKNET_PY_SANITIZE={sanitize!r} is not a list like 'address,undefined'")
        compile_args = [a for a in compile_args if a not in ("-O3", "-O0")]
        compile_args += ["-O1", "-g", f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        link_args += [f"-fsanitize={sanitize}"]
    # like CUDA's, the oneDNN wheels are only in pip's build environment once the build runs
    onednn = onednn_options() if onednn_requested() and not defer_wheel_options else {}
    ffi = FFI()
    ffi.cdef(header_cdef())
    # Log messages from the engine reach Python through this callback.
    ffi.cdef('extern "Python" void dn_py_log(void *user, int level, const char *message);')
    ffi.set_source(
        MODULE,
        '#include "darknet.h"',
        sources=sources,
        include_dirs=[os.path.join(root, ENGINE, "include"), os.path.join(root, ENGINE, "src")]
        + blas.get("include_dirs", []) + cuda.get("include_dirs", []) + onednn.get("include_dirs", []),
        define_macros=blas.get("define_macros", []) + cuda.get("define_macros", []) + onednn.get("define_macros", []),
        library_dirs=blas.get("library_dirs", []) + cuda.get("library_dirs", []) + onednn.get("library_dirs", []),
        libraries=blas.get("libraries", []) + ["m"],
        extra_compile_args=compile_args,
        extra_objects=cuda.get("extra_objects", []),
        extra_link_args=blas.get("extra_link_args", []) + cuda.get("extra_link_args", [])
        + onednn.get("extra_link_args", []) + link_args,
        # setuptools only (cffi's own compile() always builds): rebuild on a new configuration
        depends=headers + ([] if absolute_paths else [_config_stamp(gpu, arch, debug)]),
    )
    return ffi


# What setup.py's cffi_modules builds: the CUDA and oneDNN parts are added by cuda_build_ext at
# build time.
ffibuilder = make_builder(defer_wheel_options=True)


def build_in_place() -> str:
    """Compile into build/cffi (build/cffi-gpu for the CUDA build, so that neither build
    mistakes the other's objects for up to date) and copy the extension into src/darknet_py/."""
    os.chdir(HERE)
    tmpdir = os.path.join(HERE, "build", "cffi-gpu" if gpu_requested() else "cffi")
    built = make_builder(absolute_paths=True).compile(tmpdir=tmpdir, verbose=False)
    target = os.path.join(HERE, "src", "darknet_py", os.path.basename(built))
    shutil.copyfile(built, target + ".tmp")
    os.replace(target + ".tmp", target)
    return target


if __name__ == "__main__":
    print(build_in_place())
    sys.exit(0)
