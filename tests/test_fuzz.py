"""Property-based differential testing of the compiler (hypothesis): random small CNNs
(:func:`ffacc.compiler.fuzz.random_model`: kernels 1..12, strides 1..4, paddings, groups,
pools, residual adds, concats, LRN, a global pool + Gemm head) quantized by onnxruntime,
compiled for a random preset and run on the ISS. Each case is bit-exact with the golden model
and every layer within 1 LSB of onnxruntime, or a clear refusal; never a traceback.
``python benchmarks/fuzz.py --cases 2000`` runs thousands and prints the tally."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffacc.compiler.fuzz import CONFIGS, FORMATS, check, random_model


@st.composite
def cases(draw):
    def pick(name, options):
        return draw(st.sampled_from(options), label=name)
    model, desc = random_model(pick, seed=draw(st.integers(0, 2**16), label="seed"))
    return model, desc, pick("config", list(CONFIGS)), pick("format", list(FORMATS))


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_random_graphs_are_exact_or_refused_clearly(case):
    _exact_or_clearly_refused(case)


def _exact_or_clearly_refused(case):
    model, desc, cfg, fmt = case
    r = check(model, cfg, fmt=fmt)
    assert r["outcome"] in ("ok", "refused"), (desc, cfg, fmt, r)
    if r["outcome"] == "refused":
        assert r["clear"], (desc, r["error"])


def test_fuzz_check_reports_a_mismatch(monkeypatch):
    """The check is not vacuous: a golden model off by one in Gemm makes the case a mismatch."""
    import numpy as np
    from ffacc.compiler import ir
    from ffacc.compiler.fuzz import rng_picker
    from ffacc.compiler.zoo import Builder
    b = Builder((1, 3, 8, 8), seed=1)
    model = b.model(b.fc(b.flatten(b.gap(b.relu(b.conv("x", 4, 3)))), 5))
    assert check(model, "tiny")["outcome"] == "ok"
    real = ir.run_op

    def off_by_one(op, g, vals):
        out = real(op, g, vals)
        return [np.minimum(o + 1, 255) for o in out] if isinstance(op, ir.Gemm) else out
    monkeypatch.setattr(ir, "run_op", off_by_one)
    assert check(model, "tiny")["outcome"] == "mismatch"
    assert rng_picker(3)("x", [1, 2, 3]) == rng_picker(3)("x", [1, 2, 3])


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_many_random_graphs(case):
    _exact_or_clearly_refused(case)


@pytest.mark.parametrize("seed, fmt, what", [
    (22, "qdq", "LRN on the float graph input, then a global pool + Gemm"),
    (764, "qdq", "residual add whose 1-LSB ties exceed 1 % of its outputs"),
    (987, "qdq", "add of a 1.0-scale input into a 1.4e-4-scale output: float on the host"),
    (1250, "qoperator", "the same for a QLinearAdd: onnxruntime's kernel on the host"),
])
def test_fuzz_regressions(seed, fmt, what):
    """Cases the fuzzer found (``benchmarks/fuzz.py --seed S --cases 1`` reruns one)."""
    from ffacc.compiler.fuzz import rng_picker
    pick = rng_picker(seed)
    model, desc = random_model(pick, seed)
    r = check(model, pick("config", list(CONFIGS)), seed, fmt)
    assert r["outcome"] == "ok", (what, desc, r)


def test_an_adds_outputs_that_differ_are_ties(tmp_path, monkeypatch):
    """The fuzz case of seed 21666 (two residual adds on large, QDQ): 3 of an Add's 56 outputs
    differ from onnxruntime, by 1 LSB, each a sum near a half that the integer form's 14-bit
    factors and float32 round to either side (``Add.ties``); the check allows those and no
    other difference (it failed the case on a share of 5 % before)."""
    from ffacc.compiler import ir
    from ffacc.compiler.driver import verify_model
    from ffacc.compiler.fuzz import rng_picker
    from ffacc.compiler.zoo import quantize_model
    from ffacc.hw.config import ACCEL_PRESETS

    pick = rng_picker(21666)
    model, _ = random_model(pick, 21666)
    cfg, fmt = pick("config", list(CONFIGS)), pick("format", list(FORMATS))
    assert (cfg, fmt) == ("large", "qdq")
    path = quantize_model(model, tmp_path / "case.onnx", fmt=fmt, seed=21666, samples=4)
    res = verify_model(path, ACCEL_PRESETS[cfg], engine="iss", seed=21666)
    add = res["layers_vs_onnxruntime_by_op"]["Add"]
    assert res["ok"] and 0 < add["differ"] <= add["ties"] and add["max_lsb"] == 1, res
    monkeypatch.setattr(ir.Add, "ties", lambda self, a, *args: np.zeros(np.shape(a), bool))
    assert not verify_model(path, ACCEL_PRESETS[cfg], engine="iss", seed=21666)["ok"]
