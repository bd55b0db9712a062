"""Float ONNX model -> quantized ONNX model, with onnxruntime's own tools and ffacc's recipe.

The recipe (``ffacc quantize``): pin a dynamic batch dimension to 1; run onnxruntime's
``quant_pre_process`` (shape inference and graph optimization, which folds
BatchNormalization into the convolution before it and evaluates constant ``Shape`` chains);
then ``quantize_static`` with the calibration samples: QDQ (or QOperator), uint8 (or int8)
activations, int8 symmetric weights per output channel (or per tensor). The result is a
model ``ffacc compile`` places on the accelerator wherever the hardware has the operator.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .onnx_import import ImportError_, to_opset13, pin_batch

__all__ = ["quantize_onnx", "quantize_static_with", "QuantizeError"]


class QuantizeError(ValueError):
    """A model or calibration set that cannot be quantized (the message says which and why)."""


def _feeds(model, calib):
    """Calibration feeds (one sample each, batch 1) from an array of stacked samples, or a
    dict of such arrays by input name."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    if not isinstance(calib, dict):
        if len(inputs) != 1:
            raise QuantizeError(f"the model has {len(inputs)} inputs "
                                f"({', '.join(vi.name for vi in inputs)}); give the "
                                f"calibration data as a .npz by input name")
        calib = {inputs[0].name: calib}
    per_input = {}
    for vi in inputs:
        if vi.name not in calib:
            raise QuantizeError(f"calibration data has no input {vi.name!r} (it has "
                                f"{', '.join(calib)})")
        want = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        a = np.asarray(calib[vi.name])
        if a.dtype.kind != "f":
            raise QuantizeError(f"calibration input {vi.name!r} is {a.dtype}; give the float "
                                f"samples the float model takes")
        if a.shape[1:] != want[1:]:
            hint = (" (this looks like NHWC; the model takes NCHW: a.transpose(0, 3, 1, 2))"
                    if len(want) == 4 and a.shape[1:] == (want[2], want[3], want[1]) else "")
            raise QuantizeError(f"calibration input {vi.name!r} has shape {a.shape}; the model "
                                f"takes {want}, so give (N, {', '.join(map(str, want[1:]))}) "
                                f"for N samples{hint}")
        if len(a) == 0:
            raise QuantizeError(f"calibration input {vi.name!r} has no samples")
        per_input[vi.name] = a.astype(np.float32)
    n = min(len(a) for a in per_input.values())
    return [{k: a[i:i + 1] for k, a in per_input.items()} for i in range(n)]


def quantize_static_with(src, dst, feeds, fmt="qdq", per_channel=True, activations="uint8"):
    """onnxruntime ``quantize_static`` of the model file ``src`` into ``dst`` on calibration
    ``feeds`` (a list of ``{input name: array}``)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8 if activations == "uint8"
                    else QuantType.QInt8,
                    weight_type=QuantType.QInt8)


def quantize_onnx(model, output, calib, fmt="qdq", activations="uint8", per_channel=True,
                  progress=None):
    """Quantize the float ONNX ``model`` (path or ModelProto) into ``output`` with ffacc's
    recipe (see the module's docstring); ``calib`` as for :func:`_feeds`. Returns a summary."""
    say = progress or (lambda *a: None)
    if fmt not in ("qdq", "qoperator"):
        raise QuantizeError(f"format must be qdq or qoperator, not {fmt!r}")
    if activations not in ("uint8", "int8"):
        raise QuantizeError(f"activations must be uint8 or int8, not {activations!r}")
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model))
        except Exception as e:        # noqa: BLE001 - protobuf raises several types
            raise QuantizeError(f"cannot read ONNX model {model}: {e}") from e
    quant_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
    if any(n.op_type in quant_ops for n in model.graph.node):
        raise QuantizeError("the model is already quantized; give ffacc compile this model")
    try:
        # opset 13 first: onnxruntime's quantizer writes an invalid model from older ones
        # (per-channel axes its DequantizeLinear does not have; Pad-2 pads as float)
        model, upgraded = to_opset13(model)
        model, notes = pin_batch(model, 1)          # a copy; the importer's rule
        notes[:0] = upgraded
    except ImportError_ as e:
        raise QuantizeError(str(e)) from None
    feeds = _feeds(model, calib)
    output = Path(output)
    if output.is_dir():
        raise QuantizeError(f"-o {output}: is a directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, pre = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "pre.onnx")
        onnx.save(model, src)
        say("preprocessing (onnxruntime quant_pre_process: shapes, BatchNormalization "
            "folding, constant folding)")
        from onnxruntime.quantization.shape_inference import quant_pre_process
        try:
            quant_pre_process(src, pre, skip_symbolic_shape=True)   # shapes are static
        except Exception as e:        # noqa: BLE001 - onnxruntime raises several types
            raise QuantizeError(f"onnxruntime's preprocess failed on the model: {e}") from e
        say(f"quantize_static on {len(feeds)} calibration samples")
        part = output.with_name(output.name + ".tmp")      # never a half-written model
        quantize_static_with(pre, part, feeds, fmt, per_channel, activations)
        part.replace(output)
    return {"output": str(output), "format": fmt, "activations": activations,
            "per_channel": per_channel, "samples": len(feeds), "notes": notes}
