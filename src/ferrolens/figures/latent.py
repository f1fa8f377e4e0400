"""Figures of the rVAE latents, their dynamics and the decoded latent space
(paper Figs. 3–7). Angles are shown in degrees; the stores keep radians."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap, PowerNorm
from mpl_toolkits.axes_grid1.inset_locator import inset_axes
from scipy.ndimage import gaussian_filter

from .. import store
from ..config import Partial
from ..rvae.confidence import determined_in, rule_text
from ..sections import FiguresConfig
from ..stimulus import Stimulus, stimulus
from .common import default_frame, frame_title, grid, quality_warning, robust_limits, save, style


def _mosaic(decoded: np.ndarray) -> np.ndarray:
    """(n1, n2, wy, wx) → one image, z1 down the rows, z2 across, 1-pixel gaps."""
    n1, n2, wy, wx = decoded.shape
    out = np.full((n1 * (wy + 1) - 1, n2 * (wx + 1) - 1), np.nan)
    for i in range(n1):
        for j in range(n2):
            out[i * (wy + 1) : i * (wy + 1) + wy, j * (wx + 1) : j * (wx + 1) + wx] = decoded[i, j]
    return out


def _extent(ls, d1: str, d2: str):
    """imshow extent putting z2 on x and z1 on y (z1 increasing upwards)."""
    z1, z2 = ls[d1].values, ls[d2].values
    return [z2[0], z2[-1], z1[0], z1[-1]]


def _latent_names(ls) -> tuple[str, str]:
    pair = store.read_attr(ls.attrs, "mapped_latents")  # JSON text in the store, a list here
    return str(pair[0]), str(pair[1])


def _quality_line(attrs: dict) -> str:
    """``" — held-out R² 0.93, angle follows 97% of turns"`` from a latents store's attrs ('' if none)."""
    r2, follow = attrs.get("quality_r2"), attrs.get("quality_angle_follow")
    if r2 is None or follow is None or not np.isfinite(r2):
        return ""
    return f" — held-out R² {float(r2):.2f}, angle follows {100 * float(follow):.0f}% of known turns (±15°)"


def _verdict(attrs: dict, quality: str | list[str] | None) -> dict:
    """``attrs`` with the quality gate's verdict: from rule rvae_quality's ``quality.json`` file(s) when
    given (the thresholds apply there), else what the store's attributes hold (notebooks)."""
    if not quality:
        return dict(attrs)
    from ..rvae.report import read_report

    records = [read_report(q) for q in ([quality] if isinstance(quality, str) else quality)]
    out = dict(attrs, quality_warning=" | ".join(r["quality_warning"] for r in records if r["quality_warning"]))
    if len(records) == 1:
        m = records[0]["measurements"]
        out.update(quality_r2=m.get("r2", np.nan), quality_angle_follow=m.get("angle_follow", np.nan))
    return out


def latent_codes(
    latents: str, latent_space: str, out: str, cfg: Partial[FiguresConfig], quality: str | None = None
) -> Path:
    """Fig. 3: decoded latent manifold, latent points coloured by frame, angle histogram (stamped with
    the model's ``quality.json`` verdict when given)."""
    lat = store.open_store(latents, "latents")
    verdict = _verdict(lat.attrs, quality)
    ls = store.open_store(latent_space, "latent_space")
    n1, n2 = _latent_names(ls)
    codes = lat.code_mean.load()
    window = lat.attrs.get("window", "?")
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6))
        ax = axes[0]
        mos = _mosaic(ls.decoded.values[::-1])  # z1 increasing upwards
        ax.imshow(mos, cmap="gray", extent=_extent(ls, "z1", "z2"), aspect="auto", vmin=0, vmax=1)
        ax.set_xlabel(n2)
        ax.set_ylabel(n1)
        ax.set_title("decoded manifold (angle 0, no shift)")
        ax = axes[1]
        frames = lat.sample_frame.values if "sample_frame" in lat.coords else np.zeros(codes.shape[0])
        sc = ax.scatter(
            codes.sel(latent=n2), codes.sel(latent=n1), c=frames, s=3, cmap="viridis", alpha=0.7, linewidths=0
        )
        fig.colorbar(sc, ax=ax, label="frame")
        ax.set_xlabel(n2)
        ax.set_ylabel(n1)
        ax.set_title(f"{codes.shape[0]} sampled windows")
        ax = axes[2]
        angle = np.degrees(codes.sel(latent="angle").values)
        period = np.degrees(float(lat.attrs.get("angle_period", np.pi))) if "angle_period" in lat.attrs else 180.0
        wrapped = (angle + period / 2) % period - period / 2
        ax.hist(wrapped, bins=60, color="C0", range=(-period / 2, period / 2))
        ax.set_xlabel(f"latent angle (degrees, mod {period:.0f})")
        ax.set_ylabel("windows")
        ax.set_title("angle distribution")
        fig.suptitle(f"rVAE latent space, window n = {window}" + _quality_line(verdict))
        fig.tight_layout()
        quality_warning(fig, verdict)
    return save(fig, out, cfg)


