# Named helpers shared by the rules: paths, wildcards, seeds, input functions.
from pathlib import Path

from ferrolens.config import stage_seed
from ferrolens.errors import InputError
from ferrolens.io import expand_paths

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


def config_files(path):
    """The files a config ``path`` value names (a file, a folder of frames, a list), as inputs of
    the job that reads them, so that editing one reruns what depends on it. A missing path stays
    as given, so Snakemake names it."""
    if path is None:
        return []
    files = []
    for p in path if isinstance(path, list) else [path]:
        if Path(p).is_dir() and Path(p).suffix != ".zarr":
            try:
                files += [str(f) for f in expand_paths(p)]
            except InputError:  # an empty folder: ingest says so in its one line
                files.append(p)
        else:
            files.append(p)
    return files


def movie_source(wildcards):
    """The file(s) ingest_movie reads: the dataset's path, or the demo generator's store."""
    if is_synthetic(wildcards.dataset):
        return f"{RESULTS}/{wildcards.dataset}/synthetic.zarr"
    return config_files(dataset_cfg(wildcards)["path"])


def bias_table(wildcards):
    """The bias CSV (bias.source: csv), an input so that editing it reruns the ingest."""
    bias = dataset_cfg(wildcards)["bias"]
    return config_files(bias.get("csv")) if bias.get("source") == "csv" else []


def truth_source(wildcards):
    """Ground truth for labels.source: truth (synthetic datasets only; none for real data)."""
    return movie_source(wildcards) if is_synthetic(wildcards.dataset) else []


def label_files(wildcards):
    """The label images a person made (labels.source: files)."""
    labels = dataset_cfg(wildcards)["labels"]
    return config_files(labels.get("path")) if labels.get("source", "files") == "files" else []


def seed(*names):
    return stage_seed(config["seed"], *names)


SEG_VARIANTS = sorted(config["segment"].get("n_classes", [2, 3]))
RVAE_INPUT = config["rvae"].get("input", "walls")  # walls | classes | raw
RVAE_SEG = config["rvae"].get("segmentation", max(SEG_VARIANTS))  # class count of the model feeding the rVAE
if RVAE_INPUT != "raw" and RVAE_SEG not in SEG_VARIANTS:
    raise ValueError(
        f"config: rvae.segmentation = {RVAE_SEG} names a segmentation that is not trained "
        f"(expected one of segment.n_classes = {SEG_VARIANTS}, or rvae.input: raw)"
    )


def rvae_segmentation(wildcards):
    """The segmentation store the rVAE input comes from ([] for raw frames)."""
    if RVAE_INPUT == "raw":
        return []
    return f"{RESULTS}/{wildcards.dataset}/segment/c{RVAE_SEG}/segmentation.zarr"


# the rVAE stages run on every dataset whose input exists: segmented (labelled) ones, or all with raw input
RVAE_DATASETS = DATASETS if RVAE_INPUT == "raw" else LABELLED


def rvae_windows(wildcards):
    """The window sizes a dataset's frames must hold (none when the rVAE does not run on it)."""
    return WINDOWS if wildcards.dataset in RVAE_DATASETS else []


# --- figures ---------------------------------------------------------------------
FIG = f"{RESULTS}/{{dataset}}/figures"
PER_WINDOW_FIGURES = ["fig3_latent_codes", "fig5_dynamics", "fig6_latent_space", "fig7_nmf_maps"]


def all_figures(wildcards):
    """Every figure of every dataset: Fig. 1 for all, the rest where the rVAE runs."""
    figs = expand(f"{RESULTS}/{{dataset}}/figures/fig1_frames.png", dataset=DATASETS)
    figs += expand(f"{RESULTS}/{{dataset}}/figures/fig2_segmentation.png", dataset=LABELLED)
    for d in RVAE_DATASETS:
        figs += [f"{RESULTS}/{d}/figures/{name}.png" for name in ("fig4_latent_maps", "rvae_training")]
        figs += expand(f"{RESULTS}/{d}/figures/{{name}}_n{{window}}.png", name=PER_WINDOW_FIGURES, window=WINDOWS)
    return figs


def fig_output(name, caption, category, **labels):
    return report(f"{FIG}/{name}.png", caption=f"../report/{caption}.rst", category=category,
                  labels={"figure": caption.replace("_", " "), **labels})
