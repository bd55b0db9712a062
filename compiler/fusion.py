"""Depth-first layer groups: which consecutive layers can run fused, a few rows at a time, with
the maps between them kept on chip, and what that needs and saves per image.

The published design this project starts from (``DESIGN.md`` §8) keeps, for each layer, only
the input rows its next output rows need (``T = 2k - 2`` for a ``k x k`` kernel at stride 1,
two ping-pong halves) and runs consecutive layers depth-first, so no intermediate map goes to
memory. :func:`plan_groups` makes that plan for a compiled graph and an accelerator
configuration:

* A **layer** is a convolution the accelerator runs (with its fused max-pool), an
  elementwise ``Add`` or a per-channel affine map (``ChannelAffine``: a BatchNormalization
  the quantizer left in float), elementwise too. Other operators (fully-connected layers,
  global pools, concats, host operators, reshapes) end a group and run as today.
* A layer's **window** is ``(k, s, p)``: the input rows one output row spans, the rows between
  output rows, the padding above (a fused pool composes with its conv). Each step makes
  ``m = max(1, k - 1)`` output rows (even, with a fused pool) from ``T = (m - 1) s + k``
  input rows; the input's region holds ``T`` rows of every channel.
* A map two layers of a group read (a residual block's input, read by its first conv and by
  its ``Add``) is held for the one that needs more rows: the ``Add`` needs its step plus the
  rows by which its other input lags (each conv on that path lags ``k - 1 - p`` rows, scaled
  by its stride).
* A **group** grows layer by layer while its activation regions fit the line buffer
  (``lb_rows x lb_width`` bytes), every map in it is at most ``lb_width`` wide, and its
  weights fit the weight buffer (``wb_sets`` sets), so they are read once per image.
  A layer that fits none of these alone runs by itself, layer by layer.

Traffic per image: a group reads its inputs from memory and writes its outputs once; layer by
layer every layer reads its inputs and writes its output once (the least that execution
moves; ``ffacc report`` also gives what the compiled program moves, from the ISS). Weights
are read once per image either way (the plan keeps a group's weights resident).

This is the plan and its accounting; the accelerator runs layer by layer (a fused group needs
``POST`` into a line-buffer region, which it does not have yet).
"""

from dataclasses import dataclass, field
from math import ceil

from .ir import Add, Alias, ChannelAffine, Conv

__all__ = ["plan_groups", "Layer", "Group", "FusionPlan", "window_rows"]


@dataclass
class Layer:
    name: str
    kind: str                  # "conv" or "add" (elementwise: an Add or a ChannelAffine)
    inputs: list               # input tensor names
    output: str
    in_shapes: list            # (C, H, W) of each input
    out_shape: tuple           # (C, H, W)
    k: int = 1                 # rows one output row spans
    s: int = 1                 # rows between output rows
    p: int = 0                 # padding rows above
    weight_bytes: int = 0      # int8 weights read from memory
    weight_sets: int = 0       # weight-buffer sets they take

    @property
    def step_rows(self):
        """Output rows a step makes."""
        return max(1, self.k - 1)

    @property
    def window(self):
        """Input rows a step needs: ``T = (m - 1) s + k``."""
        return (self.step_rows - 1) * self.s + self.k


@dataclass
class Group:
    layers: list
    fused: bool                # False: one layer that runs by itself (layer by layer)
    regions: dict = field(default_factory=dict)     # tensor -> (rows, C, W) held on chip
    reads: dict = field(default_factory=dict)       # tensor -> bytes read from memory
    writes: dict = field(default_factory=dict)      # tensor -> bytes written to memory
    why: str = ""              # why the group ends here (or why a layer runs alone)
    steps: int = 1             # row steps of the group (each step: every layer's next rows)
    weight_traffic: int = 0    # weight bytes read per image (once a step if they do not fit)

    @property
    def onchip_pixels(self):
        return sum(r * c * w for r, c, w in self.regions.values())

    @property
    def weight_bytes(self):
        return sum(x.weight_bytes for x in self.layers)

    @property
    def weight_sets(self):
        return sum(x.weight_sets for x in self.layers)