def latent_maps(
    movie: str,
    latents: list[str],
    windows: list[int],
    out: str,
    cfg: Partial[FiguresConfig],
    quality: list[str] | None = None,
) -> Path:
    """Fig. 4: per-pixel angle, dx, dy, z1, z2 of one frame for several window sizes (stamped with the
    models' ``quality.json`` verdicts when given)."""
    mv = store.open_store(movie, "movie")
    f = default_frame(mv, cfg)
    lats = [store.open_store(p, "latents") for p in latents]
    names = [str(v) for v in lats[0].latent.values]
    with style():
        ncols = 1 + len(names)
        fig, axes = plt.subplots(len(lats), ncols, figsize=(2.3 * ncols, 2.3 * len(lats) + 0.5), squeeze=False)
        img = mv.image.sel(frame=f).values
        for r, (lat, n) in enumerate(zip(lats, windows, strict=False)):
            ax = axes[r, 0]
            im = ax.imshow(img, cmap="gray", vmin=robust_limits(img)[0], vmax=robust_limits(img)[1])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)  # as every panel: all images the same size
            ax.set_ylabel(f"n = {n}")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"raw, {frame_title(mv, f)}")
            m = lat["mean"].sel(frame=f).load()
            for c, name in enumerate(names):
                ax = axes[r, c + 1]
                v = m.sel(latent=name).values
                if name == "angle":
                    label, keep = "angle (deg, mod 180)", None
                    if "angle_confidence" in lat:  # grey where the window holds no one orientation
                        keep = determined_in(lat["angle_confidence"].sel(frame=f).transpose(store.Y, store.X))
                        label += "\ngrey: undetermined"
                        ax.text(
                            0.02,
                            0.02,
                            f"determined {keep.mean():.0%}",
                            transform=ax.transAxes,
                            fontsize=7,
                            color="k",
                            bbox={"facecolor": "w", "alpha": 0.7, "lw": 0, "pad": 1},
                        )
                    cmap = plt.get_cmap("twilight").with_extremes(bad="0.6")
                    shown = np.degrees(v) % 180.0 if keep is None else np.ma.masked_where(~keep, np.degrees(v) % 180.0)
                    im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=180, interpolation="nearest")
                elif name in ("dx", "dy"):  # a shift: white at zero, the same reach both ways
                    reach = max(abs(x) for x in robust_limits(v)) or 1e-6
                    im = ax.imshow(v, cmap="RdBu_r", vmin=-reach, vmax=reach)
                    label = f"{name} (grid units)"
                else:
                    lo, hi = robust_limits(v)
                    im = ax.imshow(v, cmap="viridis", vmin=lo, vmax=hi)
                    label = name
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                if r == 0:
                    ax.set_title(label)
                ax.set_axis_off()
        rules = sorted({rule_text(lat["angle_confidence"]) for lat in lats if "angle_confidence" in lat})
        fig.suptitle(
            "per-pixel latent maps (window centred on each pixel, reflect padding)"
            + "".join(f"\n{t} (grey elsewhere)" for t in rules)
        )
        fig.tight_layout()
        failed = (
            _verdict({}, quality)["quality_warning"]
            if quality
            else " | ".join(str(lat.attrs["quality_warning"]) for lat in lats if lat.attrs.get("quality_warning"))
        )
        quality_warning(fig, {"quality_warning": failed})
    return save(fig, out, cfg)


