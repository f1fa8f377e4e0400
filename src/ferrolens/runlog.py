"""Glue for the workflow's thin scripts: send output to the rule's log and
turn bad input into one clear line instead of a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .errors import InputError
from .parallel import process_rank


def run_logged(snakemake: Any, func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``func(*args, **kwargs)`` with stdout/stderr going to the rule's log.

    An :class:`InputError` is written to the log and to the terminal as one
    line and ends the job with exit status 1; anything else propagates with
    its traceback (that is a bug, and the traceback helps).

    Multi-device training (DDP) runs the script once more per extra device
    (:mod:`ferrolens.parallel`). Every process then writes to the same log:
    the main one (rank 0) empties it first, the others only add to it, with a
    first line naming their rank and a ``[rank N]`` prefix on their logging
    records. All of them open it in append mode (``O_APPEND``), so each write
    lands at the current end and none overwrites another's lines.
    """
    log = snakemake.log[0] if len(snakemake.log) else None
    rank = process_rank()
    with contextlib.ExitStack() as stack:
        if log:
            if rank == 0:
                open(log, "w").close()
            fh = stack.enter_context(open(log, "a", buffering=1))
            prefix = ""
            if rank:
                prefix = f"[rank {rank}] "
                print(f"ferrolens: training process of rank {rank} (pid {os.getpid()}) writes to this log too", file=fh)
            stack.enter_context(contextlib.redirect_stdout(fh))
            stack.enter_context(contextlib.redirect_stderr(fh))
            logging.basicConfig(
                stream=fh,
                level=logging.INFO,
                force=True,
                format=f"{prefix}%(asctime)s %(name)s %(levelname)s: %(message)s",
            )
            # libraries imported before this (Lightning) hold handlers on the terminal's streams
            for logger in [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]:
                for h in getattr(logger, "handlers", []):
                    if (
                        isinstance(h, logging.StreamHandler)
                        and h.stream is not fh
                        and h.stream in (sys.__stderr__, sys.__stdout__, sys.stderr, sys.stdout)
                    ):
                        # back to the terminal afterwards, not left on the closed log
                        stack.callback(h.setStream, h.setStream(fh))
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            print(f"ferrolens: bad input: {exc}", file=sys.stderr)
            if log:
                print(f"ferrolens: bad input: {exc}", file=sys.__stderr__)
            raise SystemExit(1) from None
