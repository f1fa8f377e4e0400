"""Train as a workflow script does (through ``run_logged``), on several processes (DDP).

Run by ``tests/test_distributed.py`` as ``python tests/ddp_train.py ROOT``. It
must be a script file: Lightning's DDP launcher runs it again (``sys.argv``)
for every process but the first, exactly as it re-runs a rule's script. It
only trains; the test writes the inputs and ``ROOT/jobs.json``: a list of
``{"stage": "rvae" | "segment", "log": ..., "args": [...]}``.
"""

import json
import os
import sys
import types
from pathlib import Path

from ferrolens.runlog import run_logged


def marked(func):
    """``func`` between two lines naming this process, so the test can find every process's output."""

    def run(*args):
        print(f"ddp-test start pid={os.getpid()} LOCAL_RANK={os.environ.get('LOCAL_RANK')}", flush=True)
        func(*args)
        print(f"ddp-test done pid={os.getpid()} LOCAL_RANK={os.environ.get('LOCAL_RANK')}", flush=True)

    return run


def main(root: Path) -> None:
    from ferrolens import rvae, segment

    train = {"rvae": rvae.train, "segment": segment.train}
    for job in json.loads((root / "jobs.json").read_text()):
        snakemake = types.SimpleNamespace(log=[str(root / job["log"])])
        run_logged(snakemake, marked(train[job["stage"]]), *job["args"])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
