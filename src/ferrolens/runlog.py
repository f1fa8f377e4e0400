"""Glue for the workflow's thin scripts: send output to the rule's log and
turn bad input into one clear line instead of a traceback."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from .errors import InputError


def run_logged(snakemake: Any, func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``func(*args, **kwargs)`` with stdout/stderr going to the rule's log.

    An :class:`InputError` is written to the log and to the terminal as one
    line and ends the job with exit status 1; anything else propagates with
    its traceback (that is a bug, and the traceback helps).
    """
    log = snakemake.log[0] if len(snakemake.log) else None
    with contextlib.ExitStack() as stack:
        if log:
            fh = stack.enter_context(open(log, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(fh))
            stack.enter_context(contextlib.redirect_stderr(fh))
            logging.basicConfig(stream=fh, level=logging.INFO, force=True,
                                format="%(asctime)s %(name)s %(levelname)s: %(message)s")
            # libraries imported before this (Lightning) hold handlers on the terminal's streams
            for logger in [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]:
                for h in getattr(logger, "handlers", []):
                    if isinstance(h, logging.StreamHandler) and h.stream in (sys.__stderr__, sys.__stdout__,
                                                                             sys.stderr, sys.stdout):
                        h.setStream(fh)
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            print(f"ferrolens: bad input: {exc}", file=sys.stderr)
            if log:
                print(f"ferrolens: bad input: {exc}", file=sys.__stderr__)
            raise SystemExit(1) from None
