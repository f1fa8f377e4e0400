"""Store faults (issue 13): damaged chunks are named, temporaries of killed writers are
removed by the next write of that store, checkpoints are read weights-only."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr

from ferrolens import store
from ferrolens.errors import InputError
from ferrolens.ingest import load_movie


def _write(path, n=3, value=None):
    image = (
        np.arange(n * 16, dtype=np.float32).reshape(n, 4, 4) if value is None else np.full((n, 4, 4), value, np.float32)
    )
    ds = xr.Dataset(
        {"image": (("frame", "y", "x"), image)},
        coords=store.frame_coords(n, bias=np.arange(n, dtype=float)),
        attrs=store.provenance("movie"),
    )
    return store.write_store(ds, path, encoding={"image": {"chunks": (1, 4, 4)}})


def test_chunks_equal_to_the_fill_value_are_written(tmp_path):
    """An all-zero integer frame equals zarr's fill value: it must still be on disk,
    or a missing chunk could not be told from it."""
    ds = xr.Dataset(
        {"label": (("frame", "y", "x"), np.zeros((3, 4, 4), np.int16))},
        coords=store.frame_coords(3),
        attrs=store.provenance("labels", class_names=["a", "b"]),
    )
    out = store.write_store(ds, tmp_path / "s.zarr", encoding={"label": {"chunks": (1, 4, 4)}})
    assert sorted(os.listdir(out / "label" / "c")) == ["0", "1", "2"]
    np.testing.assert_array_equal(store.open_store(out, "labels").label.values, 0)


def test_missing_chunk_named_at_open(tmp_path):
    out = _write(tmp_path / "s.zarr")
    os.remove(out / "image" / "c" / "1" / "0" / "0")
    with pytest.raises(
        InputError,
        match=r"s.zarr: variable 'image': 1 of 3 chunks missing, e.g. chunk \(1, 0, 0\) "
        r"\(image/c/1/0/0\); they would read as the fill value nan.*intact store",
    ):
        store.open_store(out, "movie", ["image"])
    # a user's zarr movie read by ingest: the same
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': 1 of 3 chunks missing"):
        load_movie({}, str(out))


def test_corrupt_chunk_named_when_read(tmp_path):
    out = _write(tmp_path / "s.zarr")
    (out / "image" / "c" / "2" / "0" / "0").write_bytes(b"not zstd")
    ds = store.open_store(out, "movie", ["image"])  # lazy: opens
    np.testing.assert_array_equal(ds.image.isel(frame=0).values, np.arange(16).reshape(4, 4))  # intact chunks read
    with pytest.raises(
        InputError,
        match=r"s.zarr: variable 'image': chunk \(2, 0, 0\) \(image/c/2/0/0\) cannot be "
        r"read \(RuntimeError: .*[Dd]ecompress.*\) \(expected an intact store",
    ):
        _ = ds.image.values
    with pytest.raises(InputError, match=r"s.zarr: variable 'image': chunk \(2, 0, 0\)"):
        load_movie({}, str(out))


def test_checked_reads_equal_plain_xarray(tmp_path):
    out = _write(tmp_path / "s.zarr", n=5)
    checked = store.open_store(out, "movie", ["image"])
    plain = xr.open_zarr(out)
    xr.testing.assert_identical(checked.load(), plain.load())
    np.testing.assert_array_equal(checked.image[[0, 3], 1:3, ::2].values, plain.image[[0, 3], 1:3, ::2].values)
    mask = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(checked.image[mask, ::-1, -1].values, plain.image[mask, ::-1, -1].values)
    pts = xr.DataArray([1, 3], dims="pts")  # vectorised (pointwise) indexing
    np.testing.assert_array_equal(
        checked.image.isel(frame=pts, y=pts).values, plain.image.isel(frame=pts, y=pts).values
    )
    import pickle  # DataLoader workers get the dataset pickled

    xr.testing.assert_identical(pickle.loads(pickle.dumps(checked)).load(), plain.load())


def _kill_during_write(target, path):
    """Run ``target`` (write_store or write_store_streamed) in a child killed after it wrote its temporary."""
    code = textwrap.dedent(f"""
        import numpy as np, xarray as xr, os, signal
        from ferrolens import store
        from ferrolens.store import atomic
        def die(tmp, path):
            os.kill(os.getpid(), signal.SIGKILL)  # dies after writing, before the rename
        atomic.replace_atomically = die  # where write_store and write_store_streamed call it
        ds = xr.Dataset({{"image": (("frame", "y", "x"), np.zeros((3, 2, 2)))}}, coords={{"frame": np.arange(3)}},
                        attrs=store.provenance("movie"))
        if {target!r} == "write_store":
            store.write_store(ds, r"{path}")
        else:
            store.write_store_streamed([ds.isel(frame=[0]), ds.isel(frame=[1, 2])], r"{path}")
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("target", ["write_store", "write_store_streamed"])
def test_next_write_removes_temporaries_of_killed_writers(tmp_path, target):
    path = tmp_path / "movie.zarr"
    _kill_during_write(target, path)
    left = [p.name for p in tmp_path.iterdir()]
    assert not path.exists() and len(left) == 1 and left[0].startswith(".movie.zarr.tmp-")  # no complete-looking store
    # another store's temporary and a live writer's temporary of this store must survive
    other = tmp_path / ".labels.zarr.tmp-999999-0123abcd"
    other.mkdir()
    live = tmp_path / f".movie.zarr.tmp-{os.getppid()}-89abcdef"
    live.mkdir()
    similar = tmp_path / ".movie.zarr.tmp-notapid"
    similar.mkdir()
    ds = xr.Dataset(
        {"image": (("frame", "y", "x"), np.arange(3.0)[:, None, None])},
        coords=store.frame_coords(3),
        attrs=store.provenance("movie"),
    )
    if target == "write_store":
        store.write_store(ds, path)
    else:
        store.write_store_streamed([ds], path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["movie.zarr", other.name, live.name, similar.name])
    np.testing.assert_array_equal(xr.open_zarr(path).image.values.ravel(), [0, 1, 2])


