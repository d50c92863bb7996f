"""tests/gpu's figures: each test records what it measured (`figure("...")`), and the run ends
with a "GPU figures" section listing them, which benchmarks/gpu_check.sh's log quotes."""
from __future__ import annotations

import pytest

FIGURES: list[str] = []


@pytest.fixture
def figure(request):
    def record(text: str) -> None:
        FIGURES.append(f"{request.node.name}: {text}")

    return record


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("GPU figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
