"""The test against no loop from a model of the whole curve, its interval, the block length and the
smallest detectable area (issue 24).

Model of a per-frame curve ``y_t`` (the frames of the loop's cycles, in time order)::

    y_t = g(s_t) + h(t) + d_t · k(s_t) + e_t

* ``g``: one smooth function of the stimulus ``s`` for both branches (cubic B-splines);
* ``h``: a smooth drift in time, a polynomial of degree ``drift_degree`` (no constant);
* ``k``: the loop, half the difference between the branches (``d_t`` = +1 rising, −1 falling),
  cubic B-splines over the branches' common range. At an end of that range where the sweep
  turns back (an extreme of the whole sweep: saturation) the loop closes, ``k = 0``; at an end
  inside the sweep (a movie that stops mid-branch) it may stay open;
* ``e_t``: stationary AR(1) noise.

*No loop* is ``k = 0``. The loop area reported is the area between the interpolated branches
(:func:`~ferrolens.dynamics.hysteresis.loop_metrics`) of the curve *after its fitted drift is
removed* (``curve − ĥ``, GLS): linear in the curve, ``c(ρ) · y``, the old area when
``drift_degree`` is 0. The statistic is ``T = area / se``, from the full model fitted by GLS at
its REML ρ with the number of stimulus splines per curve chosen by BIC among a few candidates
(so that a loop switching in a narrow range is followed as well as a slanted one).

Reference distribution. ``T`` depends on neither the no-loop model's mean nor the noise scale,
only on the noise's correlation, so it is simulated once per loop design, for AR(1) correlations
on :data:`CAL_GRID`, each replicate analysed exactly as the data. The noise's correlation and scale
come from a *noise model with few columns* (:func:`noise_rho`): the smallest candidate models
(:data:`NOISE_DESIGNS`, BIC-chosen) plus one switch per branch at the biases that fit best, so that
a square loop (switching within a frame or two) stays out of its residuals; ``T`` is the GLS area
at that ρ̂ over ``σ̂ √(c'V c)``, ``σ̂`` that model's innovation sd. A flexible loop term absorbs
slow noise (the REML ρ̂ of the full model is ~0.1 for AR(1) noise of 0.8 in a 40-frame cycle), and
a no-loop model leaves the loop in its residuals and sends ρ̂ to 0.98, where the reference is
widest (the earlier version: 0 % power on a square loop of area 0.8 at noise sd 0.02). A curve is
compared with the reference at the upper 90 % confidence bound of ρ, by inverting the simulated
10 % quantiles of ρ̂ at each grid ρ (one grid step up): the selection of the switches and of the
model is simulated as well, and under no loop neither the residuals nor the selection depend on
the no-loop mean the model spans. The interval of the area is the bootstrap-t interval
``A − se·T*``; the smallest loop area the design could have detected is ``(q + q_0.8) se``,
``q`` the two-sided critical value at α over the loops tested of the curve's reference,
``q_0.8`` its 80 % quantile: 80 % power if the loop left the standard error and the noise bound
as they are.

Identifiability (what a single cycle cannot tell). Within one cycle the time of a frame is a
function of its stimulus and its direction, so a drift in time also makes the branches differ.
A drift of degree ≤ 2 seen across a complete cycle (from a turning point back to it) changes the
branch difference linearly along the stimulus and so leaves the loop open at the far end, which
a loop closed at both ends (saturation) cannot do: the model tells them apart. A drift of degree
3 or more, or any drift when the loop's range has an open end (a cycle from 0 V that ends
mid-branch: the virgin curve leaves half a loop), is confounded with a loop: the test then loses
power rather than level, and ``drift_degree`` is the user's statement of how smooth the drift is.
Several cycles separate drift and loop (the loop repeats, drift does not).

Block length (``time_block: auto``): Politis & White (2004), corrected by Patton, Politis & White
(2009), for the stationary bootstrap, from the residuals of the full model; it sets the time
blocks of the resampled intervals of the other metrics (:func:`block_residuals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import BSpline

RHO_GRID = np.linspace(-0.6, 0.98, 80)  # REML searches AR(1) correlations here
POWER = 0.8  # power at which the detectable area is quoted


# --- design ------------------------------------------------------------------------------------
def spline_basis(
    x: np.ndarray, lo: float, hi: float, n_basis: int, drop: tuple[bool, bool] = (False, False)
) -> np.ndarray:
    """(F, n) cubic B-spline basis on [lo, hi] (uniform knots; 0 outside). ``drop``: leave out the
    first/last function, so that every column vanishes at that end (a loop closed there)."""
    n_basis = max(4, int(n_basis))
    inner = np.linspace(lo, hi, n_basis - 2)
    t = np.r_[[lo] * 3, inner, [hi] * 3]
    xi = np.clip(x, lo, hi)
    inside = (x >= lo - 1e-9 * max(1.0, abs(hi))) & (x <= hi + 1e-9 * max(1.0, abs(hi)))
    b = BSpline.design_matrix(xi, t, 3).toarray() * inside[:, None]
    keep = np.ones(b.shape[1], bool)
    keep[0] &= not drop[0]
    keep[-1] &= not drop[1]
    return b[:, keep]


@dataclass(frozen=True)
class LoopDesign:
    """The regression of one loop: frames ``frames`` (time order), columns of the no-loop model
    ``null`` (F_used, p0: stimulus splines and drift), the loop columns ``loop`` (F_used, p1),
    which of the null columns are drift (``drift``), the area's weights on those frames
    ``area`` (F_used,), the stimulus and the sweep direction (±1) of those frames."""

    frames: np.ndarray
    null: np.ndarray
    loop: np.ndarray
    drift: np.ndarray
    area: np.ndarray
    closed: tuple[bool, bool]
    stimulus: np.ndarray
    direction: np.ndarray
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def full(self) -> np.ndarray:
        return np.hstack([self.null, self.loop])

    @property
    def factors(self) -> Factors:
        """The full model's :class:`Factors` (computed once)."""
        if "full" not in self.cache:
            self.cache["full"] = Factors(self.full, self)
        return self.cache["full"]

    @property
    def noise_factors(self) -> Factors:
        """The no-loop model's :class:`Factors` (computed once)."""
        if "null" not in self.cache:
            self.cache["null"] = Factors(self.null)
        return self.cache["null"]


