"""One exception type for bad input, so the workflow can tell it from a bug."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input caught before any long computation starts.

    The message always names where the problem is (a file or a config key),
    the offending value, and what was expected.
    """

    def __init__(self, where: str | Path | None, problem: str, expected: str | None = None):
        self.where = str(where) if where is not None else None
        self.problem = problem
        self.expected = expected
        parts = []
        if self.where:
            parts.append(f"{self.where}:")
        parts.append(problem)
        if expected:
            parts.append(f"(expected {expected})")
        super().__init__(" ".join(parts))