def _loop(ax, x: np.ndarray, w: np.ndarray, color, label: str, virgin: np.ndarray | None = None):
    """Weight against the stimulus, with arrows along the sweep direction; the virgin curve
    (first quarter-cycle from the initial state) dashed and without markers."""
    keep = np.ones(x.size, bool) if virgin is None else ~virgin
    if virgin is not None and virgin.any():
        last = int(np.flatnonzero(virgin)[-1])
        ax.plot(x[: last + 1], w[: last + 1], "--", color=color, lw=0.9, alpha=0.6)
        keep[last] = True  # the turning frame starts the loop
    xs, ws = np.where(keep, x, np.nan), np.where(keep, w, np.nan)
    ax.plot(xs, ws, "-", color=color, lw=1.2, label=label)
    ax.plot(xs, ws, "o", color=color, ms=2)
    idx = np.flatnonzero(keep)
    step = max(1, idx.size // 8)
    for i in idx[:-1:step]:
        if keep[i + 1] and (x[i + 1] != x[i] or w[i + 1] != w[i]):
            ax.annotate(
                "",
                xy=(x[i + 1], w[i + 1]),
                xytext=(x[i], w[i]),
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.0, "mutation_scale": 9},
            )


def _dynamics_stimulus(dyn) -> Stimulus:
    """The stimulus the dynamics stage looped against (its ``stimulus`` attribute), else the movie's."""
    name = str(dyn.attrs.get("stimulus", ""))
    if name and name != "frame" and name in dyn.coords:
        units = str(dyn.attrs.get("stimulus_units", dyn[name].attrs.get("units", "")))
        return Stimulus(name, np.asarray(dyn[name].values, float), units)
    if name == "frame":
        return Stimulus("frame", np.asarray(dyn.frame.values, float), "")
    return stimulus(dyn)


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else ""


def _value(v: float, lo: float = np.nan, hi: float = np.nan) -> str:
    return "—" if not np.isfinite(v) else f"{v:.3g} {_ci(lo, hi)}".strip()


def _kde_panel(fig, cell, dyn, d, v: str, y: np.ndarray, ylab: str, unit: str, virgin: np.ndarray) -> None:
    """KDE(variable, frame) as an image, the end of the virgin curve dashed."""
    ax = fig.add_subplot(cell)
    # square-root colour scale: one dominant peak would otherwise hide the changing minor modes
    im = ax.imshow(
        d.kde.values.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        norm=PowerNorm(0.5, vmin=0),
        extent=[dyn.frame.values[0] - 0.5, dyn.frame.values[-1] + 0.5, y[0], y[-1]],
    )
    if virgin.any():
        ax.axvline(dyn.frame.values[np.flatnonzero(virgin)[-1]], color="w", lw=0.8, ls="--")
    deg = v == "angle"
    per = "1/rad, " if deg else (f"1/{unit}, " if unit and unit != "1" else "")
    fig.colorbar(im, ax=ax, label=f"density ({per}√ scale)")
    ax.set_xlabel("frame" + (" (dashed: end of the virgin curve)" if virgin.any() else ""))
    ax.set_ylabel(ylab)
    # the dynamics store says when the angle was counted only where determined (rvae.angle_confidence)
    counted = str(dyn.attrs.get("angle_counted", ""))
    note = (
        "\n(no determined angle in some frames: every pixel counted)"
        if "every selected pixel" in counted
        else "\n(pixels where the angle is determined)"
    )
    ax.set_title(f"KDE({v}, frame)" + (note if deg and counted else ""))


def _components_panel(fig, cell, dyn, d, v: str, y: np.ndarray, ylab: str) -> None:
    """The NMF components of one variable over its grid."""
    ax = fig.add_subplot(cell)
    for c in dyn.component.values:
        ax.plot(y, d.components.sel(component=c).values, color=f"C{c}", label=f"component {c}")
    ax.set_xlabel(ylab)
    ax.set_ylabel("density")
    ax.set_title(f"NMF components of {v}")
    ax.legend(frameon=False)


