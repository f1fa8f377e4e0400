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
on :data:`CAL_GRID`, each replicate analysed exactly as the data (BIC choice, REML, GLS). A curve
is compared with the reference at the upper 90 % profile-REML bound of ρ *under the no-loop
model* (rounded up on the grid): with a fully flexible loop term, noise correlated over many
frames is absorbed as "loop" and its correlation cannot be estimated (measured: the REML ρ̂ of
the full model is ~0.1 for AR(1) noise of 0.8 in a 40-frame cycle), while under the no-loop model
the loop stays in the residuals and can only raise the bound: level is kept, and power is what
a large loop of a short movie pays (the benchmark measures how much). The interval of the area
is the bootstrap-t interval ``A − se·T*``; the smallest loop area the design could have
detected is ``(q + q_0.8) se``, ``q`` the two-sided critical value at α over the loops tested
of the widest reference (ρ = 0.98: a loop of that size raises the noise bound it is judged
against up to there), ``q_0.8`` that reference's 80 % quantile: 80 % power if the loop left the
standard error as it is; a loop also widens the model, and the power measured at that area is
~50 % (twice it ~80 %; tests/test_dynamics_hysteresis.py).

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
from scipy import stats
from scipy.interpolate import BSpline

RHO_GRID = np.linspace(-0.6, 0.98, 80)  # REML searches AR(1) correlations here
POWER = 0.8  # power at which the detectable area is quoted


