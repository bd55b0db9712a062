"""The depth-first plan (compiler/fusion.py) on small hand-built graphs: each figure worked out
by hand from the rule (T = (m - 1) s + k input rows a step, a residual's rows, the bytes that
cross memory), the group boundaries, both objectives and the errors."""

import numpy as np
import pytest

from ffacc.compiler.fusion import plan_groups
from ffacc.compiler.ir import Add, Conv, Gemm, Graph, MaxPool, QTensor
from ffacc.hw.config import ACCEL_PRESETS

CFG = ACCEL_PRESETS["ulx3s"]          # line buffer 2048 x 64, 256 weight sets


def t(name, c, h, w):
    return QTensor(name, (1, c, h, w), "uint8", 0.1, 0)


def conv(name, x, y, cin, cout, k=3, pad=1, stride=1):
    return Conv(name, [x], [y], w=np.ones((cout, cin, k, k), np.int8),
                w_scale=np.ones(cout), w_zp=np.zeros(cout, np.int8),
                bias=np.zeros(cout, np.int32), pads=(pad, pad, pad, pad),
                strides=(stride, stride))


def chain(H=16, W=16, C=(4, 8, 8, 8)):
    """x -> conv a -> conv b -> conv c, 3x3 pad 1."""
    ts = [t(f"t{i}", c, H, W) for i, c in enumerate(C)]
    ops = [conv(f"c{i}", f"t{i}", f"t{i + 1}", C[i], C[i + 1]) for i in range(len(C) - 1)]
    g = Graph("chain", {x.name: x for x in ts}, ops, ["t0"], [ts[-1].name])
    return g, ops


def test_a_chain_that_fits_is_one_group_reading_its_input_and_writing_its_output():
    g, ops = chain()
    plan = plan_groups(g, CFG, ops, {}, [])
    (grp,) = plan.groups
    assert grp.fused and grp.steps == 1 and [x.name for x in grp.layers] == ["c0", "c1", "c2"]
    # whole maps on chip (one step): 16 rows of each input
    assert grp.regions == {"t0": (16, 4, 16), "t1": (16, 8, 16), "t2": (16, 8, 16)}
    assert grp.reads == {"t0": 4 * 256} and grp.writes == {"t3": 8 * 256}
    tot = plan.totals()
    assert tot["act_read_layer_by_layer"] == (4 + 8 + 8) * 256
    assert tot["act_written_layer_by_layer"] == 3 * 8 * 256
    assert tot["act_traffic_ratio"] == round((20 + 24) * 256 / (12 * 256), 2)


def test_a_small_buffer_takes_more_steps_of_fewer_rows():
    """Capacity 1,000 bytes: one step needs 16 rows x (4 + 8 + 8) x 16 = 5,120; n steps need
    T = (ceil(16 / n) - 1) + 3 rows of each: n = 8 gives 4 rows, 4 x 20 x 16 = 1,280; n = 16
    gives 3 rows, 960 <= 1,000."""
    g, ops = chain()
    (grp,) = plan_groups(g, CFG, ops, {}, [], capacity=1000).groups
    assert grp.steps == 16
    assert grp.regions == {"t0": (3, 4, 16), "t1": (3, 8, 16), "t2": (3, 8, 16)}
    assert grp.onchip_pixels == 960
    with pytest.raises(ValueError, match="fusion objective 'speed'"):
        plan_groups(g, CFG, ops, {}, [], objective="speed")


