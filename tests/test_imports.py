"""What each kind of job imports: the light ones stay light."""

import subprocess
import sys


def test_cutting_windows_imports_no_lightning():
    """The jobs that only read stores and cut windows do not pay ~4 s of CPU for importing Lightning:
    the rvae and segment packages import a name's module only when the name is used."""
    code = (
        "import sys\nfrom ferrolens.pipeline import rvae_images, rvae_windows\n"
        "import ferrolens.rvae as r, ferrolens.segment as s, ferrolens.store, ferrolens.figures\n"
        "print(r.make_windows.__module__, s.input_image.__module__, 'pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ferrolens.rvae.inputs", "ferrolens.segment.images", "False"]


def test_loading_a_trained_rvae_imports_no_lightning(tmp_path):
    """The encode and latent-space jobs load the trained model as a plain nn.Module (RVAENet) and do not pay
    ~5 s of CPU each for importing Lightning; the model is the training system's, to the bit."""
    import numpy as np
    import pytorch_lightning as pl
    import torch

    from ferrolens.rvae.model import RVAE

    torch.manual_seed(0)
    model = RVAE(9, latent_dim=2, filters=8)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    x = np.random.default_rng(0).random((4, 9, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np\nfrom ferrolens.pipeline import rvae_encode, latent_space_map\n"
        "from ferrolens.rvae import load, encode\n"
        f"m = load({str(tmp_path / 'm.ckpt')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.encode(np.load({str(tmp_path / 'x.npy')!r}))[0])\n"
        "print(type(m).__name__, 'pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["RVAENet", "False"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.encode(x)[0])


def test_figures_that_print_a_verdict_import_neither_torch_nor_lightning(tmp_path):
    """The figures read the rVAE's quality.json and judge the U-Net's held-out IoU without importing torch
    (~2 s of CPU a figure job) or Lightning (~5 s more)."""
    report = tmp_path / "quality.json"
    report.write_text('{"passed": true, "failed": [], "quality_warning": "", "measurements": {}}')
    code = (
        "import sys\nfrom ferrolens.figures.latent import _verdict\nfrom ferrolens.figures.segment import "
        "segment_training_figure\nfrom ferrolens.segment.verdict import judge\n"
        f"v = _verdict({{}}, {str(report)!r})\n"
        "j = judge({'heldout_miou': 0.9, 'heldout_iou_wall': 0.8}, 0.6)\n"
        "print(v.get('quality_warning', '') == '', j['quality_ok'], 'torch' in sys.modules, "
        "'pytorch_lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "False", "False"]


def test_conda_environment_states_the_package_requirements():
    """envs/ferrolens.yaml (for --sdm conda) asks for every requirement of pyproject.toml with the same
    bounds (conda-forge names: torch is pytorch, matplotlib matplotlib-base, snakemake snakemake-minimal)."""
    import re
    import tomllib
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    conda_name = {"torch": "pytorch", "matplotlib": "matplotlib-base", "snakemake": "snakemake-minimal"}

    def split(spec: str) -> tuple[str, str]:
        name, bounds = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec.split("#")[0].strip()).groups()
        return name.lower(), bounds.replace(" ", "")

    wanted = dict(split(d) for d in deps)
    wanted = {conda_name.get(k, k): v for k, v in wanted.items()}
    env = yaml.safe_load((root / "envs" / "ferrolens.yaml").read_text())["dependencies"]
    have = dict(split(d) for d in env if isinstance(d, str))
    assert {k: have.get(k) for k in wanted} == wanted