def _closed_ends(op) -> tuple[bool, bool]:
    """Whether the loop's common range reaches each end of the sweep (within the reversal tolerance or
    one stimulus step): there the sweep turns back (saturation) and the loop closes."""
    sw = op.sweep
    tol = max(sw.tolerance * (sw.values.max() - sw.values.min()), sw.step)
    return bool(op.grid[0] <= sw.values.min() + tol), bool(op.grid[-1] >= sw.values.max() - tol)


def loop_designs(op, drift_degree: int = 2, min_dof: int = 8) -> list[LoopDesign]:
    """Candidate models of the loop of ``op`` (a :class:`~ferrolens.dynamics.hysteresis.LoopOperator`):
    4, 6, 8, 12, 16 … stimulus splines per branch, as many as leave ``min_dof`` residual degrees of
    freedom, each of full rank; empty when it has no loop, no such model, or (with a drift) a loop
    open at one end of its range (then no test)."""
    out: list[LoopDesign] = []
    if not op.note and drift_degree > 0 and not all(_closed_ends(op)):
        return out  # an open end: drift and loop confounded (module docstring), no test
    for nb in (4, 6, 8, 12, 16, 24, 32):
        d = loop_design(op, drift_degree, nb)
        if d is None or d.frames.size - d.full.shape[1] < min_dof:
            break
        if np.linalg.matrix_rank(d.full) == d.full.shape[1]:  # loop and drift told apart by these columns
            out.append(d)
    return out