def test_a_residual_holds_the_rows_its_other_path_lags():
    """x -> a -> b -> c; add(x, c): c lags x by 3 rows (each 3x3 pad 1 reaches a row below),
    so the add holds its step plus 3 rows of x, one more than conv a's window. Capacity 800
    bytes (8 channels x 8 columns = 64 a row): n = 4 (m = 2) needs x max(T = 4, 2 + 3) = 5,
    a 4, b 4, c 2 = 15 rows (960); n = 8 (m = 1) needs x 4, a 3, b 3, c 1 = 11 rows (704)."""
    ts = [t(n, 8, 8, 8) for n in ("x", "a", "b", "c", "y")]
    a, b, c = conv("ca", "x", "a", 8, 8), conv("cb", "a", "b", 8, 8), conv("cc", "b", "c", 8, 8)
    add = Add("add", ["x", "c"], ["y"])
    g = Graph("res", {x.name: x for x in ts}, [a, b, c, add], ["x"], ["y"])
    (grp,) = plan_groups(g, CFG, [a, b, c, add], {}, [], capacity=800).groups
    assert grp.steps == 8, grp
    assert grp.regions == {"x": (4, 8, 8), "a": (3, 8, 8), "b": (3, 8, 8), "c": (1, 8, 8)}
    assert grp.reads == {"x": 512} and grp.writes == {"y": 512}
    (one,) = plan_groups(g, CFG, [a, b, c, add], {}, []).groups      # whole maps
    assert one.steps == 1 and one.onchip_pixels == 4 * 512


