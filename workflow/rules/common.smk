# Named helpers shared by the rules: paths, wildcards, seeds, input functions.
from ferrolens.config import stage_seed

RESULTS = "results"
LOGS = "logs"
BENCH = "benchmarks/workflow"
CONDA_ENV = "../../envs/ferrolens.yaml"  # relative to workflow/rules/

DATASETS = sorted(config["datasets"])
LABELLED = [d for d in DATASETS if config["datasets"][d]["labels"]["frames"]]
WINDOWS = sorted(config["windows"])


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "[^/]+",
    window=r"\d+",


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def is_synthetic(dataset):
    cfg = config["datasets"][dataset]
    return cfg["path"] is None and cfg["synthetic"] is not None


def movie_source(wildcards):
    """The file(s) ingest_movie reads: the dataset's path, or the demo generator's store."""
    if is_synthetic(wildcards.dataset):
        return f"{RESULTS}/{wildcards.dataset}/synthetic.zarr"
    path = dataset_cfg(wildcards)["path"]
    return path if path is not None else []


def truth_source(wildcards):
    """Ground truth for labels.source: truth (synthetic datasets only)."""
    return movie_source(wildcards) if is_synthetic(wildcards.dataset) else ""


def seed(*names):
    return stage_seed(config["seed"], *names)
