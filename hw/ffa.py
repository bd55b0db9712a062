"""Fast FIR algorithm (FFA) algebra: the one definition of pre-addition, products and post-addition.

An ``L``-parallel FFA filters a stream in blocks of ``L`` samples. Input and filter are split into
``L`` polyphase components ``X_j`` and ``H_i``; the ``L`` outputs of a block are

.. math:: Y_p = \\sum_{i + j = p} H_i X_j + z^{-1} \\sum_{i + j = p + L} H_i X_j

(``z^{-1}`` is a delay of one block). A bilinear algorithm computes all ``H_i X_j`` sums with
``M < L^2`` sub-filter products

.. math:: P_m = \\Big(\\sum_i A_{m,i} H_i\\Big) \\Big(\\sum_j B_{m,j} X_j\\Big), \\qquad
          Y_p = \\sum_m C_{p,m,0} P_m + z^{-1} \\sum_m C_{p,m,1} P_m .

``A`` is the filter (weight) pre-addition, ``B`` the input pre-addition, ``C`` the post-addition
with its block delay. The 2-parallel FFA has ``M = 3``, the 3-parallel ``M = 6``; cascades are
Kronecker products (``L = L_1 L_2`` with ``M = M_1 M_2``) whose post-addition is solved here
exactly, so every parallelism built from 2s and 3s (2, 3, 4, 6, 8, 9, 12, ...) comes from the same
code. Each product ``P_m`` is itself a FIR filter of ``ceil(N / L)`` taps running at the block
rate, so an ``N``-tap filter costs ``M * ceil(N / L)`` multiplications per ``L`` outputs.

The hardware (:mod:`ffacc.hw.fcu`), the compiler's weight pre-addition and the tests all use
:func:`ffa` and :meth:`FFA.preadd_weights`; nothing else encodes the algorithm.
"""

from dataclasses import dataclass
from functools import lru_cache
from math import ceil, prod

import numpy as np

__all__ = ["FFA", "ffa", "exact_matmul", "best_ffa", "mults_per_output", "direct_mults_per_output",
           "correlate_ffa", "factorizations"]

# Base algorithms: rows of A (= rows of B) list which polyphase components each product sums.
_BASE = {
    1: [[1]],
    2: [[1, 0], [0, 1], [1, 1]],
    3: [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]],
}


@dataclass(frozen=True, eq=False)
class FFA:
    """One ``L``-parallel FFA structure.

    Attributes
    ----------
    factors : tuple of int
        The base parallelisms cascaded (outermost first), e.g. ``(2, 3)`` for ``L = 6``.
    A : ndarray, shape (M, L)
        Filter pre-addition (0/1).
    B : ndarray, shape (M, L)
        Input pre-addition (0/1).
    C : ndarray, shape (L, M, 2)
        Post-addition; ``C[p, m, d]`` weights product ``m`` delayed by ``d`` blocks in output ``p``.
    """

    factors: tuple
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray

    @property
    def L(self):
        """Parallelism: samples (and outputs) per block."""
        return self.A.shape[1]

    @property
    def M(self):
        """Number of sub-filter products per block."""
        return self.A.shape[0]

    def subfilter_taps(self, taps):
        """Taps of each sub-filter for a filter of ``taps`` taps."""
        return ceil(taps / self.L)

    def polyphase(self, h, taps=None):
        """Split filter ``h`` (length ≤ ``taps``) into ``L`` polyphase components of ``T`` taps.

        Returns an int64 array of shape ``(L, T)`` with ``[i, t] = h[i + t L]`` (zero-extended).
        """
        h = np.asarray(h, dtype=np.int64)
        taps = len(h) if taps is None else taps
        if len(h) > taps:
            raise ValueError(f"filter of {len(h)} taps does not fit {taps} taps")
        T = self.subfilter_taps(taps)
        padded = np.zeros(self.L * T, dtype=np.int64)
        padded[:len(h)] = h
        return padded.reshape(T, self.L).T

    def preadd_weights(self, h, taps=None):
        """Pre-added sub-filter weights ``G[m, t] = sum_i A[m, i] h[i + t L]``.

        This is the weight pre-addition the compiler does once; the hardware stores ``G``.
        """
        return self.A @ self.polyphase(h, taps)

    def preadd_inputs(self, block):
        """Input pre-addition for one block (or an array of blocks along the last axis); in
        float64 if the blocks are (integer values, exact: the sums are small), else int64."""
        block = np.asarray(block)
        if block.dtype == np.float64:
            return block @ self.B.T.astype(np.float64)
        return block.astype(np.int64) @ self.B.T

    def filter(self, h, x):
        """Causal FIR ``y[n] = sum_t h[t] x[n - t]`` computed the FFA way (block form).

        ``len(x)`` need not be a multiple of ``L``; the result has ``len(x)`` samples. This is the
        executable specification of the datapath: pre-add, sub-filter, post-add with delay.
        """
        x = np.asarray(x, dtype=np.int64)
        nblocks = ceil(len(x) / self.L)
        xb = np.zeros(nblocks * self.L, dtype=np.int64)
        xb[:len(x)] = x
        return self.filter_blocks(self.preadd_weights(h), xb.reshape(nblocks, self.L))\
            .reshape(-1)[:len(x)]

    def filter_blocks(self, G, xb):
        """Filter blocks ``xb`` (shape ``(nblocks, L)``) with pre-added weights ``G`` ``(M, T)``.

        The state before the first block is zero. Returns ``(nblocks, L)`` outputs.
        """
        return self.filter_rows(np.asarray(G)[None, None], np.asarray(xb)[None])[0]

    def filter_rows(self, G, xb):
        """Several filters on several input rows at once, summed over the rows: ``G`` of shape
        ``(R, F, M, T)`` (row ``r``'s pre-added filter for each of ``F`` lanes) and ``xb`` of
        shape ``(R, nblocks, L)`` give ``sum_r filter_blocks(G[r, f], xb[r])`` for every ``f``,
        shape ``(F, nblocks, L)``. Each row's input pre-addition is shared by the lanes, as in
        the hardware; the sum over rows is taken before the (linear) post-addition."""
        G = np.asarray(G, dtype=np.int64)
        U = self.preadd_inputs(xb)                    # (R, nblocks, M)
        (R, nblocks, M), F, T = U.shape, G.shape[1], G.shape[3]
        # sub-filter m: P[f, b, m] = sum_(t, r) G[r, f, m, t] U[r, b - t, m], one product of
        # matrices per m over the delayed inputs
        Us = np.zeros((M, nblocks, T, R), dtype=U.dtype)
        for t in range(min(T, nblocks)):
            Us[:, t:, t, :] = U[:, :nblocks - t].transpose(2, 1, 0)
        P = exact_matmul(Us.reshape(M, nblocks, T * R),
                         G.transpose(2, 3, 0, 1).reshape(M, T * R, F)).transpose(2, 1, 0)
        Pd = np.zeros_like(P)
        Pd[:, 1:] = P[:, :-1]
        return P @ self.C[:, :, 0].T + Pd @ self.C[:, :, 1].T

    def mults_per_output(self, taps):
        """Multiplications per output sample for an ``taps``-tap filter."""
        return self.M * self.subfilter_taps(taps) / self.L

    def preadd_terms(self):
        """Largest number of components summed by one weight pre-addition (sets weight width)."""
        return int(self.A.sum(axis=1).max())

    def __repr__(self):
        return f"FFA(L={self.L}, M={self.M}, factors={self.factors})"