def test_the_objectives_trade_weights_against_activations():
    """Weights that do not fit the weight buffer are read once a step: with the 'bytes'
    objective the second conv (256 x 256 x 3 x 3 = 589,824 weights, more sets than the
    buffer holds) runs alone, as fusing it would read its weights once a step; with
    'activations' everything fuses and the weights are read once a step."""
    ts = [t("x", 16, 32, 32), t("a", 256, 32, 32), t("b", 256, 32, 32)]
    a, b = conv("ca", "x", "a", 16, 256), conv("cb", "a", "b", 256, 256)
    g = Graph("wide", {x.name: x for x in ts}, [a, b], ["x"], ["b"])
    by_bytes = plan_groups(g, CFG, [a, b], {}, [], capacity=64 * 1024)
    assert [len(x.layers) for x in by_bytes.groups] == [1, 1]
    assert "moves more bytes" in by_bytes.groups[0].why
    by_acts = plan_groups(g, CFG, [a, b], {}, [], objective="activations", capacity=64 * 1024)
    (grp,) = by_acts.groups
    assert grp.fused and grp.steps > 1
    m = -(-32 // grp.steps)
    assert grp.weight_traffic == (16 * 256 * 9 + 256 * 256 * 9) * -(-32 // m)
    assert by_acts.totals()["act_written"] == 256 * 32 * 32


def test_group_boundaries_name_their_reason():
    """A map wider than the line buffer runs alone; a layer that reads none of the group's
    maps (nor its input) starts a new one; a fully-connected layer is not a layer of any
    group."""
    wide = [t("x", 4, 8, 100), t("y", 4, 8, 100)]
    op = conv("c", "x", "y", 4, 4)
    g = Graph("w", {x.name: x for x in wide}, [op], ["x"], ["y"])
    (grp,) = plan_groups(g, CFG, [op], {}, []).groups
    assert not grp.fused and grp.reads == {"x": 3200} and grp.writes == {"y": 3200}
    g2, ops = chain()
    other = conv("d", "v", "u", 4, 4)
    g2.tensors["u"], g2.tensors["v"] = t("u", 4, 16, 16), t("v", 4, 16, 16)
    fc = Gemm("fc", ["t3"], ["z"])
    plan = plan_groups(g2, CFG, ops + [other], {}, [fc])
    assert [[x.name for x in grp.layers] for grp in plan.groups] == [["c0", "c1", "c2"], ["d"]]
    assert plan.groups[0].why == "the next layer reads none of this group's maps"
    assert plan.other_ops == [("fc", "Gemm")]


def test_a_shortcut_conv_beside_the_main_path_joins_the_group():
    """x -> a -> b and x -> d (a residual block's 1x1 shortcut conv, after the main path in
    the graph's order): d reads the group's input, so it joins; x is read from memory once."""
    g, ops = chain(C=(4, 8, 8))
    d = conv("d", "t0", "u", 4, 8, k=1, pad=0)
    g.tensors["u"] = t("u", 8, 16, 16)
    (grp,) = plan_groups(g, CFG, ops + [d], {}, []).groups
    assert [x.name for x in grp.layers] == ["c0", "c1", "d"]
    assert grp.reads == {"t0": 4 * 256} and set(grp.writes) == {"t2", "u"}


def test_a_fused_pool_composes_with_its_conv():
    """conv 3x3 pad 1 + 2x2/2 max-pool: k = 4, s = 2 rows; then a conv on the pooled map."""
    ts = [t("x", 4, 16, 16), t("a", 8, 16, 16), t("p", 8, 8, 8), t("y", 8, 8, 8)]
    a = conv("ca", "x", "a", 4, 8)
    pool = MaxPool("mp", ["a"], ["p"])
    b = conv("cb", "p", "y", 8, 8)
    g = Graph("pool", {x.name: x for x in ts}, [a, pool, b], ["x"], ["y"])
    plan = plan_groups(g, CFG, [a, b], {id(a): pool}, [], capacity=900)
    (grp,) = plan.groups
    ca = grp.layers[0]
    assert (ca.k, ca.s, ca.p) == (4, 2, 1) and ca.out_shape == (8, 8, 8)
    n = grp.steps
    rows_x = min(16, (-(-8 // n) - 1) * 2 + 4)
    rows_p = min(8, (-(-8 // n) - 1) + 3)
    assert grp.regions == {"x": (rows_x, 4, 16), "p": (rows_p, 8, 8)}
    assert grp.onchip_pixels <= 900
    # one step fewer would not fit
    m = -(-8 // (n - 1))
    assert min(16, (m - 1) * 2 + 4) * 64 + min(8, m + 2) * 64 > 900


def test_a_per_channel_affine_map_between_convs_is_an_elementwise_layer_of_the_group():
    """conv -> BatchNormalization (ChannelAffine) -> conv: the map needs only the rows its
    step makes, so the chain is one group and its regions are the convs' windows; with a
    buffer for fewer rows it takes more steps, the affine map's region its step's rows."""
    from ffacc.compiler.fusion import plan_from_ops
    from ffacc.compiler.ir import ChannelAffine
    g, ops = chain(C=(4, 8, 8))
    c0, c1 = ops
    g.tensors["bn"] = t("bn", 8, 16, 16)
    bn = ChannelAffine("bn", ["t1"], ["bn"], scale=np.ones(8), offset=np.zeros(8))
    c1.inputs = ["bn"]
    ops = [c0, bn, c1]
    g.ops = ops
    plan = plan_from_ops(g, CFG, ops, {}, lambda op: True)
    (grp,) = plan.groups
    assert [x.name for x in grp.layers] == ["c0", "bn", "c1"] and grp.steps == 1
    assert grp.regions == {"t0": (16, 4, 16), "t1": (16, 8, 16), "bn": (16, 8, 16)}
    # 1,280 bytes: 4 steps of 4 rows need 16 x (4 x 6 + 8 x 4 + 8 x 6) = 1,664 (the convs'
    # windows 6 rows, the affine map's input its step, 4); 8 steps of 2 rows need
    # 16 x (4 x 4 + 8 x 2 + 8 x 4) = 1,024
    (grp,) = plan_groups(g, CFG, ops, {}, [], capacity=1280).groups
    assert grp.steps == 8 and grp.onchip_pixels == 1024
    assert grp.regions == {"t0": (4, 4, 16), "t1": (2, 8, 16), "bn": (4, 8, 16)}


@pytest.mark.parametrize("kh,kw", [(1, 1), (7, 1), (3, 1), (1, 7), (3, 3)])
def test_weight_sets_are_those_the_lowering_loads(kh, kw):
    """The planner's weight-buffer sets of a conv equal what the lowering lays out: a 1-wide
    kernel runs in MAC mode, two output channels a unit with mac_pairs, whatever its
    height."""
    from types import SimpleNamespace
    from ffacc.compiler.fusion import _weight_sets
    from ffacc.compiler.lower import layer_weights
    cfg = ACCEL_PRESETS["ulx3s"]
    O, C = 64, 32
    w = np.ones((O, C, kh, kw), dtype=np.int8)
    _, _, groups = layer_weights(cfg, w, C)
    want = -(-O // cfg.group_lanes(kw)) * sum(g[3] for g in groups)
    assert _weight_sets(SimpleNamespace(w=w, group=1), cfg) == want