def test_write_file_atomic_removes_its_stale_temporaries(tmp_path):
    stale = tmp_path / ".model.tmp-999999-0123abcd.ckpt"
    stale.write_text("half")
    keep = tmp_path / ".model.tmp-999999-0123abcd.csv"  # another file with the same stem
    keep.write_text("x")
    store.write_file_atomic(tmp_path / "model.ckpt", lambda p: p.write_text("done"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.ckpt", keep.name])


class _Payload:
    """Unpickling this runs code: a weights-only load must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoints_are_read_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    marker = str(tmp_path / "code_ran")
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"ferrolens_model": "unet", "state_dict": {}, "x": _Payload(marker)}, ckpt)
    with pytest.raises(InputError, match=r"evil.ckpt: is not a readable PyTorch checkpoint \(UnpicklingError\)"):
        store.check_checkpoint(ckpt, "unet", "a U-Net checkpoint")
    assert not os.path.exists(marker)
    good = tmp_path / "good.ckpt"
    torch.save({"ferrolens_model": "unet", "state_dict": {"w": torch.zeros(2)}}, good)
    assert store.check_checkpoint(good, "unet", "a U-Net checkpoint") == good


# --- declared stores (issue 16): each kind states its dims, variables and attrs once -------------
def _movie(n=3, dims=("frame", "y", "x"), **coords):
    return xr.Dataset(
        {"image": (dims, np.zeros((n, 2, 2), np.float32))},
        coords={**store.frame_coords(n), **coords},
        attrs=store.provenance("movie", {}),
    )


def test_every_declared_dim_is_in_the_one_vocabulary():
    assert tuple(store.STORE_KINDS) == store.KINDS
    for name, kind in store.STORE_KINDS.items():
        assert kind.name == name
        assert kind.dims <= set(store.DIMS), (name, kind.dims - set(store.DIMS))
        assert not set(kind.variables) & set(kind.optional_variables), name
        assert set(kind.units) <= set(kind.variables) | set(kind.optional_variables) | set(kind.coords) | set(
            kind.optional_coords
        ), name  # a unit for something undeclared would never be checked
    assert len(set(store.DIMS)) == len(store.DIMS)


VOCABULARY = "store/declarations.py"  # the one module that binds the dimension names


def test_no_other_module_names_a_dimension():
    """The vocabulary lives in the store package: another module binding a dim's name to a constant of its
    own (``FRAME = "frame"``) would split it again; they import it from ferrolens.store."""
    from pathlib import Path

    src = Path(store.__file__).parent.parent
    binding = re.compile(r'^\s*[A-Z][A-Z0-9_]*(?:\s*,\s*[A-Z][A-Z0-9_]*)*\s*=\s*("[^"]*"(?:\s*,\s*"[^"]*")*)\s*(#.*)?$')
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.relative_to(src).as_posix() == VOCABULARY:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            m = binding.match(line)
            if m and set(re.findall(r'"([^"]*)"', m.group(1))) & set(store.DIMS):
                found.append(f"{path.relative_to(src)}:{i}: {line.strip()}")
    assert not found, found


@pytest.mark.parametrize("target", ["write_store", "write_store_streamed"])
@pytest.mark.parametrize(
    "case, message",
    [
        (
            "missing",
            r"movie store .*m\.zarr not written: store lacks variable\(s\) \['image'\].*expected image\(frame, y, x\)",
        ),
        (
            "dims",
            r"movie store .*variable 'image' has dims \('frame', 'x', 'y'\) \(expected image\(frame, y, x\) in a movie",
        ),
        (
            "undeclared",
            (
                r"variable 'mask'\('frame', 'y', 'x'\) is not declared \(expected only the variables declared "
                r"for a movie store \(image\(frame, y, x\)\)"
            ),
        ),
        ("units", r"'bias' has units 'mV' \(expected units 'V' for bias\)"),
        ("coord_dims", r"coordinate 'source_frame' has dims \('y',\)"),
    ],
)
def test_a_store_against_its_declaration_is_refused_on_write(tmp_path, target, case, message):
    ds = _movie()
    if case == "missing":
        ds = ds.drop_vars("image")
    elif case == "dims":
        ds = _movie(dims=("frame", "x", "y"))
    elif case == "undeclared":
        ds["mask"] = ds.image > 0
    elif case == "units":
        ds = ds.assign_coords(bias=("frame", np.arange(3.0), {"units": "mV"}))
    elif case == "coord_dims":
        ds = ds.assign_coords(source_frame=("y", [0, 1]))
    path = tmp_path / "m.zarr"
    with pytest.raises(store.LayoutError, match=message):
        if target == "write_store":
            store.write_store(ds, path)
        else:
            store.write_store_streamed([ds], path)
    assert list(tmp_path.iterdir()) == []  # nothing at the path, no temporary beside it


def test_a_later_part_of_a_streamed_write_is_checked_too(tmp_path):
    good = _movie()
    bad = _movie().rename({"x": "wx"})  # the third part's image has dims (frame, y, wx)
    path = tmp_path / "m.zarr"
    with pytest.raises(store.LayoutError, match=r"variable 'image' has dims \('frame', 'y', 'wx'\)"):
        store.write_store_streamed([good, good, bad], path)
    assert list(tmp_path.iterdir()) == []
    store.write_store_streamed([good, good], path)  # the same parts without the bad one are written
    assert store.open_store(path, "movie").sizes["frame"] == 6


def _write_unchecked(ds, path):
    """What a store written by another program (or an older ferrolens) may look like."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # consolidated metadata is not in the v3 spec
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=True, write_empty_chunks=True)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "missing",
            r"lacks variable\(s\) \['image'\]; it has \['picture'\] \(expected image\(frame, y, x\) in a movie store\)",
        ),
        ("dims", r"variable 'image' has dims \('frame', 'x', 'y'\) \(expected image\(frame, y, x\) in a movie store\)"),
        ("units", r"'time' has units 'ms' \(expected units 's' for time\)"),
        ("attr", r"attr 'class_names' is missing"),
    ],
)
def test_a_store_against_its_declaration_is_refused_on_read(tmp_path, case, message):
    ds, kind = _movie(), "movie"
    if case == "missing":
        ds = ds.rename({"image": "picture"})
    elif case == "dims":
        ds = _movie(dims=("frame", "x", "y"))
    elif case == "units":
        ds = ds.assign_coords(time=("frame", np.arange(3.0), {"units": "ms"}))
    elif case == "attr":
        ds = xr.Dataset(
            {"label": (("frame", "y", "x"), np.zeros((3, 2, 2), np.int16))},
            coords=store.frame_coords(3),
            attrs=store.provenance("labels", {}),
        )
        kind = "labels"
    path = _write_unchecked(ds, tmp_path / "bad.zarr")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: .*{message}"):
        store.open_store(path, kind)


