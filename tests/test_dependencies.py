"""Change one setting, redo only what depends on it (issue 23).

Generated from the schema: for every key of ``src/ferrolens/schemas/`` (``datasets.*.<key>`` set on the
dataset ``demo``), another valid value is set on ONE finished tiny run (``tiny_run``, shared with
tests/test_workflow.py) and Snakemake decides, in this process and without running anything, which
jobs would run (the dry run's own DAG: params, input, code and mtime triggers). The jobs that run for a
reason of their own must be exactly jobs of the rules ``schemas/dependencies.yaml`` declares for the key
(every declared rule at least once); everything else that runs must run because an input of it is
remade. A schema key without a declared dependency fails, naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from ferrolens.config import SCHEMA, validate

ROOT = Path(__file__).resolve().parents[1]
TINY = [ROOT / ".test" / "tiny.yaml", ROOT / ".test" / "workflow.yaml"]
DEPENDENCIES = SCHEMA.parent / "dependencies.yaml"
DATASET = "demo"  # the tiny run's dataset through every stage: datasets.*.<key> is set there

# keys whose next valid value the schema alone does not give on the tiny run (cross-field rules, files,
# structure); every other key gets one from its type, enum and bounds (other_value)
OVERRIDES = {
    "classes": ["background", "domain_wall", "contaminant"],
    "windows": [8, 12],
    "datasets.*.synthetic": {
        "n_frames": 8,
        "size": 48,
        "seed": 0,
        "needles_per_family": 4,
        "n_contaminants": 2,
        "dose": 150.0,
    },
    "datasets.*.path": "{npy}",  # a file that exists (written by the test)
    "datasets.*.channel": 0,
    "datasets.*.frames.stop": 7,
    "datasets.*.crop": [0, 40, 0, 40],
    "datasets.*.bias.source": "waveform",
    "datasets.*.bias.csv": "{csv}",
    "datasets.*.bias.values": [0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0, -1.0],
    "datasets.*.labels.frames": [0, 3],
    "datasets.*.labels.path": "{npy}",
    "datasets.*.labels.colors": {"wall": [255, 0, 0]},
    "segment.n_classes": [3],
    "segment.train.class_weights": "none",
    "segment.train.val_frames": [3],
    "segment.augment.contrast.scale_range": [0.8, 1.2],
    "segment.augment.contrast.gamma_range": [0.8, 1.2],
    "segment.augment.poisson_noise.peak_range": [30.0, 300.0],
    "segment.normalize.high_percentile": 98.0,
    "rvae.segmentation": 2,
    "rvae.epochs": 4,
    "dynamics.variables": ["angle", "z1"],
    "dynamics.range_quantiles": [0.01, 0.99],
    "dynamics.ranges": {"z1": [-3.0, 3.0]},
    "dynamics.fixed_bandwidth": {"angle": 0.1},
    "latent_space.pair": ["z2", "z1"],
    "latent_space.range_quantiles": [0.02, 0.98],
    "latent_space.ranges": {"z1": [-2.0, 2.0]},
    "latent_space.physical_bounds": [0.9, 1.1],
    "latent_space.histogram_range": [0.0, 0.9],
    "latent_space.rgb_components": [2, 1, 0],
    "figures.biases": [0.0],
    "switching.variables": ["angle", "z1"],
}
# keys that add or remove jobs: the jobs that run must still be the declared rules' and what follows,
# but a declared rule may have no job left to run (e.g. segment.n_classes [2, 3] -> [3])
STRUCTURAL = {"windows", "segment.n_classes"}
# settings a key's value needs beside it (dotted keys, set with it)
REQUIRES = {
    "datasets.*.bias.csv": {"datasets.*.bias.source": "csv"},
    "datasets.*.labels.path": {"datasets.*.labels.source": "files"},
    "datasets.*.labels.colors": {"datasets.*.labels.format": "rgb"},
    "dynamics.fixed_bandwidth": {"dynamics.bandwidth": "fixed", "dynamics.variables": ["angle"]},
}


# --- the schema's keys and the declared map ---------------------------------------------------------
def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref")
    if ref is None:
        return node
    if ref.startswith("#/$defs/"):
        return root["$defs"][ref.removeprefix("#/$defs/")]
    return yaml.safe_load((SCHEMA.parent / ref).read_text())


def schema_keys() -> dict[str, dict]:
    """Every leaf key of the schema (objects with properties are walked into), dotted, with its node;
    a dataset's keys as ``datasets.*.<key>``."""
    root = yaml.safe_load(SCHEMA.read_text())
    out: dict[str, dict] = {}

    def walk(node: dict, prefix: str) -> None:
        node = _resolve(node, root)
        if prefix == "datasets":
            return walk(node["additionalProperties"], "datasets.*")
        if node.get("type") == "object" and node.get("properties"):
            for k, sub in node["properties"].items():
                walk(sub, f"{prefix}.{k}" if prefix else k)
        else:
            out[prefix] = node

    walk(root, "")
    return out