def _weights_panel(
    fig, cell, dyn, v: str, stim, pooled: pd.DataFrame, loop: bool, virgin: np.ndarray, what: str
) -> None:
    """The NMF weights against the stimulus (a loop with sweep arrows when it cycles), their intervals,
    each component's p-value in the legend."""
    ax = fig.add_subplot(cell)
    w = dyn.weights.sel(variable_nmf=v)
    for c in dyn.component.values:
        label = f"component {c}"
        row = pooled[(pooled.variable == v) & (pooled.component == c)]
        if len(row) and np.isfinite(row.p_value.iloc[0]):
            label += f": p = {row.p_value.iloc[0]:.2g}" + (" (significant)" if row.significant.iloc[0] else "")
        wc = w.sel(component=c).values
        if loop:
            _loop(ax, stim.values, wc, f"C{c}", label, virgin)
        else:
            ax.plot(stim.values, wc, "-o", color=f"C{c}", ms=2, lw=1.2, label=label)
        if "weights_ci_low" in dyn and np.isfinite(dyn.weights_ci_low.values).any():
            lo = dyn.weights_ci_low.sel(variable_nmf=v, component=c).values
            hi = dyn.weights_ci_high.sel(variable_nmf=v, component=c).values
            if loop:  # per frame, as vertical bars: a band would join frames across branches
                ax.vlines(stim.values, lo, hi, color=f"C{c}", alpha=0.3, lw=1.5)
            else:
                ax.fill_between(stim.values, lo, hi, color=f"C{c}", alpha=0.15, lw=0)
    ax.set_xlabel(what)
    ax.set_ylabel("NMF weight")
    extra = (
        "\n(arrows: sweep direction; dashed: virgin curve)"
        if loop and virgin.any()
        else ("\n(arrows: sweep direction)" if loop else "")
    )
    ax.set_title(f"weights of {v} vs {stim.name if stim.name != 'frame' else 'frame index'}{extra}")
    ax.legend(frameon=False)


def _drift_words(pooled: pd.DataFrame) -> str:
    """How the table's test treated drift in time (its ``drift_degree`` column; tables of older runs lack it)."""
    if "drift_degree" not in pooled.columns or not pooled.drift_degree.notna().any():
        return "drift"
    deg = int(pooled.drift_degree.iloc[0])
    return "no drift" if deg == 0 else ("a linear drift" if deg == 1 else f"drifts of degree 1 … {deg}")


def _hysteresis_table(ax, pooled: pd.DataFrame, tab: pd.DataFrame, stim) -> None:
    """The pooled hysteresis table with its notes, or the sentence saying why there is none."""
    ax.set_axis_off()
    if not len(pooled):
        why = tab.note.dropna().iloc[0] if "note" in tab.columns and tab.note.notna().any() else ""
        ax.text(
            0.5,
            0.5,
            textwrap.fill(f"No hysteresis loop or table: {why[:1].lower() + why[1:]}", 150),
            ha="center",
            va="center",
            fontsize=9,
            transform=ax.transAxes,
        )
        return
    level = round(100 * float(pooled.ci_level.iloc[0]))
    u = stim.units
    rows = []
    for rr in pooled.itertuples():
        rows.append(
            [
                rr.variable,
                rr.component,
                _value(rr.loop_area, rr.loop_area_ci_low, rr.loop_area_ci_high),
                f"{rr.p_value:.2g}" if np.isfinite(rr.p_value) else "—",
                f"{rr.p_adjusted:.2g}" if np.isfinite(rr.p_adjusted) else "—",
                "yes"
                if rr.significant
                else (f"no (> {rr.detectable_area:.2g})" if np.isfinite(rr.detectable_area) else "no"),
                _value(rr.rising_coercive, rr.rising_coercive_ci_low, rr.rising_coercive_ci_high),
                _value(rr.falling_coercive, rr.falling_coercive_ci_low, rr.falling_coercive_ci_high),
            ]
        )
    cols = [
        "variable",
        "component",
        f"loop area [{level}% CI]",
        "p",
        "p (Holm)",
        f"significant (α = {pooled.alpha.iloc[0]:g}; no: none larger than)",
        f"rising coercive ({u}) [CI]",
        f"falling coercive ({u}) [CI]",
    ]
    t = ax.table(cellText=rows, colLabels=cols, cellLoc="center", bbox=[0, 0.22, 1, 0.68])
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    r0 = pooled.iloc[0]
    head = (
        f"hysteresis of the NMF weights, pooled over {int(r0.n_cycles)} cycle{'s' if r0.n_cycles != 1 else ''} "
        f"(loop area in weight·{u}; {stim.name} {r0.range_low:.3g} … {r0.range_high:.3g} {u}; "
        f"p: whole-curve model with {_drift_words(pooled)} and AR(1) noise"
        + (f"; time blocks of {pooled.time_block.max():.0f} frames)" if pooled.time_block.notna().any() else ")")
    )
    ax.set_title(head)
    notes = sorted({n for n in pooled.note.dropna() if n})
    floor = pooled.p_floor.iloc[0]
    if pooled.p_value.isna().all() and pooled.loop_area.notna().any():
        notes.append(
            "Not testable: the loop is open at one end of its range (the movie stops mid-branch), where "
            "a drift in time cannot be told from a loop; a start from saturation or a complete cycle "
            "allows a test (dynamics.drift_degree: 0 assumes no drift)."
        )
    if np.isfinite(floor) and floor >= float(r0.alpha) / max(len(pooled), 1):
        notes.append(
            f"p cannot go below {floor:.2g} with this many simulated no-loop curves "
            "(dynamics.permutations): no loop can be significant."
        )
    ax.text(0, 0.16, "\n".join(textwrap.fill(n, 190) for n in notes), fontsize=7, va="top", transform=ax.transAxes)