@dataclass
class FusionPlan:
    groups: list
    capacity_pixels: int       # the line buffer: lb_rows x lb_width bytes
    weight_sets: int           # the weight buffer's sets
    layer_by_layer: dict       # tensor reads and writes of layer-by-layer execution (bytes)
    other_ops: list            # operators outside any group: (name, kind)

    def totals(self):
        """Per image: on-chip activation storage (the largest group's regions; groups run one
        after the other), activation bytes read and written, weight bytes, for the plan and for
        layer-by-layer execution."""
        fused_r = sum(sum(g.reads.values()) for g in self.groups)
        fused_w = sum(sum(g.writes.values()) for g in self.groups)
        lbl_r, lbl_w = self.layer_by_layer["read"], self.layer_by_layer["written"]
        lbl_onchip = max((_lbl_pixels(x) for g in self.groups for x in g.layers), default=0)
        plan = max((g.onchip_pixels for g in self.groups), default=0)
        return {
            "groups": len(self.groups), "fused_groups": sum(g.fused for g in self.groups),
            "layers": sum(len(g.layers) for g in self.groups),
            "fused_layers": sum(len(g.layers) for g in self.groups if g.fused),
            "onchip_pixels": plan, "onchip_pixels_layer_by_layer": lbl_onchip,
            "capacity_pixels": self.capacity_pixels,
            "act_read": fused_r, "act_written": fused_w,
            "act_read_layer_by_layer": lbl_r, "act_written_layer_by_layer": lbl_w,
            "act_traffic_ratio": round((lbl_r + lbl_w) / max(1, fused_r + fused_w), 2),
            "weight_bytes": sum(g.weight_bytes for g in self.groups),
            "weight_traffic": sum(g.weight_traffic for g in self.groups),
            "other_ops": len(self.other_ops),
        }

    def table(self):
        """One row per group: its layers, regions, traffic and why it ends."""
        rows = []
        for i, g in enumerate(self.groups):
            rows.append({
                "group": i, "fused": g.fused, "layers": [x.name for x in g.layers],
                "onchip_pixels": g.onchip_pixels,
                "regions": {t: list(v) for t, v in g.regions.items()},
                "act_read": sum(g.reads.values()), "act_written": sum(g.writes.values()),
                "weight_bytes": g.weight_bytes, "weight_sets": g.weight_sets,
                "weight_traffic": g.weight_traffic, "steps": g.steps, "ends": g.why})
        return rows


def _lbl_pixels(x):
    """On-chip rows of a layer run by itself today: the same window of its input (its band)."""
    return max(x.window * c * w for c, h, w in x.in_shapes[:1])


def window_rows(k, s, p, pool):
    """``(k, s, p)`` of a conv's rows, composed with the max-pool ``pool`` after it (``(kp,
    sp)``: windows of ``kp`` rows at stride ``sp``; ``None``: none)."""
    if pool:
        kp, sp = pool
        return s * (kp - 1) + k, s * sp, p
    return k, s, p


def _chw(shape):
    shape = tuple(shape)
    return shape[-3:] if len(shape) >= 3 else None


def _weight_sets(op, cfg):
    """Weight-buffer sets a conv's weights take on ``cfg`` (lane groups x pieces x passes)."""
    O, Cg, kh, kw = op.w.shape
    fc = cfg.fcu
    P = cfg.group_lanes(kw)             # a 1-wide kernel in MAC mode: mac_pairs' 2 a unit
    pieces = ceil(kw / fc.piece_taps)   # (MAC mode: one)
    return op.group * ceil(O / op.group / P) * pieces * ceil(Cg * kh / fc.rows)


OBJECTIVES = ("bytes", "activations")


