"""Polyphase strided convolutions on the host's input (space-to-depth).

A stride-``s`` correlation of the padded map ``xp`` with a ``kh × kw`` kernel ``w`` is a sum over
the ``s²`` stride phases ``(p, q)``::

    y[i, j] = Σ_{p, q} Σ_{a, b} w[s·a + p, s·b + q] · xp[s·(i + a) + p, s·(j + b) + q]

that is, a stride-1 correlation of the phase planes ``xp[p::s, q::s]`` (stacked as channels)
with ``⌈kh/s⌉ × ⌈kw/s⌉`` kernels whose taps past ``w`` are 0 (DESIGN.md §3). The accelerator
then computes only the outputs the layer keeps, instead of every stride-1 column (the rows
it skips already). Phases with no tap (``p ≥ kh`` or ``q ≥ kw``) are dropped.

The split is a copy of the input in another layout, which the producer must write. Here the
producer is the host: a convolution whose input is the graph's input (or another host
operator's output) becomes :class:`~ffacc.compiler.ir.PhaseSplit` on the host and a stride-1
convolution on the accelerator, where the lowering's cycle model finds that cheaper (a
kernel split into phases the fixed 3-parallel unit runs poorly, such as 2×2 or 1×1, can cost
more than the stride-1 columns). The integer sums are the same terms (and zeros), so results
stay bit-exact.
"""

from dataclasses import replace
from math import ceil

import numpy as np

from .ir import Alias, AvgPoolConv, Conv, MaxPool, PhaseSplit, QTensor
from .lower import LoweringError, conv_plan_cycles, ir_conv_layer

__all__ = ["split_weights", "polyphase_inputs"]


def split_weights(w, s):
    """``w`` (O, C, kh, kw) as the stride-1 kernel over :func:`phases` ``s`` planes: returns
    ``(w', phases)``, ``w'[o, c·P + i, a, b] = w[o, c, s·a + p_i, s·b + q_i]`` (0 past ``w``)."""
    O, C, kh, kw = w.shape
    ph = phases(kh, kw, s)
    kh2, kw2 = ceil(kh / s), ceil(kw / s)
    wp = np.zeros((O, C, s * kh2, s * kw2), dtype=w.dtype)
    wp[:, :, :kh, :kw] = w
    v = wp.reshape(O, C, kh2, s, kw2, s)
    out = np.stack([v[:, :, :, p, :, q] for p, q in ph], axis=2)       # (O, C, P, kh2, kw2)
    return out.reshape(O, C * len(ph), kh2, kw2), ph


def phases(kh, kw, s):
    """The ``(p, q)`` phases a ``kh × kw`` kernel at stride ``s`` has taps in, as a (P, 2)
    array."""
    return np.array([(p, q) for p in range(min(s, kh)) for q in range(min(s, kw))],
                    dtype=np.int64)


def _split(op, g, cfg, name):
    """``(PhaseSplit, its output tensor, the stride-1 Conv, info)`` for ``op``, or None where
    the cycle model finds the strided form at least as cheap (or the split does not lower)."""
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    s = op.strides[0]
    N, C, H, W = x.shape
    kh, kw = op.w.shape[2:]
    ho, wo = y.shape[2:]
    w2, ph = split_weights(op.w, s)
    kh2, kw2 = w2.shape[2:]
    hi, wi = ho + kh2 - 1, wo + kw2 - 1
    try:
        before = conv_plan_cycles(cfg, ir_conv_layer(op, x, y, op.w, (C, H, W), op.pads, s),
                                  name)
        after = conv_plan_cycles(cfg, ir_conv_layer(op, x, y, w2, (C * len(ph), hi, wi),
                                                    (0, 0, 0, 0), 1), name)
    except LoweringError:
        return None
    if after >= before:
        return None
    xs = QTensor(name, (N, C * len(ph), hi, wi), x.dtype, x.scale, x.zero_point,
                 x.model_dtype)
    split = PhaseSplit(f"{op.name}.phases", [x.name], [name], stride=s, pads=tuple(op.pads),
                       phases=ph, out_hw=(hi, wi), value=x.zero_point)
    conv = replace(op, inputs=[name], w=w2, pads=(0, 0, 0, 0), strides=(1, 1))
    info = {"stride": s, "kernel": [int(kh), int(kw)], "phases": len(ph),
            "split_kernel": [int(kh2), int(kw2)], "host_op": split.name,
            "macs": int(op.w.shape[0] * C * kh * kw * ho * wo),
            "model_cycles": [int(before), int(after)]}
    return split, xs, conv, info


def polyphase_inputs(g, cfg, runs_on_host):
    """``g`` with each strided convolution whose input the host writes (a graph input, or the
    output of an operator ``runs_on_host(op)``) split where that is cheaper; returns
    ``(graph, {id(new conv): info})``. ``g`` itself is not changed."""
    host = set(g.inputs)
    ops, tensors, info = [], dict(g.tensors), {}
    for op in g.ops:
        if isinstance(op, Alias):
            if op.inputs[0] in host:
                host.add(op.outputs[0])
        elif runs_on_host(op) and (not isinstance(op, MaxPool) or op.inputs[0] in host):
            host.update(op.outputs)         # (a max-pool after a conv it runs or fuses)
        elif (isinstance(op, Conv) and op.inputs[0] in host and op.strides[0] > 1
              and op.strides[0] == op.strides[1] and op.group == 1
              and tuple(op.dilations) == (1, 1) and not isinstance(op, AvgPoolConv)):
            name = f"{op.inputs[0]}.phases.{op.name}"
            got = _split(op, g, cfg, name) if name not in tensors else None
            if got:
                split, xs, conv, why = got
                tensors[name] = xs
                ops += [split, conv]
                info[id(conv)] = why
                continue
        ops.append(op)
    if not info:
        return g, {}
    notes = list(g.notes) + [
        f"{i['host_op']}: stride-{i['stride']} {i['kernel'][0]}x{i['kernel'][1]} conv as "
        f"{i['phases']} phases of {i['split_kernel'][0]}x{i['split_kernel'][1]} at stride 1 on "
        f"the host's space-to-depth of its input (model cycles {i['model_cycles'][0]:,} -> "
        f"{i['model_cycles'][1]:,})" for i in info.values()]
    return replace(g, ops=ops, tensors=tensors, notes=notes), info
