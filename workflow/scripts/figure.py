"""Rules figure_*: draw one figure with ferrolens.figures.<kind>."""

from ferrolens import figures
from ferrolens.runlog import run_logged

sm = snakemake  # noqa: F821 (injected by Snakemake)
inputs = {name: (list(v) if not isinstance(v, str) else v) for name, v in sm.input.items()}
run_logged(
    sm, getattr(figures, sm.params.kind), **inputs, out=sm.output[0], cfg=sm.params.cfg, **sm.params.get("extra", {})
)
