"""Helpers of .ci/slurm/test_slurm.sh (the SLURM test of the workflow).

    check.py tiny-config OUT.yaml          write the end-to-end test's tiny config (.test/) as one file
    check.py compare LOCAL SLURM           same outputs under results/ of both runs
    check.py jobs SNAKEMAKE_LOG            every non-local job ran as a SLURM job, GPU jobs got one

Exit status 0 when all is well, 1 with the reasons printed otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
# the config of tests/test_workflow.py: the budget, then the datasets (merged as Snakemake merges
# several --configfile files)
TINY = [ROOT / ".test" / "tiny.yaml", ROOT / ".test" / "workflow.yaml"]


def gpu_rules() -> set[str]:
    """The rules that profiles/slurm sends to a GPU (`gpu` or a gpu `gres` in set-resources)."""
    import yaml

    table = yaml.safe_load(PROFILE.read_text()).get("set-resources") or {}
    return {rule for rule, res in table.items() if res.get("gpu") or "gpu" in str(res.get("gres", ""))}


def tiny_config(out: Path) -> int:
    """The config files of tests/test_workflow.py (TINY) merged into one YAML file."""
    import yaml
    from snakemake.utils import update_config

    config: dict = {}
    for path in TINY:
        update_config(config, yaml.safe_load(path.read_text()))
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"wrote {out} ({' + '.join(str(p.relative_to(ROOT)) for p in TINY)})")
    return 0


def _tree(root: Path) -> tuple[list[Path], list[Path]]:
    """Zarr stores and other files under root, relative to it (not looking inside stores)."""
    stores, files = [], []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.endswith(".zarr") for part in rel.parts[:-1]):
            continue
        if p.is_dir() and p.name.endswith(".zarr"):
            stores.append(rel)
        elif p.is_file():
            files.append(rel)
    return stores, files


def _compare_store(a: Path, b: Path, rtol: float) -> list[str]:
    import numpy as np
    import xarray as xr

    problems = []
    with warnings.catch_warnings():  # unconsolidated stores, Snakemake's .snakemake_timestamp
        warnings.simplefilter("ignore")
        da, db = xr.open_zarr(a), xr.open_zarr(b)
    for kind, na, nb in (("data variables", da.data_vars, db.data_vars), ("coordinates", da.coords, db.coords)):
        if set(na) != set(nb):
            problems.append(f"{kind} differ: {sorted(na)} vs {sorted(nb)}")
    for name in sorted(set(da.variables) & set(db.variables)):
        va, vb = da[name].variable, db[name].variable
        if va.dims != vb.dims or va.shape != vb.shape or va.dtype != vb.dtype:
            problems.append(
                f"{name}: dims/shape/dtype {va.dims} {va.shape} {va.dtype} vs {vb.dims} {vb.shape} {vb.dtype}"
            )
            continue
        xa, xb = va.values, vb.values
        if np.issubdtype(xa.dtype, np.floating) or np.issubdtype(xa.dtype, np.complexfloating):
            same = (
                np.allclose(xa, xb, rtol=rtol, atol=0.0, equal_nan=True)
                if rtol
                else np.array_equal(xa, xb, equal_nan=True)
            )
            if not same:
                diff = np.nanmax(np.abs(xa.astype(float) - xb.astype(float))) if xa.size else 0.0
                problems.append(f"{name}: values differ (max |a-b| = {diff:.3g}, rtol = {rtol})")
        elif not np.array_equal(xa, xb):
            problems.append(f"{name}: values differ")
    return problems


def compare(local: Path, slurm: Path, rtol: float) -> int:
    sa, fa = _tree(local / "results")
    sb, fb = _tree(slurm / "results")
    bad = []
    if not sa:
        bad.append(f"no zarr store under {local / 'results'}")
    for kind, a, b in (("stores", sa, sb), ("files", fa, fb)):
        if set(a) != set(b):
            bad.append(
                f"{kind} only in the local run: {sorted(map(str, set(a) - set(b)))}; "
                f"only in the SLURM run: {sorted(map(str, set(b) - set(a)))}"
            )
    for rel in sorted(set(sa) & set(sb)):
        problems = _compare_store(local / "results" / rel, slurm / "results" / rel, rtol)
        print(f"  {'MISMATCH' if problems else 'equal   '} {rel}")
        bad += [f"{rel}: {p}" for p in problems]
    for rel in sorted(set(fa) & set(fb)):
        same = (local / "results" / rel).read_bytes() == (slurm / "results" / rel).read_bytes()
        # figures and checkpoints may embed run paths or times: reported, not required to be equal
        print(f"  {'same bytes' if same else 'present   '} {rel}")
    if bad:
        print("\n".join(["outputs of the local and the SLURM run differ:"] + [f"  - {b}" for b in bad]))
        return 1
    print(f"local and SLURM outputs agree: {len(sa)} stores (data variables and coordinates), {len(fa)} other files")
    return 0


def _slurm_jobs() -> list[dict[str, str]]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        if not line.strip() or line.startswith("No jobs"):
            continue
        fields = dict(m.groups() for m in re.finditer(r"(\w+(?:/\w+)?)=(\S*)", line))
        jobs.append(fields)
    return jobs


def jobs(log: Path) -> int:
    text = log.read_text()
    m = re.search(r"SLURM run ID: (\S+)", text)
    if not m:
        print(f"no 'SLURM run ID' in {log}: did Snakemake use the SLURM executor?")
        return 1
    run_id = m.group(1)
    ran = sorted(set(re.findall(r"^rule (\w+):", text, re.M)))  # non-local rules
    ours = [j for j in _slurm_jobs() if j.get("JobName") == run_id]
    gpu_wanted = gpu_rules()
    bad = []
    print(f"{'job':>6}  {'state':<10} {'partition':<9} {'cpus':>4} {'gpus':<12} rule")
    seen = set()
    for j in ours:
        rule = re.sub(r"^rule_", "", j.get("Comment", "")).split("_wildcards_")[0]
        seen.add(rule)
        tres = j.get("TresPerJob", "") or j.get("TresPerNode", "")
        print(
            f"{j.get('JobId', '?'):>6}  {j.get('JobState', '?'):<10} {j.get('Partition', '?'):<9} "
            f"{j.get('NumCPUs', '?'):>4} {tres or '-':<12} {j.get('Comment', '')}"
        )
        if j.get("JobState") != "COMPLETED":
            bad.append(f"SLURM job {j.get('JobId')} ({rule}) is {j.get('JobState')}")
        gpu = "gpu" in tres
        if rule in gpu_wanted and not (gpu and j.get("Partition") == "gpu"):
            bad.append(f"{rule} ran without a GPU or outside the gpu partition ({tres}, {j.get('Partition')})")
        if rule not in gpu_wanted and (gpu or j.get("Partition") != "cpu"):
            bad.append(f"{rule} asked for a GPU or ran outside the cpu partition ({tres}, {j.get('Partition')})")
    missing = sorted(set(ran) - seen)
    if not ours:
        bad.append(f"no SLURM job named {run_id}")
    if missing:
        bad.append(f"rules that ran but not as SLURM jobs: {missing}")
    on_gpu = sorted(seen & gpu_wanted)
    print(
        f"rules run as SLURM jobs: {sorted(seen)}; on the fake GPU: {on_gpu or 'none'} "
        f"(profiles/slurm gives a GPU to {sorted(gpu_wanted)})"
    )
    if bad:
        print("\n".join(["SLURM job check failed:"] + [f"  - {b}" for b in bad]))
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tiny-config").add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("local", type=Path)
    c.add_argument("slurm", type=Path)
    c.add_argument("--rtol", type=float, default=0.0, help="0: floats must be bit-equal")
    sub.add_parser("jobs").add_argument("log", type=Path)
    a = p.parse_args()
    if a.cmd == "tiny-config":
        return tiny_config(a.out)
    if a.cmd == "compare":
        return compare(a.local, a.slurm, a.rtol)
    return jobs(a.log)


if __name__ == "__main__":
    sys.exit(main())