def test_open_store_requires_the_declared_variables_and_the_callers(tmp_path):
    path = _write_unchecked(_movie(), tmp_path / "m.zarr")
    assert store.open_store(path, "movie").image.dims == ("frame", "y", "x")  # the declared ones by default
    assert "image" in store.open_store(path, "movie", ["image"])  # a caller's list still works
    with pytest.raises(InputError, match=r"lacks variable\(s\) \['logsd'\]"):
        store.open_store(path, "movie", ["logsd"])
    # a store without units keeps opening (units are checked where stated); the writer states them
    assert "units" not in store.open_store(path, "movie").frame.attrs


def test_the_writers_stores_pass_their_declarations(tmp_path, demo_small):
    """synthetic, movie, labels and windows from their real writers, through the checked write and read;
    segmentation, latents, dynamics, latent_space and sweep pass through the same checks in the tests
    of their stages (tests/test_segment.py, test_rvae_train.py, test_dynamics_api.py, test_latent_space.py)
    and in the workflow run (tests/test_workflow.py)."""
    from ferrolens.ingest import ingest_labels, ingest_movie
    from ferrolens.rvae.inputs import make_windows

    syn = store.write_store(demo_small, tmp_path / "synthetic.zarr")
    cfg = {"frames": {"start": 2}, "bin": 2, "labels": {"frames": [0, 3], "source": "truth"}}
    movie = ingest_movie(cfg, tmp_path / "movie.zarr", source=str(syn))
    labels = ingest_labels(cfg, ["domain", "wall", "contaminant"], movie, tmp_path / "labels.zarr", truth=syn)
    mv = store.open_store(movie, "movie")
    images = (mv.image - mv.image.min()) / (mv.image.max() - mv.image.min())
    make_windows(
        images.astype(np.float32), str(tmp_path / "windows.zarr"), 8, {"sampling": "random", "count": 20}, seed=0
    )
    written = ((syn, "synthetic"), (movie, "movie"), (labels, "labels"), (tmp_path / "windows.zarr", "windows"))
    for path, kind in written:
        ds = store.open_store(path, kind)
        assert store.STORE_KINDS[kind].problems(ds, writing=True) == [], kind  # as strict as a write
        assert set(store.STORE_KINDS[kind].variables) <= set(ds.data_vars)


