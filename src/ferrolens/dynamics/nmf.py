"""Seeded non-negative matrix factorisation with a deterministic component order.

``X (rows, features) ≈ W (rows, N) · H (N, features)``. For the dynamics
stage rows are frames and features the KDE grid: ``H`` holds the latent
distributions, ``W`` their weights over time. NMF is unique only up to the
order and scale of its components, so both are fixed here:

* scale: every component row is normalised to unit *measure*
  (``Σ_g H[c, g] · measure[g] = 1``; with ``measure`` the grid step a component
  is a density that integrates to 1) and ``W`` carries the amount;
* order: by the first row (frame) at which the weight reaches 90 % of its
  range (its peak, made robust to noise on a saturated plateau, where the
  arg-max would jump between frames), then by the feature at which the
  component peaks, so reruns and different window sizes line up
  (or, with ``order="total_weight"``, by decreasing total weight: the
  dominant component first, as the latent-space maps use).

After scikit-learn's fit, ``W`` is recomputed as the exact non-negative least
squares solution given ``H`` (:func:`nnls_weights`); this is what the
bootstrap uses for resampled data too, so point estimate and replicates are
computed the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning


@dataclass(frozen=True)
class NMFResult:
    """components (N, features), weights (rows, N), relative Frobenius error
    ``‖X - WH‖ / ‖X‖``, scikit-learn iterations and whether it converged."""

    components: np.ndarray
    weights: np.ndarray
    relative_error: float
    n_iter: int
    converged: bool


def nnls_weights(X: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Non-negative least-squares weights of each row of ``X`` (rows, features) on ``H`` (N, features).

    Vectorised: rows whose unconstrained least-squares solution is already
    non-negative are exact; the others are solved one by one with
    ``scipy.optimize.nnls``. Returns (rows, N).
    """
    X = np.asarray(X, dtype=float)
    rows_shape = X.shape[:-1]
    X2 = X.reshape(-1, X.shape[-1])
    gram = H @ H.T
    try:
        W = np.linalg.solve(gram, H @ X2.T).T
    except np.linalg.LinAlgError:
        W = np.full((X2.shape[0], H.shape[0]), -1.0)  # singular: every row through nnls
    bad = np.flatnonzero((W < 0).any(axis=1) | ~np.isfinite(W).all(axis=1))
    if bad.size:
        Ht = np.ascontiguousarray(H.T)
        for i in bad:
            W[i] = nnls(Ht, X2[i])[0]
    return W.reshape(*rows_shape, H.shape[0])


ORDERS = ("peak_row", "total_weight")
PEAK_FRACTION = 0.9  # a weight "peaks" at the first frame within 10 % of its maximum


def order_components(W: np.ndarray, H: np.ndarray, order: str = "peak_row") -> np.ndarray:
    """Permutation of components.

    ``peak_row``: by the first row at which the weight reaches ``PEAK_FRACTION`` of its
    range (min → max), then the feature of peak component;
    ``total_weight``: by decreasing sum of weights, then the row of peak weight.
    """
    if order == "peak_row":
        lo, hi = W.min(axis=0), W.max(axis=0)
        reached = lo + PEAK_FRACTION * (hi - lo) <= W
        keys: list[tuple[float, int, int]] = [
            (int(np.argmax(reached[:, c])), int(np.argmax(H[c])), c) for c in range(H.shape[0])
        ]
    elif order == "total_weight":
        keys = [(-float(W[:, c].sum()), int(np.argmax(W[:, c])), c) for c in range(H.shape[0])]
    else:
        raise ValueError(f"order {order!r}; known: {', '.join(ORDERS)}")
    return np.array([c for *_, c in sorted(keys)], dtype=int)


