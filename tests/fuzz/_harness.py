"""What every fuzz target shares: the rule for a finding, scratch files, seeds and the atheris main.

A target module defines NAME, `one_input(data: bytes)` (raises nothing but DarknetError for a
bad input; an assertion or any other exception is a finding), `seeds() -> list[bytes]` (inputs
made by the project's own code) and TEXT = True when line-aware mutations suit its input.

    python tests/fuzz/fuzz_cfg.py [-max_total_time=60] [libFuzzer options] [CORPUS_DIR ...]

Without a corpus directory it fuzzes in a temporary one seeded with seeds() and the committed
regression inputs (tests/fuzz/corpus/<NAME>/); a finding is written by libFuzzer as
crash-<sha1> (or timeout-/oom-) in the current directory, and the process exits non-zero.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import random
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"  # committed inputs: every finding, kept as a regression test

# Scratch files for readers that take a path: in memory where the machine has a tmpfs. Removed at
# exit, and by the next process when libFuzzer ended this one without running atexit handlers.
_SCRATCH_ROOT = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())
for _old in _SCRATCH_ROOT.glob("darknet_py-fuzz-*"):
    try:
        os.kill(int(_old.name.split("-")[2]), 0)
    except ProcessLookupError:
        shutil.rmtree(_old, ignore_errors=True)
    except (ValueError, IndexError, PermissionError):
        pass
_SCRATCH = Path(tempfile.mkdtemp(prefix=f"darknet_py-fuzz-{os.getpid()}-", dir=_SCRATCH_ROOT))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def scratch_file(name: str, data: bytes) -> Path:
    """`data` written to a file called `name` in this process's scratch directory."""
    path = _SCRATCH / name
    path.write_bytes(data)
    return path


def quiet() -> None:
    """Engine warnings (unknown options, trailing bytes) are expected on fuzzed input."""
    warnings.simplefilter("ignore")


def regression_inputs(name: str) -> list[Path]:
    directory = CORPUS / name
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


# ---------------------------------------------------------------------------- text mutations

# Values that have broken parsers before: bounds of int, float and the engine's DN_MAX_* limits.
INTERESTING = [b"0", b"-1", b"1", b"2", b"3", b"7", b"8", b"16", b"31", b"32", b"33", b"255", b"256", b"4096",
               b"65535", b"65536", b"65537", b"1048576", b"2147483647", b"2147483648", b"-2147483647",
               b"-2147483648", b"4294967296", b"9223372036854775807", b"1e38", b"3.5e38", b"-1e38", b"1e-45",
               b"nan", b"inf", b"-inf", b"0x10", b"", b" ", b",", b",,", b"1,", b"-1,-2,-3,-4,-5,-6,-7,-8,-9",
               b"\x1b[31m", b"\xff\xfe", b"\x00", b"#", b";", b"=", b"[", b"]", b"99999999999", b"9" * 400,
               b"9" * 5000, b"[" * 3000, b"{\"a\":" * 3000, b"~nobody_here/x", b"/dev/null"]


def mutate_lines(data: bytes, rng: random.Random) -> bytes:
    """A line-aware change to key=value / JSON-lines text: a value replaced by an interesting
    one, a line duplicated, dropped or swapped with another."""
    lines = data.split(b"\n")
    if not lines:
        return data
    i = rng.randrange(len(lines))
    choice = rng.randrange(6)
    if choice <= 2 and b"=" in lines[i]:
        key = lines[i].split(b"=", 1)[0]
        lines[i] = key + b"=" + rng.choice(INTERESTING)
    elif choice <= 2 and lines[i]:
        # a number inside the line (JSON, label rows)
        parts = lines[i].split(b" ") if rng.random() < 0.5 else lines[i].split(b",")
        j = rng.randrange(len(parts))
        parts[j] = rng.choice(INTERESTING)
        lines[i] = (b" " if b" " in lines[i] else b",").join(parts)
    elif choice == 3:
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif choice == 4 and len(lines) > 1:
        del lines[i]
    else:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def text_mutator(atheris_module) -> Callable[[bytes, int, int], bytes]:  # noqa: ANN001
    """libFuzzer's byte mutations half of the time, line-aware ones the other half."""

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5 or not data:
            return atheris_module.Mutate(data, max_size)
        out = data
        for _ in range(rng.randint(1, 3)):
            out = mutate_lines(out, rng)
        return out[:max_size]

    return mutate


# ---------------------------------------------------------------------------- main


def instrument_project(atheris_module) -> int:  # noqa: ANN001
    """Coverage instrumentation of darknet_py's Python functions (atheris.instrument_all would
    take over a minute on numpy and OpenCV too; the engine's C code is not instrumented)."""
    import inspect

    count = 0
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "darknet_py" or name.startswith("darknet_py.")):
            continue
        for obj in list(vars(mod).values()):
            members = list(vars(obj).values()) if inspect.isclass(obj) and obj.__module__ == name else [obj]
            for member in members:
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                functions = [member.fget, member.fset] if isinstance(member, property) else [member]
                for function in functions:
                    if inspect.isfunction(function) and function.__module__ == name:
                        atheris_module.instrument_func(function)
                        count += 1
    return count


def main(module) -> None:  # noqa: ANN001 - a target module
    import atheris

    quiet()
    args = [a for a in sys.argv[1:]]
    corpus_dirs = [a for a in args if not a.startswith("-")]
    if not corpus_dirs:
        corpus_dirs = [tempfile.mkdtemp(prefix=f"corpus-{module.NAME}-")]
        args.append(corpus_dirs[0])
    first = Path(corpus_dirs[0])
    if first.is_dir() and not any(first.iterdir()):  # an empty corpus: seed it
        inputs = list(module.seeds()) + [p.read_bytes() for p in regression_inputs(module.NAME)]
        for data in inputs:
            (first / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{module.NAME}: {len(inputs)} seed inputs in {first}", file=sys.stderr)
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=1")  # an input that takes a second is a finding (a hang)
    if not any(a.startswith("-rss_limit_mb=") for a in args):
        args.append("-rss_limit_mb=3072")
    mutator: Optional[Callable] = text_mutator(atheris) if getattr(module, "TEXT", False) else None
    print(f"{module.NAME}: coverage of {instrument_project(atheris)} darknet_py functions", file=sys.stderr)
    if mutator is not None:
        atheris.Setup([sys.argv[0]] + args, module.one_input, custom_mutator=mutator)
    else:
        atheris.Setup([sys.argv[0]] + args, module.one_input)
    atheris.Fuzz()
