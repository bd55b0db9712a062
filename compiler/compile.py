"""Integer IR -> firmware image: fusion, placement (accelerator or host), memory planning,
lowering and the segment table.

The program is a sequence of *segments*: accelerator code (ending with ``END``) or one host
operator (integer golden semantics, or a float ONNX node run by onnxruntime). Tensors live in
one memory: activations in an arena planned by liveness (a freed buffer is reused by later
tensors), then weights and parameters, then the code. The image's META section holds the
configuration, the segment table and a per-layer table for ``ffacc report``.
"""

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ffacc.firmware.image import TensorDesc
from ffacc.firmware.isa import CODE_LEVELS, INSTR_BYTES, Program
from ffacc.sim import golden
from .ir import (Add, Alias, AvgPool, AvgPoolConv, ChannelAffine, Concat, Conv, Gemm, HostFloat,
                 HostGraph, HostQuant, Transpose, MaxPool, PhaseSplit, affine_to, bounds,
                 op_to_dict)
from .fusion import OBJECTIVES, plan_from_ops
from .fetch_align import align_loops
from .known_sets import drop_known_sets, kept_index
from .lower import (LoweringError, MemoryPlan, block_diagonal, build_image, conv_plan_cycles,
                    ir_conv_layer, lower_add, lower_adds, lower_channel_affine, lower_conv,
                    maxpool_layers, maxpool_refusal, pack_groups)
from .polyphase import polyphase_inputs
from .retype import retype_activations

__all__ = ["compile_graph", "CompileError", "Compiled"]


class CompileError(ValueError):
    """The model cannot run on this configuration (names the node, op and reason)."""


@dataclass
class Compiled:
    image: object
    layers: list = field(default_factory=list)
    host_ops: list = field(default_factory=list)
    graph: object = None        # the IR as compiled (activations in the configuration's type)
    fusion: object = None       # the depth-first plan (compiler/fusion.py): groups, traffic


def _tdesc(t, addr, role):
    d = {"name": t.name, "role": role, "addr": addr, "dtype": t.dtype,
         "shape": list(t.shape), "scale": t.scale, "zero_point": t.zero_point}
    if t.model_dtype:
        d["model_dtype"] = t.model_dtype
    return d


