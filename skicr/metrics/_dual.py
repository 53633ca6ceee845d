"""ICR in the dual (Gram) form, for features wider than the number of rows.

Flattened spatial feature maps reach ``d = C h w`` in the tens of thousands,
where ``d x d`` covariances no longer fit in memory. With the residual contrast
rows ``R`` (``n_r = N (V - 1)`` rows) and the centred image means ``M``
(``N`` rows), every covariance handled here has the form ``a X^T X + b I``
(empirical, fixed, Ledoit-Wolf or OAS shrinkage), so by Woodbury

    B = Sigma_xi + tau I = a_x R^T R + c I,
    B^-1 = (I - a_x R^T K^-1 R) / c,   K = c I + a_x R R^T   (n_r x n_r),

and ``tr(B^-1 Sigma_s)`` needs only ``R R^T``, ``R M^T`` and ``||M||_F^2``:
nothing of size ``d x d`` is ever formed. The shrinkage coefficients need
``||S||_F^2 = ||X X^T||_F^2 / n^2`` and ``sum_k ||x_k||^4 = sum diag(X X^T)^2``,
also Gram quantities.

Scale: Gram entries are squares of the features and the shrinkage terms
their fourth powers, which leave float64's range long before the features
do. Every entry point of this module therefore reads the views through one
normalisation (:class:`_Normalisation`): the primal path's exact power-of-two
scale (:func:`~skicr.metrics.data_scale`, kept at 1 for data of safe
magnitude) and a common offset removed (ICR is invariant to both; constant
data then gives exact zeros). Everything computed in the span is in those
units; the attributes in the features' own units are converted back.

The Gram matrices are accumulated over column (feature) chunks of the views
(``gram_blocks``): each chunk's contrast rows and centred means are built
in float64, stacked, and added to one ``(n_r + N) x (n_r + N)`` Gram with a
symmetric rank-k update. Peak memory is then the Gram plus one chunk, instead
of several float64 copies of all ``d`` columns (at ``d = 65536`` and 4096
rows: 5.6 GiB before, a few hundred MiB now; see ``benchmarks/bench_dual.py``).
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from .._utils.interrupts import interruptible_if
from ._covariance import is_streaming_estimator, shrinkage_coefficient
from ._spectrum import eigenspace_snr, singular_ridge, tau_from_trace
from ._statistics import _working_scale, data_scale, residual_contrast_rows

__all__ = [
    "DualDecomposition", "dual_decompose", "dual_heldout_icr", "dual_mean_invariant_snr", "gram_blocks",
]

# an absolute ridge in normalised units is capped here (the primal path's cap)
_LARGEST_RIDGE = 1e300

# float64 bytes of one column chunk of the stacked contrast rows and means;
# large enough that each rank-k update runs at GEMM speed, small next to
# the Gram itself at the widths where the dual form is used
CHUNK_BYTES = 64 * 2**20


def _chunk_width(n_stacked, d, chunk_bytes):
    return int(min(d, max(64, chunk_bytes // (8 * n_stacked))))


@dataclass(frozen=True, eq=False)
class _Normalisation:
    """How the dual form reads views: ``(x - offset) / scale``, column chunk by chunk.

    ``scale`` is the primal path's power of two (exact; 1 for data of safe
    magnitude) and ``offset`` the first view of the first image: contrast rows
    and centred means do not change under a common offset, but constant data
    then gives exact zeros instead of round-off.
    """

    scale: float
    offset: np.ndarray  # (d,), already divided by scale

    @classmethod
    def of(cls, views):
        scale = _working_scale(data_scale(views))
        return cls(scale, np.asarray(views[0, 0], dtype=np.float64) * (1.0 / scale))

    def apply(self, chunk, start):
        """The float64 chunk ``views[:, :, start:start + w]`` in normalised units."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if self.scale != 1.0:
            chunk = chunk * (1.0 / self.scale)  # a float64 copy existed anyway
        return chunk - self.offset[start:start + chunk.shape[2]]

    def ridge(self, tau_abs):
        """An absolute ridge (features' units squared) in normalised units."""
        with np.errstate(over="ignore", under="ignore"):
            return float(min(tau_abs / np.float64(self.scale) ** 2, _LARGEST_RIDGE))

    def squared(self, value):
        """A normalised second moment (trace, ridge) back in the features' units squared."""
        with np.errstate(over="ignore", under="ignore"):
            return float(value * np.float64(self.scale) ** 2)


