"""Timed blocks for the benchmarks: wall and CPU time of each, and the refusal of contended figures.

A figure timed on ``threads`` cores is only a figure of the code when the
process had those cores: its own CPU time over the wall time (``cpu/wall``)
near ``threads``. On the shared 2-core machine another process on the cores
shows as cpu/wall < 1.8 and at least halves most figures, so such a block is
REFUSED: printed with ``REFUSED (cpu/wall …)`` and :func:`exit_code` is 3.
Single-threaded runs (``threads == 1``) are judged against 0.9.

Usage (scripts in ``benchmarks/`` import it as ``from timing import Clock``)::

    clock = Clock(threads=2)
    with clock("fully convolutional"):
        ...
    print(clock.report())
    sys.exit(clock.exit_code())
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

MIN_UTIL = 1.8  # cpu/wall below which a 2-thread figure is refused (0.9 per requested thread, at most 1.8)


@dataclass
class Block:
    name: str
    wall: float
    cpu: float

    @property
    def util(self) -> float:
        return self.cpu / self.wall if self.wall > 0 else float("nan")


@dataclass
class Clock:
    """Records ``(name, wall, cpu)`` of every ``with clock(name):`` block (process CPU time, all threads)."""

    threads: int = 2
    blocks: list[Block] = field(default_factory=list)

    @property
    def min_util(self) -> float:
        return min(MIN_UTIL, 0.9 * self.threads)

    @contextlib.contextmanager
    def __call__(self, name: str):
        c0, w0 = time.process_time(), time.perf_counter()
        block = Block(name, 0.0, 0.0)
        try:
            yield block
        finally:
            block.wall, block.cpu = time.perf_counter() - w0, time.process_time() - c0
            self.blocks.append(block)

    def ok(self, block: Block) -> bool:
        return block.util >= self.min_util

    def tag(self, block: Block) -> str:
        """``cpu/wall 1.93`` or ``REFUSED (cpu/wall 1.21 < 1.80: cores shared, rerun)``."""
        if self.ok(block):
            return f"cpu/wall {block.util:.2f}"
        return f"REFUSED (cpu/wall {block.util:.2f} < {self.min_util:.2f}: cores shared, rerun)"

    def record(self) -> dict:
        """Per block ``{name: {wall_s, cpu_s, cpu_wall, refused}}`` for the JSON lines."""
        return {
            b.name: {"wall_s": b.wall, "cpu_s": b.cpu, "cpu_wall": b.util, "refused": not self.ok(b)}
            for b in self.blocks
        }

    def report(self) -> str:
        lines = [f"  {b.name}: {b.wall:.3f} s wall, {b.cpu:.3f} s cpu, {self.tag(b)}" for b in self.blocks]
        refused = [b.name for b in self.blocks if not self.ok(b)]
        lines.append(
            f"REFUSED figures ({len(refused)}): {', '.join(refused)}"
            if refused
            else f"all {len(self.blocks)} timed blocks at cpu/wall >= {self.min_util:.2f}"
        )
        return "\n".join(lines)

    def exit_code(self) -> int:
        """3 when any block was refused (a contended figure), else 0."""
        return 3 if any(not self.ok(b) for b in self.blocks) else 0
