"""Activations of the other 8-bit type, stored as the configuration's type.

An int8 activation ``q`` with zero point ``z`` stands for ``scale * (q - z)``; the uint8
value ``q + 128`` with zero point ``z + 128`` stands for the same real number, and its byte
is ``q``'s byte with the sign bit flipped. Every integer operator of the IR (convolution with
the input zero point folded into the bias, requantization, clamp, pooling, add, concat) gives
the same real results on either form (non-uniform levels move with the zero point), so a model quantized with int8 activations (what
onnxruntime's ``quantize_static`` writes by default) runs on an accelerator built for uint8
activations, and the other way round, without falling back to the host.

:func:`retype_activations` rewrites the IR's quantized tensors to one 8-bit type: the zero
point and every clamp bound move by 128, and each moved tensor remembers its model type in
``QTensor.model_dtype``. The runtime converts a graph input or output at the boundary
(:func:`to_storage`, :func:`to_model`) and a QOperator node run by onnxruntime sees its
model's types (``ir._run_host_quant``).
"""

from dataclasses import replace

import numpy as np

__all__ = ["retype_activations", "to_storage", "to_model", "SHIFT"]

SHIFT = {("int8", "uint8"): 128, ("uint8", "int8"): -128}


def to_storage(values, t):
    """Integer values of tensor ``t`` (a ``QTensor`` or ``TensorDesc``) in its model type ->
    its stored type ``t.dtype``: the same real values."""
    return np.asarray(values).astype(np.int64) + SHIFT.get((t.model_type, t.dtype), 0)


def to_model(values, t):
    """Stored integer values of ``t`` -> its model type (inverse of :func:`to_storage`)."""
    return np.asarray(values).astype(np.int64) - SHIFT.get((t.model_type, t.dtype), 0)


def retype_activations(g, dtype):
    """A copy of graph ``g`` whose 8-bit activations are all of type ``dtype``.

    Tensors already of that type and float tensors are unchanged; ops with a clamp get it
    shifted with their output. Returns ``g`` itself when nothing changes.
    """
    if dtype not in ("uint8", "int8"):
        raise ValueError(f"activation type must be uint8 or int8, not {dtype!r}")
    moved = {n: t for n, t in g.tensors.items() if t.quantized and t.dtype != dtype}
    if not moved:
        return g
    tensors = dict(g.tensors)
    for n, t in moved.items():
        s = SHIFT[(t.dtype, dtype)]
        tensors[n] = replace(t, dtype=dtype, zero_point=t.zero_point + s,
                             model_dtype=t.model_type,
                             levels=None if t.levels is None else tuple(v + s for v in t.levels))
    ops = []
    for op in g.ops:
        clamp = getattr(op, "clamp", None)
        if clamp is not None and op.outputs[0] in moved:
            s = SHIFT[(moved[op.outputs[0]].dtype, dtype)]
            op = replace(op, clamp=(clamp[0] + s, clamp[1] + s))
        ops.append(op)
    return replace(g, tensors=tensors, ops=ops)