def dynamics(
    dynamics_store: str, table: str, out: str, cfg: Partial[FiguresConfig], quality: str | None = None
) -> Path:
    """Fig. 5: KDE(variable, frame) images, NMF components, weights against the stimulus (the loop
    with its virgin curve set apart, when the stimulus cycles) and the pooled hysteresis table."""
    dyn = store.open_store(dynamics_store, "dynamics").load()
    tab = pd.read_csv(table, dtype={"cycle": str})
    variables = [str(v) for v in dyn.variable.values]
    stim = _dynamics_stimulus(dyn)
    loop = "cycle" in tab.columns and (tab["cycle"] != "none").any()
    pooled = tab[tab["cycle"] == "all"] if loop else tab.iloc[0:0]
    virgin = dyn["cycle"].values == 0  # cycle(frame), variable_units(variable): declared dynamics coordinates
    window = dyn.attrs.get("window", "?")
    what = stim.label if stim.name != "frame" else "frame index"
    with style():
        bottom = 1.0 if len(pooled) else 0.25  # the table, or the sentence saying why there is none
        fig = plt.figure(figsize=(12, 3.0 * len(variables) + 2.8 * bottom))
        gs = fig.add_gridspec(len(variables) + 1, 3, height_ratios=[1] * len(variables) + [bottom])
        for r, v in enumerate(variables):
            d = dyn.sel(variable=v)
            gv = d.grid_value.values
            unit = str(d.variable_units.values)
            y = np.degrees(gv) if v == "angle" else gv
            ylab = f"{v} (deg)" if v == "angle" else (f"{v} ({unit})" if unit and unit != "1" else v)
            _kde_panel(fig, gs[r, 0], dyn, d, v, y, ylab, unit, virgin)
            _components_panel(fig, gs[r, 1], dyn, d, v, y, ylab)
            _weights_panel(fig, gs[r, 2], dyn, v, stim, pooled, loop, virgin, what)
        _hysteresis_table(fig.add_subplot(gs[-1, :]), pooled, tab, stim)
        against = f"against {stim.name}" if stim.name != "frame" else "in frame order"
        verdict = _verdict(dyn.attrs, quality)
        fig.suptitle(f"latent dynamics {against}, window n = {window}" + _quality_line(verdict))
        fig.tight_layout()
        quality_warning(fig, verdict)
    return save(fig, out, cfg)


