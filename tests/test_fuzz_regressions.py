"""The fuzz targets of tests/fuzz/ on their committed corpus (every finding, kept as a regression
test) and on their seeds, in the normal suite and without atheris: each input must end in a
return or a DarknetError within the time a fuzzer allows, as it does under the fuzzer."""
from __future__ import annotations

import importlib
import sys
import time
import warnings
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))
TARGETS = ("cfg", "weights", "odgt", "datafiles", "jpeg")
SECONDS = 5.0  # the fuzzer's limit is 1 s; a loaded CI machine gets some slack


def _target(name: str):  # noqa: ANN202 - a module
    return importlib.import_module(f"fuzz_{name}")


def _cases():
    for name in TARGETS:
        for path in sorted((FUZZ / "corpus" / name).glob("*")):
            yield pytest.param(name, path, id=f"{name}/{path.name}")


def _run(name: str, data: bytes) -> None:
    module = _target(name)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module.one_input(data)
    assert time.perf_counter() - began < SECONDS


@pytest.mark.parametrize("name, path", list(_cases()))
def test_regression_input(name, path):
    _run(name, path.read_bytes())


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_has_regression_inputs_or_seeds(name):
    seeds = _target(name).seeds()
    assert seeds, name
    for data in seeds:
        _run(name, data)
