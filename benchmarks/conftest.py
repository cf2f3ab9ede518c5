"""Benchmarks: ``pytest benchmarks`` (not part of the default test run; no xdist)."""

from __future__ import annotations

RATIOS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    terminalreporter.write_sep("=", "mlpval overhead (plugin path / bare calculator, same run)")
    for name, ratio in sorted(RATIOS.items()):
        terminalreporter.write_line(f"{name:32s} {ratio:6.3f}")