# --- checked lazy reads (issue 27): laziness and the memory bound, through xarray's public backend API ------------
def test_checked_reads_are_lazy_and_compose(tmp_path):
    """Opening reads no chunk, ``isel`` reads none, and chained selections are read once, composed: with every
    chunk but frame 0's damaged, frame 0 still reads (an eager ``isel(frame=slice(0, 3))`` would decode the
    damaged frames 1 and 2 and raise)."""
    out = _write(tmp_path / "s.zarr", n=4)
    for f in (1, 2, 3):
        (out / "image" / "c" / str(f) / "0" / "0").write_bytes(b"not zstd")
    ds = store.open_store(out, "movie", ["image"])  # opens: metadata only
    first = ds.image.isel(frame=slice(0, 3))  # no read yet
    np.testing.assert_array_equal(first.isel(frame=0).values, np.arange(16).reshape(4, 4))
    np.testing.assert_array_equal(first.isel(frame=0, y=slice(1, 3)).values, np.arange(4, 12).reshape(2, 4))
    with pytest.raises(InputError, match=r"chunk \(1, 0, 0\)"):
        _ = first.values


def test_checked_reads_hold_one_selection_in_memory(tmp_path):
    """Reading one frame of a 4 MiB store allocates a few times that frame (64 KiB; ~0.2 MiB measured), not
    the store; reading everything allocates everything (so the measurement sees the reads)."""
    import tracemalloc

    n, side = 64, 128
    ds = xr.Dataset(
        {"image": (("frame", "y", "x"), np.random.default_rng(0).random((n, side, side), np.float32))},
        coords=store.frame_coords(n),
        attrs=store.provenance("movie"),
    )
    out = store.write_store(ds, tmp_path / "big.zarr", encoding={"image": {"chunks": (1, side, side)}})
    full = n * side * side * 4
    opened = store.open_store(out, "movie")
    _ = opened.image.isel(frame=0).values  # warm up zarr's codecs and caches
    tracemalloc.start()
    try:
        one = opened.image.isel(frame=5).values
        _, one_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        everything = opened.image.values
        _, all_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(one, ds.image.values[5])
    np.testing.assert_array_equal(everything, ds.image.values)
    assert all_peak >= full, (all_peak, full)
    assert one_peak < full / 8, (one_peak, full)