def _normalised_ridge(normalisation, trace_xi, d, tau, tau_mode):
    """The ridge in normalised units: relative to the (normalised) trace, or absolute, converted."""
    tau_abs = tau_from_trace(trace_xi, d, tau, tau_mode)  # validates tau and tau_mode
    return normalisation.ridge(tau_abs) if tau_mode == "absolute" else tau_abs


def _stacked_chunks(views, width, normalisation):
    """Column chunks ``(start, [R; M])`` of the contrast rows and centred means, float64, normalised."""
    n_images, n_views, d = views.shape
    n_rows = n_images * (n_views - 1)
    for start in range(0, d, width):
        chunk = normalisation.apply(views[:, :, start:start + width], start)
        block = np.empty((n_rows + n_images, chunk.shape[2]), dtype=np.float64)
        block[:n_rows] = residual_contrast_rows(chunk)
        means = chunk.mean(axis=1)
        means -= means.mean(axis=0)
        block[n_rows:] = means
        yield start, block


def _symmetric_rank_k(gram, block):
    """``gram += block @ block.T`` in place (lower triangle; Fortran-ordered ``gram``)."""
    # C-ordered (n, w) is Fortran (w, n): trans=1 gives block @ block.T
    return blas.dsyrk(1.0, block.T, beta=1.0, c=gram, trans=1, lower=1, overwrite_c=1)


def _stacked_gram(views, normalisation, chunk_bytes=CHUNK_BYTES):
    """``T T^T`` of the stacked rows ``T = [R; M]`` (normalised), built over column chunks."""
    n_images, n_views, d = views.shape
    n_stacked = n_images * n_views
    gram = np.zeros((n_stacked, n_stacked), dtype=np.float64, order="F")
    for _, block in _stacked_chunks(views, _chunk_width(n_stacked, d, chunk_bytes), normalisation):
        gram = _symmetric_rank_k(gram, block)
    # syrk filled the lower triangle only
    gram = np.tril(gram)
    gram += np.tril(gram, -1).T
    return np.ascontiguousarray(gram)


def gram_blocks(views, chunk_bytes=CHUNK_BYTES):
    """Gram matrices of the residual contrast rows ``R`` and centred means ``M``.

    Built over column chunks of ``views`` so that no float64 copy of all the
    features exists at once.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Grouped views, any float dtype (each chunk is converted to float64).
    chunk_bytes : int, default=CHUNK_BYTES
        Float64 bytes of one chunk of the stacked rows ``[R; M]``.

    Returns
    -------
    gram_r : ndarray of shape (n_rows, n_rows)
        ``R R^T`` with ``n_rows = n_images * (n_views - 1)``.
    cross : ndarray of shape (n_rows, n_images)
        ``R M^T``.
    gram_m : ndarray of shape (n_images, n_images)
        ``M M^T``.

    Notes
    -----
    In the features' own units (no normalisation), as the name promises; the
    dual solvers build their Grams from normalised views instead.
    """
    n_images, n_views, _ = views.shape
    n_rows = n_images * (n_views - 1)
    gram = _stacked_gram(views, _Normalisation(1.0, np.zeros(views.shape[2])), chunk_bytes)
    return gram[:n_rows, :n_rows].copy(), gram[:n_rows, n_rows:].copy(), gram[n_rows:, n_rows:].copy()