def loop_design(op, drift_degree: int = 2, n_basis: int | None = None) -> LoopDesign | None:
    """The model of :mod:`this module <.looptest>` for the loop of ``op`` (a
    :class:`~ferrolens.dynamics.hysteresis.LoopOperator`), or None when it has no loop."""
    if op.note or not op.area.size:
        return None
    sw = op.sweep
    x, d_all = sw.values, sw.branches.direction
    segs = [s for k in op.cycles for s in sw.cycles[k]]
    if not segs:
        return None
    frames = np.arange(min(s.start for s in segs), max(s.stop for s in segs) + 1)
    xs, d = x[frames], d_all[frames].astype(float)
    per_branch = max(len(s.frames) for s in segs)
    nb = n_basis or int(np.clip(per_branch // 2, 4, 12))
    g = spline_basis(xs, xs.min(), xs.max(), nb)
    t = (frames - frames.mean()) / max(1.0, np.ptp(frames) / 2)
    drift = (
        np.stack([np.polynomial.legendre.legval(t, np.eye(q + 1)[q]) for q in range(1, drift_degree + 1)], axis=1)
        if drift_degree > 0
        else np.zeros((frames.size, 0))
    )
    lo, hi = float(op.grid[0]), float(op.grid[-1])
    closed = _closed_ends(op)
    nk = int(np.clip(round(nb * (hi - lo) / max(np.ptp(xs), 1e-12)), 4, nb))
    k = spline_basis(xs, lo, hi, nk, drop=closed) * d[:, None]
    k = k[:, np.abs(k).sum(axis=0) > 0]
    # a drift column that the stimulus splines and earlier drift columns already span adds nothing
    # (one symmetric cycle: a quadratic drift is a linear one plus a function of the stimulus)
    keep: list[int] = []
    for j in range(drift.shape[1]):
        cols = np.hstack([g, drift[:, np.array([*keep, j], dtype=int)]])
        if np.linalg.matrix_rank(cols) == cols.shape[1]:
            keep.append(j)
    drift = drift[:, keep]
    null = np.hstack([g, drift])
    return LoopDesign(frames, null, k, np.arange(g.shape[1], null.shape[1]), op.area[frames], closed, xs, d)


# --- AR(1) GLS with REML ----------------------------------------------------------------------
def _whitener(rho: float, n: int) -> np.ndarray:
    """(n, n) Prais–Winsten whitening of AR(1) noise of unit innovation variance: W V W' = I."""
    w = np.eye(n)
    w[0, 0] = np.sqrt(1 - rho**2)
    w[np.arange(1, n), np.arange(n - 1)] = -rho
    return w


def _whiten(y: np.ndarray, rho: float) -> np.ndarray:
    """``y @ W.T`` for rows ``y`` (K, n) (:func:`_whitener`) without the matrix: AR(1) innovations."""
    out = np.empty_like(y, dtype=float)
    out[:, 0] = np.sqrt(1 - rho**2) * y[:, 0]
    out[:, 1:] = y[:, 1:] - rho * y[:, :-1]
    return out


class Factors:
    """QR factors of the whitened columns ``x`` (n, p) at every ρ of :data:`RHO_GRID`, computed once
    (and, with a ``design``, the weights of the drift-removed area and ``c' V c``)."""

    def __init__(self, x: np.ndarray, design: LoopDesign | None = None):
        self.n, self.p = x.shape[0], int(np.linalg.matrix_rank(x))
        xw = np.empty((RHO_GRID.size, *x.shape))  # the whitened columns at every ρ, factored at once
        xw[:, 0] = np.sqrt(1 - RHO_GRID**2)[:, None] * x[0]
        xw[:, 1:] = x[None, 1:] - RHO_GRID[:, None, None] * x[None, :-1]
        qs, rs = np.linalg.qr(xw)
        self.q = qs
        self.logdet = np.log(np.abs(np.diagonal(rs, axis1=1, axis2=2)) + 1e-300).sum(axis=1)
        self.c, self.cvc, self.coef = [], np.zeros(RHO_GRID.size), []
        if design is not None:
            for i, r_ in enumerate(RHO_GRID):
                q, r = qs[i], rs[i]
                w = _whitener(r_, self.n)
                c = _area_weights(design, w, q, r)
                self.c.append(c)
                self.cvc[i] = c @ _unwhiten(_whiten_t(c, r_)[None, :], r_)[0]  # c' V c, V = (W'W)⁻¹
                self.coef.append(np.linalg.solve(r, q.T))  # (p, n): coefficients from whitened data


def _unwhiten(u: np.ndarray, rho: float) -> np.ndarray:
    """Rows ``e`` (K, n) with ``_whiten(e, rho) = u``: the AR(1) recursion from its innovations."""
    e = np.empty_like(u, dtype=float)
    e[:, 0] = u[:, 0] / np.sqrt(1 - rho**2)
    for t in range(1, u.shape[1]):
        e[:, t] = u[:, t] + rho * e[:, t - 1]
    return e


def _whiten_t(c: np.ndarray, rho: float) -> np.ndarray:
    """``v`` with ``W' v = c`` for a vector ``c`` (n,) (backward recursion of the transposed whitening)."""
    n = c.size
    v = np.empty(n)
    v[-1] = c[-1] if n > 1 else c[-1] / np.sqrt(1 - rho**2)
    for t in range(n - 2, 0, -1):
        v[t] = c[t] + rho * v[t + 1]
    if n > 1:
        v[0] = (c[0] + rho * v[1]) / np.sqrt(1 - rho**2)
    return v


def reml_profile(y: np.ndarray, f: Factors) -> np.ndarray:
    """(G, K) REML log-likelihood of AR(1) noise at each ρ of the grid, for curves ``y`` (K, n) under
    the columns of ``f`` (σ² profiled out)."""
    wy = np.empty((RHO_GRID.size, *y.shape))  # (G, K, n): the curves whitened at every ρ
    wy[:, :, 0] = np.sqrt(1 - RHO_GRID**2)[:, None] * y[None, :, 0]
    wy[:, :, 1:] = y[None, :, 1:] - RHO_GRID[:, None, None] * y[None, :, :-1]
    rss = (wy**2).sum(axis=2) - ((wy @ f.q) ** 2).sum(axis=2)
    return (0.5 * np.log(1 - RHO_GRID**2) - f.logdet)[:, None] - 0.5 * (f.n - f.p) * np.log(np.maximum(rss, 1e-300))


@dataclass(frozen=True)
class GLSFit:
    """Per curve (K,): ρ used, the drift-removed area, its standard error, the residuals and the
    fitted loop term (K, F_used) of the full model."""

    rho: np.ndarray
    area: np.ndarray
    se: np.ndarray
    residuals: np.ndarray
    loop: np.ndarray


def _area_weights(design: LoopDesign, w: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Weights ``c`` with ``c · y`` the area of ``y`` minus its GLS-fitted drift (full model)."""
    x = design.full
    c = design.area.copy()
    if design.drift.size:
        # γ̂ = S R⁻¹ Q' W y (S: the drift rows); area of P γ̂ = (a'P) γ̂
        sel = np.zeros(x.shape[1])
        sel[design.drift] = design.area @ x[:, design.drift]
        c = c - w.T @ (q @ np.linalg.solve(r.T, sel))
    return c


def gls_fit(y: np.ndarray, design: LoopDesign, rho: np.ndarray | None = None) -> GLSFit:
    """AR(1) GLS of curves ``y`` (K, F_used) under the full model, at ``rho`` (K,) (values of
    :data:`RHO_GRID`) or, when None, at the REML estimate on that grid."""
    y = np.atleast_2d(y)
    f = design.factors
    idx = (
        np.argmax(reml_profile(y, f), axis=0)
        if rho is None
        else np.abs(RHO_GRID[:, None] - np.asarray(rho)[None, :]).argmin(axis=0)
    )
    area, se, res, loop = np.zeros(y.shape[0]), np.zeros(y.shape[0]), np.zeros_like(y), np.zeros_like(y)
    p0 = design.null.shape[1]
    for i in np.unique(idx):
        sel = idx == i
        wy = _whiten(y[sel], RHO_GRID[i])
        wres = wy - (wy @ f.q[i]) @ f.q[i].T
        s2 = (wres**2).sum(axis=1) / max(f.n - f.p, 1)
        area[sel] = y[sel] @ f.c[i]
        se[sel] = np.sqrt(s2 * f.cvc[i])
        res[sel] = _unwhiten(wres, RHO_GRID[i])
        loop[sel] = (wy @ f.coef[i].T)[:, p0:] @ design.loop.T
    return GLSFit(RHO_GRID[idx], area, se, res, loop)


def ar1(rng: np.random.Generator, rho: np.ndarray, n: int, size: int) -> np.ndarray:
    """(K, size, n) stationary AR(1) noise of unit marginal variance, correlation ``rho[k]``."""
    rho = np.asarray(rho, float)[:, None]
    out = np.empty((rho.shape[0], size, n))
    out[:, :, 0] = rng.standard_normal((rho.shape[0], size))
    innov = rng.standard_normal((rho.shape[0], size, n)) * np.sqrt(1 - rho**2)[..., None]
    for t in range(1, n):
        out[:, :, t] = rho * out[:, :, t - 1] + innov[:, :, t]
    return out


def choose_design(y: np.ndarray, designs: list[LoopDesign]) -> np.ndarray:
    """(K,) index of the design of least BIC (ordinary least squares) for each curve (K, n)."""
    n = y.shape[1]
    bic = []
    for d in designs:
        x = d.full
        q, _ = np.linalg.qr(x)
        rss = (y**2).sum(axis=1) - ((y @ q) ** 2).sum(axis=1)
        bic.append(n * np.log(np.maximum(rss, 1e-300) / n) + x.shape[1] * np.log(n))
    return np.argmin(np.array(bic), axis=0)


def fit_chosen(y: np.ndarray, designs: list[LoopDesign], rho: np.ndarray | None = None) -> tuple[GLSFit, np.ndarray]:
    """GLS fit of every curve (K, n) under its BIC-chosen design; the fit and the choice (K,)."""
    pick = choose_design(y, designs)
    k = y.shape[0]
    rho_out, area, se, res, loop = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros_like(y), np.zeros_like(y)
    for i in np.unique(pick):
        sel = pick == i
        f = gls_fit(y[sel], designs[i], None if rho is None else rho[sel])
        rho_out[sel], area[sel], se[sel], res[sel], loop[sel] = f.rho, f.area, f.se, f.residuals, f.loop
    return GLSFit(rho_out, area, se, res, loop), pick


def model_area(curves: np.ndarray, designs: list[LoopDesign], rho: np.ndarray | None = None) -> np.ndarray:
    """(K,) loop areas with the fitted drift removed (BIC-chosen design; GLS at ``rho`` (K,), or at the
    REML ρ when None) of curves (K, F)."""
    y = np.atleast_2d(np.asarray(curves, float))[:, designs[0].frames]
    return fit_chosen(y, designs, rho)[0].area


# --- the noise model: few columns, one switch per branch -----------------------------------
NOISE_DESIGNS = 3  # the smallest candidate models the noise model chooses among (few columns: ρ stays identifiable)
# stimulus steps a switch of the noise model may take (a pixel population switches over a range)
SWITCH_SPANS = (1, 2, 3, 5, 8)


def _switch_columns(stimulus: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate switches of each branch, (n, P) for the rising and (n, P) for the falling frames:
    ``1[branch]·H(s)`` with ``H`` rising linearly from 0 to 1 across :data:`SWITCH_SPANS` neighbouring
    stimulus values (1: a jump between two frames; more: a frame caught mid-switch, or a population
    switching over a range), at every place in the stimulus range."""
    v = np.unique(np.round(stimulus, 12))
    spans = [(v[k], v[k + w]) for w in SWITCH_SPANS for k in range(v.size - w)]
    h = np.stack([np.interp(stimulus, [lo, hi], [0.0, 1.0]) for lo, hi in spans], axis=1)
    return h * (direction > 0)[:, None], h * (direction < 0)[:, None]


def _switch_fit(y: np.ndarray, d: LoopDesign) -> tuple[np.ndarray, np.ndarray]:
    """For curves (K, n) under the columns of ``d`` plus one switch per branch (:func:`_switch_columns`):
    the pair that fits best (K,) (least squares) and its residual sum of squares (K,)."""
    if "switch" not in d.cache:
        qb, _ = np.linalg.qr(d.full)
        rise, fall = _switch_columns(d.stimulus, d.direction)
        ur, uf = rise - qb @ (qb.T @ rise), fall - qb @ (qb.T @ fall)
        grr, gff, grf = (ur**2).sum(axis=0), (uf**2).sum(axis=0), ur.T @ uf
        det = grr[:, None] * gff[None, :] - grf**2
        ok = det > 1e-8 * np.maximum(grr[:, None] * gff[None, :], 1e-300)
        d.cache["switch"] = (qb, rise, fall, ur, uf, grr, gff, grf, np.where(ok, det, np.inf), {})
    qb, rise, fall, ur, uf, grr, gff, grf, det, _ = d.cache["switch"]
    ar, af = y @ ur, y @ uf  # (K, P): the residuals projected on each orthogonalised switch
    kk = np.arange(y.shape[0])
    # coordinate search (rising, falling given it, rising given that): O(P) per curve, not O(P²)
    ok_r = grr > 1e-12
    i = np.argmax(np.where(ok_r, ar**2 / np.where(ok_r, grr, 1), -1), axis=1)
    for _ in range(2):
        c = grf[i] / grr[i][:, None]  # (K, P_f)
        g2 = gff[None] - grf[i] * c
        j = np.argmax(
            np.where(g2 > 1e-12 * gff[None], (af - ar[kk, i][:, None] * c) ** 2 / np.maximum(g2, 1e-300), -1), axis=1
        )
        c = grf[:, j].T / gff[j][:, None]  # (K, P_r)
        g2 = grr[None] - grf[:, j].T * c
        i = np.argmax(
            np.where(g2 > 1e-12 * grr[None], (ar - af[kk, j][:, None] * c) ** 2 / np.maximum(g2, 1e-300), -1), axis=1
        )
    a_i, a_j, dd = ar[kk, i], af[kk, j], det[i, j]
    gain = np.where(np.isfinite(dd), (a_i**2 * gff[j] - 2 * a_i * a_j * grf[i, j] + a_j**2 * grr[i]) / dd, 0.0)
    best = i * fall.shape[1] + j
    rss = (y**2).sum(axis=1) - ((y @ qb) ** 2).sum(axis=1) - gain
    return best, np.maximum(rss, 1e-300)


def noise_rho(y: np.ndarray, designs: list[LoopDesign]) -> tuple[np.ndarray, np.ndarray]:
    """(K,) REML AR(1) correlation and innovation sd of curves (K, n) under a model of a loop with few
    columns: a candidate model (stimulus splines, the drift, a smooth loop term; BIC-chosen) plus one
    switch on each branch (:func:`_switch_columns`), the pair that fits best (least squares).

    A flexible loop term absorbs slow noise (its REML ρ̂ is uninformative in a short movie), and
    without a loop term a loop left in the residuals sends ρ̂ to the top of its range; a square loop
    (one jump per branch) plus a smooth part keeps the loop out of the residuals at two extra
    columns. The selection biases ρ̂ down and a curve the model misfits biases it up: it is
    calibrated by simulating the same selection on no-loop noise (:class:`Reference`)."""
    k, n = y.shape
    designs = designs[:NOISE_DESIGNS]
    fits = [_switch_fit(y, d) for d in designs]
    bic = np.array(
        [n * np.log(rss / n) + (d.full.shape[1] + 2) * np.log(n) for d, (_, rss) in zip(designs, fits, strict=True)]
    )
    choice = np.argmin(bic, axis=0)
    rho, sigma = np.empty(k), np.empty(k)
    for c in np.unique(choice):
        d = designs[c]
        best = fits[c][0]
        fac = d.cache["switch"][-1]
        rise, fall = d.cache["switch"][1], d.cache["switch"][2]
        for p in np.unique(best[choice == c]):
            if p not in fac:
                i, j = divmod(int(p), fall.shape[1])
                fac[p] = Factors(np.hstack([d.full, rise[:, [i]], fall[:, [j]]]))
            sel, f = (choice == c) & (best == p), fac[p]
            idx = np.argmax(reml_profile(y[sel], f), axis=0)
            rho[sel] = RHO_GRID[idx]
            for i in np.unique(idx):
                s2 = sel.copy()
                s2[sel] = idx == i
                wy = _whiten(y[s2], RHO_GRID[i])
                rss = (wy**2).sum(axis=1) - ((wy @ f.q[i]) ** 2).sum(axis=1)
                sigma[s2] = np.sqrt(np.maximum(rss, 0) / max(f.n - f.p, 1))
    return rho, sigma


def scaled_fit(
    y: np.ndarray, designs: list[LoopDesign], rho: np.ndarray, sigma: np.ndarray
) -> tuple[GLSFit, np.ndarray]:
    """GLS fit of curves (K, n) under their BIC-chosen design at the noise model's ρ (K,), its standard
    error from the noise model's innovation sd ``sigma`` (K,) (:func:`noise_rho`: a square loop the
    splines cannot follow does not inflate it); the fit and the choice (K,)."""
    f, pick = fit_chosen(y, designs, rho)
    se = np.empty(y.shape[0])
    for i in np.unique(pick):
        sel = pick == i
        j = np.abs(RHO_GRID[:, None] - f.rho[sel][None, :]).argmin(axis=0)
        se[sel] = sigma[sel] * np.sqrt(designs[i].factors.cvc[j])
    return GLSFit(f.rho, f.area, se, f.residuals, f.loop), pick


@dataclass(frozen=True)
class ModelTest:
    """Per curve (K,): area (drift removed), se, T, p, the noise model's ρ̂ (:func:`noise_rho`) and the ρ of
    its reference, the bootstrap-t interval, the smallest detectable area, the reference's T* (B, K),
    the full model's residuals (K, F_used) and the design chosen (K,)."""

    area: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    rho: np.ndarray
    rho_reference: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    detectable: np.ndarray
    reference: np.ndarray
    residuals: np.ndarray
    design: np.ndarray


# AR(1) correlations of the reference
CAL_GRID = np.array([-0.3, 0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98])
RHO_COVERAGE = 0.9  # one-sided coverage of the upper bound of the noise's correlation


@dataclass(frozen=True)
class Reference:
    """For each AR(1) correlation of :data:`CAL_GRID`: the statistic T* (G, B) of simulated no-loop
    curves and the (1 − :data:`RHO_COVERAGE`) quantile of their ρ̂ (:func:`noise_rho`) (G,) (made non-decreasing)."""

    t: np.ndarray
    rho_low: np.ndarray

    def pick(self, rho_hat: np.ndarray) -> np.ndarray:
        """(K,) grid index of the reference for each ρ̂ of the noise model: the upper :data:`RHO_COVERAGE`
        confidence bound of the noise's correlation by inverting the simulated quantiles (the largest
        grid ρ whose lower quantile is at or below ρ̂), moved up one grid step (the true ρ may lie
        between grid points; the reference widens with ρ: conservative)."""
        below = (self.rho_low[None, :] <= np.asarray(rho_hat)[:, None]).sum(axis=1)
        return np.minimum(below, CAL_GRID.size - 1)


def reference(designs: list[LoopDesign], n_boot: int, rng: np.random.Generator) -> Reference:
    """Simulated no-loop curves (AR(1) noise at each ρ of :data:`CAL_GRID`; the statistic and ρ̂ depend
    on neither the no-loop model's mean nor the noise scale), analysed as the data are."""
    n = designs[0].frames.size
    sims = ar1(rng, CAL_GRID, n, n_boot)
    t = np.empty((CAL_GRID.size, n_boot))
    low = np.empty(CAL_GRID.size)
    for g in range(CAL_GRID.size):
        rh, sig = noise_rho(sims[g], designs)
        low[g] = np.quantile(rh, 1 - RHO_COVERAGE)
        f, _ = scaled_fit(sims[g], designs, rh, sig)
        t[g] = f.area / np.maximum(f.se, 1e-300)
    return Reference(t, np.maximum.accumulate(low))


def model_test(
    curves: np.ndarray, designs: list[LoopDesign], ref: Reference, level: float = 0.95, alpha: float = 0.05
) -> ModelTest:
    """The test, interval and detectable area of curves (K, F) (all frames; the designs pick theirs).

    ``designs``: candidate models (:func:`loop_designs`), chosen per curve by BIC (as in every
    replicate of ``ref``, :func:`reference`). The reference is the simulated statistic at the
    upper confidence bound of the noise's correlation (:meth:`Reference.pick` of :func:`noise_rho`).
    ``alpha``: the level at which the detectable area is quoted (pass α / loops tested)."""
    y = np.atleast_2d(np.asarray(curves, float))[:, designs[0].frames]
    rho_hat, sigma = noise_rho(y, designs)
    fit, pick = scaled_fit(y, designs, rho_hat, sigma)
    g = ref.pick(rho_hat)
    t_obs = fit.area / np.maximum(fit.se, 1e-300)
    tref = ref.t[g].T  # (B, K)
    p = (1 + (np.abs(tref) >= np.abs(t_obs)[None, :]).sum(axis=0)) / (1 + tref.shape[0])
    a = (1 - level) / 2
    q_lo, q_hi = np.quantile(tref, [a, 1 - a], axis=0)
    lo, hi = fit.area - q_hi * fit.se, fit.area - q_lo * fit.se
    # 80 % power if the loop left the standard error and the noise bound as they are
    q_crit = np.quantile(np.abs(tref), 1 - alpha, axis=0)
    detect = (q_crit + np.quantile(tref, POWER, axis=0)) * fit.se  # the statistic's own spread, not a normal's
    return ModelTest(fit.area, fit.se, t_obs, p, rho_hat, CAL_GRID[g], lo, hi, detect, tref, fit.residuals, pick)


# --- block length and time-block resampling -------------------------------------------------
def optimal_block_length(x: np.ndarray) -> float:
    """Politis & White (2004) block length for the stationary bootstrap, with the correction of
    Patton, Politis & White (2009) (as ``arch.bootstrap.optimal_block_length``), of a series (n,).

    Autocorrelations are summed with a flat-top kernel up to ``2 m̂`` lags, ``m̂`` the first lag
    after which ``K_n = max(5, sqrt(log10 n))`` autocorrelations in a row are within
    ``2 sqrt(log10 n / n)``; the result is capped at ``min(3 sqrt(n), n / 3)``. 1 for white noise."""
    x = np.asarray(x, float) - np.mean(x)
    n = x.size
    if n < 4 or not np.any(x):
        return 1.0
    kn = max(5, int(np.sqrt(np.log10(n))))
    mmax = int(np.ceil(np.sqrt(n))) + kn
    bmax = np.ceil(min(3 * np.sqrt(n), n / 3))
    c = 2.0
    acv = np.array([x[: n - k] @ x[k:] / n for k in range(min(mmax + 1, n))])
    rho = acv / acv[0]
    thresh = c * np.sqrt(np.log10(n) / n)
    small = np.abs(rho[1:]) < thresh
    m_hat = None
    for m in range(small.size - kn + 1):
        if small[m : m + kn].all():
            m_hat = m
            break
    if m_hat is None:
        m_hat = mmax
    big_m = min(2 * max(m_hat, 1), acv.size - 1)
    k = np.arange(-big_m, big_m + 1)
    t = np.abs(k) / big_m
    lam = np.where(t <= 0.5, 1.0, np.where(t <= 1.0, 2 * (1 - t), 0.0))
    r = acv[np.abs(k)]
    g_hat = (lam * np.abs(k) * r).sum()
    d_sb = 2 * (lam * r).sum() ** 2
    if d_sb <= 0 or g_hat == 0:
        return 1.0
    b = (2 * g_hat**2 / d_sb) ** (1 / 3) * n ** (1 / 3)
    return float(np.clip(b, 1.0, bmax))


def block_resample(residuals: np.ndarray, groups: list[np.ndarray], block: int, rng: np.random.Generator) -> np.ndarray:
    """Residuals (K, n) resampled in circular blocks of ``block`` frames within each group of frame
    indices (each branch of each cycle: along time, not across a reversal)."""
    out = np.array(residuals, float, copy=True)
    for g in groups:
        m = g.size
        if m < 2:
            continue
        L = int(max(1, min(block, m)))
        starts = rng.integers(0, m, int(np.ceil(m / L)))
        idx = (starts[:, None] + np.arange(L)[None, :]).ravel()[:m] % m
        out[:, g] = residuals[:, g[idx]]
    return out