# --- README's data model against the declarations (issue 27 item 5) ------------------------------------------------
def _readme_data_model() -> str:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    return text.split("\n## Data model\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str, header: str) -> list[list[str]]:
    """Cells of the markdown table whose header row starts with ``| header |``."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_readme_data_model_matches_the_declarations():
    """README's data model is checked against ``STORE_KINDS``, not generated from it: its tables are prose
    for users (what a dimension means, what each file holds, files that are not stores: checkpoints, tables,
    figures) that a generator would have to own. The check fails on any disagreement of names: every
    declared dimension has a row (in DIMS' order) naming the store kinds that use it, and no other; every
    store kind has a row in the store table and every ``*.zarr`` there is a declared kind; a signature
    ``name(dim, …)`` written in a store's row is that variable's declared dims."""
    section = _readme_data_model()
    dims = _table_rows(section, "dimension")
    named = [re.fullmatch(r"`([a-z0-9_]+)`", row[0]).group(1) for row in dims]
    assert named == list(store.DIMS), f"README dimensions {named} != ferrolens.store.DIMS {list(store.DIMS)}"
    for row in dims:
        name = row[0].strip("`")
        users = sorted(k for k, kind in store.STORE_KINDS.items() if name in kind.dims)
        assert sorted(s.strip() for s in row[2].split(",")) == users, (name, row[2], users)
    kinds, checked = [], 0
    for first, content in _table_rows(section, "store"):
        m = re.search(r"([a-z_]+)\.zarr`", first)
        if m is None:
            continue
        kinds.append(m.group(1))
        kind = store.STORE_KINDS.get(m.group(1))
        assert kind is not None, f"README names a store {first} that ferrolens.store.STORE_KINDS does not declare"
        for var, args in re.findall(r"\b([a-z_][a-z0-9_]*)\(([a-z0-9_, ]+)\)", content):
            sig = tuple(a.strip() for a in args.split(","))
            if set(sig) <= set(store.DIMS):
                assert kind.declared(var) == sig, f"README: {var}{sig} in {m.group(1)}; declared {kind.spec(var)}"
                checked += 1
    assert sorted(kinds) == sorted(store.KINDS), (kinds, store.KINDS)
    assert checked >= 10  # the signatures README writes out are compared, not skipped


# --- typed attrs (issue 27 item 3) ------------------------------------------------------------------------------
_EXAMPLES = {
    int: 8,
    float: 0.5,
    str: "a",
    list[str]: ["z1", "z3"],
    list[float]: [0.9, 1.1],
    dict[str, float]: {"z2": 0.25},
    dict[str, str]: {"z1": "quantiles", "z3": "config"},
}


def _minimal(kind: str, **attrs) -> xr.Dataset:
    """The smallest dataset its kind's declaration allows (every size 2), with an example of every
    declared attr of its type (the JSON-text ones written by store.json_attr); ``attrs`` override."""
    decl = store.STORE_KINDS[kind]

    def var(name, dims):
        values = np.arange(2) if dims == (name,) else np.zeros([2] * len(dims), np.float32)
        return dims, values, ({"units": decl.units[name]} if name in decl.units else {})

    typed = {
        a: (store.json_attr(_EXAMPLES[t.type]) if t.json else _EXAMPLES[t.type])
        for a, t in {**decl.attrs, **decl.optional_attrs}.items()
    }
    return xr.Dataset(
        {v: var(v, d) for v, d in decl.variables.items()},
        coords={c: var(c, d) for c, d in decl.coords.items()},
        attrs=store.provenance(kind, {"k": [1, 2]}, **{**typed, **attrs}),
    )


@pytest.mark.parametrize("kind", store.KINDS)
def test_typed_attrs_round_trip_for_every_kind(tmp_path, kind):
    """Each kind's declaration admits a store (a check that the declarations agree with themselves), and
    every declared attr reads back through store.read_attr as its type: a JSON-text attr decoded, held in
    the store as the very text json_attr wrote (the stores stay byte for byte what they were)."""
    path = store.write_store(_minimal(kind), tmp_path / f"{kind}.zarr")
    ds = store.open_store(path, kind)
    decl = store.STORE_KINDS[kind]
    for name, attr in {**decl.attrs, **decl.optional_attrs}.items():
        assert store.read_attr(ds.attrs, name) == _EXAMPLES[attr.type], (kind, name)
        if attr.json:
            assert ds.attrs[name] == store.json_attr(_EXAMPLES[attr.type]), (kind, name)
    assert store.read_attr(ds.attrs, "config_json") == {"k": [1, 2]}


def test_the_mapped_latents_attr_is_json_text_read_as_a_list(tmp_path):
    """latent_space's ``mapped_latents`` (the writer's one JSON list, once parsed by hand in figures/latent.py):
    the text json.dumps gave before, and the figures' reader gets the list back through read_attr."""
    from ferrolens.figures.latent import _latent_names

    ds = _minimal("latent_space", mapped_latents=store.json_attr(["z2", "z5"]))
    path = store.write_store(ds, tmp_path / "l.zarr")
    ds = store.open_store(path, "latent_space")
    assert ds.attrs["mapped_latents"] == '["z2", "z5"]'
    assert store.read_attr(ds.attrs, "mapped_latents") == ["z2", "z5"]
    assert _latent_names(ds) == ("z2", "z5")
    assert store.read_attr(ds.attrs, "physical_bounds") == [0.9, 1.1]
    no_bounds = ds.attrs.copy()
    del no_bounds["physical_bounds"]
    assert store.read_attr(no_bounds, "physical_bounds", [0.95, 1.05]) == [0.95, 1.05]  # optional: the default
    with pytest.raises(KeyError):
        store.read_attr(no_bounds, "physical_bounds")
    with pytest.raises(ValueError, match=r"attr 'bounds' is not declared for a 'latent_space' store"):
        store.read_attr(ds.attrs, "bounds")


@pytest.mark.parametrize(
    "kind, attrs, message",
    [
        (
            "latent_space",
            {"mapped_latents": ["z1", "z3"]},
            r"attr 'mapped_latents' is \['z1', 'z3'\] \(list\), not JSON text of list\[str\]",
        ),
        (
            "latent_space",
            {"physical_bounds": "[0.9, high]"},
            r"attr 'physical_bounds' is '\[0.9, high\]', not JSON text",
        ),
        (
            "latent_space",
            {"held_latents": store.json_attr({"z2": "low"})},
            r"attr 'held_latents' is .*not JSON text of dict\[str, float\]",
        ),
        ("labels", {"class_names": "domain, wall"}, r"attr 'class_names' is 'domain, wall' \(str\), not list\[str\]"),
        ("windows", {"window": "8"}, r"attr 'window' is '8' \(str\), not int"),
        ("windows", {"window": True}, r"attr 'window' is 'True' \(bool\), not int"),
        ("segmentation", {"norm_percentiles": [1, "99"]}, r"attr 'norm_percentiles' .*not list\[float\]"),
    ],
)
def test_an_attr_of_another_type_is_refused_on_write_and_read(tmp_path, kind, attrs, message):
    ds = _minimal(kind, **attrs)
    with pytest.raises(store.LayoutError, match=message):
        store.write_store(ds, tmp_path / "w.zarr")
    assert list(tmp_path.iterdir()) == []
    path = _write_unchecked(ds, tmp_path / "r.zarr")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {message}"):
        store.open_store(path, kind)
    # the same store with the declared types passes both
    store.open_store(store.write_store(_minimal(kind), tmp_path / "ok.zarr"), kind)


def test_xarray_internals_only_through_its_backend_interface():
    """ferrolens reaches into xarray only where its public backend interface prescribes it: BackendArray /
    BackendEntrypoint (xarray.backends) and the three lazy-indexing helpers the backend guide uses for a
    lazily loaded array. Any other ``xarray.core``/``xarray.coding`` … import (e.g. the copy-on-write or cache
    wrappers xarray's open_dataset applies itself) is refused."""
    import ast
    from pathlib import Path

    allowed = {
        "xarray": None,
        "xarray.backends": None,
        "xarray.core.indexing": {"IndexingSupport", "LazilyIndexedArray", "explicit_indexing_adapter"},
    }
    src = Path(store.__file__).parent.parent
    found = []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text())
        aliases = {}  # `from xarray.core import indexing` → indexing.<name> uses are checked too
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xarray"):
                for a in node.names:
                    module = f"{node.module}.{a.name}"
                    if module in allowed:
                        aliases[a.asname or a.name] = module
                    elif node.module not in allowed or (
                        allowed[node.module] is not None and a.name not in allowed[node.module]
                    ):
                        found.append(f"{path.relative_to(src)}: from {node.module} import {a.name}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.relative_to(src)}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("xarray.") and a.name not in allowed
                ]
        for node in ast.walk(tree):
            names = (
                allowed.get(aliases.get(node.value.id, ""))
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name))
                else None
            )
            if names is not None and node.attr not in names:
                found.append(f"{path.relative_to(src)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found
