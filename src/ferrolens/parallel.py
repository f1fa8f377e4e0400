"""How a training job runs under Lightning: accelerator, devices, strategy, torch threads, ranks.

One job of a training rule (``segment_train``, ``rvae_train``) may train one model
on several devices of one node with data-parallel training (DDP). Both training
functions take their ``pl.Trainer`` arguments from :func:`plan`, so the rules
below hold for both:

* **One process per device, started by Lightning.** With ``devices > 1``
  Lightning's DDP launcher re-runs the program (``sys.argv``: the rule's
  script) once per extra device, with ``LOCAL_RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``/``MASTER_PORT`` set. The trainer always gets
  ``plugins=[LightningEnvironment()]``: inside a job of Snakemake's SLURM
  executor the rule runs under ``srun -n1``, ``SLURM_NTASKS`` is set and
  Lightning would otherwise pick ``SLURMEnvironment`` (``detect()`` is
  ``"SLURM_NTASKS" in os.environ`` unless the job is named ``bash`` or
  ``interactive``), whose ``creates_processes_externally`` is True: it
  starts no process, takes the world size from ``SLURM_NTASKS`` (1) and
  raises when ``SLURM_NTASKS_PER_NODE`` differs from ``devices``. It would
  also install SLURM's auto-requeue handler, which is Snakemake's business.
* **Threads.** The rule's ``threads`` are shared: each of the ``devices``
  processes gets ``max(1, threads // devices)`` torch threads. Lightning's
  launcher sets ``torch.set_num_threads(cpus // processes)`` (cpus of the
  whole machine outside a SLURM job) unless ``OMP_NUM_THREADS`` is set, so
  :meth:`Plan.fit_threads` sets that variable while ``fit`` runs.
* **Rank 0 writes.** Only global rank 0 writes outputs; checkpoints are saved
  by every process (``Trainer.save_checkpoint`` ends with a barrier) and
  renamed into place by rank 0 (:func:`save_checkpoint_atomic`). Values that
  a process computes from its share of the data and that decide something
  (the monitored metric) are summed over processes (torchmetrics metrics of the model).
* **Strategies.** ``auto`` (one process for one device; Lightning's choice,
  ``ddp``, for several when run as a script) and ``ddp``. ``ddp_spawn`` is not
  offered: its children re-import the main script, and a workflow script has
  no ``if __name__ == "__main__"`` guard, so each child would start the whole
  training again; it also pickles the data module into every child.
  ``ddp_fork`` cannot follow CUDA initialisation and is for notebooks.
* **One node.** ``num_nodes`` stays 1: a job of the SLURM executor runs one
  task, and the processes Lightning starts share its node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import torch

# torch and Lightning are imported where used: ferrolens.runlog (every workflow script) imports this module

log = logging.getLogger(__name__)

#: Values of the ``strategy`` config keys (see the module docstring for why not ``ddp_spawn``).
STRATEGIES = ("auto", "ddp")
GPU_ACCELERATORS = ("gpu", "cuda")


def process_rank() -> int:
    """This process's rank as its launcher announced it in the environment, 0 when none did.

    Read from ``RANK``, then ``LOCAL_RANK`` (set by Lightning's DDP launcher for
    the processes it starts, and in its own process once it has started them),
    then ``SLURM_PROCID`` — the order Lightning uses for ``rank_zero_only``. For
    use before a ``Trainer`` exists (the log of :func:`ferrolens.runlog.run_logged`);
    afterwards ``trainer.is_global_zero`` is the authority.
    """
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def is_rank_zero() -> bool:
    """Whether this is the main process of a (possibly multi-process) training job."""
    return process_rank() == 0


def visible_gpus() -> int:
    """CUDA devices this process can see (``CUDA_VISIBLE_DEVICES`` applies)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class Plan:
    """Trainer arguments and torch threads of one training process (see :func:`plan`)."""

    accelerator: str
    devices: int
    strategy: str
    threads: int  # torch intra-op threads of each process

    def trainer_kwargs(self) -> dict[str, Any]:
        """``accelerator``, ``devices``, ``strategy`` and ``plugins`` for ``pl.Trainer``."""
        from pytorch_lightning.plugins.environments import LightningEnvironment

        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "strategy": self.strategy,
            "plugins": [LightningEnvironment()],
        }

    def set_threads(self) -> None:
        """``torch.set_num_threads`` of this process."""
        set_threads(self.threads)

    @contextlib.contextmanager
    def fit_threads(self) -> Iterator[None]:
        """While ``fit`` runs: ``OMP_NUM_THREADS`` = threads per process when there are several
        processes, so that Lightning's launcher keeps them (and the processes it starts inherit
        them); the previous value is restored afterwards."""
        self.set_threads()
        if self.devices == 1:
            yield
            return
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before