class _Arena:
    """First-fit allocator over [base, ...) with explicit frees (liveness-based reuse)."""

    def __init__(self, base, align=8):
        self.base, self.align = base, align
        self.free = []          # (addr, size)
        self.top = base

    def alloc(self, size):
        size = -(-max(size, 1) // self.align) * self.align
        for i, (a, s) in enumerate(self.free):
            if s >= size:
                if s == size:
                    self.free.pop(i)
                else:
                    self.free[i] = (a + size, s - size)
                return a
        a = self.top
        self.top += size
        return a

    def release(self, addr, size):
        size = -(-max(size, 1) // self.align) * self.align
        self.free.append((addr, size))
        self.free.sort()
        merged = []
        for a, s in self.free:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((a, s))
        self.free = merged


def _sole_consumer(g, t, kind):
    """The one operator that reads tensor ``t``, if it is a ``kind`` and ``t`` is no graph
    output (the conditions for fusing it into ``t``'s producer); else None."""
    cons = g.consumers(t)
    if len(cons) != 1 or not isinstance(cons[0], kind) or t in g.outputs:
        return None
    return cons[0]


def _affine_after(g, cfg, t):
    """The ChannelAffine that may run with the producer of map ``t`` (:func:`_fuse_affines`,
    :func:`_pair_affines`): ``t``'s sole reader, on the accelerator, neither ``t`` nor its
    output stored as codes or levels; else None."""
    af = _sole_consumer(g, t, ChannelAffine)
    if af is None or _accel_reason(af, g, cfg) or any(
            v.levels is not None or v.codes for v in (g.tensors[t], g.tensors[af.outputs[0]])):
        return None
    return af


def _fuse_affines(g, cfg):
    """Conv or Gemm on the accelerator -> ChannelAffine on the accelerator, its sole consumer
    (a BatchNormalization the quantizer left after it, as ``Mul``/``Add``), its output not a
    graph output, neither map stored as codes: POST maps each output by the affine's second
    record (flag ``AFFINE``, ``post_affine``), so the map is not written and read again. The
    integers are those of the two operators in turn. Returns ``{id(conv): ChannelAffine}``."""
    fused = {}
    if not cfg.post_affine:
        return fused
    for op in g.ops:
        if not isinstance(op, (Conv, Gemm)) or _accel_reason(op, g, cfg):
            continue
        af = _affine_after(g, cfg, op.outputs[0])
        if af is not None:
            fused[id(op)] = af
    return fused


def _fuse_shuffles(g, cfg, affines, pools):
    """A grouped conv on the accelerator whose output (its fused affine map's: ``affines``)
    goes through ShuffleNet's channel shuffle, ``Reshape`` to ``(1, G, n, H, W)``,
    ``Transpose`` of the two channel axes, ``Reshape`` back, each the sole reader of the one
    before, with no requantization: its ``G`` groups of ``n`` outputs run a conv each
    (:func:`pack_groups` of one), so group ``i``'s output ``k`` goes to channel ``k G + i`` of
    the shuffled map: its ``POST`` writes it there (channel stride ``G`` maps, from map
    ``i``), and the shuffle is no pass of its own (nor needs the ``ADD`` unit). Returns
    ``{id(conv): [the three ops]}``."""
    out = {}
    for op in g.ops:
        if not isinstance(op, Conv) or op.group < 2 or id(op) in pools or \
                isinstance(op, AvgPoolConv) or _accel_reason(op, g, cfg):
            continue
        G, Og = op.group, op.w.shape[0] // op.group
        t = (affines[id(op)] if id(op) in affines else op).outputs[0]
        a1 = _sole_consumer(g, t, Alias)
        tr = a1 and _sole_consumer(g, a1.outputs[0], Transpose)
        a2 = tr and _sole_consumer(g, tr.outputs[0], Alias)
        if a2 is None or pack_groups(cfg, G, Og, op.w.shape[3]) != 1:
            continue
        y, v = g.tensors[t], g.tensors[a1.outputs[0]]
        if (tuple(v.shape) != (1, G, Og) + tuple(y.shape[2:])
                or tuple(int(p) for p in tr.perm) != (0, 2, 1, 3, 4)
                or tr.requant(g.tensors[tr.inputs[0]], g.tensors[tr.outputs[0]]) is not None
                or tuple(g.tensors[a2.outputs[0]].shape) != tuple(y.shape)
                or y.codes or y.levels is not None):
            continue
        out[id(op)] = [a1, tr, a2]
    return out


def _pair_affines(g, cfg, affines):
    """ChannelAffine -> ChannelAffine, both on the accelerator, the second the first's sole
    reader, not a graph output, neither map codes, at most ``qb_entries`` channels, the first
    not run inside a conv's ``POST`` (``affines``, :func:`_fuse_affines`): the first's
    ``ADD``s map each result by the second's record (flag ``AFFINE``), so the map in between
    is not written and read again (Inception v2 writes a BatchNormalization as a ``Mul`` and
    an ``Add``, quantized one after the other). Returns ``{id(first): second}``."""
    pairs = {}
    if not cfg.post_affine:
        return pairs
    taken = {id(af) for af in affines.values()}      # (each map runs in one place)
    for op in g.ops:
        if not isinstance(op, ChannelAffine) or id(op) in taken or _accel_reason(op, g, cfg):
            continue
        t = op.outputs[0]
        nxt = _affine_after(g, cfg, t)
        if nxt is not None and g.tensors[t].shape[1] <= cfg.qb_entries:
            pairs[id(op)] = nxt
            taken.add(id(nxt))
    return pairs


def _fuse_pools(g, cfg, affines=None):
    """Conv/… on the accelerator -> MaxPool of square ``k``x``k`` windows (2..max_pool) at a
    stride, sole consumer, same quantization: POST pools the windows that lie in the conv's
    output, as ONNX's MaxPool without ``ceil_mode``; padded (each pad below the window) with
    ``pool_pads``, whose padding holds no value. (A conv the host runs keeps
    its pool: the host has no fused form.) ``affines`` (:func:`_fuse_affines`): a conv's
    output is its fused affine map's, which POST applies after the pool's maximum, so the
    pool is fused only where the map never decreases (every channel's ``K >= 0``)."""
    affines = affines or {}
    fused = {}
    for op in g.ops:
        # (an AvgPoolConv run a region at a time: POST pools no windows)
        if not _poolable_conv(op, g, cfg):
            continue
        out = op.outputs[0]
        af = affines.get(id(op))
        if af is not None:
            ka, kb = af.params(g.tensors[out])[:2]
            if np.any(ka + kb < 0):
                continue
            out = af.outputs[0]
        mp = _sole_consumer(g, out, MaxPool)
        if mp is None:
            continue
        (kh, kw), (sh, sw) = mp.kernel, mp.strides
        if kh == kw and sh == sw and 2 <= kh <= cfg.max_pool and sh >= 1 and (
                mp.pads == (0, 0, 0, 0) or cfg.pool_pads and max(mp.pads) < kh
                and _pool_fits(g, mp)):
            fused[id(op)] = mp
    return fused


def _pool_fits(g, mp):
    """Whether MaxPool ``mp``'s output is the floor division's windows of its padded input
    (not ``ceil_mode``'s), which POST pools."""
    (_, _, H, W), (k, s) = g.tensors[mp.inputs[0]].shape, mp.window
    t, l, b, r = mp.pads
    return tuple(g.tensors[mp.outputs[0]].shape[2:]) == ((H + t + b - k) // s + 1,
                                                        (W + l + r - k) // s + 1)


def _poolable_conv(op, g, cfg):
    """Whether POST may pool the windows of conv ``op``'s output (:func:`_fuse_pools`'s
    conditions on the conv)."""
    return (isinstance(op, Conv) and op.strides == (1, 1) and _accel_reason(op, g, cfg) is None
            and not (isinstance(op, AvgPoolConv) and not op.count_include_pad))


def _pool_onto(tensors, mp, x, name):
    """MaxPool ``mp``'s windows over map ``x`` instead of its input: the pool op ``name``,
    its output (``x``'s quantization, ``mp``'s output's rows and columns) added to
    ``tensors``."""
    t, y = tensors[x], tensors[mp.outputs[0]]
    out = f"{x}.{mp.name}"
    tensors[out] = replace(t, name=out, shape=tuple(t.shape[:2]) + tuple(y.shape[2:]))
    return replace(mp, name=name, inputs=[x], outputs=[out])


def _pools_before_maps(g, cfg):
    """Graph ``g`` with each MaxPool that is the sole reader of a per-channel affine map
    moved before it, as long as one is: ``MaxPool(f(x)) = f(MaxPool(x))`` element for
    element where ``f``, each channel's ``requantize(K (x - zp) + C)``, never decreases
    (every channel's ``K >= 0``). The map then runs over the pooled map, a quarter of the
    elements of a 2x2/2 or 3x3/2 pool's input, and the pool may reach a conv whose ``POST``
    runs it (Inception v2's stem: a conv, then three maps, the BatchNormalization and a
    ``Mul`` and an ``Add``, then a pool). A map that a conv's ``POST`` applies (its output's
    sole reader: :func:`_fuse_affines`) keeps the pool after it, where ``POST`` runs both."""
    def movable(af, mp):
        if mp is None or _accel_reason(af, g, cfg) or _accel_reason(mp, g, cfg):
            return False
        x = g.tensors[af.inputs[0]]
        p = g.producer(x.name)
        if id(af) in in_post:
            return False                # (the conv's POST applies the map, then the pool)
        if cfg.post_affine and isinstance(p, ChannelAffine) and \
                _affine_after(g, cfg, x.name) is af and id(p) not in in_post and not rises(p):
            return False                # (the map pairs with the one before in an ADD pass,
                                        # which the pool could not pass to come after both)
        return x.levels is None and rises(af)

    def rises(af):
        ka, kb = af.params(g.tensors[af.inputs[0]])[:2]
        return not np.any(ka + kb < 0)

    while True:
        in_post = {id(af) for af in _fuse_affines(g, cfg).values()}    # (maps a POST applies)
        ops, tensors, dropped = [], dict(g.tensors), set()
        for op in g.ops:
            if id(op) in dropped:
                continue
            mp = (_sole_consumer(g, op.outputs[0], MaxPool)
                  if isinstance(op, ChannelAffine) else None)
            if not movable(op, mp):
                ops.append(op)
                continue
            pool = _pool_onto(tensors, mp, op.inputs[0], mp.name)
            ops += [pool, replace(op, inputs=pool.outputs, outputs=list(mp.outputs))]
            dropped.add(id(mp))
            del tensors[op.outputs[0]]
        if not dropped:
            return g
        g = replace(g, ops=ops, tensors=tensors)


def _pools_before_concats(g, cfg):
    """Graph ``g`` with each MaxPool that is the sole reader of a Concat's channels moved
    before it, a pool on each input: ``MaxPool(Concat(x, ...)) = Concat(MaxPool(x), ...)``
    element for element, since a max-pool acts on each channel alone and the Concat's
    requantization of an input (``(s_in / s_out) (x - z_in)`` rounded, then its clamp)
    never decreases, so it commutes with a maximum. Done only where every input is the
    output of a conv whose ``POST`` can pool it (:func:`_fuse_pools` then fuses each), read
    by the Concat alone: the pool then costs no pass of its own, and the convs write a
    quarter of the bytes (a 2x2/2 or 3x3/2 pool's). SqueezeNet's pools follow its fire
    modules' Concats."""
    ops, tensors, dropped = [], dict(g.tensors), set()
    for op in g.ops:
        if id(op) in dropped:
            continue
        t = op.outputs[0] if isinstance(op, Concat) else None
        mp = _sole_consumer(g, t, MaxPool) if t is not None else None
        if mp is None or op.axis != 1 or _accel_reason(op, g, cfg) is not None or \
                _accel_reason(mp, g, cfg) is not None:
            ops.append(op)
            continue
        k = mp.kernel[0]
        producers = [g.producer(n) for n in op.inputs]
        if not (2 <= k <= cfg.max_pool and mp.pads == (0, 0, 0, 0)
                and len(set(op.inputs)) == len(op.inputs)
                and all(_poolable_conv(p, g, cfg) and _sole_consumer(g, n, Concat) is op
                        and g.tensors[n].levels is None
                        for p, n in zip(producers, op.inputs))):
            ops.append(op)
            continue
        pools = [_pool_onto(tensors, mp, n, f"{mp.name}.{n}") for n in op.inputs]
        ops += pools + [replace(op, inputs=[p.outputs[0] for p in pools],
                                outputs=list(mp.outputs))]
        dropped.add(id(mp))
        del tensors[t]
    return replace(g, ops=ops, tensors=tensors) if dropped else g


def _avgpool_as_conv(op, g, cfg):
    """``(conv, None)``: the :class:`~ffacc.compiler.ir.AvgPoolConv` of AvgPool ``op`` that
    the accelerator runs, or ``(None, why not)``. It takes a window of sides up to
    ``max_kernel`` (a global pool's is the whole map) at equal strides. A padded window
    that does not count its padding (ONNX's default ``count_include_pad = 0``) divides by
    the values it holds: the conv runs per region of one count (``AvgPoolConv.regions``)."""
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if len(x.shape) != 4 or x.shape[0] != 1:
        return None, f"average pool of {tuple(x.shape)} (the accelerator's: one image's maps)"
    if not (x.quantized and y.quantized):
        return None, "average pool of float tensors"
    if y.levels is not None:
        return None, "average pool into non-uniform levels"
    C, H, W = (int(v) for v in x.shape[1:])
    if op.kernel is None:
        (kh, kw), s, pads = (H, W), (1, 1), (0, 0, 0, 0)
    else:
        (kh, kw), pads = op.kernel, tuple(op.pads)
        s = tuple(op.strides or op.kernel)
    views = [None]
    if max(kh, kw) > cfg.max_kernel:
        if (kh, kw) != (H, W) or any(pads) or x.codes:
            return None, (f"average pool of a {kh}x{kw} window (a conv's sides are up to "
                          f"max_kernel, {cfg.max_kernel}; only a global pool's map, uncoded, "
                          f"may be read as smaller maps)")
        views = _pool_views(H * W, cfg.max_kernel)
    conv = AvgPoolConv(op.name, list(op.inputs), list(op.outputs),
                       w=np.ones((C, 1, kh, kw), np.int8),
                       w_scale=np.full(C, 1.0 / (kh * kw)), w_zp=np.zeros(C, np.int8),
                       bias=np.zeros(C, np.int32), pads=pads, strides=s, group=C,
                       count_include_pad=bool(op.count_include_pad or not any(pads)))
    why = _accel_reason(conv, g, cfg)
    if why is not None:
        return None, f"average pool as a conv: {why}"
    # a global pool wider than a kernel: the view of its map the cycle model finds cheapest
    best = None
    for view in views:
        cand = replace(conv, view=view)
        w, shape = cand.view_conv()
        hw = shape[1:] if shape else (H, W)
        try:
            packs, m = _group_packs(cand, cfg, x, y, w, hw, pads, s[0], None)
            if len(views) == 1:
                best = (0, cand)
                break
            # (packs of the same size and form cost the same: each planned once)
            kinds = Counter((n, own) for _, n, own in packs)
            cost = sum(k * conv_plan_cycles(cfg, _pack_layer(cand, x, y, w, 0, n, m, own, hw,
                                                             pads, s[0], None), op.name)
                       for (n, own), k in kinds.items())
        except LoweringError as e:
            why = str(e)
            continue
        if best is None or cost < best[0]:
            best = (cost, cand)
    return (best[1], None) if best else (None, f"average pool as a conv: {why}")


def _pool_views(n, k, most=4):
    """The ``(T, h, w)`` of ``T`` maps of ``h x w`` (sides up to ``k``) that a map of ``n``
    values may be read as: the ``most`` largest maps (fewest channels), the wider first."""
    out = [(n // (h * w), h, w) for h in range(1, k + 1) for w in range(1, k + 1)
           if n % (h * w) == 0]
    out.sort(key=lambda v: (v[0], -v[2]))
    return out[:most]


def _elements(t):
    """The values of tensor ``t``."""
    return int(np.prod(t.shape, dtype=np.int64))


def _pool_of(mp):
    """A fused MaxPool's ``(k, s)``, or ``(k, s, pads)`` if it is padded (``None``: none)."""
    if mp is None:
        return None
    return mp.window + ((tuple(mp.pads),) if any(mp.pads) else ())


def _accel_reason(op, g, cfg):
    """``None`` if ``op`` runs on the accelerator, else why it runs on the host."""
    if isinstance(op, Conv):
        if op.dilations != (1, 1):
            return "dilated convolution"
        if op.strides[0] != op.strides[1]:
            return "unequal strides"
        if np.any(op.w_zp != 0):
            return "asymmetric (zero-point) weights"
        if g.tensors[op.inputs[0]].dtype != ("int8" if cfg.fcu.act_signed else "uint8") or \
                g.tensors[op.outputs[0]].dtype != g.tensors[op.inputs[0]].dtype:
            return "activation type differs from the configuration's"
        return None
    if isinstance(op, Gemm):
        if np.any(op.w_zp != 0):
            return "asymmetric (zero-point) weights"
        if g.tensors[op.inputs[0]].dtype != ("int8" if cfg.fcu.act_signed else "uint8"):
            return "activation type differs from the configuration's"
        return None
    if isinstance(op, (Add, ChannelAffine, Transpose, Concat)):
        # the ADD unit's: a ChannelAffine, a Transpose's maps and a Concat's copies are ADDs
        # of an operand with itself
        if not cfg.add_unit:
            return "the configuration has no ADD unit (add_unit=false)"
        if len({g.tensors[n].dtype for n in op.inputs + op.outputs}) != 1:
            return "mixed activation types"
        shape = tuple(g.tensors[op.outputs[0]].shape)
        one_image = len(shape) >= 2 and shape[0] == 1
        if isinstance(op, Concat) and (op.axis != 1 or not one_image):
            return (f"concat along axis {op.axis} of {shape} (the accelerator's is the channel "
                    f"axis of one image)")
        if isinstance(op, Transpose) and not one_image:
            return f"transpose of {shape} (the accelerator's moves one image's maps)"
        if isinstance(op, ChannelAffine):
            if not one_image:
                return f"input shape {shape} is not one image's channels"
            try:
                op.params(g.tensors[op.inputs[0]])
            except ValueError as e:
                return f"no integer form of its scale and offset ({e})"
        return None
    if isinstance(op, Alias):
        return None
    if isinstance(op, MaxPool):
        x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
        act = "int8" if cfg.fcu.act_signed else "uint8"
        (kh, kw), (sh, sw) = op.kernel, op.strides
        if x.dtype != act or y.dtype != act:
            return "activation type differs from the configuration's"
        if len(x.shape) != 4 or x.shape[0] != 1:
            return f"input shape {tuple(x.shape)} is not one image's maps"
        if kh != kw or sh != sw:
            return f"a {kh}x{kw} window at strides {sh}x{sw} (the accelerator's are square)"
        if x.codes or x.levels is not None:
            return "its input is stored as codes or levels"
        return maxpool_refusal(cfg, kh, sh, op.pads)
    if isinstance(op, AvgPool):
        return _avgpool_as_conv(op, g, cfg)[1]
    if isinstance(op, (HostFloat, HostGraph)) and getattr(op, "op_type", None) == \
            "BatchNormalization":
        return ("BatchNormalization left in float by the quantizer runs on the host; quantize "
                "the float model with `ffacc quantize`, which folds it into the convolution "
                "before it")
    return {Concat: "concat",
            HostFloat: f"{getattr(op, 'op_type', '?')} has no accelerator lowering",
            HostGraph: f"{getattr(op, 'op_type', '?')}: a float region (no accelerator "
                       f"lowering)",
            HostQuant: f"{getattr(op, 'op_type', '?')} has no accelerator lowering",
            PhaseSplit: "the space-to-depth input of a polyphase strided conv (its input "
                        "comes from the host)"}.get(
                type(op), "unsupported")


def compile_graph(g, cfg, model_name="model", polyphase=True, narrow_codes=True,
                  move_pools=True):
    """Compile an imported :class:`~ffacc.compiler.ir.Graph` for configuration ``cfg``.

    Activations of the other 8-bit type are stored as the configuration's
    (:func:`~ffacc.compiler.retype.retype_activations`); ``Compiled.graph`` is the IR as
    compiled, the one its image's tensors describe. ``polyphase``: split strided convs on the
    host's input into their stride phases where the cycle model finds it cheaper
    (:mod:`~ffacc.compiler.polyphase`). ``narrow_codes``: on a configuration with
    ``act_codes``, a uniform activation of at most 16 values (a 2- to 4-bit one) that only
    convolutions read is stored as 4-bit codes (``_store_codes``). ``move_pools``: a max-pool
    after per-channel affine maps that never decrease moves before them, and one after a
    Concat of conv outputs onto each input, to run in the convs' ``POST``
    (``_pools_before_maps``, ``_pools_before_concats``; the same integers).
    """
    g = retype_activations(g, "int8" if cfg.fcu.act_signed else "uint8")
    for op in g.ops:
        coded = [n for n in op.outputs if g.tensors[n].levels is not None]
        if coded and not isinstance(op, (Conv, Gemm)):
            raise CompileError(f"node {op.name!r} ({op.kind}): its output {coded[0]!r} has "
                               f"non-uniform levels, which only a convolution or Gemm applies")
    # average pools the accelerator runs become the depthwise convs they are
    g = replace(g, ops=[(_avgpool_as_conv(op, g, cfg)[0] or op) if isinstance(op, AvgPool)
                        else op for op in g.ops])
    split = {}
    if polyphase:
        g, split = polyphase_inputs(g, cfg, lambda op: _accel_reason(op, g, cfg) is not None)
    if move_pools:
        g = _pools_before_concats(_pools_before_maps(g, cfg), cfg)
    affines = _fuse_affines(g, cfg)
    pairs = _pair_affines(g, cfg, affines)
    fused = _fuse_pools(g, cfg, affines)
    shuffles = _fuse_shuffles(g, cfg, affines, fused)
    skip = ({id(mp) for mp in fused.values()} | {id(af) for af in affines.values()}
            | {id(af) for af in pairs.values()}
            | {id(s) for sh in shuffles.values() for s in sh})
    ops = [op for op in g.ops if id(op) not in skip]
    # tensor renames of fused affine maps, pools and shuffles: the last one's output is what
    # the conv (or the first of two affine maps) writes
    tail = {**affines, **pairs, **fused, **{k: sh[-1] for k, sh in shuffles.items()}}
    conv_out = {id(op): tail.get(id(op), op).outputs[0] for op in ops}
    g = _store_codes(g, cfg, ops, conv_out, narrow=narrow_codes, affines=affines)

    # --- memory: alias roots, concatenation slices and liveness ------------------------
    root = {}
    for op in ops:
        if isinstance(op, Alias):
            root[op.outputs[0]] = root.get(op.inputs[0], op.inputs[0])
    # a Concat on the accelerator is written in place: an input stored as its output is a
    # slice of it, which the input's producer writes; ADDs copy the others in (_concat_slices)
    parent = _concat_slices(g, ops, cfg, root)

    def base(n):
        """The buffer tensor ``n`` lives in (an Alias's root, a Concat's output) and its byte
        offset there."""
        off = 0
        while True:
            if n in root:
                n = root[n]
            elif n in parent:
                n, o = parent[n]
                off += o
            else:
                return n, off

    last_use = {}
    for i, op in enumerate(ops):
        for n in op.inputs:
            last_use[base(n)[0]] = i
    for n in g.outputs:
        last_use[base(n)[0]] = len(ops)
    arena = _Arena(0x100)
    addr = {}
    for n in g.inputs:
        addr[n] = arena.alloc(g.tensors[n].nbytes)
    # pre-pass: addresses in execution order (a buffer from the first of its tensors' producers
    # on), freeing dead buffers after each op
    for i, op in enumerate(ops):
        outs = [conv_out[id(op)]] + list(op.outputs[1:])
        for n in outs:
            if isinstance(op, Alias):
                continue
            b, off = base(n)
            if b not in addr:
                addr[b] = arena.alloc(g.tensors[b].nbytes)
            addr[n] = addr[b] + off
        for b in set(base(x)[0] for x in op.inputs):
            if last_use.get(b) == i and b in addr and b not in g.inputs:
                arena.release(addr[b], g.tensors[b].nbytes)
    for n in root:
        b, off = base(n)
        addr[n] = addr[b] + off
    mem = MemoryPlan(base=-(-arena.top // 64) * 64)

    # --- lowering -------------------------------------------------------------------------
    segments, layers, host_ops = [], [], []
    prog = Program()
    seg_start = 0

    def close_accel():
        nonlocal seg_start
        records.pop("levels", None)     # a new program: the level registers are unknown
        records.pop("loads_zero", None)  # ... and so are LOADA's column step and first row
        records["chain"].clear()        # ... and no weight load moves into the one before
        if len(prog) > seg_start:
            prog.end()
            segments.append({"kind": "accel", "first": seg_start, "count": len(prog) - seg_start})
            seg_start = len(prog)

    records = {"half": 0, "chain": {}}
    phase_notes = []
    accel_reads = set()                 # the buffers the accelerator's operators read
    for op in ops:
        where = _accel_reason(op, g, cfg)
        if where is None and not isinstance(op, Alias):
            accel_reads.update(base(n)[0] for n in op.inputs)
        x = g.tensors[op.inputs[0]]
        out_name = conv_out[id(op)]
        y = g.tensors[out_name]
        start = len(prog)
        info = {"name": op.name, "op": op.kind + ("+Affine" if id(op) in affines
                                                   or id(op) in pairs else "")
                + ("+MaxPool" if id(op) in fused else "")
                + ("+Shuffle" if id(op) in shuffles else ""),
                "in_shape": list(x.shape), "out_shape": list(y.shape), "macs": 0,
                "weight_bytes": 0, "act_bytes": int(sum(g.tensors[n].nbytes for n in op.inputs)
                                                    + sum(g.tensors[n].nbytes
                                                          for n in op.outputs[1:])
                                                    + y.nbytes)}
        if where is None and isinstance(op, Alias):
            continue
        coded = [n for n in op.outputs if g.tensors[n].levels is not None]
        if coded and where is not None:
            raise CompileError(f"node {op.name!r} ({op.kind}): its output {coded[0]!r} has "
                               f"non-uniform levels, which only a convolution or Gemm on the "
                               f"accelerator applies; it runs on the host ({where})")
        if coded and not cfg.act_codes:
            raise CompileError(f"node {op.name!r} ({op.kind}): its output {coded[0]!r} has "
                               f"non-uniform levels, which need a configuration with "
                               f"act_codes = true")
        if where is None:
            try:
                if isinstance(op, (Conv, Gemm)):
                    wb, products, lowered, array_kw = _lower_conv_like(
                        op, g, cfg, prog, mem, addr, x, y, _pool_of(fused.get(id(op))), records,
                        affines.get(id(op)), op.group if id(op) in shuffles else 0)
                    phased = lowered.get("phase_loads")
                    info["weight_bytes"] = wb
                    kh, kw = (op.w.shape[2:] if isinstance(op, Conv) else (1, 1))
                    info["kernel"] = [int(kh), int(kw)]
                    O = op.w.shape[0]
                    cin = op.w.shape[1]
                    conv_hw = (_conv_hw(op, x) if isinstance(op, Conv) else (1, 1))
                    # the layer's MACs (its strided outputs); the array's work at stride 1
                    info["macs"] = int(O * cin * kh * kw * conv_hw[0] * conv_hw[1])
                    info["computed_macs"] = products
                    if phased:
                        # over its input's stride phases (computed_macs: the split kernel's
                        # products, its zero taps too, for the outputs it keeps)
                        k2 = phased["split_kernel"]
                        info.update(op=info["op"].replace(op.kind, f"{op.kind}+Phases", 1),
                                    phase_loads=phased)
                        before, after = phased["model_cycles"]
                        phase_notes.append(
                            f"{op.name}: stride-{phased['stride']} {kh}x{kw} conv as "
                            f"{phased['phases']} phase{'s' if phased['phases'] > 1 else ''} "
                            f"of {k2[0]}x{k2[1]} at stride 1, "
                            f"which its LOADAs take from its input (model cycles "
                            f"{before:,} -> {after:,})" if before is not None else
                            f"{op.name}: stride-{phased['stride']} conv over its input's "
                            f"phases")
                    if id(op) in split:
                        # a polyphase conv: the layer's own MACs and kernel; the array runs
                        # the split kernel (its zero taps too) in that kernel's mode (kw)
                        ps = split[id(op)]
                        info.update(op=info["op"].replace(op.kind, "Conv+Polyphase", 1),
                                    polyphase=ps, macs=ps["macs"],
                                    kernel=ps["kernel"])
                    info["ideal_cycles"] = round(info["macs"] / (cfg.multipliers * cfg.ffa_gain))
                    # the mode the array runs it in (the split kernel's over stride phases);
                    # an FC's rows are one output wide: a beat keeps one of its L columns
                    run_kw = int(phased["split_kernel"][1]) if phased else array_kw
                    cols = cfg.L if isinstance(op, Gemm) else 1
                    gain = cfg.mode_gain(run_kw) / cols
                    info["mode"] = cfg.fcu.mode_name(run_kw) + (", FC" if cols > 1 else "")
                    if "flat" in lowered:
                        # a pointwise conv over its map read as another shape
                        fl = lowered["flat"]
                        info["flat"] = fl
                        info["mode"] += f", map as {fl['shape'][0]}x{fl['shape'][1]}"
                    if isinstance(op, AvgPoolConv) and op.view is not None:
                        # a global pool wider than a kernel, its maps read as smaller ones
                        T, vh, vw = op.view
                        info["view"] = [int(T), int(vh), int(vw)]
                        info["mode"] += f", map as {T} of {vh}x{vw}"
                    # the roofline: what the mode's multipliers and the bus must at least do
                    info["compute_bound"] = round(info["macs"] / (cfg.multipliers * gain))
                    info["traffic_bound"] = -(-(info["act_bytes"] + O * cin * kh * kw + 12 * O)
                                              // cfg.bus_bytes)
                    # POST: a requantization a clock, a fused max-pool's k^2 an output
                    pk = _pool_of(fused.get(id(op)))
                    info["post_bound"] = _elements(y) * (pk[0] ** 2 if pk else 1)
                elif isinstance(op, MaxPool):
                    info.update(_lower_maxpool(op, cfg, prog, mem, addr, x, y, records))
                elif isinstance(op, ChannelAffine):
                    # an ADD of each channel with itself: the channel's own scale and offset
                    # (and, of two maps in turn, the second's record: flag AFFINE)
                    y1 = g.tensors[op.outputs[0]]
                    lo, hi = bounds(op, y1)
                    C = int(x.shape[1])
                    then = None
                    if id(op) in pairs:
                        nxt = pairs[id(op)]
                        then = nxt.params(y1) + (int(y.zero_point),) + tuple(
                            int(v) for v in bounds(nxt, y))
                    lower_channel_affine(prog, addr[x.name], addr[y.name], C,
                                         int(np.prod(x.shape[2:], dtype=np.int64)),
                                         op.params(x), x_zp=x.zero_point, y_zp=y1.zero_point,
                                         qmin=lo, qmax=hi, then=then, mem=mem, name=op.name)
                    info["compute_bound"] = 0
                    # the map's own traffic (it reads x once): its ADDs read it twice and
                    # give an element a clock, so they reach half of this bound at best
                    info["traffic_bound"] = -(-(x.nbytes + y.nbytes) // cfg.bus_bytes)
                    info["post_bound"] = _elements(y)
                elif isinstance(op, Transpose):
                    # whole H x W maps move: an ADD (a copy, or the requantization) for each
                    # run of maps that are consecutive in the input and the output
                    lo, hi = bounds(op, y)
                    p1 = [int(v[0]) for v in affine_to(x, y)]      # one map for all
                    hw = int(np.prod(x.shape[-2:], dtype=np.int64))
                    perm = [int(a) for a in np.asarray(op.perm).reshape(-1)]
                    src = np.arange(int(np.prod(x.shape[:-2]))).reshape(x.shape[:-2])
                    src = np.transpose(src, perm[:-2]).reshape(-1)   # output map -> input map
                    runs = []
                    for dst, sm in enumerate(src.tolist()):
                        if runs and runs[-1][0] + runs[-1][2] == sm:
                            runs[-1][2] += 1
                        else:
                            runs.append([sm, dst, 1])
                    lower_adds(prog, [(addr[x.name] + sm * hw, addr[y.name] + dm * hw, k * hw,
                                       p1) for sm, dm, k in runs],
                               x_zp=x.zero_point, y_zp=y.zero_point, qmin=lo, qmax=hi)
                    info["compute_bound"] = 0
                    info["traffic_bound"] = -(-info["act_bytes"] // cfg.bus_bytes)
                    info["post_bound"] = _elements(y)
                elif isinstance(op, Concat):
                    # the inputs its producers did not write in place, requantized (or
                    # copied) into their slices by ADDs
                    lo, hi = bounds(op, y)
                    in_place = [parent.get(n, (None,))[0] == y.name for n in op.inputs]
                    off = moved = 0
                    for n, kept in zip(op.inputs, in_place):
                        xt = g.tensors[n]
                        if not kept:
                            lower_channel_affine(prog, addr[n], addr[y.name] + off,
                                                 int(xt.shape[1]),
                                                 int(np.prod(xt.shape[2:], dtype=np.int64)),
                                                 affine_to(xt, y), x_zp=xt.zero_point,
                                                 y_zp=y.zero_point, qmin=lo, qmax=hi)
                            moved += xt.nbytes
                        off += xt.nbytes
                    info["act_bytes"] = 2 * moved
                    info["inputs_in_place"] = sum(in_place)
                    info["compute_bound"] = 0
                    info["traffic_bound"] = -(-2 * moved // cfg.bus_bytes)
                    info["post_bound"] = sum(_elements(g.tensors[n]) for n, kept in
                                             zip(op.inputs, in_place) if not kept)
                else:   # Add
                    a, b = (g.tensors[n] for n in op.inputs)
                    ka, kb, M, s = golden.add_params(a.scale, b.scale, y.scale, input_bits=14)
                    lo, hi = bounds(op, y)
                    lower_add(prog, addr[a.name], addr[b.name], addr[y.name], y.nbytes, ka=ka,
                              kb=kb, multiplier=M, shift=s, a_zp=a.zero_point,
                              b_zp=b.zero_point, y_zp=y.zero_point, qmin=lo, qmax=hi)
                    info["compute_bound"] = 0
                    info["traffic_bound"] = -(-info["act_bytes"] // cfg.bus_bytes)
                    info["post_bound"] = _elements(y)
            except LoweringError as e:
                raise CompileError(f"node {op.name!r} ({op.kind}): {e}") from e
            for at, n in records["chain"].pop("moved", []):
                if at < start:      # its first weight load went into an earlier layer's code:
                    # the last one with code at or before it (an in-place Concat has none);
                    # the layers after that one move down
                    k = max(j for j, li in enumerate(layers) if li["where"] == "accel"
                            and li["pc_count"] and li["pc_first"] <= at)
                    layers[k]["pc_count"] += n
                    for li in layers[k + 1:]:
                        if li["where"] == "accel":
                            li["pc_first"] += n
                    start += n
            info.update({"where": "accel", "segment": len(segments),
                         "pc_first": start, "pc_count": len(prog) - start})
            layers.append(info)
            continue
        # host operator
        info["macs"] = _host_macs(op, g)
        close_accel()
        desc = {"kind": "host", "op": type(op).__name__, "name": op.name,
                "inputs": [_tdesc(g.tensors[n], addr[n], "internal") for n in op.inputs],
                "outputs": [_tdesc(g.tensors[n], addr[n], "internal") for n in op.outputs],
                "reason": where}
        # the operator as data (class from an allow-list, fields as JSON, arrays as .npy):
        # an image is never code (ir.op_to_dict / op_from_dict)
        desc["attrs"] = op_to_dict(op)["attrs"]
        segments.append(desc)
        host_ops.append({"name": op.name, "op": getattr(op, "op_type", "") or op.kind,
                         "reason": where})
        info.update({"where": "host", "segment": len(segments) - 1, "reason": where,
                     "op_type": getattr(op, "op_type", "") or op.kind})
        layers.append(info)
    close_accel()
    if not segments:
        raise CompileError("the model has no operators")
    prog = _finish_code(prog, cfg, segments, layers)
    if not any(li["where"] == "accel" for li in layers):
        why = "; ".join(f"{li['name']} ({li['op']}): {li['reason']}" for li in layers[:6])
        raise CompileError(f"nothing in the model runs on the accelerator ({len(layers)} "
                           f"operators on the host: {why}{'; ...' if len(layers) > 6 else ''})")

    tensors = [_boundary(g, n, "input", addr[n], g.float_inputs) for n in g.inputs]
    tensors += [_boundary(g, n, "output", addr[n], g.float_outputs) for n in g.outputs]
    # the depth-first plan (not run yet: the accelerator runs layer by layer), for both
    # objectives; the image keeps both for ffacc report
    plans = {obj: plan_from_ops(g, cfg, ops, fused, lambda op: _accel_reason(op, g, cfg) is None,
                                objective=obj, outputs=conv_out) for obj in OBJECTIVES}
    plan = plans["bytes"]
    # inputs only host operators read (a host PhaseSplit's): the host keeps them, a board
    # is not sent them
    host_only = [n for n in g.inputs if base(n)[0] not in accel_reads and n not in g.outputs]
    meta = {"model": model_name, "config": cfg.to_dict(), "segments": segments,
            "host_only_inputs": host_only,
            "layers": layers, "float_inputs": g.float_inputs, "float_outputs": g.float_outputs,
            "notes": list(getattr(g, "notes", [])) + phase_notes,
            "fusion": {obj: {"totals": p.totals(), "groups": p.table()}
                       for obj, p in plans.items()}}
    try:
        img = build_image(cfg, prog, mem, tensors, meta)
    except LoweringError as e:
        raise CompileError(f"model {model_name!r}: {e}") from e
    code_base = img.entry
    for s in segments:
        if s["kind"] == "accel":
            s["entry"] = code_base + s["first"] * INSTR_BYTES
    for li in layers:
        if "pc_first" in li:
            li["pc"] = code_base + li["pc_first"] * INSTR_BYTES
    img.meta = meta
    return Compiled(img, layers, host_ops, g, plan)


def _finish_code(prog, cfg, segments, layers):
    """The program without the ``SET``s of values their registers already hold
    (:mod:`ffacc.compiler.known_sets`: mostly those a layer's first commands repeat from the
    layer before), with its short loops where the fetch unit's queue holds them whole
    (:mod:`ffacc.compiler.fetch_align`); the segments' and layers' instruction ranges
    follow."""
    keep = drop_known_sets(prog.words, cfg)
    kept = kept_index(keep)
    words, aligned = align_loops([w for w, k in zip(prog.words, keep) if k], cfg)
    new = [aligned[i] for i in kept]
    out = Program()
    out.words = words

    def span(first, count):
        return new[first], new[first + count] - new[first]

    for s in segments:
        if s["kind"] == "accel":
            s["first"], s["count"] = span(s["first"], s["count"])
    for li in layers:
        if "pc_first" in li:
            li["pc_first"], li["pc_count"] = span(li["pc_first"], li["pc_count"])
    return out


def _host_macs(op, g):
    """Multiply-accumulates of an operator the host runs: convolutions and matrix products
    (integer ones of the IR, float ones the quantizer left as ONNX nodes); 0 for the rest."""
    y = g.tensors[op.outputs[0]]
    w = getattr(op, "w", None)
    if w is None and getattr(op, "op_type", "") in ("Conv", "ConvTranspose", "Gemm", "MatMul",
                                                   "QLinearConv", "QLinearMatMul", "QGemm"):
        import onnx
        node = onnx.NodeProto()
        node.ParseFromString(op.node_proto)
        wname = node.input[3 if op.op_type.startswith("QLinear") or op.op_type == "QGemm"
                           else 1]
        w = op.initializers.get(wname)
    if w is None:
        return 0
    if np.ndim(w) == 4:                      # (O, C/g, kh, kw): per output element
        return int(np.prod(y.shape)) * int(np.prod(np.shape(w)[1:]))
    x = g.tensors[op.inputs[0]]              # Gemm/MatMul: K products per output
    return int(np.prod(y.shape)) * int(np.prod(x.shape[1:]))


def host_regions(layers):
    """Runs of consecutive host operators in ``layers`` (a compiled layer table): each region
    with its operators (by ONNX op), their MACs, the bytes they read and write, and the first
    and last layer; and the accelerator's share of all MACs, and the host operators' bytes
    (what a board's host link carries per image, at most: a region's inner tensors need not
    cross it)."""
    regions, cur = [], None
    for li in layers:
        if li.get("where") != "host":
            cur = None
            continue
        if cur is None:
            cur = {"first": li["name"], "layers": 0, "ops": {}, "macs": 0, "bytes": 0}
            regions.append(cur)
        cur["last"] = li["name"]
        cur["layers"] += 1
        for op in (li.get("op_type") or li["op"]).split("+"):   # a HostGraph: its nodes
            cur["ops"][op] = cur["ops"].get(op, 0) + 1
        cur["macs"] += int(li.get("macs") or 0)
        cur["bytes"] += int(li.get("act_bytes") or 0)
    host = sum(r["macs"] for r in regions)
    accel = sum(int(li.get("macs") or 0) for li in layers if li.get("where") == "accel")
    return {"regions": regions, "host_macs": host, "accel_macs": accel,
            "host_bytes": sum(r["bytes"] for r in regions),
            "accel_mac_share": accel / (accel + host) if accel + host else 1.0}


def _boundary(g, n, role, addr, onnx_names):
    """The image's description of graph input or output ``n``: where it is stored and what the
    ONNX model calls it and takes or gives there (float through Q/DQ, or the integers)."""
    t = g.tensors[n]
    model_name = onnx_names.get(n, n)
    return TensorDesc(n, role, addr, t.dtype, list(t.shape), t.scale, t.zero_point,
                      model_name=model_name, model_dtype=t.model_dtype,
                      model_float=model_name != n or not t.quantized)


def _conv_hw(op, x):
    """A Conv's output rows and columns at its stride (before a fused pooling)."""
    kh, kw = op.w.shape[2:]
    t, l, b, r = op.pads
    sy, sx = op.strides
    return ((x.shape[2] + t + b - kh) // sy + 1, (x.shape[3] + l + r - kw) // sx + 1)


def _narrow_levels(op, t):
    """The values a convolution's output ``t`` can take, as levels, when its clamp (a fused
    Relu or Clip: a uniform 2- to 4-bit activation's) leaves at most 16; else None."""
    lo, hi = t.qrange
    if op.clamp is not None:
        lo, hi = max(lo, op.clamp[0]), min(hi, op.clamp[1])
    return tuple(range(lo, hi + 1)) if 2 <= hi - lo + 1 <= CODE_LEVELS else None


def _concat_slices(g, ops, cfg, root):
    """``{input: (output, byte offset)}``: the inputs of the Concats on the accelerator that
    their producers write straight into the output (stored as it: same type, scale and zero
    point, no clamp; channel-axis slices of one image are contiguous). A tensor is a slice
    of one Concat at most, and neither a graph input nor a reshape (an Alias output) is one:
    those are copied in."""
    parent, taken = {}, set()
    for op in ops:
        if not isinstance(op, Concat) or _accel_reason(op, g, cfg) is not None:
            continue
        y = g.tensors[op.outputs[0]]
        off = 0
        for n in op.inputs:
            x = g.tensors[n]
            if op.requant(x, y) is None and n not in taken and op.inputs.count(n) == 1 and \
                    n not in root and n not in g.inputs:
                parent[n] = (y.name, off)
                taken.add(n)
            off += x.nbytes
    return parent


def _store_codes(g, cfg, ops, conv_out, narrow=True, affines=()):
    """Graph ``g`` with the maps stored as 4-bit codes marked (``QTensor.codes``): the output
    of a convolution with at most 16 levels (after its fused pool) that only convolutions on
    the accelerator read, none of them (nor the producer) cut into column tiles, and that is
    not a model output. Other maps with levels (and all of 5- and 6-bit codebooks) are stored
    a level a byte.

    With ``narrow``, a uniform output whose clamp leaves at most 16 values (a 2- to 4-bit
    activation) is such a map too: its levels are those values (:func:`_narrow_levels`), so
    ``POST``'s level map changes none of them and only the storage differs."""
    if not cfg.act_codes:
        return g
    readers = {}
    for op in ops:
        for n in op.inputs:
            readers.setdefault(n, []).append(op)

    def accel(r, kind):
        return isinstance(r, kind) and _accel_reason(r, g, cfg) is None

    def cut(op):
        """An average pool run a region at a time (its loads and stores start mid-row), or
        over its maps read as smaller ones."""
        return isinstance(op, AvgPoolConv) and (not op.count_include_pad
                                                or op.view is not None)

    def reads_codes(r, t):
        """Reader ``r`` of map ``t`` can load it as codes: a convolution (not one run a
        region at a time), or a flatten (``Alias``) into Gemms when rows of codes are
        contiguous (even width); returns the flattened names too."""
        if accel(r, Conv) and not cut(r):
            return []
        if isinstance(r, Alias) and t.shape[-1] % 2 == 0:
            rs = readers.get(r.outputs[0], [])
            if rs and r.outputs[0] not in g.outputs and all(accel(q, Gemm) for q in rs):
                return [r.outputs[0]]
        return None

    tensors = dict(g.tensors)
    for op in ops:
        # (a fused affine map's output: its levels are not the conv's)
        if not isinstance(op, Conv) or cut(op) or id(op) in affines:
            continue
        lv = g.tensors[op.outputs[0]].levels
        added = None                    # narrow levels this pass gives a uniform output
        if lv is None and narrow and accel(op, Conv):
            lv = added = _narrow_levels(op, g.tensors[op.outputs[0]])
        if lv is None or len(lv) > CODE_LEVELS:
            continue
        out = conv_out[id(op)]
        t, x = g.tensors[out], g.tensors[op.inputs[0]]
        rs = readers.get(out, [])
        via = [reads_codes(r, t) for r in rs]
        if (out not in g.outputs and rs and None not in via and x.shape[-1] <= cfg.lb_width
                and t.shape[-1] <= cfg.lb_width):
            if added:
                tensors[op.outputs[0]] = replace(tensors[op.outputs[0]], levels=added)
            for n in [out] + [n for v in via for n in v]:
                tensors[n] = replace(tensors[n], codes=True)
    return replace(g, tensors=tensors)


def _gemm_as_conv(op, x, y, cfg):
    """``y = W x`` as a valid correlation: ``x`` viewed as ``C'`` rows of ``wr`` values,
    ``W[o]`` likewise, so the FFA engines take ``wr``-tap rows (MAC mode would use 1 of ``L``
    lanes); the zero-padded tail of the last row multiplies zero weights. Returns the kernel
    ``(O, C', 1, wr)`` and the input's shape ``(C', 1, wr)``.

    ``wr`` is the one the cycle model finds cheapest among the multiples of the engines'
    piece (``N`` taps) and the widest row: a row of one piece streams its passes back to back,
    where each further piece of a wider row starts the FCUs' pipeline again (the digits
    model's FC layer: 110 clocks a lane group in 12-wide rows, 4 pieces; 51 in 3-wide ones),
    and wider rows need fewer line-buffer rows."""
    O, K = op.w.shape
    N = cfg.fcu.piece_taps
    top = min(cfg.max_kernel, cfg.lb_width, K)

    def shaped(wr):
        cp = -(-K // wr)
        wpad = np.zeros((O, cp * wr), dtype=op.w.dtype)
        wpad[:, :K] = op.w
        return wpad.reshape(O, cp, 1, wr), (cp, 1, wr)

    best = None
    rows = sorted({top} | set(range(N, top + 1, N)))
    if x.codes:                         # 4-bit codes: rows start on a byte
        rows = [wr for wr in rows if wr % 2 == 0] or [2]
    for wr in rows:
        w, in_shape = shaped(wr)
        layer = ir_conv_layer(op, x, y, w, in_shape, (0, 0, 0, 0), 1)
        try:
            cycles = conv_plan_cycles(cfg, layer, name=op.name)
        except LoweringError:
            continue                    # e.g. too many rows for the line buffer
        if best is None or cycles < best[0]:
            best = (cycles, w, in_shape)
    return (best[1], best[2]) if best else shaped(rows[-1])


def _levels_written(g, name):
    """The levels of map ``name`` stored as codes: its convolution's (through a fused
    pool)."""
    while g.tensors[name].levels is None:       # through a flatten and a fused pool
        name = g.producer(name).inputs[0]
    return g.tensors[name].levels


def _lower_layer(cfg, layer, prog, mem, x_addr, y_addr, name, records, region=None):
    """:func:`lower_conv` of ``layer`` in a program's sequence: the output-level registers
    keep the layer before's where they are the same, the record buffer's half alternates
    (``records["half"]``), and LOADA's column step and first row are known to be zero after
    a layer that did not read stride phases. Returns the outputs computed and ``info``."""
    layer.levels_set = records.get("levels", ()) != layer.levels
    records["levels"] = layer.levels
    info = {}
    computed = lower_conv(cfg, layer, prog, mem, x_addr, y_addr, name=name,
                          records_half=records["half"], chain=records["chain"], info=info,
                          loads_zero=records.get("loads_zero", False), region=region)
    # a layer over its phases leaves A_CSHIFT and A_LB0 set; any other zeroes them
    records["loads_zero"] = "phase_loads" not in info
    records["half"] ^= 1
    return computed, info


def _lower_maxpool(op, cfg, prog, mem, addr, x, y, records):
    """A MaxPool that no conv runs before it (:func:`~ffacc.compiler.lower.maxpool_layers`:
    an identity conv of each lane group's channels, padded with the activation minimum, and
    POST's pool of its windows). Returns the layer's report fields."""
    _, C, H, W = (int(v) for v in x.shape)
    _, _, Ho, Wo = (int(v) for v in y.shape)
    k, s = op.window
    computed = 0
    for c0, layer in maxpool_layers(cfg, C, H, W, k, s, op.pads):
        if layer.out_shape[1:] != (Ho, Wo):
            raise LoweringError(f"output {Ho}x{Wo} is not the {layer.out_shape[1]}x"
                                f"{layer.out_shape[2]} of its windows (ceil_mode?)")
        rows, _ = _lower_layer(cfg, layer, prog, mem, addr[x.name] + c0 * H * W,
                               addr[y.name] + c0 * Ho * Wo, op.name, records)
        computed += rows * layer.w.shape[0] * layer.w.shape[1]
    return {"kernel": [int(k), int(k)],
            "mode": f"max-pool {k}x{k}/{s}: identity MAC x{cfg.fcu.mac_channels}",
            "computed_macs": int(computed), "compute_bound": 0,
            "traffic_bound": -(-(x.nbytes + y.nbytes) // cfg.bus_bytes),
            "post_bound": _elements(y) * k * k}


def _pack_layer(op, x, y, w, g0, n, m, own, hw, pads, stride, pool):
    """The :class:`ConvLayer` of groups ``g0``.. (``n``) of grouped conv ``op`` (weights
    ``w``), ``m`` a conv (block-diagonal); ``own``: whole packs, each lane group reading its
    own inputs."""
    groups = op.group if isinstance(op, Conv) else 1
    Og, Cg = w.shape[0] // groups, w.shape[1]
    k = min(m, n)
    wl = np.concatenate([block_diagonal(w[j * Og:(j + k) * Og], k) for j in range(g0, g0 + n, m)])
    layer = ir_conv_layer(op, x, y, wl, (k * Cg,) + tuple(hw), pads, stride, pool,
                          out=slice(g0 * Og, (g0 + n) * Og))
    layer.lane_inputs = own
    return layer


def _group_packs(op, cfg, x, y, w, hw, pads, stride, pool):
    """How grouped conv ``op`` runs: ``([(first group, groups, own)], m)``, ``m`` groups a
    conv (:func:`~ffacc.compiler.lower.pack_groups`). Where ``m`` groups are a lane group's
    output channels, the whole packs are one conv whose lane groups each load their own
    inputs (``own``: a loop, however many groups, each lane group's inputs in channel groups
    where they do not fit the buffers at once) if that plan fits them; the rest, a conv
    each. Raises
    :class:`LoweringError` where a pack does not lower."""
    groups = op.group if isinstance(op, Conv) else 1
    Og = w.shape[0] // groups
    m = pack_groups(cfg, groups, Og, w.shape[3])
    full = (groups - groups % m if groups > 1 and m * Og == cfg.group_lanes(w.shape[3])
            and pool is None else 0)
    if full:
        try:
            conv_plan_cycles(cfg, _pack_layer(op, x, y, w, 0, full, m, True, hw, pads, stride,
                                              pool), op.name)
        except LoweringError:
            full = 0                    # (a conv a pack, whose channels may be split)
    packs = ([(0, full, True)] if full else []) + [(g0, min(m, groups - g0), False)
                                                   for g0 in range(full, groups, m)]
    for g0, n, own in dict.fromkeys(packs[:1] + packs[-1:]) if groups > 1 else ():
        if not own:
            conv_plan_cycles(cfg, _pack_layer(op, x, y, w, g0, n, m, own, hw, pads, stride,
                                              pool), op.name)
    return packs, m


def _lower_conv_like(op, g, cfg, prog, mem, addr, x, y, pool, records, affine=None,
                     shuffle=0):
    """Conv (per group) or Gemm (as a 1x1 conv over K channels) through :func:`lower_conv`.
    ``records["half"]``: the record buffer's half the next conv's records go to (it
    alternates). Returns the weight bytes, the products the array computes, the lowering's
    ``info`` (:func:`lower_conv`'s: its stride-phase loads, its map's other shape) and the
    kernel width the array runs (an FC's row width).

    Groups with fewer output channels than a ``CONV`` computes (a depthwise conv's one) run
    :func:`pack_groups` at a time: one conv of block-diagonal weights, each group's outputs
    from its own inputs (and zeros for the others'), on lanes that would otherwise idle.

    ``affine``: a ChannelAffine fused after it (:func:`_fuse_affines`): ``y`` is the affine
    map's output, and the conv's own output tensor gives the requantization. ``shuffle``:
    the groups of a channel shuffle after it (:func:`_fuse_shuffles`; a conv a group):
    group ``i``'s outputs go to maps ``i``, ``i + G``, ... of ``y``."""
    # the tensor whose quantization the conv's requantization gives
    yq = g.tensors[op.outputs[0]] if affine is not None else y
    aff = None
    if affine is not None:
        lo, hi = bounds(affine, y)
        aff = affine.params(yq) + (int(y.zero_point), int(lo), int(hi))
    if isinstance(op, Gemm):
        w, in_shape = _gemm_as_conv(op, x, yq, cfg)
        groups, pads, stride = 1, (0, 0, 0, 0), 1
        out_hw = 1
    else:
        w = op.w
        groups = op.group
        in_shape = tuple(x.shape[1:])
        pads, stride = op.pads, op.strides[0]
        out_hw = y.shape[2] * y.shape[3]
        if isinstance(op, AvgPoolConv) and op.view is not None:
            w, in_shape = op.view_conv()        # (a global pool: its maps as smaller ones)
    O = w.shape[0]
    Og, Cg = O // groups, w.shape[1]
    C, H, W = in_shape
    # a channel's bytes: rows of ceil(width / 2) for 4-bit codes
    x_plane = x.nbytes // (x.shape[0] * x.shape[1]) if x.codes else H * W
    y_plane = y.nbytes // (y.shape[0] * y.shape[1]) if y.codes else out_hw
    wbytes = products = 0
    phased = {}
    packs, m = _group_packs(op, cfg, x, yq, w, (H, W), pads, stride, pool)
    # an average pool whose border windows hold fewer values: a conv per region of one count
    regions = [(None, None)]
    if isinstance(op, AvgPoolConv) and not op.count_include_pad:
        regions = [((rows, cols), count) for rows, cols, count in op.regions(H, W)]
    for (region, count), (g0, n, own) in ((r, p) for r in regions for p in packs):
        layer = _pack_layer(op, x, yq, w, g0, n, m, own, (H, W), pads, stride, pool)
        wl = layer.w
        sl = slice(g0 * Og, (g0 + n) * Og)
        if count is not None:
            M, sh = op.requant(count, x, yq)
            layer.multiplier, layer.shift = M[sl], sh[sl]
        if aff is not None:
            layer.affine = tuple(a[sl] for a in aff[:5]) + aff[5:]
        layer.levels = g.tensors[op.outputs[0]].levels
        layer.y_codes = y.codes
        layer.x_levels = _levels_written(g, x.name) if x.codes else None
        before = mem.next
        if shuffle:                     # (a pack's outputs are groups g0.. of Og)
            layer.out_shuffle = (shuffle, Og)
        computed, info = _lower_layer(cfg, layer, prog, mem, addr[x.name] + g0 * Cg * x_plane,
                                      addr[y.name] + g0 * (1 if shuffle else Og) * y_plane,
                                      op.name, records, region)
        # the products the array runs: each output's over the layer's inputs (zeros of the
        # other groups too), or over its stride phases' split kernel
        ph = info.get("phase_loads")
        per_out = (ph["channels"] * ph["split_kernel"][0] * ph["split_kernel"][1] if ph
                   else wl[0].size)
        products += int(computed) * wl.shape[0] * per_out
        phased.update(info)
        wbytes += mem.next - before
    return wbytes, products, phased, int(w.shape[3])
