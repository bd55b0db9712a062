"""Differential testing of the compiler on random graphs.

:func:`random_model` builds a small float CNN from a sequence of choices -- convolutions with
kernels 1..12, strides 1..4, paddings and groups, ReLU, max and average pools, residual adds,
channel concats, an LRN the quantizer leaves in float, and a global pool + Gemm head -- and
:func:`check` quantizes it with onnxruntime's ``quantize_static`` (random calibration data),
compiles it for a configuration and runs it on the ISS. Every case ends one of three ways:

- ``ok``: ISS bit-exact with the golden model, every layer within 1 LSB of onnxruntime
  (:func:`ffacc.compiler.driver.verify_compiled`);
- ``refused``: a clear :class:`ImportError_` / :class:`CompileError` naming what is wrong;
- a failure: ``mismatch`` (not bit-exact, or a layer off onnxruntime) or ``traceback`` (any
  other exception), which the fuzz test and ``benchmarks/fuzz.py`` report with the case.

The choices come from a ``pick(name, options)`` callback: a seeded numpy generator for the
benchmark, hypothesis's ``draw`` for the property test (so it can shrink a failing graph).
"""

import tempfile
import traceback
from pathlib import Path

import numpy as np
from .zoo import Builder, quantize_model

__all__ = ["random_model", "check", "rng_picker", "CONFIGS", "FORMATS"]

CONFIGS = ("tiny", "large")
FORMATS = ("qdq", "qoperator")      # the two forms onnxruntime's quantize_static writes


def rng_picker(seed):
    """A ``pick`` that draws each choice from a numpy generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)

    def pick(name, options):
        return options[int(rng.integers(len(options)))]
    return pick


def random_model(pick, seed=0):
    """A float ONNX model built from ``pick``'s choices; returns ``(model, description)``."""
    C = pick("channels", [1, 2, 3, 4, 8])
    H = pick("height", [6, 9, 12, 16, 20])
    W = pick("width", [6, 8, 13, 16, 21])
    b = Builder((1, C, H, W), seed=seed, name="fuzz")
    x, steps = "x", []
    for i in range(pick("layers", [1, 2, 3, 4])):
        N, C, H, W = b.shape[x]
        kind = pick(f"kind{i}", ["conv", "conv", "conv", "pool", "add", "concat", "lrn"])
        if kind == "conv":
            k = pick(f"k{i}", list(range(1, 13)))
            if k > min(H, W) + 2:
                k = min(H, W)
            stride = pick(f"stride{i}", [1, 1, 2, 3, 4])
            pad = pick(f"pad{i}", ["same", "none", "asym"])
            pads = {"same": None, "none": (0, 0, 0, 0),
                    "asym": (k // 2, 0, (k - 1) // 2, k // 2)}[pad]
            group = pick(f"group{i}", [1, 1, C]) if C > 1 else 1
            out = pick(f"out{i}", [1, 2, 4, 8, 16])
            out = out * group if group > 1 else out
            try_shape = _conv_hw(H, W, k, stride, pads)
            if min(try_shape) < 1:
                continue
            x = b.conv(x, out, k, stride=stride, pads=pads, group=group)
            if pick(f"relu{i}", [True, False]):
                x = b.relu(x)
            steps.append(f"conv{k}x{k}/s{stride} {pad} g{group} ->{out}")
        elif kind == "pool":
            op = pick(f"pool{i}", ["MaxPool", "AveragePool"])
            k = pick(f"pk{i}", [2, 3])
            if min(H, W) < k:
                continue
            x = b.pool(op, x, k, stride=pick(f"ps{i}", [1, 2, k]))
            steps.append(f"{op} {k}")
        elif kind == "add":
            y = b.conv(x, C, 3)
            x = b.relu(b.add(x, y))
            steps.append("residual add")
        elif kind == "concat":
            y = b.conv(x, pick(f"cat{i}", [1, 4]), 1)
            x = b.concat([x, y])
            steps.append("concat")
        else:
            x = b.unary("LRN", x, size=3)
            steps.append("LRN")
    if pick("head", [True, False]) or not steps:
        x = b.fc(b.flatten(b.gap(x)), pick("classes", [3, 10]))
        steps.append("gap+gemm")
    return b.model(x), "; ".join(steps) or "identity"


def _conv_hw(H, W, k, s, pads):
    t, left, bt, r = pads if pads is not None else (k // 2, k // 2, (k - 1) // 2, (k - 1) // 2)
    return ((H + t + bt - k) // s + 1, (W + left + r - k) // s + 1)


def check(model, cfg_name, seed=0, fmt="qdq"):
    """Quantize (``fmt``: qdq or qoperator), compile and verify ``model`` on the ISS for
    ``cfg_name``; returns a dict with ``outcome`` (ok / refused / mismatch / traceback) and
    the details."""
    from ffacc.compiler.compile import CompileError
    from ffacc.compiler.driver import compile_model, verify_compiled
    from ffacc.compiler.onnx_import import ImportError_
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.sim.runner import InputError
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.onnx"
        quantize_model(model, path, fmt=fmt, seed=seed, samples=4)
        try:
            g, c, _ = compile_model(path, ACCEL_PRESETS[cfg_name])
            r = verify_compiled(path, g, c, seed=seed)
        except (ImportError_, CompileError, InputError) as e:
            msg = str(e)
            return {"outcome": "refused", "error": f"{type(e).__name__}: {msg}",
                    "clear": bool(msg) and ("node" in msg or "model" in msg or "input" in msg)}
        except Exception as e:        # noqa: BLE001 - any other exception is a finding
            return {"outcome": "traceback", "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=6)}
    out = "ok" if r["ok"] else "mismatch"
    return {"outcome": out, "bit_exact": r["bit_exact"],
            "layer_max_lsb": r["layer_max_lsb_vs_onnxruntime"],
            "worst_layer": r["worst_layer_vs_onnxruntime"], "host_ops": len(r["host_ops"])}