def plan(accelerator: str, devices: int, strategy: str, threads: int, key: str) -> Plan:
    """How to train: Lightning arguments for ``devices`` processes and the threads of each.

    Parameters
    ----------
    accelerator, devices, strategy : the config keys of the training section.
    threads : the rule's threads, shared by the ``devices`` processes.
    key : the config section, for messages (``segment.train``, ``rvae``).

    Raises :class:`InputError` naming ``<key>.devices`` when more GPUs are asked
    for than this process sees (with the count and ``CUDA_VISIBLE_DEVICES``), and
    for an unknown strategy or ``mps`` with several devices.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise InputError(f"config {key}.devices", f"value {devices!r}", "an integer >= 1")
    if strategy not in STRATEGIES:
        raise InputError(f"config {key}.strategy", f"value {strategy!r}", " or ".join(STRATEGIES))
    if accelerator == "mps" and devices > 1:
        raise InputError(
            f"config {key}.devices", f"value {devices} with accelerator 'mps'", "1 (Lightning trains on one Apple GPU)"
        )
    gpus = visible_gpus()
    on_gpu = accelerator in GPU_ACCELERATORS or (accelerator == "auto" and gpus > 0)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"CUDA_VISIBLE_DEVICES={cvd!r}" if cvd is not None else "CUDA_VISIBLE_DEVICES unset"
    if on_gpu and devices > gpus:
        raise InputError(
            f"config {key}.devices",
            f"value {devices} with accelerator {accelerator!r}, but this process sees {gpus} CUDA device(s) ({seen})",
            (f"at most {gpus}" if gpus else "accelerator 'cpu' or 'auto', or a job with GPUs")
            + f"; on SLURM the rule's `gpu` resource in the profile must ask for {key}.devices GPUs",
        )
    main = is_rank_zero()  # the processes Lightning starts say nothing more
    if main and on_gpu and gpus > devices and "SLURM_JOB_ID" in os.environ:
        warnings.warn(
            f"this job holds {gpus} GPUs ({seen}) but trains on {key}.devices = {devices}; "
            "ask the profile for as many GPUs as devices",
            stacklevel=2,
        )
    if main and accelerator == "auto" and not on_gpu and devices > 1:
        warnings.warn(
            f"{key}.accelerator is 'auto' and no GPU is visible: training with {devices} CPU processes", stacklevel=2
        )
    per_process = max(1, int(threads) // devices)
    if main:
        log.info(
            "training: accelerator %s, %d process(es), strategy %s, %d torch thread(s) each",
            accelerator,
            devices,
            strategy,
            per_process,
        )
    return Plan(accelerator=str(accelerator), devices=int(devices), strategy=str(strategy), threads=per_process)


def set_threads(threads: int) -> None:
    """torch intra-op threads of this process (at least 1): the rule's ``threads``."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch intra-op threads set to 1 while inside, restored after: for the steps whose rounding would
    otherwise depend on the thread count (the per-pixel maps, :mod:`ferrolens.rvae.maps`)."""
    import torch

    before = torch.get_num_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)


def device_for(accelerator: str, where: str) -> torch.device:
    """The torch device of an ``accelerator`` config value, for inference (training: :func:`plan`).

    ``auto`` picks a CUDA GPU, else an Apple GPU (mps), else the CPU; ``gpu``/``cuda`` without a
    CUDA device is an :class:`InputError` naming ``where`` (the config key).
    """
    import torch

    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if accelerator in GPU_ACCELERATORS:
        if not torch.cuda.is_available():
            raise InputError(where, f"{accelerator!r} asked for but no CUDA device is available", "auto or cpu")
        return torch.device("cuda")
    return torch.device(accelerator)


# --- inside fit ------------------------------------------------------------------------
def save_checkpoint_atomic(trainer: Any, path: str | Path, weights_only: bool) -> None:
    """``trainer.save_checkpoint`` on every process, renamed onto ``path`` by global rank 0 only.

    ``Trainer.save_checkpoint`` must run on all processes (it ends with a
    barrier) but only rank 0 writes the file, so only rank 0 may rename it.
    """
    from .store import write_file_atomic

    if trainer.is_global_zero:
        write_file_atomic(path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=weights_only))
    else:
        trainer.save_checkpoint(path, weights_only=weights_only)  # writes nothing here; joins the barrier


def quiet_lightning() -> None:
    """Silence Lightning's info lines and tips (GPU available…, litmodels…) in this process:
    the ``progress=False`` of the array-in trainings (``segment.fit``, ``rvae.fit``)."""
    import logging

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
