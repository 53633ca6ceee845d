"""Streaming, mergeable sufficient statistics of grouped views.

For image ``i`` with views ``h_iv`` (``v = 1..V``) the invariant estimate is the
group mean ``m_i`` and the residual is ``xi_iv = h_iv - m_i``. Everything the
covariances (and the Ledoit-Wolf / OAS shrinkage) need is a handful of power
sums that add across chunks of whole images, so chunks can be fed in any order,
merged, or all-reduced across processes, and give exactly the one-pass result.

Residual rows: each image's ``V`` views times an orthonormal contrast
``(V - 1, V)`` (rows orthonormal and orthogonal to the all-ones vector) give
``V - 1`` rows whose scatter equals the image's residual scatter. ``N (V - 1)`` such rows carry the within-image covariance at its true
degrees of freedom, so any covariance estimator fitted on them with
``assume_centered=True`` sees the right sample size.

Scale: ICR is scale-invariant, but squares and fourth powers of raw features
leave float64's range long before the features do (fourth powers at
``|x| ~ 1e77``, squares under ``1e-154``). So every chunk is multiplied by a
power of two, ``1 / scale``, chosen from the largest magnitude seen
(:func:`data_scale`); power-of-two scaling is exact, so results equal the
unscaled computation wherever that one is representable. The power sums are
held in units of ``scale``; chunks of a larger magnitude rescale the
accumulator (again by a power of two) instead of overflowing.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from .._utils.distributed import collective_device
from .._utils.interrupts import deferred_interrupts
from .._utils.threads import one_blas_thread, statistics_workers

__all__ = ["GroupedViewStatistics", "data_scale", "residual_contrast_rows"]

# a chunk whose largest magnitude exceeds the accumulator's scale by more than
# this factor rescales the accumulator (below it, squares stay far from overflow)
_RESCALE_ABOVE = 2.0**16
# magnitudes whose fourth powers (times N d^2) stay normal float64 numbers:
# data within them is used as it is (scale 1, no extra pass over it)
_SAFE_MAGNITUDES = (2.0**-200, 2.0**200)
# the largest magnitudes whose data_scale lies in _SAFE_MAGNITUDES (scale 1):
# data_scale(x) = 2**e with 2**(e - 1) <= x < 2**e
_UNSCALED_RANGE = (2.0**-201, 2.0**200)
# images per block of the one-pass update: a block of views and its contrast
# rows stay in the core's cache from the first read to the rank-k update
_BLOCK_BYTES = 2**20
# views per batch of the rank-k updates: enough rows for dsyrk's full speed
_BATCH_BYTES = 16 * 2**20
# batches of one update at least (data permitting): the threads' units of work
_MIN_BATCHES = 4
# images per chunk of the scaled (two-pass) update, so that its float64
# temporaries stay near 32 MiB
_CHUNK_BYTES = 32 * 2**20


def _working_scale(chunk_scale):
    low, high = _SAFE_MAGNITUDES
    return 1.0 if low <= chunk_scale <= high else chunk_scale


def data_scale(values):
    """Power of two near the largest magnitude of ``values`` (1.0 for all zeros).

    The one normalisation of the numerical core: dividing by it is exact and
    brings every entry into ``[-1, 1]``, so squares and fourth powers of the
    features stay within float64's range whatever their magnitude.

    Parameters
    ----------
    values : ndarray
        Finite numbers.

    Returns
    -------
    scale : float
        ``2**k`` with ``max|values| <= scale < 2 max|values|``.

    Raises
    ------
    ValueError
        If ``values`` holds NaN or infinite values.
    """
    values = np.asarray(values)
    if values.size == 0:
        return 1.0
    largest = max(float(np.max(values)), -float(np.min(values)))
    if not np.isfinite(largest):
        raise ValueError("Views contain NaN or infinite values; features must be finite.")
    if largest == 0.0:
        return 1.0
    _, exponent = np.frexp(largest)  # largest = mantissa * 2**exponent, mantissa in [0.5, 1)
    return float(np.ldexp(1.0, int(exponent)))


def _image_contrasts(views, inverse_scale=1.0):
    """Image means and orthonormal residual contrasts, image-major, in a few passes.

    With ``D_v = h_v - h_1`` (``v = 2..V``: differences to the image's first
    view, exact zeros for constant data) and ``P = I - 11^T / V``, the
    residual scatter is ``D^T P D``. The rows ``P^(1/2) D``, with
    ``P^(1/2) = I - c 11^T`` and ``c = (1 - 1 / sqrt(V)) / (V - 1)``, are
    ``D_v - c sum_w D_w``: ``V - 1`` orthonormal contrasts of the views
    (orthogonal to the all-ones vector), formed by elementwise passes instead
    of a skinny GEMM, in the data's own layout. The mean is
    ``h_1 + sum_w D_w / V``.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
    inverse_scale : float, default=1.0
        Power of two the views are multiplied by first (exact).

    Returns
    -------
    means : ndarray of shape (n_images, n_features)
    rows : ndarray of shape (n_images, n_views - 1, n_features)
        ``sum_k rows[i, k] rows[i, k]^T == sum_v xi_iv xi_iv^T``.
    """
    n_images, n_views, n_features = views.shape
    first = views[:, :1, :]
    rows = np.subtract(views[:, 1:, :], first, dtype=np.float64)
    reference = np.asarray(first[:, 0, :], dtype=np.float64)
    if inverse_scale != 1.0:
        rows *= inverse_scale
        reference = reference * inverse_scale
    if n_views == 1:
        return reference.copy(), rows
    total = rows.sum(axis=1)
    means = reference + total / n_views
    c = (1.0 - 1.0 / np.sqrt(n_views)) / (n_views - 1)
    rows -= (c * total)[:, None, :]
    return means, rows


def _image_gram_fourth(rows):
    """``sum_i ||R_i R_i^T||_F^2`` over images for contrast rows ``(N, V - 1, d)``.

    ``R_i R_i^T`` is the ``(V - 1) x (V - 1)`` Gram matrix of image ``i``'s
    contrasts; its Frobenius norm equals that of the image's residual scatter
    ``sum_v xi_iv xi_iv^T``, so the sum does not depend on the contrast basis
    (nor on the order of the views). One pass: each image's rows stay in cache.
    """
    if rows.shape[1] == 0:
        return 0.0
    gram = np.einsum("ikd,imd->ikm", rows, rows)
    return float(np.sum(gram * gram))


class _BatchBuffers:
    """Work arrays of one batch of the blocked update (one set per thread, reused)."""

    def __init__(self, n_images, n_views, n_features):
        self.contrasts = np.empty((n_images, n_views - 1, n_features))
        self.means = np.empty((n_images, n_features))
        self.mean_scatter = np.empty((n_features, n_features))
        self.residual_scatter = np.zeros((n_features, n_features))  # stays 0 for one view


class _BatchSums:
    """Power sums of one batch of images."""

    _ARRAYS = ("mean_scatter", "residual_scatter", "mean_sum", "mean_cubic")
    _SCALARS = ("mean_fourth", "residual_fourth")

    def __init__(self, **values):
        self.__dict__.update(values)

    @classmethod
    def zeros(cls, n_features):
        """Sums of no images, to add batches to (their arrays live in reused buffers)."""
        d = n_features
        return cls(mean_scatter=np.zeros((d, d)), residual_scatter=np.zeros((d, d)),
                   mean_sum=np.zeros(d), mean_cubic=np.zeros(d), mean_fourth=0.0,
                   residual_fourth=0.0, largest=0.0)

    def add(self, other):
        """Add ``other`` in place (the order of additions fixes the rounding)."""
        for name in self._ARRAYS:
            getattr(self, name).__iadd__(getattr(other, name))
        for name in self._SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.largest = max(self.largest, other.largest)
        return self


def _batch_power_sums(views, block, shift, fourth, buffers):
    """Power sums of a batch of views about ``shift``; None if a magnitude is unsafe.

    Blocks of ``block`` images are read once each: their largest magnitude,
    the orthonormal contrasts (the operations of :func:`_image_contrasts`),
    the image means and the per-image Gram fourth moment are formed while the
    block is in cache; the batch's two symmetric rank-k updates follow.
    """
    m, n_views, d = views.shape
    contrasts, centred_means = buffers.contrasts[:m], buffers.means[:m]
    c = (1.0 - 1.0 / np.sqrt(n_views)) / (n_views - 1) if n_views > 1 else 0.0
    largest = residual_fourth = 0.0
    for start in range(0, m, block):
        chunk = views[start:start + block]
        k = chunk.shape[0]
        top = max(float(chunk.max()), -float(chunk.min()))
        if not (top == 0.0 or _UNSCALED_RANGE[0] <= top < _UNSCALED_RANGE[1]):
            return None  # NaN fails too
        largest = max(largest, top)
        y = centred_means[start:start + k]
        if n_views > 1:
            rows = contrasts[start:start + k]
            np.subtract(chunk[:, 1:, :], chunk[:, :1, :], out=rows, dtype=np.float64)
            total = np.sum(rows, axis=1, out=y)
            rows -= (c * total)[:, None, :]
            np.divide(total, n_views, out=y)
            y += chunk[:, 0, :]
            if fourth:
                residual_fourth += _image_gram_fourth(rows)
        else:
            y[...] = chunk[:, 0, :]
        y -= shift
    y = centred_means
    # numpy computes ``A.T @ A`` with one symmetric rank-k update (dsyrk) and,
    # unlike scipy's dsyrk wrapper, releases the GIL, so batches run in parallel
    residual = buffers.residual_scatter
    if n_views > 1:
        flat = contrasts.reshape(m * (n_views - 1), d)
        np.matmul(flat.T, flat, out=residual)
    mean_scatter = np.matmul(y.T, y, out=buffers.mean_scatter)
    if fourth:
        sq = np.einsum("ij,ij->i", y, y)
        mean_cubic, mean_fourth = sq @ y, float(sq @ sq)
    else:
        mean_cubic, mean_fourth = np.zeros(d), 0.0
    return _BatchSums(
        mean_scatter=mean_scatter, residual_scatter=residual, mean_sum=y.sum(axis=0),
        mean_cubic=mean_cubic, mean_fourth=mean_fourth, residual_fourth=residual_fourth,
        largest=largest,
    )


@contextmanager
def _statistics_threads(workers):
    """A ``map`` over ``workers`` threads with one BLAS thread each (the builtin for one)."""
    if workers <= 1:
        yield map
        return
    with one_blas_thread(), ThreadPoolExecutor(workers, thread_name_prefix="skicr-stats") as pool:
        yield pool.map


def residual_contrast_rows(views):
    """Rows whose scatter is the within-image (residual) scatter, at N(V-1) dof.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Grouped views.

    Returns
    -------
    rows : ndarray of shape (n_images * (n_views - 1), n_features)
        ``rows.T @ rows == sum_iv xi_iv xi_iv^T``; each image contributes
        ``n_views - 1`` orthonormal contrasts of its views (ordered by
        contrast, then image). No scatter or fourth-moment sum of skicr
        depends on which orthonormal contrasts they are.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import residual_contrast_rows
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(10, 4, 3))
    >>> rows = residual_contrast_rows(views)
    >>> rows.shape                          # N (V - 1) rows
    (30, 3)
    >>> xi = views - views.mean(axis=1, keepdims=True)
    >>> bool(np.allclose(rows.T @ rows, np.einsum("ivj,ivk->jk", xi, xi)))
    True
    """
    n_images, n_views, n_features = views.shape
    _, rows = _image_contrasts(np.asarray(views))
    return np.ascontiguousarray(rows.transpose(1, 0, 2)).reshape(n_images * (n_views - 1), n_features)


def principal_contrast_rows(views):
    """Residual rows in each image's principal basis: independent of view order.

    Each image's ``V - 1`` contrast rows ``R_i`` are rotated to ``U_i^T R_i``
    with ``R_i R_i^T = U_i L_i U_i^T``: mutually orthogonal rows with the same
    scatter, in decreasing norm, each signed so that its largest entry is
    positive. Permuting the views of an image (or choosing another contrast
    basis) rotates ``R_i`` and leaves these rows unchanged (up to ties), so
    an estimator fitted on them does not depend on the order of the views.

    Parameters
    ----------
    views : ndarray of shape (n_images, n_views, n_features)
        Grouped views.

    Returns
    -------
    rows : ndarray of shape (n_images * (n_views - 1), n_features)
        Ordered by image, then by decreasing norm.
    """
    n_images, n_views, n_features = views.shape
    _, rows = _image_contrasts(np.asarray(views))  # (N, V-1, d)
    gram = rows @ rows.transpose(0, 2, 1)
    _, basis = np.linalg.eigh(gram)  # ascending eigenvalues per image
    principal = basis[:, :, ::-1].transpose(0, 2, 1) @ rows
    flat = principal.reshape(-1, n_features)
    largest = np.argmax(np.abs(flat), axis=1)
    signs = np.sign(flat[np.arange(flat.shape[0]), largest])
    signs[signs == 0] = 1.0
    return flat * signs[:, None]


def _shift_power_sums(n, s1, s2, s3, s4, delta):
    """Re-express power sums of ``y`` as power sums of ``y + delta``.

    With ``a = ||y||^2``: ``s1 = sum y``, ``s2 = sum y y^T``, ``s3 = sum a y``,
    ``s4 = sum a^2``. Exact algebra; used to merge accumulators that were
    centred at different points and to centre at the final mean.
    """
    # numpy scalars, not Python floats: an overflow gives inf (caught later),
    # never a raw OverflowError
    dd = np.float64(delta @ delta)
    s2_delta = s2 @ delta
    tr2 = np.float64(np.trace(s2))
    d_s1 = np.float64(delta @ s1)
    new_s4 = (
        s4
        + 4.0 * np.float64(delta @ s2_delta)
        + n * dd**2
        + 4.0 * np.float64(delta @ s3)
        + 2.0 * dd * tr2
        + 4.0 * dd * d_s1
    )
    new_s3 = s3 + 2.0 * s2_delta + dd * s1 + delta * (tr2 + 2.0 * d_s1 + n * dd)
    outer = np.outer(delta, s1)
    new_s2 = s2 + outer + outer.T + n * np.outer(delta, delta)
    new_s1 = s1 + n * delta
    return new_s1, new_s2, new_s3, new_s4


def _physical_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_statistics_fit_in_memory(n_features):
    """Refuse ``d x d`` statistics that cannot fit, before the OS kills the process.

    numpy's zeros are lazy: a too-large allocation only fails (or summons the
    OOM killer) once the first update touches it, long after the cause.
    """
    needed = 2 * 8 * n_features**2  # the two float64 scatter matrices
    total = _physical_memory()
    if total is not None and needed > total / 2:
        raise MemoryError(
            f"{n_features} features per view need {needed / 2**30:.1f} GiB for the two d x d "
            f"statistics alone (the fit needs several times that), more than half of this "
            f"machine's {total / 2**30:.1f} GiB. For wide features (flattened feature maps) use "
            "the dual form, skicr.metrics.icr_score(views, method='dual'), whose memory depends "
            "on the number of rows instead of d, or pool the feature maps (pooling='mean')."
        )


class GroupedViewStatistics:
    """Exact, mergeable sufficient statistics of grouped views (float64).

    Parameters
    ----------
    n_features : int or None, default=None
        Feature dimension; taken from the first chunk when None.
    n_views : int or None, default=None
        Views per image; taken from the first chunk when None.
    fourth_moments : bool, default=True
        Accumulate the cubic and fourth-moment sums (only Ledoit-Wolf
        shrinkage needs them; see
        :func:`~skicr.metrics.needs_fourth_moments`). False skips that work
        (about a tenth of an update) and leaves ``mean_cubic``,
        ``mean_fourth`` and ``residual_fourth`` NaN, "not accumulated"; merged
        with statistics that have them, the result has none.

    Attributes
    ----------
    n_images : int
        Number of images seen.
    scale : float
        Power of two the views are divided by before any power sum (see
        :func:`data_scale`); every array below is in units of it.
    residual_scatter : ndarray of shape (n_features, n_features)
        ``sum_iv xi_iv xi_iv^T / scale**2``.
    residual_fourth : float
        ``sum_i ||sum_v xi_iv xi_iv^T||_F^2 / scale**4``, the per-image
        fourth-moment sum of the Ledoit-Wolf shrinkage of Sigma_xi (it does not
        depend on the order of the views).
    shift : ndarray of shape (n_features,)
        Point (in units of ``scale``) the image-mean power sums are taken about.

    Notes
    -----
    ``update`` takes chunks of whole images; ``merge`` adds another accumulator;
    ``all_reduce`` sums the statistics across ``torch.distributed`` processes
    (one all-reduce of a packed buffer, not an all-gather). The covariance
    methods return original units; :meth:`normalised_moments` gives the
    scaled ones, which stay representable for features of any magnitude.

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.metrics import GroupedViewStatistics, accumulate
    >>> rng = np.random.default_rng(0)
    >>> views = rng.normal(size=(100, 4, 8))
    >>> stats = GroupedViewStatistics().update(views[:60]).update(views[60:])
    >>> stats.n_images
    100
    >>> whole = accumulate(views)
    >>> bool(np.allclose(stats.residual_scatter, whole.residual_scatter))
    True

    Statistics of separate chunks (or processes) merge exactly:

    >>> merged = accumulate(views[:30]).merge(accumulate(views[30:]))
    >>> bool(np.allclose(merged.residual_scatter, whole.residual_scatter))
    True
    """

    _SCATTER_POWERS = {
        "shift": 1, "mean_sum": 1, "mean_scatter": 2, "mean_cubic": 3, "mean_fourth": 4,
        "residual_scatter": 2, "residual_fourth": 4,
    }

    def __init__(self, n_features=None, n_views=None, *, fourth_moments=True):
        self.n_features = n_features
        self.n_views = n_views
        self.fourth_moments = bool(fourth_moments)
        self.n_images = 0
        self.shift = None
        self.scale = None
        if n_features is not None:
            self._allocate(n_features)

    def _allocate(self, n_features):
        self.n_features = int(n_features)
        d = self.n_features
        _check_statistics_fit_in_memory(d)
        self.shift = np.zeros(d)
        self.mean_sum = np.zeros(d)  # sum (m_i - shift)
        self.mean_scatter = np.zeros((d, d))  # sum (m_i - shift)(m_i - shift)^T
        self.mean_cubic = np.zeros(d)  # sum ||m_i - shift||^2 (m_i - shift)
        self.mean_fourth = 0.0  # sum ||m_i - shift||^4
        self.residual_scatter = np.zeros((d, d))
        self.residual_fourth = 0.0
        if not self.fourth_moments:  # NaN: not accumulated (and it stays so when added to)
            self.mean_cubic[:] = np.nan
            self.mean_fourth = self.residual_fourth = np.nan

    def _rescale_to(self, new_scale):
        """Express the accumulator in units of ``new_scale`` (a power of two: exact)."""
        if self.scale is None or self.scale == new_scale:
            self.scale = new_scale
            return
        ratio = np.float64(self.scale) / np.float64(new_scale)
        with np.errstate(under="ignore"):
            for name, power in self._SCATTER_POWERS.items():
                value = getattr(self, name)
                factor = ratio**power
                setattr(self, name, value * factor if isinstance(value, np.ndarray) else float(value) * factor)
        self.scale = new_scale

    def _scale_for(self, largest):
        """The accumulator's scale once a chunk of largest magnitude ``largest`` is added."""
        chunk_scale = data_scale(np.array([largest]))
        if self.scale is None or self.n_images == 0 or not getattr(self, "largest", 1.0):
            # nothing (or only zeros) accumulated yet: the chunk decides
            return _working_scale(chunk_scale)
        if chunk_scale > self.scale * _RESCALE_ABOVE:
            return _working_scale(chunk_scale)
        return self.scale

    # ------------------------------------------------------------------ update
    def update(self, views):
        """Add a chunk of whole images.

        Parameters
        ----------
        views : ndarray of shape (n_images, n_views, n_features)
            Validated, finite grouped views.

        Returns
        -------
        self : GroupedViewStatistics
        """
        views = np.asarray(views)
        if views.ndim != 3:
            raise ValueError(f"update expects 3-D views, got shape {views.shape}.")
        n, n_views, d = views.shape
        if self.n_features is None:
            self._allocate(d)
        if d != self.n_features:
            raise ValueError(
                f"Chunk has {d} features per view but the statistics hold {self.n_features}."
            )
        if self.n_views is None:
            self.n_views = n_views
        if n_views != self.n_views:
            raise ValueError(
                f"Chunk has {n_views} views per image but the statistics hold {self.n_views}."
            )
        if n == 0:
            return self
        if self._update_in_blocks(views):
            return self
        step = max(1, _CHUNK_BYTES // (8 * n_views * d))
        for start in range(0, n, step):
            self._update_scaled(views[start:start + step])
        return self

    def _update_in_blocks(self, views):
        """One pass over views of safe magnitude; False (nothing changed) otherwise.

        The views are read once, a block of images at a time: its largest
        magnitude, the orthonormal contrasts (the operations of
        :func:`_image_contrasts`), the image means and the per-image Gram
        fourth moment are computed while the block is in cache, into buffers
        of a batch of images whose two symmetric rank-k updates (BLAS
        ``dsyrk``, as many rows as ``X.T @ X`` has) follow. So
        the update costs the flops of one ``X.T @ X`` plus one read of the
        data. Views that need a scale other than 1 (magnitudes beyond
        :data:`_SAFE_MAGNITUDES`, or an accumulator already scaled), or that
        hold NaN or infinite values, return False before any statistic is
        changed; the caller then takes the scaled route
        (:meth:`_update_scaled`).

        Below :data:`~skicr._utils.threads.SMALL_MATRIX_FEATURES` columns the
        batches run on :func:`~skicr._utils.threads.statistics_workers`
        threads, each with one BLAS thread, and their sums are added in batch
        order. The batches depend on the data's shape only, so the result is
        the same to the last bit for any number of threads; and threads that
        wait for each other block instead of spinning, so sharing the cores
        with other processes costs no more than running on one thread.
        """
        if self.scale not in (None, 1.0):
            return False
        n, n_views, d = views.shape
        block = max(1, _BLOCK_BYTES // (8 * n_views * d))
        batch = block * max(1, _BATCH_BYTES // (8 * n_views * d * block))
        # at least _MIN_BATCHES batches where the data has that many blocks, so
        # that small fits can use more than one core too
        batch = min(batch, block * max(1, -(-n // (block * _MIN_BATCHES))))
        shift = self.shift if self.n_images else None
        if shift is None:  # NaN here fails the magnitude check of the first batch
            shift = _image_contrasts(views[:1])[0][0]
        starts = range(0, n, batch)
        workers = min(statistics_workers(d, n * n_views), len(starts))
        buffers = [_BatchBuffers(min(batch, n), n_views, d) for _ in range(workers)]
        fourth = self.fourth_moments

        def batch_sums(slot, start):
            return _batch_power_sums(views[start:start + batch], block, shift, fourth, buffers[slot])

        total = _BatchSums.zeros(d)
        with _statistics_threads(workers) as parallel_map:
            for round_start in range(0, len(starts), workers):
                round_starts = starts[round_start:round_start + workers]
                # in batch order, whatever the number of threads
                for part in parallel_map(batch_sums, range(len(round_starts)), round_starts):
                    if part is None:
                        return False  # NaN or a magnitude beyond the safe range
                    total.add(part)
        with deferred_interrupts():  # one commit that an interrupt cannot split
            if self.scale is None:
                self.scale = 1.0
            self.largest = max(getattr(self, "largest", 0.0), total.largest)
            if self.n_images == 0:
                self.shift = shift
            self.mean_sum += total.mean_sum
            self.mean_scatter += total.mean_scatter
            self.mean_cubic += total.mean_cubic
            self.mean_fourth += total.mean_fourth
            self.residual_scatter += total.residual_scatter
            self.residual_fourth += total.residual_fourth
            self.n_images += n
        return True

    def _update_scaled(self, views):
        """Add a chunk of whole images at a scale chosen from its largest magnitude (two passes)."""
        n, n_views, d = views.shape
        largest = max(float(np.max(views)), -float(np.min(views)))
        if not np.isfinite(largest):
            raise ValueError("Views contain NaN or infinite values; features must be finite.")
        # the chunk's sums first (the long part: Ctrl-C leaves the accumulator as it was) ...
        scale = self._scale_for(largest)
        means, rows = _image_contrasts(views, 1.0 / scale)
        # centre the power sums on the first image's mean: near the data, so the
        # centring at the end cancels no large numbers, and exactly on it for
        # constant data
        first = self.n_images == 0
        if first:
            shift = means[0].copy()
        else:
            with np.errstate(under="ignore"):  # as _rescale_to does
                shift = self.shift * (np.float64(self.scale) / np.float64(scale))
        y = means - shift
        increments = {"mean_sum": y.sum(axis=0), "mean_scatter": y.T @ y}
        flat = rows.reshape(-1, d)
        increments["residual_scatter"] = flat.T @ flat  # one symmetric rank-k update
        if self.fourth_moments:
            sq = np.einsum("ij,ij->i", y, y)
            increments.update(mean_cubic=sq @ y, mean_fourth=float(sq @ sq),
                              residual_fourth=_image_gram_fourth(rows))
        # ... then one commit that an interrupt cannot split: the chunk is in, or not
        with deferred_interrupts():
            self._rescale_to(scale)
            if first:
                self.shift = shift
            for name, increment in increments.items():
                if isinstance(increment, np.ndarray):
                    getattr(self, name).__iadd__(increment)
                else:
                    setattr(self, name, getattr(self, name) + increment)
            self.n_images += n
            self.largest = max(getattr(self, "largest", 0.0), largest)
        return self

    def _recentred(self, new_shift):
        delta = self.shift - new_shift
        return _shift_power_sums(
            self.n_images, self.mean_sum, self.mean_scatter, self.mean_cubic,
            self.mean_fourth, delta,
        )

    def _set_shift(self, new_shift):
        s1, s2, s3, s4 = self._recentred(new_shift)
        self.mean_sum, self.mean_scatter, self.mean_cubic, self.mean_fourth = s1, s2, s3, s4
        self.shift = np.array(new_shift, dtype=np.float64)

    def _check_compatible(self, other):
        for name in ("n_features", "n_views"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"Cannot merge statistics with {name} {mine} and {theirs}.")

    def merge(self, other):
        """Add the statistics of ``other`` (disjoint images) into ``self``.

        Parameters
        ----------
        other : GroupedViewStatistics
            Statistics of other images.

        Returns
        -------
        self : GroupedViewStatistics
        """
        self._check_compatible(other)
        if other.n_images == 0:
            return self
        if self.n_images == 0:
            self.__dict__.update(other.copy().__dict__)
            return self
        other = other.copy()
        self.fourth_moments = self.fourth_moments and other.fourth_moments
        common = max(self.scale, other.scale)
        other._rescale_to(common)
        with np.errstate(under="ignore"):  # as _rescale_to does
            shift = self.shift * (np.float64(self.scale) / np.float64(common))
        s1, s2, s3, s4 = other._recentred(shift)
        with deferred_interrupts():  # all of other is added, or none of it
            self._rescale_to(common)
            self.mean_sum += s1
            self.mean_scatter += s2
            self.mean_cubic += s3
            self.mean_fourth += s4
            self.residual_scatter += other.residual_scatter
            self.residual_fourth += other.residual_fourth
            self.n_images += other.n_images
        return self

    def copy(self):
        """Return an independent copy.

        Returns
        -------
        stats : GroupedViewStatistics
            A deep copy of the arrays and counts.
        """
        new = GroupedViewStatistics.__new__(GroupedViewStatistics)
        new.__dict__.update(
            {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        )
        return new

    def all_reduce(self, group=None):
        """Sum the statistics over all processes of a ``torch.distributed`` group.

        Every rank must have called ``update`` with the same ``n_features`` and
        ``n_views`` (a rank may hold zero images). Ranks first agree on a
        common scale (the largest) and centring point (rank 0's), then one SUM
        all-reduce of a packed float64 buffer adds everything. Afterwards
        every rank holds the totals. The buffers travel on the CPU for gloo and
        on the current CUDA device for NCCL.

        Parameters
        ----------
        group : torch.distributed.ProcessGroup or None
            Process group; the default group when None.

        Returns
        -------
        self : GroupedViewStatistics
        """
        GroupedViewStatistics.all_reduce_many([self], group)
        return self

    @staticmethod
    def all_reduce_many(statistics, group=None):
        """Sum several accumulators over the processes of a group, with one SUM all-reduce.

        The per-fold statistics of a streamed cross-validation, for example:
        accumulator ``k`` of every rank is added to accumulator ``k`` of the
        others. Three collectives whatever the number of accumulators: a MAX
        all-reduce of their scales, a broadcast of rank 0's centring points
        and one SUM all-reduce of all of them packed in one float64 buffer.
        Each accumulator is summed in place, as :meth:`all_reduce` does.

        Parameters
        ----------
        statistics : list of GroupedViewStatistics
            The same number on every rank, in the same order, each with
            ``n_features`` set (construct with ``n_features=`` on a rank that
            saw no images).
        group : torch.distributed.ProcessGroup or None
            Process group; the default group when None.

        Returns
        -------
        statistics : list of GroupedViewStatistics
            The same objects, now holding the totals.
        """
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("torch.distributed is not initialised; call init_process_group first.")
        statistics = list(statistics)
        for stats in statistics:
            if stats.n_features is None:
                raise ValueError(
                    "all_reduce needs n_features; construct with n_features= on empty ranks."
                )
        if not statistics:
            return statistics
        device = collective_device(group)
        # the largest scale of all ranks (an empty rank offers the smallest)
        tiny = np.finfo(np.float64).tiny
        own = [s.scale if (s.scale is not None and s.n_images) else tiny for s in statistics]
        scales = torch.tensor(own, dtype=torch.float64, device=device)
        dist.all_reduce(scales, op=dist.ReduceOp.MAX, group=group)
        for stats, scale in zip(statistics, scales.cpu().tolist()):
            stats._rescale_to(float(scale))
        # rank 0 chooses each common centre (the mean of its images)
        shifts = torch.from_numpy(np.concatenate([s._mean_or_shift() for s in statistics])).to(device)
        dist.broadcast(shifts, src=dist.get_global_rank(group, 0) if group is not None else 0,
                       group=group)
        shifts = shifts.cpu().numpy()
        offset = 0
        packed = []
        for stats in statistics:
            d = stats.n_features
            stats._set_shift(shifts[offset:offset + d].copy())
            offset += d
            header = np.array([stats.n_images, stats.mean_fourth, stats.residual_fourth],
                              dtype=np.float64)
            packed += [header, stats.mean_sum, stats.mean_cubic,
                       stats.mean_scatter.ravel(), stats.residual_scatter.ravel()]
        buffer = torch.from_numpy(np.concatenate(packed)).to(device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
        total = buffer.cpu().numpy()
        offset = 0
        for stats in statistics:
            d = stats.n_features
            stats.n_images = int(round(total[offset]))
            stats.mean_fourth, stats.residual_fourth = float(total[offset + 1]), float(total[offset + 2])
            # a rank without fourth moments (NaN) leaves the totals without them
            stats.fourth_moments = not (np.isnan(stats.mean_fourth) or np.isnan(stats.residual_fourth))
            offset += 3
            stats.mean_sum = total[offset:offset + d].copy(); offset += d
            stats.mean_cubic = total[offset:offset + d].copy(); offset += d
            stats.mean_scatter = total[offset:offset + d * d].reshape(d, d).copy(); offset += d * d
            stats.residual_scatter = total[offset:offset + d * d].reshape(d, d).copy(); offset += d * d
        return statistics

    def _mean_or_shift(self):
        if self.n_images == 0:
            return self.shift
        return self.shift + self.mean_sum / self.n_images

    # ----------------------------------------------------------------- results
    def _check_enough(self):
        if self.n_images < 2:
            raise ValueError(
                f"At least 2 images are needed to estimate covariances; have {self.n_images}."
            )

    def _to_original(self, value, power):
        """``value * scale**power``; inf or subnormal where float64 cannot hold the result."""
        with np.errstate(over="ignore", under="ignore"):
            return value * np.float64(self.scale) ** power if power else value

    @property
    def mean(self):
        """Grand mean of the image means, shape (n_features,), original units."""
        self._check_enough()
        return self._to_original(self._mean_or_shift(), 1)

    def normalised_moments(self):
        """Centred moments in units of ``scale`` (representable at any magnitude).

        Returns
        -------
        mean_scatter : ndarray of shape (n_features, n_features)
            ``sum_i (m_i - m)(m_i - m)^T / scale**2``.
        mean_fourth : float
            ``sum_i ||m_i - m||^4 / scale**4``.
        residual_scatter : ndarray of shape (n_features, n_features)
            ``sum_iv xi_iv xi_iv^T / scale**2`` (symmetrised).
        residual_fourth : float
            ``sum_i ||sum_v xi_iv xi_iv^T||_F^2 / scale**4``.
        """
        self._check_enough()
        _, s2, _, s4 = self._recentred(self._mean_or_shift())
        residual = (self.residual_scatter + self.residual_scatter.T) / 2.0
        return (s2 + s2.T) / 2.0, s4, residual, self.residual_fourth

    def centred_mean_moments(self):
        """Scatter and fourth-moment sum of the centred image means (original units).

        Returns
        -------
        scatter : ndarray of shape (n_features, n_features)
            ``sum_i (m_i - m)(m_i - m)^T``.
        fourth : float
            ``sum_i ||m_i - m||^4``.
        """
        scatter, fourth, _, _ = self.normalised_moments()
        return self._to_original(scatter, 2), self._to_original(fourth, 4)

    @property
    def n_residual_rows(self):
        """Degrees of freedom of the residual covariance, ``N (V - 1)``."""
        return self.n_images * (self.n_views - 1)

    def covariance_means(self):
        """Unbiased covariance of the image means, ``scatter / (N - 1)``.

        Returns
        -------
        covariance : ndarray of shape (n_features, n_features)
            The plug-in Sigma_s.
        """
        scatter, _, _, _ = self.normalised_moments()
        return self._to_original(scatter / (self.n_images - 1), 2)

    def covariance_residual(self):
        """Unbiased within-image covariance, ``scatter / (N (V - 1))``.

        Returns
        -------
        covariance : ndarray of shape (n_features, n_features)
            Sigma_xi.
        """
        _, _, residual, _ = self.normalised_moments()
        return self._to_original(residual / self.n_residual_rows, 2)

    # --------------------------------------------------------- serialisation
    def state_dict(self):
        """Return the statistics as a dict of numpy arrays and numbers (for saving).

        Returns
        -------
        state : dict
            Copies of every array and count; see :meth:`from_state_dict`.
        """
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_state_dict(cls, state):
        """Rebuild statistics saved with :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned (e.g. after ``np.savez`` / ``torch.save``).

        Returns
        -------
        stats : GroupedViewStatistics
        """
        if "scale" not in state:
            raise ValueError(
                "These statistics were saved by an older skicr (no 'scale' entry; its "
                "residual fourth-moment sum has another definition); accumulate them again."
            )
        new = cls.__new__(cls)
        new.__dict__.update(state)
        new.__dict__.setdefault("fourth_moments", True)  # saved before the option existed
        return new
