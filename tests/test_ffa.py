"""FFA algebra: FFA-form filtering equals direct correlation for every cascade and tap count."""

import numpy as np
import pytest

from ffacc.hw.ffa import (best_ffa, correlate_ffa, direct_mults_per_output, factorizations, ffa,
                          mults_per_output)

ALL = factorizations(12)


def test_cascades_present_with_expected_product_counts():
    counts = {ffa(*f).L: ffa(*f).M for f in ALL}
    assert counts == {1: 1, 2: 3, 3: 6, 4: 9, 6: 18, 8: 27, 9: 36, 12: 54}


@pytest.mark.parametrize("factors", ALL, ids=lambda f: "x".join(map(str, f)))
def test_ffa_equals_direct_correlation(factors):
    s = ffa(*factors)
    rng = np.random.default_rng(len(factors) * 31 + s.L)
    for taps in range(1, 13):
        for trial in range(4):
            w = rng.integers(-128, 128, taps)
            x = rng.integers(-255, 256, int(rng.integers(taps, 60)))
            assert np.array_equal(correlate_ffa(s, w, x), np.correlate(x, w, "valid")), \
                (factors, taps, trial)
        # extremes: every product at its largest magnitude
        w = np.full(taps, -128)
        x = np.full(40, 255)
        assert np.array_equal(correlate_ffa(s, w, x), np.correlate(x, w, "valid"))


@pytest.mark.parametrize("factors", ALL, ids=lambda f: "x".join(map(str, f)))
def test_postaddition_reconstructs_every_term_once(factors):
    s = ffa(*factors)
    L = s.L
    i, j = np.indices((L, L))
    for p in range(L):
        for d in range(2):
            got = sum(s.C[p, m, d] * np.outer(s.A[m], s.B[m]) for m in range(s.M))
            assert np.array_equal(got, ((i + j) == p + d * L).astype(int))


def test_base_structures_match_design_doc():
    two = ffa(2)
    assert two.A.tolist() == [[1, 0], [0, 1], [1, 1]]
    # Y1 = P01 - P0 - P1
    assert two.C[1, :, 0].tolist() == [-1, -1, 1]
    three = ffa(3)
    assert three.M == 6
    # Y2 = P012 - (P01 - P1) - (P12 - P1)
    assert three.C[2, :, 0].tolist() == [0, 2, 0, -1, -1, 1]


def test_multiplications_per_output_table():
    table = [mults_per_output(k) for k in range(2, 13)]
    assert table == [3, 6, 9, 15, 18, 23.625, 27, 36, 45, 49.5, 54]
    assert [direct_mults_per_output(k) for k in (3, 12)] == [9, 144]
    assert best_ffa(3).L == 3 and best_ffa(12).L == 12


def test_bad_factor_is_named():
    with pytest.raises(ValueError, match="factor"):
        ffa(5)
