# Named helpers shared by the rules: store paths, log/benchmark paths, wildcards, input functions.
# The config is validated, with the schema's defaults filled in, before this file is read (Snakefile):
# every key read here is present.
from pathlib import Path

from ferrolens.config import stage_seed
from ferrolens.errors import InputError
from ferrolens.io import expand_paths

RESULTS = "results"
CONDA_ENV = "../../envs/ferrolens.yaml"  # every rule's environment; relative to workflow/rules/

# --- store paths: each pattern written once, as the output of the rule that makes it; the rules
# that read a store take it from that rule (rules.<name>.output)
DATASET = f"{RESULTS}/{{dataset}}"
SYNTHETIC = f"{DATASET}/synthetic.zarr"
MOVIE = f"{DATASET}/movie.zarr"
LABELS = f"{DATASET}/labels.zarr"
SEGMENT = f"{DATASET}/segment/c{{classes}}"  # one U-Net per class count
SEGMENT_MODEL = f"{SEGMENT}/model.ckpt"
SEGMENTATION = f"{SEGMENT}/segmentation.zarr"
RVAE = f"{DATASET}/rvae/n{{window}}"  # one rVAE per window size
WINDOW_STORE = f"{RVAE}/windows.zarr"
RVAE_MODEL = f"{RVAE}/model.ckpt"
RVAE_QUALITY = f"{RVAE}/quality.json"  # the gate's verdict (thresholds applied where reported)
LATENTS = f"{RVAE}/latents.zarr"
DYNAMICS = f"{RVAE}/dynamics.zarr"
LATENT_SPACE = f"{RVAE}/latent_space.zarr"
SWITCHING = f"{RVAE}/switching.zarr"
SWEEP = f"{DATASET}/sweep.zarr"


def figure_path(name):
    """A figure's PNG (the figures have no store: their rule outputs it)."""
    return f"{DATASET}/figures/{name}.png"


def log_of(output):
    """A job's log: logs/ + its main output's path under results/ + .log"""
    return f"logs/{Path(output).relative_to(RESULTS)}.log"


def benchmark_of(output):
    """A job's timing: benchmarks/workflow/ + its main output's path under results/ + .tsv"""
    return f"benchmarks/workflow/{Path(output).relative_to(RESULTS)}.tsv"


DATASETS = sorted(config["datasets"])
LABELLED = [d for d in DATASETS if config["datasets"][d]["labels"]["frames"]]
WINDOWS = sorted(config["windows"])
SEG_VARIANTS = sorted(config["segment"]["n_classes"])
RVAE_INPUT = config["rvae"]["input"]  # walls | classes | raw
RVAE_SEG = config["rvae"]["segmentation"]  # class count of the model feeding the rVAE (trained: checked in validate)
# the rVAE stages run on every dataset whose input exists: segmented (labelled) ones, or all with raw input
RVAE_DATASETS = DATASETS if RVAE_INPUT == "raw" else LABELLED


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "[^/]+",
    window=r"\d+",


def canonical(value):
    """``value`` with every mapping's keys sorted: Snakemake compares params by their repr, so the
    order of keys in a user's YAML must not rerun anything."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def pick(mapping, *keys, drop=()):
    """The settings a rule's outputs depend on: entries ``keys`` of a config mapping (every entry
    when none is named) less the dotted paths ``drop``, canonical. A rule's params carry only these,
    so that editing another key reruns nothing of it (src/ferrolens/schemas/dependencies.yaml)."""
    out = canonical({k: mapping[k] for k in (keys or mapping)})
    for path in drop:
        *parents, leaf = path.split(".")
        inner = out
        for p in parents:
            inner = inner.get(p, {})
        inner.pop(leaf, None)
    return out


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def code_digest(package):
    """A digest of the sources of ``package`` (its own .py files). Snakemake reruns a rule when its
    script is newer than its outputs, but sees no package code: a figure rule carries the digest of
    ``ferrolens.figures`` as a param, so that editing a figure function redraws the figures and
    nothing else. Stages that compute are not tied to their code (an edit, even a comment, would
    retrain models): rerun them with ``snakemake -R <rule>``."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for folder in importlib.util.find_spec(package).submodule_search_locations:
        for f in sorted(Path(folder).glob("*.py")):
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def movie_settings(wildcards):
    """What the movie store depends on: the dataset's section less its labels and the generator's
    settings (a synthetic dataset's movie depends on those through the generator's store)."""
    return pick(dataset_cfg(wildcards), drop=["labels", "synthetic"])


