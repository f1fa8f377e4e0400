"""What each kind of job imports: the light ones stay light."""


def test_cutting_windows_imports_no_lightning():
    """The jobs that only read stores and cut windows do not pay ~4 s of CPU for importing Lightning."""
    import subprocess
    import sys

    code = ("import sys\nfrom ferrolens.pipeline import rvae_images, rvae_windows\n"
            "import ferrolens.rvae.inputs, ferrolens.segment.images, ferrolens.store, ferrolens.figures\n"
            "print('pytorch_lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    lazy = "import ferrolens.rvae as r, ferrolens.segment as s\nprint(r.train.__module__, s.input_image.__module__)"
    out = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ferrolens.rvae.learn", "ferrolens.segment.images"]