# --- design ------------------------------------------------------------------------------------
def spline_basis(x: np.ndarray, lo: float, hi: float, n_basis: int, drop: tuple[bool, bool] = (False, False)
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
    which of the null columns are drift (``drift``), and the area's weights on those frames
    ``area`` (F_used,)."""

    frames: np.ndarray
    null: np.ndarray
    loop: np.ndarray
    drift: np.ndarray
    area: np.ndarray
    closed: tuple[bool, bool]
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
    drift = np.stack([np.polynomial.legendre.legval(t, np.eye(q + 1)[q]) for q in range(1, drift_degree + 1)],
                     axis=1) if drift_degree > 0 else np.zeros((frames.size, 0))
    lo, hi = float(op.grid[0]), float(op.grid[-1])
    closed = _closed_ends(op)
    nk = int(np.clip(round(nb * (hi - lo) / max(np.ptp(xs), 1e-12)), 4, nb))
    k = spline_basis(xs, lo, hi, nk, drop=closed) * d[:, None]
    k = k[:, np.abs(k).sum(axis=0) > 0]
    # a drift column that the stimulus splines and earlier drift columns already span adds nothing
    # (one symmetric cycle: a quadratic drift is a linear one plus a function of the stimulus)
    keep = []
    for j in range(drift.shape[1]):
        cols = np.hstack([g, drift[:, keep + [j]]])
        if np.linalg.matrix_rank(cols) == cols.shape[1]:
            keep.append(j)
    drift = drift[:, keep]
    null = np.hstack([g, drift])
    return LoopDesign(frames, null, k, np.arange(g.shape[1], null.shape[1]), op.area[frames], closed)


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
        self.q, self.logdet, self.c, self.cvc = [], np.zeros(RHO_GRID.size), [], np.zeros(RHO_GRID.size)
        self.coef = []
        for i, r_ in enumerate(RHO_GRID):
            q, r = np.linalg.qr(_whiten(x.T, r_).T)
            self.q.append(q)
            self.logdet[i] = np.log(np.abs(np.diag(r)) + 1e-300).sum()
            if design is not None:
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
    out = np.empty((RHO_GRID.size, y.shape[0]))
    for i, r_ in enumerate(RHO_GRID):
        wy = _whiten(y, r_)
        rss = (wy**2).sum(axis=1) - ((wy @ f.q[i]) ** 2).sum(axis=1)
        out[i] = 0.5 * np.log(1 - r_**2) - f.logdet[i] - 0.5 * (f.n - f.p) * np.log(np.maximum(rss, 1e-300))
    return out


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
    idx = (np.argmax(reml_profile(y, f), axis=0) if rho is None
           else np.abs(RHO_GRID[:, None] - np.asarray(rho)[None, :]).argmin(axis=0))
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


def rho_upper(y: np.ndarray, f: Factors, coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """REML ρ̂ of curves (K, n) under the columns of ``f`` and the upper end of its one-sided
    profile-likelihood bound at ``coverage`` (K,) each."""
    ll = reml_profile(y, f)
    best = np.argmax(ll, axis=0)
    cut = ll.max(axis=0) - 0.5 * stats.chi2.ppf(2 * coverage - 1, 1)
    inside = ll >= cut[None, :]
    upper = np.array([RHO_GRID[np.flatnonzero(inside[:, k])].max() for k in range(y.shape[0])])
    return RHO_GRID[best], upper


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


def fit_chosen(y: np.ndarray, designs: list[LoopDesign], rho: np.ndarray | None = None
               ) -> tuple[GLSFit, np.ndarray]:
    """GLS fit of every curve (K, n) under its BIC-chosen design; the fit and the choice (K,)."""
    pick = choose_design(y, designs)
    k = y.shape[0]
    rho_out, area, se, res, loop = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros_like(y), np.zeros_like(y)
    for i in np.unique(pick):
        sel = pick == i
        f = gls_fit(y[sel], designs[i], None if rho is None else rho[sel])
        rho_out[sel], area[sel], se[sel], res[sel], loop[sel] = f.rho, f.area, f.se, f.residuals, f.loop
    return GLSFit(rho_out, area, se, res, loop), pick


def model_area(curves: np.ndarray, designs: list[LoopDesign]) -> np.ndarray:
    """(K,) loop areas with the fitted drift removed (REML ρ, BIC-chosen design) of curves (K, F)."""
    y = np.atleast_2d(np.asarray(curves, float))[:, designs[0].frames]
    return fit_chosen(y, designs)[0].area


@dataclass(frozen=True)
class ModelTest:
    """Per curve (K,): area (drift removed), se, T, p, ρ̂ of the no-loop model and the ρ of its
    reference, the bootstrap-t interval, the smallest detectable area, the reference's T* (B, K),
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


CAL_GRID = np.array([-0.3, 0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98])  # AR(1) correlations of the reference


NOISE_MODEL = -1  # index of the candidate design whose no-loop columns bound the noise's correlation


def _noise_rho(y: np.ndarray, designs: list[LoopDesign]) -> tuple[np.ndarray, np.ndarray]:
    """(K,) REML ρ̂ and its upper 90 % profile bound under the no-loop model (the richest stimulus
    splines): the noise's correlation is not absorbed by loop columns; a loop left in these
    residuals raises the bound (conservative: power, not level, is lost)."""
    return rho_upper(y, designs[NOISE_MODEL].noise_factors)


@dataclass(frozen=True)
class Reference:
    """For each AR(1) correlation of :data:`CAL_GRID`: the statistic T* (G, B) of simulated no-loop
    curves."""

    t: np.ndarray

    def pick(self, rho_upper: np.ndarray) -> np.ndarray:
        """(K,) grid index of the reference for each upper bound of the noise's ρ: the grid value at or
        just above it (the reference widens with ρ: conservative)."""
        idx = np.searchsorted(CAL_GRID, np.asarray(rho_upper) - 1e-9)
        return np.minimum(idx, CAL_GRID.size - 1)


def reference(designs: list[LoopDesign], n_boot: int, rng: np.random.Generator) -> Reference:
    """Simulated no-loop curves (AR(1) noise at each ρ of :data:`CAL_GRID`; the statistic depends on
    neither the no-loop model's mean nor the noise scale), analysed as the data are."""
    n = designs[0].frames.size
    sims = ar1(rng, CAL_GRID, n, n_boot)
    t = np.empty((CAL_GRID.size, n_boot))
    for g in range(CAL_GRID.size):
        f, _ = fit_chosen(sims[g], designs)
        t[g] = f.area / np.maximum(f.se, 1e-300)
    return Reference(t)


def model_test(curves: np.ndarray, designs: list[LoopDesign], ref: Reference, level: float = 0.95,
               alpha: float = 0.05) -> ModelTest:
    """The test, interval and detectable area of curves (K, F) (all frames; the designs pick theirs).

    ``designs``: candidate models (:func:`loop_designs`), chosen per curve by BIC (as in every
    replicate of ``ref``, :func:`reference`). The reference is the simulated statistic at the
    largest AR(1) correlation consistent with the curve's noise (:meth:`Reference.pick`).
    ``alpha``: the level at which the detectable area is quoted (pass α / loops tested)."""
    y = np.atleast_2d(np.asarray(curves, float))[:, designs[0].frames]
    fit, pick = fit_chosen(y, designs)
    t_obs = fit.area / np.maximum(fit.se, 1e-300)
    rho_hat, rho_up = _noise_rho(y, designs)
    g = ref.pick(rho_up)
    tref = ref.t[g].T  # (B, K)
    p = (1 + (np.abs(tref) >= np.abs(t_obs)[None, :]).sum(axis=0)) / (1 + tref.shape[0])
    a = (1 - level) / 2
    q_lo, q_hi = np.quantile(tref, [a, 1 - a], axis=0)
    lo, hi = fit.area - q_hi * fit.se, fit.area - q_lo * fit.se
    # a loop raises the noise bound it is judged against (it stays in the no-loop residuals), up to the
    # top of the grid: the detectable area is quoted against that widest reference
    q_crit = np.quantile(np.abs(ref.t[-1]), 1 - alpha)
    detect = (q_crit + np.quantile(ref.t[-1], POWER)) * fit.se  # the statistic's own spread, not a normal's
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
        if small[m:m + kn].all():
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


def block_resample(residuals: np.ndarray, groups: list[np.ndarray], block: int, rng: np.random.Generator
                   ) -> np.ndarray:
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