def declared(key: str, deps: dict) -> list[str] | None:
    """The rules the map declares for ``key``: its own line, or that of the longest path above it."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in deps:
            return list(deps[".".join(parts[:n])])
    return None


def other_value(key: str, node: dict, current):
    """A valid value other than ``current`` from the schema node (enum, type, bounds)."""
    if key in OVERRIDES:
        return OVERRIDES[key]
    if "enum" in node:
        return next(v for v in node["enum"] if v != current)
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "oneOf" in node:  # the first scalar branch that gives a value
        for branch in node["oneOf"]:
            if branch.get("type") not in (None, "null", "array", "object"):
                return other_value(key, {**branch, "default": node.get("default")}, current)
    if "boolean" in types:
        return not current
    if "integer" in types:
        hi, step = node.get("maximum"), node.get("multipleOf", 1)
        base = current if isinstance(current, int) else node.get("minimum", 1)
        return base + step if hi is None or base + step <= hi else base - step
    if "number" in types:
        base = current if isinstance(current, (int, float)) else None
        hi = node.get("maximum", node.get("exclusiveMaximum"))
        if base is None:
            return 0.5 * hi if hi is not None else 1.5
        new = base * 1.25 if base else 0.5 * (hi if hi is not None else 1.0)
        return new if hi is None or new < hi else 0.5 * (base + node.get("minimum", node.get("exclusiveMinimum", 0)))
    if "string" in types:
        return f"{current}_x" if current else "x"
    raise AssertionError(f"no automatic value for {key} ({node}): add one to OVERRIDES")


def nested(settings: dict) -> dict:
    """The config override setting each dotted key (``datasets.*`` = the dataset ``demo``) to its value."""
    out: dict = {}
    for key, value in settings.items():
        *parents, leaf = key.replace("datasets.*", f"datasets.{DATASET}").split(".")
        inner = out
        for p in parents:
            inner = inner.setdefault(p, {})
        inner[leaf] = value
    return out


def _merge(base: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def lookup(config: dict, key: str):
    value = config
    for p in key.replace("datasets.*", f"datasets.{DATASET}").split("."):
        value = value[p]
    return value


# --- Snakemake's decision, in this process ----------------------------------------------------------
@contextmanager
def _workflow(workdir: Path, overrides: dict, configfiles=TINY, snakefile: Path = ROOT / "Snakefile"):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(configfiles=list(configfiles), config=overrides),
                snakefile=snakefile,
                workdir=workdir,
            )
            wf.dag(DAGSettings())
            yield wf._workflow
    finally:
        os.chdir(cwd)


class Decision:
    """Snakemake's view of the tiny run under a config: every job's params and inputs (``carried``),
    and the jobs a dry run would run (``run``: ``"own"`` for a reason of their own: params, input set,
    code, a missing output, a changed input file; ``"follows"`` when only a job upstream runs)."""

    def __init__(self, workdir: Path, overrides: dict | None = None, **kw):
        with _workflow(workdir, overrides or {}, **kw) as w:
            w._prepare_dag(forceall=False, ignore_incomplete=False, lock_warn_only=True)
            w._build_dag()
            self.carried = {
                _name(job): (tuple((k, repr(v)) for k, v in job.params.items()), tuple(job.input))
                for job in w.dag.jobs
                if job.rule.name != "all"
            }
            self.run = {}
            for job in w.dag.needrun_jobs():
                if job.rule.name == "all":
                    continue
                r = w.dag.reason(job)
                own = (
                    r.is_provenance_triggered()
                    or r.forced
                    or bool(r.updated_input)
                    or ((bool(r.missing_output) or bool(r.incomplete_output)) and not r.updated_input_run)
                )
                self.run[_name(job)] = "own" if own else "follows"


def _name(job) -> tuple:
    return job.rule.name, tuple(sorted(job.wildcards_dict.items()))


def check_key(key: str, rules: list[str], new: Decision, base: Decision) -> list[str]:
    """What is wrong with the jobs of config ``new`` (``key`` changed) against the declared ``rules``,
    ``base`` the tiny run's own config (empty: right).

    1. The jobs whose params or inputs differ from the base's are exactly jobs of the declared rules.
    2. What the dry run runs for a reason of its own is jobs of the declared rules, and every declared
       rule runs (on its own or after a declared rule upstream)."""
    problems = []
    known = {r for r, _ in base.carried}
    unknown = [r for r in rules if r not in known]
    if unknown:
        problems.append(f"declares rules {unknown} that the tiny run does not have")
    sliced = key.startswith("datasets.*")

    def outside(job) -> bool:
        return job[0] not in rules or (sliced and ("dataset", DATASET) not in job[1])

    structural = key in STRUCTURAL
    carried = {job for job, sig in new.carried.items() if job in base.carried and sig != base.carried[job]}
    if not structural:
        carried |= set(new.carried) - set(base.carried)
    stray = sorted(job for job in carried if outside(job))
    if stray:
        problems.append(f"reaches the params or inputs of {stray}, not declared")
    own = sorted(job for job, why in new.run.items() if why == "own" and outside(job))
    if own:
        problems.append(f"makes Snakemake run {own}, not declared")
    if not structural:
        expected = {r for r, wc in base.carried if r in rules and (not sliced or ("dataset", DATASET) in wc)}
        missing = sorted(expected - {r for r, _ in carried})
        if missing:
            problems.append(f"does not reach {missing} (declared: their params or inputs should carry it)")
        missing = sorted(expected - {r for r, _ in new.run})
        if missing:
            problems.append(f"does not make Snakemake run {missing}")
    return problems


# --- the tests --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decided(tiny_run, tmp_path_factory):
    """For every schema key: its declared rules, the value set, and what Snakemake would run."""
    import numpy as np

    files = tmp_path_factory.mktemp("dep_files")
    np.save(files / "frames.npy", np.zeros((8, 48, 48), np.float32))
    (files / "bias.csv").write_text("frame,bias\n" + "".join(f"{i},{i % 4}\n" for i in range(8)))
    deps = yaml.safe_load(DEPENDENCIES.read_text())
    base = validate(_merge(yaml.safe_load(TINY[0].read_text()), yaml.safe_load(TINY[1].read_text())))
    everything = Decision(tiny_run)
    out = {}
    for key, node in schema_keys().items():
        rules = declared(key, deps)
        if rules is None:
            out[key] = (None, None, None)
            continue
        try:
            value = other_value(key, node, lookup(base, key))
            if isinstance(value, str):
                value = value.format(npy=files / "frames.npy", csv=files / "bias.csv")
            out[key] = (rules, value, Decision(tiny_run, nested({key: value, **REQUIRES.get(key, {})})))
        except Exception as exc:  # no value, or one Snakemake refuses: reported with the others
            out[key] = (rules, None, f"{type(exc).__name__}: {exc}")
    return out, everything


@pytest.mark.slow
def test_every_schema_key_reruns_exactly_its_declared_rules(decided):
    results, everything = decided
    undeclared = sorted(k for k, (rules, _, _) in results.items() if rules is None)
    problems = [f"{k}: no line in src/ferrolens/schemas/dependencies.yaml" for k in undeclared]
    declared = yaml.safe_load(DEPENDENCIES.read_text())
    stale = [k for k in declared if not any(s == k or s.startswith(f"{k}.") for s in results)]
    problems += [f"{k}: a line of src/ferrolens/schemas/dependencies.yaml for no key of the schema" for k in stale]
    for key, (rules, value, run) in results.items():
        if isinstance(run, str):
            problems.append(f"{key}: {run}")
        elif rules is not None:
            problems += [f"{key} = {value!r}: {p}" for p in check_key(key, rules, run, everything)]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_each_window_size_sees_its_own_epochs(tiny_run):
    """rvae.epochs reaches each model as its own number: the tiny run trains n = 8 for 3 epochs, so a
    mapping that keeps 3 for n = 8 retrains nothing, and one that changes it retrains n = 8."""
    base = Decision(tiny_run)
    same = Decision(tiny_run, {"rvae": {"epochs": {8: 3, 12: 40}}})
    assert same.run == {} and same.carried == base.carried
    more = Decision(tiny_run, {"rvae": {"epochs": {8: 4, 12: 3}}})
    assert {job for job, why in more.run.items() if why == "own"} == {
        ("rvae_train", (("dataset", DATASET), ("window", "8")))
    }


def _reversed(value):
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    return value


@pytest.mark.slow
def test_the_order_of_keys_in_a_config_reruns_nothing(tiny_run, tmp_path):
    files = []
    for f in TINY:
        files.append(tmp_path / f.name)
        files[-1].write_text(yaml.safe_dump(_reversed(yaml.safe_load(f.read_text())), sort_keys=False))
    assert Decision(tiny_run, configfiles=files).run == {}


def _copy_workflow(to: Path) -> Path:
    """The workflow's files (Snakefile, rules, scripts, schemas, package), modification times kept."""
    to.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "src"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, to / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, to / name)
    return to