def latent_space_maps(latent_space: str, out: str, cfg: Partial[FiguresConfig], quality: str | None = None) -> Path:
    """Fig. 6: dense manifold, density overlay, max contrast, physical mask, RGB composite."""
    ls = store.open_store(latent_space, "latent_space").load()
    n1, n2 = _latent_names(ls)
    ext = _extent(ls, "z1_dense", "z2_dense")
    bounds = store.read_attr(ls.attrs, "physical_bounds", [0.95, 1.05])
    with style():
        fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
        ax = axes[0]
        if "decoded_dense" in ls:
            dd = ls.decoded_dense.values
            step = max(1, int(np.ceil(dd.shape[0] / 20)))
            ax.imshow(_mosaic(dd[::step, ::step][::-1]), cmap="gray", extent=ext, aspect="auto", vmin=0, vmax=1)
            ax.set_title(f"decoded manifold (every {step}th point)")
        else:
            ax.imshow(_mosaic(ls.decoded.values[::-1]), cmap="gray", extent=_extent(ls, "z1", "z2"), aspect="auto")
            ax.set_title("decoded manifold (coarse grid)")
        ax = axes[1]
        im = ax.imshow(ls.contrast.values, origin="lower", extent=ext, aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, label="max contrast")
        if float(ls.density.max()) > 0:
            # smoothed over ~2 grid cells: the contours show where codes lie, not counting noise
            ax.contour(
                ls.z2_dense.values,
                ls.z1_dense.values,
                gaussian_filter(ls.density.values, 2.0),
                levels=5,
                colors="w",
                linewidths=0.7,
            )
        ax.set_title("contrast with code density (contours)")
        ax = axes[2]
        # white at the reference contrast (1, or the observed median): blue too faint, red too strong
        ref = float(ls.contrast_reference) if "contrast_reference" in ls else 1.0
        observed = ls.attrs.get("contrast_reference_kind", "absolute") == "observed"
        rel = ls.contrast.values / ref
        span = max(0.2, float(np.nanmax(np.abs(rel - 1.0))))
        im = ax.imshow(rel, origin="lower", extent=ext, aspect="auto", cmap="coolwarm", vmin=1 - span, vmax=1 + span)
        ax.contour(ls.z2_dense.values, ls.z1_dense.values, rel, levels=sorted(bounds), colors="k", linewidths=0.8)
        fig.colorbar(im, ax=ax, label=f"max contrast / {ref:.2f}" if observed else "max reconstructed contrast")
        ax.set_title("contrast relative to the observed median" if observed else "maximum reconstructed contrast")
        ax = axes[3]
        ax.imshow(
            ls.physical.values.astype(float),
            origin="lower",
            extent=ext,
            aspect="auto",
            cmap=ListedColormap(["0.85", "C2"]),
            vmin=0,
            vmax=1,
        )
        what = f"contrast / {ref:.2f}" if observed else "contrast"
        ax.set_title(f"physical: {what} in ({bounds[0]}, {bounds[1]}) — {100 * float(ls.physical.mean()):.0f}%")
        ax = axes[4]
        ax.imshow(np.clip(ls.rgb.values, 0, 1), origin="lower", extent=ext, aspect="auto")
        ax.set_title(f"RGB of three {ls.attrs.get('rgb_source', 'image')}-NMF loadings")
        for ax in axes:
            ax.set_xlabel(n2)
            ax.set_ylabel(n1)
        verdict = _verdict(ls.attrs, quality)
        fig.suptitle(f"latent space of the window n = {ls.attrs.get('window', '?')} model" + _quality_line(verdict))
        fig.tight_layout()
        quality_warning(fig, verdict)
    return save(fig, out, cfg)


def nmf_maps(latent_space: str, out: str, cfg: Partial[FiguresConfig], quality: str | None = None) -> Path:
    """Fig. 7: image-NMF loading maps with components as insets; histogram-NMF components and maps."""
    ls = store.open_store(latent_space, "latent_space").load()
    n1, n2 = _latent_names(ls)
    ext = _extent(ls, "z1_dense", "z2_dense")
    ci = ls.component.values
    hi = ls.hist_component.values
    with style():
        n = len(ci) + 1 + len(hi)
        fig, axes = grid(n, ncols=min(n, 4), size=3.0)
        for k, c in enumerate(ci):
            ax = axes[k]
            im = ax.imshow(
                ls.image_loadings.sel(component=c).values, origin="lower", extent=ext, aspect="auto", cmap="viridis"
            )
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="loading")
            ins = inset_axes(ax, width="28%", height="28%", loc="upper right", borderpad=0.4)
            ins.imshow(ls.image_components.sel(component=c).values, cmap="gray")
            ins.set_xticks([])
            ins.set_yticks([])
            ax.set_title(f"image NMF component {c}")
            ax.set_xlabel(n2)
            ax.set_ylabel(n1)
        ax = axes[len(ci)]
        centres = 0.5 * (ls.hist_bin_low.values + ls.hist_bin_high.values)
        for c in hi:
            ax.plot(
                centres, ls.histogram_components.sel(hist_component=c).values, color=f"C{c}", label=f"component {c}"
            )
        ax.set_xlabel("decoded intensity")
        ax.set_ylabel("weight")
        ax.set_title("histogram NMF components")
        ax.legend(frameon=False)
        for k, c in enumerate(hi):
            ax = axes[len(ci) + 1 + k]
            im = ax.imshow(
                ls.histogram_loadings.sel(hist_component=c).values,
                origin="lower",
                extent=ext,
                aspect="auto",
                cmap="viridis",
            )
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="loading")
            ax.set_title(f"histogram NMF loading {c}")
            ax.set_xlabel(n2)
            ax.set_ylabel(n1)
        verdict = _verdict(ls.attrs, quality)
        fig.suptitle(
            f"NMF maps of the decoded latent space, window n = {ls.attrs.get('window', '?')}" + _quality_line(verdict)
        )
        fig.tight_layout()
        quality_warning(fig, verdict)
    return save(fig, out, cfg)