def _shrunk_form(estimator, gram, n_samples, n_features, dof, rows_per_group=1):
    """``(a, b, ||X||_F^2, shrinkage)`` of ``a X^T X + b I``, the estimator on rows X.

    Rows come in groups of ``rows_per_group`` (one image's contrasts, stored
    contrast-major); Ledoit-Wolf's fourth-moment term sums the squared
    Frobenius norms of the groups' Gram blocks, which no basis of a group's
    rows changes.
    """
    norm2 = float(np.trace(gram))
    if estimator is None:
        return 1.0 / dof, 0.0, norm2, 0.0
    frobenius2 = float(np.sum(gram**2)) / n_samples**2
    g = rows_per_group
    blocks = gram.reshape(g, n_samples // g, g, n_samples // g)
    fourth = float(np.sum(np.einsum("kili->ikl", blocks) ** 2))
    shrinkage = shrinkage_coefficient(
        estimator, n_samples, n_features, norm2 / n_samples, frobenius2, fourth, g,
    )
    # shrink at n_samples, then move to `dof` degrees of freedom
    scale = n_samples / dof
    a = (1.0 - shrinkage) / n_samples * scale
    b = shrinkage * norm2 / (n_samples * n_features) * scale
    return a, b, norm2, float(shrinkage)


def dual_mean_invariant_snr(views, tau_abs=None, *, tau=1e-3, tau_mode="relative", covariance_estimator=None):
    """``tr((Sigma_xi + tau I)^-1 Sigma_s) / d`` through ``(rows x rows)`` systems only.

    Agrees with the primal :func:`mean_invariant_snr` on the plug-in
    covariances (and with streaming shrinkage estimators) wherever both fit.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Validated grouped views.
    tau_abs : float or None, default=None
        Absolute ridge (in the features' units squared); when None it follows
        ``tau`` and ``tau_mode``.
    tau : float, default=1e-3
    tau_mode : {"relative", "absolute"}, default="relative"
    covariance_estimator : None or EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS
        Only estimators of the form ``a X^T X + b I`` have a dual form.

    Returns
    -------
    mean_snr : float

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import accumulate, decompose, dual_mean_invariant_snr
    >>> rng = np.random.default_rng(0)
    >>> # 300 features, more than the 60 rows
    >>> views = rng.normal(size=(20, 1, 300)) + rng.normal(size=(20, 3, 300))
    >>> primal = decompose(accumulate(views), spectrum=False).mean_snr
    >>> bool(np.isclose(dual_mean_invariant_snr(views), primal))
    True
    """
    if not is_streaming_estimator(covariance_estimator):
        raise ValueError(
            f"The dual (Gram) form supports None, EmpiricalCovariance, ShrunkCovariance, "
            f"LedoitWolf and OAS; got {type(covariance_estimator).__name__}."
        )
    n_images, n_views, d = views.shape
    n_rows = n_images * (n_views - 1)
    normalisation = _Normalisation.of(views)
    gram = _stacked_gram(views, normalisation)
    gram_r, cross, gram_m = gram[:n_rows, :n_rows], gram[:n_rows, n_rows:], gram[n_rows:, n_rows:]
    a_x, b_x, norm_r2, _ = _shrunk_form(
        covariance_estimator, gram_r, n_rows, d, n_rows, rows_per_group=views.shape[1] - 1,
    )
    a_s, b_s, norm_m2, _ = _shrunk_form(covariance_estimator, gram_m, n_images, d, n_images - 1)
    trace_xi = a_x * norm_r2 + d * b_x
    trace_s = a_s * norm_m2 + d * b_s
    if tau_abs is None:
        tau_abs = _normalised_ridge(normalisation, trace_xi, d, tau, tau_mode)
    else:
        tau_abs = normalisation.ridge(tau_from_trace(trace_xi, d, tau_abs, "absolute"))
    c = b_x + tau_abs
    if not c > np.finfo(np.float64).eps * max(trace_xi, trace_s) / d:
        c = b_x + tau_abs + singular_ridge(trace_xi, trace_s, d, tau_abs)
    kernel = a_x * gram_r
    kernel.flat[:: n_rows + 1] += c
    factor = interruptible_if(n_rows, lambda: linalg.cho_factor(kernel, check_finite=False))
    signal = norm_m2 - a_x * float(np.sum(cross * linalg.cho_solve(factor, cross, check_finite=False)))
    total = a_s * signal
    if b_s:
        inverse_trace = d - a_x * float(np.trace(linalg.cho_solve(factor, gram_r, check_finite=False)))
        total += b_s * inverse_trace
    return max(total / (c * d), 0.0)


# ---------------------------------------------------------------------------
# the whole decomposition in the span of the training rows
@dataclass(eq=False)
class DualDecomposition:
    """The invariant-residual decomposition of views wider than their rows.

    Every covariance of the dual form is ``a X^T X + b I`` with ``X`` rows of
    ``T = [R; M]``, so the generalized problem splits exactly into the span
    of the training rows (dimension ``rank <= n_images * n_views``), where it
    is solved in an orthonormal basis ``Q`` of that span, and its orthogonal
    complement, where both sides are multiples of the identity
    (``Sigma_s = b_s I``, ``Sigma_xi + tau I = c I``): one eigenvalue
    ``b_s / c`` of multiplicity ``d - rank`` (0 without shrinkage of Sigma_s).
    Nothing of size ``d x d`` is formed, and the basis ``Q = T^T C`` itself is
    never built either: directions and held-out coordinates go through the
    training views (kept by reference) and ``C``.

    Attributes
    ----------
    views : ndarray of shape (n_images, n_views, d)
        The training views (a reference, not a copy).
    coefficients : ndarray of shape (n_images * n_views, rank)
        ``C``: the orthonormal basis of the span is ``Q = T^T C``.
    span_eigenvalues : ndarray of shape (rank,)
        Eigenvalues in the span, descending.
    span_vectors : ndarray of shape (rank, rank)
        Their eigenvectors in the basis, one per column,
        ``a^T Q^T (Sigma_xi + tau I) Q a = 1``.
    complement_eigenvalue : float
        ``b_s / c``, the eigenvalue of every direction outside the span.
    complement_scale : float
        ``c``: ``Sigma_xi + tau I`` is ``c I`` outside the span (in the
        normalised units, like ``coefficients`` and ``span_vectors``).
    eigenvalues : ndarray of shape (d,)
        All ``d`` eigenvalues, descending.
    tau, mean_snr, icr, trace_s, trace_xi, shrinkage_s, shrinkage_xi : float
        As for the primal decomposition (``tau`` and the traces in the
        features' units squared).
    mean : ndarray of shape (d,)
        Mean of the image means.
    normalisation : _Normalisation
        How the training views were read (scale and offset); held-out views
        are read against the same span through it.
    scaled_traces : tuple of float
        ``(trace_s, trace_xi)`` in the normalised units (never over- or
        underflowing).
    """

    views: np.ndarray
    coefficients: np.ndarray
    span_eigenvalues: np.ndarray
    span_vectors: np.ndarray
    complement_eigenvalue: float
    complement_scale: float
    eigenvalues: np.ndarray
    tau: float
    mean_snr: float
    icr: float
    trace_s: float
    trace_xi: float
    shrinkage_s: float
    shrinkage_xi: float
    mean: np.ndarray
    normalisation: _Normalisation
    scaled_traces: tuple

    @property
    def invariant_share(self):
        """``trace_s / (trace_s + trace_xi)``, from the normalised traces (exact at any magnitude)."""
        trace_s, trace_xi = self.scaled_traces
        return trace_s / (trace_s + trace_xi) if trace_s + trace_xi > 0 else 0.0

    @property
    def rank(self):
        """Dimension of the span of the training rows."""
        return self.coefficients.shape[1]

    @property
    def n_features(self):
        """Features per view ``d``."""
        return self.views.shape[2]

    def directions(self, n_components=None, chunk_bytes=None):
        """The top Fisher directions in the span, one per row, ``v^T (Sigma_xi + tau I) v = 1``.

        Parameters
        ----------
        n_components : int or None
            How many; None gives all ``rank`` directions of the span.
        chunk_bytes : int or None
            Float64 bytes of one column chunk; None uses ``CHUNK_BYTES``.

        Returns
        -------
        directions : ndarray of shape (n_components, d)
        """
        k = self.rank if n_components is None else min(n_components, self.rank)
        weights = self.coefficients @ self.span_vectors[:, :k]  # w = T^T (C a)
        out = np.empty((k, self.n_features))
        n_stacked = self.coefficients.shape[0]
        width = _chunk_width(n_stacked, self.n_features, chunk_bytes or CHUNK_BYTES)
        for start, block in _stacked_chunks(self.views, width, self.normalisation):
            out[:, start:start + block.shape[1]] = weights.T @ block
        with np.errstate(over="ignore", under="ignore"):
            return out / self.normalisation.scale  # w^T x = (w scale)^T (x / scale)


def _basis_coefficients(gram):
    """``Y = U sqrt(L)`` and ``C = U / sqrt(L)`` of ``gram = U L U^T`` on its numerical range.

    The rows of ``T`` are ``Y Q^T`` in the orthonormal basis ``Q = T^T C`` of their span.
    """
    values, vectors = linalg.eigh(gram, check_finite=False, driver="evd")
    keep = values > max(values[-1], 0.0) * gram.shape[0] * np.finfo(np.float64).eps * 10
    values, vectors = values[keep][::-1], vectors[:, keep][:, ::-1]
    root = np.sqrt(values)
    return vectors * root, vectors / root


def dual_decompose(views, *, tau=1e-3, tau_mode="relative", covariance_estimator=None,
                   chunk_bytes=CHUNK_BYTES):
    """Spectrum, Fisher directions and ICR of wide views through ``(rows x rows)`` problems.

    Agrees with the primal decomposition (eigenvalues, directions up to the
    choice of basis inside degenerate eigenspaces, ICR) wherever both fit.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Validated grouped views.
    tau : float, default=1e-3
    tau_mode : {"relative", "absolute"}, default="relative"
    covariance_estimator : None or EmpiricalCovariance, ShrunkCovariance, LedoitWolf, OAS
    chunk_bytes : int, default=CHUNK_BYTES
        Float64 bytes of one column chunk (see ``gram_blocks``).

    Returns
    -------
    result : DualDecomposition
    """
    if not is_streaming_estimator(covariance_estimator):
        raise ValueError(
            f"The dual (Gram) form supports None, EmpiricalCovariance, ShrunkCovariance, "
            f"LedoitWolf and OAS; got {type(covariance_estimator).__name__}."
        )
    n_images, n_views, d = views.shape
    n_rows = n_images * (n_views - 1)
    normalisation = _Normalisation.of(views)
    gram = _stacked_gram(views, normalisation, chunk_bytes)
    a_x, b_x, norm_r2, shrinkage_xi = _shrunk_form(
        covariance_estimator, gram[:n_rows, :n_rows], n_rows, d, n_rows, rows_per_group=views.shape[1] - 1,
    )
    a_s, b_s, norm_m2, shrinkage_s = _shrunk_form(
        covariance_estimator, gram[n_rows:, n_rows:], n_images, d, n_images - 1,
    )
    trace_xi = a_x * norm_r2 + d * b_x
    trace_s = a_s * norm_m2 + d * b_s
    tau_abs = _normalised_ridge(normalisation, trace_xi, d, tau, tau_mode)
    c = b_x + tau_abs
    if not c > np.finfo(np.float64).eps * max(trace_xi, trace_s) / d:
        c = b_x + tau_abs + singular_ridge(trace_xi, trace_s, d, tau_abs)
    # the two LAPACK calls of order n_images * n_views, answered by Ctrl-C at once when large
    coordinates, coefficients = interruptible_if(gram.shape[0], lambda: _basis_coefficients(gram))
    del gram
    rank = coordinates.shape[1]
    y_r, y_m = coordinates[:n_rows], coordinates[n_rows:]
    residual = a_x * (y_r.T @ y_r)
    residual.flat[:: rank + 1] += c
    signal = a_s * (y_m.T @ y_m)
    signal.flat[:: rank + 1] += b_s
    span_eigenvalues, span_vectors = interruptible_if(
        rank, lambda: linalg.eigh(signal, residual, check_finite=False),
    )
    order = np.argsort(span_eigenvalues)[::-1]
    span_eigenvalues, span_vectors = np.clip(span_eigenvalues[order], 0.0, None), span_vectors[:, order]
    complement = b_s / c
    eigenvalues = np.sort(np.concatenate([span_eigenvalues, np.full(d - rank, complement)]))[::-1]
    mean_snr = float((span_eigenvalues.sum() + (d - rank) * complement) / d)
    return DualDecomposition(
        views=views,
        coefficients=coefficients,
        span_eigenvalues=span_eigenvalues,
        span_vectors=span_vectors,
        complement_eigenvalue=float(complement),
        complement_scale=float(c),
        eigenvalues=eigenvalues,
        tau=normalisation.squared(tau_abs),
        mean_snr=mean_snr,
        icr=float(1.0 / (1.0 + mean_snr)),
        trace_s=normalisation.squared(trace_s),
        trace_xi=normalisation.squared(trace_xi),
        shrinkage_s=shrinkage_s,
        shrinkage_xi=shrinkage_xi,
        mean=_mean_view(views, normalisation, chunk_bytes),
        normalisation=normalisation,
        scaled_traces=(float(trace_s), float(trace_xi)),
    )


def _mean_view(views, normalisation, chunk_bytes):
    """Mean of all views, feature by feature, without overflowing a float64 sum."""
    n_images, n_views, d = views.shape
    mean = np.empty(d)
    width = _chunk_width(n_images * n_views, d, chunk_bytes)
    for start in range(0, d, width):
        chunk = normalisation.apply(views[:, :, start:start + width], start)
        mean[start:start + chunk.shape[2]] = chunk.mean(axis=(0, 1)) + normalisation.offset[start:start + width]
    with np.errstate(over="ignore", under="ignore"):
        return mean * normalisation.scale


def dual_heldout_icr(decomposition, views, *, tau=1e-3, tau_mode="relative", chunk_bytes=CHUNK_BYTES):
    """Held-out ICR of new views for a :class:`DualDecomposition`, never forming ``d x d``.

    The new views' plain (unbiased empirical) covariances ``S_s'``, ``S_xi'``
    and ridge ``tau'`` (the fit's rule) are read along the training Fisher
    directions. Every eigenspace ``E`` of the training problem is scored as
    one block: with ``W_E`` a basis of ``E`` normalised by the training
    ``Sigma_xi + tau I``, it contributes ``dim E`` times

        tr(W_E^T S_s' W_E) / tr(W_E^T (S_xi' + tau' I) W_E),

    which depends on no choice of basis inside ``E``. A simple eigenvalue
    gives the usual Rayleigh quotient ``w^T S_s' w / w^T (S_xi' + tau' I) w``
    (the primal held-out score). Degenerate eigenspaces are what wide
    features bring: the ``d - rank`` directions outside the span of the
    training rows share one eigenvalue, and without shrinkage the directions
    of the span without invariant variance share the eigenvalue 0 (the two
    are one eigenspace then); scoring their directions one by one would
    depend on an arbitrary basis. Then

        ICR' = 1 / (1 + sum_E dim(E) ratio_E / d).

    Parameters
    ----------
    decomposition : DualDecomposition
        Fitted on the training views.
    views : ndarray of shape (n_images, n_views, n_features)
        Held-out views (validated; at least 2 images).
    tau : float, default=1e-3
    tau_mode : {"relative", "absolute"}, default="relative"
    chunk_bytes : int, default=CHUNK_BYTES

    Returns
    -------
    icr : float
    """
    d, rank = decomposition.n_features, decomposition.rank
    if views.shape[2] != d:
        raise ValueError(f"views have {views.shape[2]} features per view; the fit had {d}.")
    n_images, n_views, _ = views.shape
    n_rows = n_images * (n_views - 1)
    n_stacked = n_rows + n_images
    training = decomposition.views
    n_training = decomposition.coefficients.shape[0]
    # coordinates in Q = T^T C: T' Q = (T' T^T) C, the cross-Gram over column chunks
    cross = np.zeros((n_stacked, n_training))
    norms = np.zeros(n_stacked)
    width = _chunk_width(n_stacked + n_training, d, chunk_bytes)
    # held-out views in their own power-of-two units: each of the scores below is a
    # ratio of two of their second moments, so one common factor cancels (the ridge
    # is converted to match); the training rows keep the fit's units
    normalisation = _Normalisation.of(views)
    chunks = zip(_stacked_chunks(views, width, normalisation),
                 _stacked_chunks(training, width, decomposition.normalisation))
    for (start, block), (_, train_block) in chunks:
        cross += block @ train_block.T
        norms += np.einsum("ij,ij->i", block, block)
    coordinates = cross @ decomposition.coefficients
    del cross
    y_r, y_m = coordinates[:n_rows], coordinates[n_rows:]
    norm_r2, norm_m2 = float(norms[:n_rows].sum()), float(norms[n_rows:].sum())
    tau_abs = _normalised_ridge(normalisation, norm_r2 / n_rows, d, tau, tau_mode)
    vectors = decomposition.span_vectors  # directions w_i = Q a_i
    signal = np.sum((y_m @ vectors) ** 2, axis=0) / (n_images - 1)
    noise = np.sum((y_r @ vectors) ** 2, axis=0) / n_rows + tau_abs * np.sum(vectors**2, axis=0)
    eigenvalues, dims = decomposition.span_eigenvalues, np.ones(rank)
    if d > rank:
        # outside the span: B = c I, so W = (orthonormal basis) / sqrt(c); the d - rank
        # directions share one eigenvalue and enter as one entry holding their traces
        c = decomposition.complement_scale
        outside_s = max(norm_m2 - float(np.sum(y_m**2)), 0.0) / (n_images - 1) / c
        outside_xi = (max(norm_r2 - float(np.sum(y_r**2)), 0.0) / n_rows + tau_abs * (d - rank)) / c
        eigenvalues = np.append(eigenvalues, decomposition.complement_eigenvalue)
        order = np.argsort(-eigenvalues, kind="stable")
        eigenvalues, dims = eigenvalues[order], np.append(dims, d - rank)[order]
        signal, noise = np.append(signal, outside_s)[order], np.append(noise, outside_xi)[order]
    snr = eigenspace_snr(eigenvalues, signal, noise)
    return float(1.0 / (1.0 + float(np.dot(dims, snr)) / d))