def exact_matmul(a, b):
    """``a @ b`` of integer-valued arrays (integer, or float64 holding integers) as int64,
    exactly: in float64 (BLAS) when no sum can reach 2**53, else in int64. The simulators'
    convolutions are such products of small integers."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size and b.size and \
            float(np.abs(a).max()) * float(np.abs(b).max()) * a.shape[-1] < 2.0 ** 52:
        return (a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)) \
            .astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _solve_postadd(A, B, L):
    """Find integer ``C`` with ``sum_m C[p,m,d] outer(A_m, B_m) = [i + j == p + d L]``."""
    M = A.shape[0]
    basis = np.stack([np.outer(A[m], B[m]).reshape(-1) for m in range(M)], axis=1)  # (L*L, M)
    i, j = np.indices((L, L))
    C = np.zeros((L, M, 2), dtype=np.int64)
    for p in range(L):
        for d in range(2):
            target = ((i + j) == p + d * L).astype(np.float64).reshape(-1)
            sol, *_ = np.linalg.lstsq(basis.astype(np.float64), target, rcond=None)
            c = np.rint(sol).astype(np.int64)
            if not np.array_equal(basis @ c, target.astype(np.int64)):
                raise ArithmeticError(f"no integer post-addition for phase {p}, delay {d}")
            C[p, :, d] = c
    return C


@lru_cache(maxsize=None)
def ffa(*factors):
    """The FFA cascading the given base parallelisms (each 1, 2 or 3), outermost first.

    ``ffa(3)`` is the 3-parallel FFA, ``ffa(2, 3)`` the 6-parallel cascade. The polyphase index of
    a cascade is ``i = i_1 + L_1 i_2`` (outer phase fastest), which makes the cascade's pre-addition
    the Kronecker product of the stages' with the inner stage's index most significant.
    """
    if not factors:
        raise ValueError("ffa() needs at least one factor")
    for f in factors:
        if f not in _BASE:
            raise ValueError(f"FFA factor must be 1, 2 or 3, not {f!r}")
    A = np.array([[1]], dtype=np.int64)
    for f in factors:      # later factors split each earlier phase: they become more significant
        A = np.kron(np.array(_BASE[f], dtype=np.int64), A)
    L = prod(factors)
    return FFA(tuple(factors), A, A.copy(), _solve_postadd(A, A, L))


def factorizations(max_parallel=12):
    """All cascades of 2s and 3s (sorted, 3s first) with parallelism ≤ ``max_parallel``."""
    out = [(1,)]
    def rec(prefix, value):
        for f in (3, 2):
            if prefix and f > prefix[-1]:
                continue
            v = value * f
            if v <= max_parallel:
                out.append(prefix + (f,))
                rec(prefix + (f,), v)
    rec((), 1)
    return out


def best_ffa(taps, max_parallel=12):
    """The cascade with the fewest multiplications per output for a ``taps``-tap filter.

    Ties go to the smaller parallelism (less pre/post-addition).
    """
    cands = [ffa(*f) for f in factorizations(max_parallel)]
    return min(cands, key=lambda s: (s.mults_per_output(taps), s.L))


def mults_per_output(k, max_parallel=12):
    """Multiplications per 2-D output for a ``k``×``k`` kernel with row-wise FFA (``k`` rows)."""
    return k * best_ffa(k, max_parallel).mults_per_output(k)


def direct_mults_per_output(k):
    """Multiplications per 2-D output of direct ``k``×``k`` convolution."""
    return k * k


def correlate_ffa(structure, w, x):
    """Valid 1-D correlation ``y[c] = sum_j w[j] x[c + j]`` through an FFA filter.

    The filter is the reversed kernel; output ``n`` of the filter is correlation ``n - k + 1``.
    """
    w = np.asarray(w, dtype=np.int64)
    k = len(w)
    y = structure.filter(w[::-1], x)
    return y[k - 1:]
