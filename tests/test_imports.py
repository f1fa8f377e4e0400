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