def plan_groups(g, cfg, layers, fused_pools, other_ops, objective="bytes", capacity=None,
                outputs=None):
    """The depth-first plan of graph ``g`` on ``cfg``.

    ``layers``: the operators the accelerator runs, in order (convs and adds; others end a
    group); ``fused_pools``: ``id(conv) -> MaxPool`` fused after it; ``other_ops``: the
    operators that end groups (host operators, fully-connected layers, ...).
    ``objective``: ``"bytes"`` grows a group while that does not move more bytes in all
    (activations and weights); ``"activations"`` while it fits (the published design's rule:
    no intermediate map to memory, weights read again each step when they do not fit).
    ``capacity``: on-chip activation bytes (default: the line buffer's). ``outputs``:
    ``id(conv) ->`` the map it writes, where that is not its own output or its pool's (a fused
    affine map's)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"fusion objective {objective!r}: one of {', '.join(OBJECTIVES)}")
    cap = capacity if capacity is not None else cfg.lb_rows * cfg.lb_width
    out_of = {}                 # a fused conv's output name: the pool's
    ls = []
    for op in layers:
        pool = fused_pools.get(id(op))
        out = pool.outputs[0] if pool is not None else (outputs or {}).get(id(op),
                                                                          op.outputs[0])
        out_of[op.outputs[0]] = out
        ins = [_chw(g.tensors[n].shape) for n in op.inputs]
        oshape = _chw(g.tensors[out].shape)
        if isinstance(op, Conv):
            kh = (op.w.shape[2] - 1) * op.dilations[0] + 1
            k, s, p = window_rows(kh, op.strides[0], op.pads[0],
                                  None if pool is None else pool.window)
            ls.append(Layer(op.name, "conv", [op.inputs[0]], out, ins[:1], oshape, k, s, p,
                            int(op.w.size), _weight_sets(op, cfg)))
        else:
            ls.append(Layer(op.name, "add", list(op.inputs), out, ins, oshape))
    consumers = {}
    for x in ls:
        for t in x.inputs:
            consumers.setdefault(t, []).append(x)
    external = set(g.outputs)
    for op in other_ops:
        external |= set(op.inputs)

    def nbytes(t):
        c, h, w = _chw(g.tensors[t].shape)
        return c * h * w

    # layer by layer: each layer reads its inputs and writes its output once
    lbl = {"read": sum(nbytes(t) for x in ls for t in x.inputs),
           "written": sum(nbytes(x.output) for x in ls)}

    def lags(members):
        """Each map's lag: the rows of it behind the group's input rows (in its own rows):
        a conv adds the rows its window reaches below (``k - 1 - p``), scaled by its stride;
        an add is as late as its later input."""
        lag = {}
        for x in members:
            if x.kind == "conv":
                lag[x.output] = ceil((lag.get(x.inputs[0], 0) + x.k - 1 - x.p) / x.s)
            else:
                lag[x.output] = max(lag.get(u, 0) for u in x.inputs)
        return lag

    def regions(members, n):
        """tensor -> (rows, C, W) held with ``n`` steps: a conv's input its window ``T``; an
        add's input its step plus the rows by which the other input lags it."""
        held, lag = {}, lags(members)
        for x in members:
            m = ceil(x.out_shape[1] / n)
            for t in x.inputs:
                c, h, w = _chw(g.tensors[t].shape)
                if x.kind == "conv":
                    need = (m - 1) * x.s + x.k
                else:
                    need = m + max(0, max(lag.get(u, 0) for u in x.inputs) - lag.get(t, 0))
                rows = min(h, need)
                if rows > held.get(t, (0,))[0]:
                    held[t] = (rows, c, w)
        return held

    def pixels(held):
        return sum(r * c * w for r, c, w in held.values())

    def fused_cost(members):
        """``(traffic bytes, steps, regions)`` of ``members`` run fused, or ``(None, why)``:
        the fewest steps (most rows a step) whose regions fit the line buffer; weights read
        once if the group's sets fit the weight buffer, else once a step the layer works in."""
        top = max(x.out_shape[1] for x in members)
        held = regions(members, 1)
        if any(w > cfg.lb_width for _, _, w in held.values()):
            return None, f"a map wider than the line buffer ({cfg.lb_width})"
        n = 1
        while pixels(held) > cap:
            if n >= top:
                return None, f"its rows do not fit the line buffer ({cap:,} bytes)"
            n += 1
            held = regions(members, n)
        inside = {x.output for x in members}
        reads = {t: nbytes(t) for x in members for t in x.inputs if t not in inside}
        writes = {x.output: nbytes(x.output) for x in members if leaves(x, members)}
        wsets = sum(x.weight_sets for x in members)
        # a layer streams its weights once a step it works in (ceil(H / m) of the n)
        wbytes = sum(x.weight_bytes * (1 if wsets <= cfg.wb_sets else
                                        ceil(x.out_shape[1] / ceil(x.out_shape[1] / n)))
                     for x in members)
        return (sum(reads.values()) + sum(writes.values()) + wbytes, n, held, reads, writes,
                wbytes), ""

    def leaves(x, members):
        later = [y for y in consumers.get(x.output, []) if y not in members]
        return bool(later) or x.output in external or x.output not in consumers

    def alone(x, why):
        """A layer run by itself, layer by layer: its inputs read, its output written, its
        weights once."""
        grp = Group([x], False, why=why, steps=1,
                    reads={t: nbytes(t) for t in x.inputs}, writes={x.output: nbytes(x.output)},
                    weight_traffic=x.weight_bytes)
        grp.regions = {x.inputs[0]: (min(x.window, x.in_shapes[0][1]), x.in_shapes[0][0],
                                     x.in_shapes[0][2])}
        return grp

    def close(members, res, why):
        if len(members) == 1:
            return alone(members[0], why)
        cost, n, held, reads, writes, wbytes = res
        return Group(list(members), True, held, reads, writes, why, n, wbytes)

    def cost_alone(x):
        return sum(nbytes(t) for t in x.inputs) + nbytes(x.output) + x.weight_bytes

    groups, cur, cur_res, cur_cost = [], [], None, 0
    for x in ls:
        # the next layer reads a map of the group, or the group's input (a residual block's
        # shortcut conv beside its main path)
        linked = cur and any(t in {y.output for y in cur} | {u for y in cur for u in y.inputs}
                             for t in x.inputs)
        if linked:
            res, why = fused_cost(cur + [x])
            if res is not None and (objective == "activations"
                                    or res[0] <= cur_cost + cost_alone(x)):
                cur, cur_res, cur_cost = cur + [x], res, res[0]
                continue
            if res is not None:
                why = "fusing the next layer moves more bytes (its weights, once a step)"
        else:
            why = "the next layer reads none of this group's maps"
        if cur:
            groups.append(close(cur, cur_res, why))
        cur, cur_res, cur_cost = [x], None, cost_alone(x)
    if cur:
        groups.append(close(cur, cur_res, "the last layer"))
    return FusionPlan(groups, cap, cfg.wb_sets, lbl,
                      [(op.name, op.kind) for op in other_ops if not isinstance(op, Alias)])


def plan_from_ops(g, cfg, ops, fused_pools, on_accel, **kw):
    """:func:`plan_groups` from a compile's operator list: the accelerator's convs, adds and
    per-channel affine maps are the layers (``on_accel(op)``), the rest end groups. ``kw``:
    :func:`plan_groups`'s (``outputs``: each op's id to the map it writes)."""
    # (an elementwise layer over a vector, a Gemm's output, is no map: it ends a group)
    layers = [op for op in ops if isinstance(op, (Conv, Add, ChannelAffine)) and on_accel(op)
              and (isinstance(op, Conv) or all(_chw(g.tensors[n].shape)
                                                 for n in op.inputs + op.outputs))]
    ids = {id(op) for op in layers}
    others = [op for op in ops if id(op) not in ids]
    return plan_groups(g, cfg, layers, fused_pools, others, **kw)