@pytest.mark.slow
def test_code_a_figure_function_redraws_the_figures_only(tiny_run, tmp_path):
    """Code (item 3 of issue 23). Snakemake's code trigger reruns a rule whose script is newer than its
    outputs: touching figure.py redraws every figure, touching rvae_train.py retrains. The package is
    not Snakemake's to see, so figure rules carry a digest of ferrolens.figures: editing a figure
    function redraws the figures; editing the rVAE's model retrains nothing (rerun it with -R)."""
    figures = {r for r, _ in Decision(tiny_run).carried if r.startswith("figure_")}
    for script, rules in (("figure.py", figures), ("rvae_train.py", {"rvae_train"})):
        wf = _copy_workflow(tmp_path / script)  # a copy each: Snakemake keeps a script's time once read
        os.utime(wf / "workflow/scripts" / script)
        own = {r for (r, _), why in Decision(tiny_run, snakefile=wf / "Snakefile").run.items() if why == "own"}
        assert own == rules, script
    wf = _copy_workflow(tmp_path / "package")
    # the package's code: another process imports the edited copy
    for module in ("figures/movie.py", "rvae/model.py"):
        with open(wf / "src/ferrolens" / module, "a") as f:
            f.write("\n# edited\n")
    probe = (
        f"import sys, json; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_dependencies as t; "
        f"import ferrolens; assert ferrolens.__file__.startswith({str(wf)!r}), ferrolens.__file__; "
        f"from pathlib import Path; "
        f"d = t.Decision(Path({str(tiny_run)!r}), snakefile=Path({str(wf / 'Snakefile')!r})); "
        "print(json.dumps(sorted({r for (r, _), why in d.run.items() if why == 'own'})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(wf / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(json.loads(proc.stdout.strip().splitlines()[-1])) == figures


@pytest.mark.slow
def test_editing_a_frame_of_a_folder_reruns_its_ingest_only(tmp_path):
    """Data (item 3): every frame of a folder is an input of the ingest; the bias CSV and label images
    are tested in tests/test_own_movie.py. A folder dataset without labels runs two jobs."""
    import numpy as np
    from PIL import Image

    data = shutil.copytree(ROOT / ".test/png_frames/frames", tmp_path / "frames")
    cfg = tmp_path / "folder.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": {"scan": {"path": str(data), "frame_interval": 2.0}}}))
    files = [TINY[0], cfg]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            *map(str, files),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Decision(tmp_path, configfiles=files).run == {}
    frame = sorted(data.iterdir())[3]
    original = frame.read_bytes()
    img = np.asarray(Image.open(frame)).copy()
    img[0, 0] = 255 - img[0, 0]  # a person corrects one pixel of one frame
    Image.fromarray(img).save(frame)
    run = Decision(tmp_path, configfiles=files).run
    assert {r for (r, _), why in run.items() if why == "own"} == {"ingest_movie"}
    assert {r for r, _ in run} == {"ingest_movie", "figure_frames"}
    frame.write_bytes(original)  # the content the movie was made from: nothing to do (Snakemake compares checksums)
    assert Decision(tmp_path, configfiles=files).run == {}
