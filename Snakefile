# ferrolens: latent mechanisms of transformations in in-situ microscopy movies.
# Table of contents only; every rule calls one function of src/ferrolens.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"


rule all:
    input:
        movies=expand(f"{RESULTS}/{{dataset}}/movie.zarr", dataset=DATASETS),
        labels=expand(f"{RESULTS}/{{dataset}}/labels.zarr", dataset=LABELLED),
    default_target: True