def label_settings(wildcards):
    """What the labels store depends on: the labels and the movie's crop and binning (its frame
    selection comes with the movie store)."""
    return pick(dataset_cfg(wildcards), "labels", "crop", "bin")


def synthetic_spec(wildcards):
    """The demo generator's settings of a synthetic dataset."""
    return canonical(dataset_cfg(wildcards)["synthetic"])


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
        return rules.ingest_synthetic.output[0].format(dataset=wildcards.dataset)
    return config_files(dataset_cfg(wildcards)["path"])


def bias_table(wildcards):
    """The bias CSV (bias.source: csv), an input so that editing it reruns the ingest."""
    bias = dataset_cfg(wildcards)["bias"]
    return config_files(bias["csv"]) if bias["source"] == "csv" else []


def truth_source(wildcards):
    """Ground truth for labels.source: truth (synthetic datasets only; none for real data)."""
    return movie_source(wildcards) if is_synthetic(wildcards.dataset) else []


def label_files(wildcards):
    """The label images a person made (labels.source: files)."""
    labels = dataset_cfg(wildcards)["labels"]
    return config_files(labels["path"]) if labels["source"] == "files" else []


def seed_of(stage, wildcard):
    """The params function giving each job of ``stage`` its seed, from the master seed, the dataset
    and the job's ``wildcard`` (its window size or class count)."""

    def job_seed(wildcards):
        return stage_seed(config["seed"], stage, wildcards.dataset, getattr(wildcards, wildcard))

    job_seed.__name__ = f"seed_of_{stage}"
    return job_seed


# rvae keys of cutting windows, and of encoding; every other rvae key is training's
RVAE_WINDOW_KEYS = ["input", "raw_normalize", "segmentation", "sampling", "count", "stride", "min_std", "weighting"]
RVAE_ENCODE_KEYS = ["input", "raw_normalize", "accelerator", "encode_batch", "maps_logsd", "maps_chunk_mb", "angle_confidence"]
# rvae.quality: training measures (quality.windows); the thresholds are rule rvae_quality's alone
RVAE_THRESHOLDS = [f"quality.{k}" for k in config["rvae"]["quality"] if k != "windows"]


def rvae_train_settings(wildcards):
    """What one window size's model depends on: the training keys of ``rvae``, with ``epochs`` its
    own number (editing another size's entry retrains only that one)."""
    epochs = config["rvae"]["epochs"]
    if isinstance(epochs, dict):  # keys: int or str (a mapping merged from YAML); every size has one (validate)
        epochs = {int(k): v for k, v in epochs.items()}[int(wildcards.window)]
    drop = [k for k in RVAE_WINDOW_KEYS + RVAE_ENCODE_KEYS if k != "accelerator"] + RVAE_THRESHOLDS
    return {**pick(config["rvae"], drop=drop), "epochs": epochs}


def feeds_rvae(wildcards):
    """Scheduling priority of a U-Net job: 1 where its class count feeds the rVAE, else 0.

    Its training and prediction lie on the path to the longest jobs (the rVAE trainings); the other
    U-Net only draws figures and can wait for free cores.
    """
    return int(RVAE_INPUT != "raw" and int(wildcards.classes) == RVAE_SEG)


def window_rank(wildcards):
    """Scheduling priority of a window size's jobs (windows, training, maps, dynamics): 1 + its rank.

    The larger the window, the longer its chain, the earlier it starts; every one outranks the
    U-Net that only draws figures (priority 0).
    """
    return 1 + WINDOWS.index(int(wildcards.window))


def rvae_segmentation(wildcards):
    """The segmentation store the rVAE input comes from ([] for raw frames)."""
    if RVAE_INPUT == "raw":
        return []
    return rules.segment_predict.output[0].format(dataset=wildcards.dataset, classes=RVAE_SEG)

