"""ferrolens: latent mechanisms of transformations in in-situ microscopy movies.

The package holds all the science of the workflow (readers, demo movie, stores,
segmentation, rVAE, dynamics, latent-space maps, figures); the Snakemake rules
only call one function of it each.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ferrolens")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