def fit_nmf(
    X: np.ndarray,
    n_components: int,
    seed: int,
    measure: np.ndarray | float = 1.0,
    max_iter: int = 2000,
    tol: float = 1e-5,
    order: str = "peak_row",
) -> NMFResult:
    """Fit ``X ≈ W H`` (Frobenius loss, coordinate descent, NNDSVDa init seeded with ``seed``).

    Parameters
    ----------
    X : (rows, features) non-negative (tiny negatives from round-off are clipped).
    n_components : N ≥ 1, at most min(rows, features).
    measure : (features,) or scalar weight per feature used to normalise each component
        (the grid step for densities).
    order : component order, see :func:`order_components`.
    """
    X = np.clip(np.asarray(X, dtype=float), 0.0, None)
    if not 1 <= n_components <= min(X.shape):
        raise ValueError(f"n_components={n_components} must be between 1 and min{X.shape}")
    model = NMF(
        n_components=n_components,
        init="nndsvda",
        solver="cd",
        beta_loss="frobenius",
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    with warnings.catch_warnings():
        # non-convergence is recorded in the result (converged=False), not shouted
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit_transform(X)
    H = model.components_.copy()
    scale = (H * np.broadcast_to(measure, H.shape[1:])).sum(axis=1)
    empty = scale <= 0
    scale[empty] = 1.0  # an all-zero component stays zero
    H /= scale[:, None]
    W = nnls_weights(X, H)
    perm = order_components(W, H, order)
    H, W = H[perm], W[:, perm]
    norm = np.linalg.norm(X)
    err = float(np.linalg.norm(X - W @ H) / norm) if norm > 0 else 0.0
    return NMFResult(H, W, err, int(model.n_iter_), bool(model.n_iter_ < max_iter))


def coordinate_descent(
    X: np.ndarray, W: np.ndarray, H: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """scikit-learn's NMF coordinate descent from ``W`` (rows, N), ``H`` (N, features) (``init="custom"``,
    Frobenius loss, no regularisation, no shuffling): ``(W, H, iterations)``, the same numbers as
    ``NMF(init="custom", solver="cd").fit_transform`` to the last bit (``tests/test_dynamics_api.py``).

    Its loop (``sklearn.decomposition._nmf._fit_coordinate_descent``) without the per-iteration input checks
    and dispatch, which cost as much as the arithmetic on a dynamics stage's small matrices (frames × grid
    bins): the bootstrap refits hundreds of them for thousands of iterations each (a warm start makes the
    relative stopping rule hard to meet). Falls back to scikit-learn where its compiled update is missing.
    """
    try:
        from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast
    except ImportError:  # a scikit-learn that moved its private kernel: the public estimator, same algorithm
        n = H.shape[0]
        model = NMF(n_components=n, init="custom", solver="cd", beta_loss="frobenius", max_iter=max_iter, tol=tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            W = model.fit_transform(X, W=W, H=H)
        return W, model.components_.copy(), int(model.n_iter_)
    W, Ht, Xt = np.ascontiguousarray(W), np.ascontiguousarray(H.T), X.T
    order = np.arange(W.shape[1], dtype=np.intp)
    violation_init = 0.0
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        violation = _update_cdnmf_fast(W, np.dot(Ht.T, Ht), X @ Ht, order)
        violation += _update_cdnmf_fast(Ht, np.dot(W.T, W), Xt @ W, order)
        if n_iter == 1:
            violation_init = violation
        if violation_init == 0 or violation / violation_init <= tol:
            break
    return W, Ht.T.copy(), n_iter


def refit_nmf(
    X: np.ndarray, point: NMFResult, measure: np.ndarray | float = 1.0, max_iter: int = 2000, tol: float = 1e-5
) -> NMFResult:
    """Refit ``X`` (a resample of the data ``point`` was fitted to) from ``point``'s factors, with the
    components normalised as in :func:`fit_nmf` and matched to ``point``'s order (the assignment that
    maximises the summed correlation of the components), so that replicate weights line up.
    """
    X = np.clip(np.asarray(X, dtype=float), 0.0, None)
    n = point.components.shape[0]
    W0 = np.ascontiguousarray(np.clip(point.weights, 1e-12, None))
    H0 = np.ascontiguousarray(np.clip(point.components, 1e-12, None))
    _, H, n_iter = coordinate_descent(X, W0, H0, max_iter, tol)
    scale = (H * np.broadcast_to(measure, H.shape[1:])).sum(axis=1)
    scale[scale <= 0] = 1.0
    H /= scale[:, None]
    if n > 1:
        from scipy.optimize import linear_sum_assignment

        a = point.components - point.components.mean(axis=1, keepdims=True)
        b = H - H.mean(axis=1, keepdims=True)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        corr = (a @ b.T) / np.maximum(np.outer(na, nb), 1e-300)
        _, perm = linear_sum_assignment(-corr)
        H = H[perm]
    W = nnls_weights(X, H)
    norm = np.linalg.norm(X)
    err = float(np.linalg.norm(X - W @ H) / norm) if norm > 0 else 0.0
    return NMFResult(H, W, err, n_iter, n_iter < max_iter)
