"""Runs of numbers (ports, rule numbers) as people read them, in plain Python (no Django)."""

from __future__ import annotations

from collections.abc import Iterable


def number_runs(numbers: Iterable[int]) -> str:
    """Numbers (ports, rule numbers) as runs: 17500, 17501, 17502, 17510 -> "17500-17502, 17510"."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
