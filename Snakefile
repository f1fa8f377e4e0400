# ferrolens: latent mechanisms of transformations in in-situ microscopy movies.
# Table of contents only; every rule calls one function of src/ferrolens.
import sys
from pathlib import Path

from snakemake.utils import min_version

from ferrolens.config import validate
from ferrolens.errors import InputError

min_version("9.0")


# The demo's config applies only when no --configfile is given: a user's config names its own
# datasets (only those run) and keys it leaves out take the schema's defaults, not the demo's.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# the package's validator: the same schema, defaults filled in the stage fragments too; a bad
# config is one line naming the user's file, the key, the value and what was expected
try:
    validate(config, Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
             where=", ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml")
except InputError as exc:
    sys.exit(f"ferrolens: bad config: {exc}")


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/rvae.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/switching.smk"
include: "workflow/rules/figures.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        movies=expand(rules.ingest_movie.output[0], dataset=DATASETS),
        labels=expand(rules.ingest_labels.output[0], dataset=LABELLED),
        segmentation=expand(rules.segment_predict.output[0], dataset=LABELLED, classes=SEG_VARIANTS),
        dynamics=expand(
            [*rules.dynamics_kde_nmf.output, rules.latent_space_map.output[0]],
            dataset=RVAE_DATASETS,
            window=WINDOWS,
        ),
        sweep=expand(rules.sweep_merge.output[0], dataset=RVAE_DATASETS),
        switching=expand(rules.switching.output[0], dataset=RVAE_DATASETS, window=WINDOWS),
        figures=all_figures,
    default_target: True
