"""A firmware image is data, never code: a host operator is rebuilt from JSON fields and
``.npy`` arrays checked against an allow-list, never unpickled, and a malformed image (bad
TENSORS or META JSON, a host segment with an unknown operator or a missing field) stops with
an :class:`ImageError` before anything runs."""

import base64
import io
import json
import os
import pickle
import re

import numpy as np
import pytest
from onnx import helper

from ffacc.cli import main
from ffacc.compiler.compile import compile_graph
from ffacc.compiler.ir import (HOST_OPS, Add, Alias, AvgPool, ChannelAffine, Concat, Conv, Gemm,
                               HostFloat, HostGraph, HostQuant, MaxPool, PhaseSplit,
                               Transpose, op_from_dict, op_to_dict, reference_run)
from ffacc.compiler.onnx_import import import_onnx
from ffacc.compiler.zoo import Builder, quantize_model
from ffacc.firmware.image import Image, ImageError, Kind, Section
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.sim.runner import host_exec, run_image

CFG = ACCEL_PRESETS["tiny"].with_(add_unit=False)


@pytest.fixture(scope="module")
def host_model(tmp_path_factory):
    """A model whose Conv, Add and Gemm run on the host: a dilated conv, an add on a
    configuration without the ADD unit, a Gemm with zero-point weights (set in the IR). The
    first conv runs on the accelerator. Returns ``(graph, compiled, input)``."""
    b = Builder((1, 4, 8, 8), seed=11, name="host_ops")
    y1 = b.relu(b.conv("x", 4, 3))
    y2 = b.conv(y1, 4, 3, pads=(2, 2, 2, 2))
    b.nodes[-1].attribute.append(helper.make_attribute("dilations", [2, 2]))
    b.shape[y2] = b.shape[y1]
    y = b.fc(b.flatten(b.add(y2, y1)), 5)
    path = quantize_model(b.model(y), tmp_path_factory.mktemp("host") / "host_ops.onnx")
    g = import_onnx(str(path))
    for op in g.ops:
        if isinstance(op, Gemm):
            op.w_zp = np.ones_like(op.w_zp)
    c = compile_graph(g, CFG)
    t = g.tensors[g.inputs[0]]
    x = np.random.default_rng(5).integers(*t.qrange, t.shape, endpoint=True).astype(t.np_dtype)
    return g, c, x


def _copy(image):
    """An independent copy of ``image`` through its bytes (what a file would hold)."""
    return Image.from_bytes(image.to_bytes())


def _host_segment(image, op):
    return next((i, s) for i, s in enumerate(image.meta["segments"])
                if s["kind"] == "host" and s["op"] == op)


class _Touch:
    """A pickle whose loading creates ``path``: what an attacker would put in an image."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


def test_host_conv_gemm_add_run_bit_exact(host_model):
    g, c, x = host_model
    where = {(l["op"], l["where"]) for l in c.layers}
    assert {("Conv", "accel"), ("Conv", "host"), ("Add", "host"), ("Gemm", "host")} <= where
    ref = reference_run(g, {g.inputs[0]: x})
    outs, st = run_image(_copy(c.image), {g.inputs[0]: x})
    assert [s["op"] for s in st["segments"] if s["kind"] == "host"] == ["Conv", "Add", "Gemm"]
    for o in g.outputs:
        assert np.array_equal(outs[o], ref[o])


def test_crafted_pickle_image_is_refused(host_model, tmp_path, capsys):
    _, c, x = host_model
    payload = base64.b64encode(pickle.dumps(_Touch(tmp_path / "probe"))).decode()
    pickle.loads(base64.b64decode(payload))         # the payload is live: unpickling runs it
    assert (tmp_path / "probe").exists()

    img = _copy(c.image)
    marker = tmp_path / "pwned"
    i, seg = _host_segment(img, "Conv")
    seg["attrs"] = {"ir": base64.b64encode(pickle.dumps(_Touch(marker))).decode()}
    ffw = tmp_path / "crafted.ffw"
    ffw.write_bytes(img.to_bytes())                  # valid CRC and fingerprint
    np.save(tmp_path / "x.npy", x)
    try:
        rc = main(["run", str(ffw), "--input", str(tmp_path / "x.npy"),
                   "-o", str(tmp_path / "y.npy")])
    finally:
        assert not marker.exists(), "loading the image ran its pickle"
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("ffacc: error:") and f"host segment {i}" in err and "'ir'" in err
    assert not marker.exists() and not (tmp_path / "y.npy").exists()
    # the runtimes that call host_exec directly (RTL bench, board host) refuse it too
    with pytest.raises(ImageError, match="unknown field"):
        host_exec(Image.load(ffw).meta["segments"][i], None)
    assert not marker.exists()


def _samples():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8)
    node = helper.make_node("Softmax", ["a"], ["b"], axis=1).SerializeToString()
    return [
        Conv("c", ["x"], ["y"], w=w, w_scale=rng.random(4), w_zp=np.zeros(4, np.int64),
             bias=rng.integers(-1000, 1000, 4), clamp=(0, 200), pads=(1, 0, 2, 1),
             strides=(2, 1), group=2, dilations=(2, 3)),
        Conv("c_nobias", ["x"], ["y"], w=w.astype(np.int64), w_scale=rng.random(4),
             w_zp=np.ones(4, np.int64), bias=None, clamp=None),
        Gemm("fc", ["x"], ["y"], w=rng.integers(-128, 128, (5, 7)).astype(np.int8),
             w_scale=rng.random(5).astype(np.float32), w_zp=np.arange(5),
             bias=np.arange(5, dtype=np.int32), clamp=(-128, 100)),
        Add("add", ["a", "b"], ["y"], clamp=(3, 250)),
        Add("add_noclamp", ["a", "b"], ["y"]),
        ChannelAffine("bn", ["x"], ["y"], scale=rng.normal(0, 1, 4), offset=rng.normal(0, 9, 4),
                      clamp=(0, 255)),
        MaxPool("mp", ["x"], ["y"], kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
        AvgPool("gap", ["x"], ["y"]),
        AvgPool("ap", ["x"], ["y"], kernel=(2, 3), strides=(1, 2), pads=(0, 1, 0, 1),
                count_include_pad=True),
        Concat("cat", ["a", "b", "c"], ["y"], axis=1),
        Concat("cat_clamp", ["a", "b"], ["y"], axis=1, clamp=(-100, 90)),
        Transpose("shuffle", ["x"], ["y"], perm=np.array([0, 2, 1, 3, 4]), clamp=None),
        HostFloat("sm", ["a"], ["b"], node_proto=node, op_type="Softmax",
                  initializers={"k": rng.random((2, 3)).astype(np.float32)}),
        HostGraph("region", ["a"], ["c"], graph_proto=node * 2, op_type="LRN+MaxPool",
                  initializers={"k": rng.random(3).astype(np.float32)}),
        HostQuant("hq", ["a", "s"], ["b"], node_proto=node + b"\x00\xff", op_type="QLinearX",
                  initializers={"s": np.float32(0.5), "z": np.array([3], np.uint8)}),
        PhaseSplit("ps", ["x"], ["y"], stride=3, pads=(1, 2, 0, 4),
                   phases=np.array([[0, 0], [2, 1]]), out_hw=(5, 7), value=-3),
    ]


def _same(a, b):
    if isinstance(a, (np.ndarray, np.generic)):
        return (isinstance(b, np.ndarray) and b.dtype == np.asarray(a).dtype
                and np.array_equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("op", _samples(), ids=lambda op: op.name)
def test_op_roundtrip(op):
    d = json.loads(json.dumps(op_to_dict(op)))      # what the image's META holds
    back = op_from_dict(d)
    assert type(back) is type(op)
    for f in vars(op):
        assert _same(getattr(op, f), getattr(back, f)), f


def test_roundtrip_covers_every_host_op():
    assert {type(op).__name__ for op in _samples()} == set(HOST_OPS)
    with pytest.raises(TypeError, match="cannot be written"):
        op_to_dict(Alias("r", ["x"], ["y"]))


def _with_section(image, kind, data):
    """``image`` with its TENSORS or META section replaced by raw ``data``, CRC recomputed."""
    img = _copy(image)
    if kind == Kind.TENSORS:
        img.tensors = []
    else:
        img.meta = {}
    img.sections.append(Section(kind, 0, data))
    return img.to_bytes()


def _tensors(image, change):
    ts = [dict(t.__dict__) for t in image.tensors]
    change(ts[0])
    return json.dumps(ts).encode()


@pytest.mark.parametrize("kind,data,message", [
    (Kind.TENSORS, b"[{\"name\": ", "TENSORS section is not valid JSON"),
    (Kind.TENSORS, b"\xff\xfe\x00garbage", "TENSORS section is not valid JSON"),
    (Kind.TENSORS, b"{\"name\": \"x\"}", "TENSORS section is a JSON object, expected a list"),
    (Kind.TENSORS, b"[\"x\"]", "TENSORS section, tensor 0 is a string"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.update(evil=1)), "unknown key.*'evil'"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.pop("addr")), "missing key.*'addr'"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.update(shape="abc")),
     "shape is a string, expected list"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.update(addr=True)), "addr is a boolean"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.update(dtype="object")),
     "dtype 'object' is not a numeric type"),
    (Kind.TENSORS, lambda i: _tensors(i, lambda t: t.update(role="weights")), "role 'weights'"),
    (Kind.META, b"{\"segments\": [", "META section is not valid JSON"),
    (Kind.META, b"[" * 100_000, "META section is not valid JSON"),
    (Kind.META, b"[1, 2]", "META section is a JSON list, expected a JSON object"),
])
def test_malformed_json_sections(host_model, kind, data, message):
    image = host_model[1].image
    raw = _with_section(image, kind, data(image) if callable(data) else data)
    with pytest.raises(ImageError, match=message):
        Image.from_bytes(raw)                        # the CRC is valid: the JSON is what fails


def _npy_pickle():
    buf = io.BytesIO()
    np.save(buf, np.array([_Touch("/nonexistent/never")], dtype=object), allow_pickle=True)
    return base64.b64encode(buf.getvalue()).decode()


def _set(key, value):
    return lambda seg: seg["attrs"].__setitem__(key, value)


@pytest.mark.parametrize("op,change,message", [
    ("Conv", lambda s: s.update(op="Evil"), "unknown host operator 'Evil'"),
    ("Conv", lambda s: s.update(op="Alias"), "unknown host operator 'Alias'"),
    ("Conv", lambda s: s.pop("attrs"), "missing field.*'attrs'"),
    ("Conv", lambda s: s["attrs"].pop("w"), "missing field.*'w'"),
    ("Gemm", _set("ir", "AAAA"), "unknown field.*'ir'"),
    ("Conv", _set("group", "1"), "field 'group' is a string, expected an integer"),
    ("Conv", _set("pads", [1, 2]), "field 'pads' is .*expected a list of 4 integers"),
    ("Conv", _set("dilations", [2.0, 2]), "field 'dilations' is .*expected a list of 2"),
    ("Add", _set("clamp", {"lo": 0}), "field 'clamp' is .*expected a list of 2"),
    ("Conv", _set("w", "!!not base64!!"), "field 'w' is not base64"),
    ("Conv", _set("w", base64.b64encode(b"not an npy").decode()), "field 'w' is not a .npy"),
    ("Gemm", _set("w", _npy_pickle()), "field 'w' is not a .npy"),
    ("Conv", lambda s: s["inputs"][0].pop("addr"), "inputs\\[0\\]: missing field 'addr'"),
    ("Add", lambda s: s["inputs"].pop(), "inputs: 1 tensor\\(s\\), the operator takes 2"),
    ("Gemm", lambda s: s.update(kind="shell"), "segment \\d+: unknown kind 'shell'"),
])
def test_malformed_host_segment(host_model, monkeypatch, op, change, message):
    """Refused with a message naming the segment, before the first (accelerator) segment runs."""
    from ffacc.sim.iss import ISS
    g, c, x = host_model
    img = _copy(c.image)
    i, seg = _host_segment(img, op)
    change(seg)
    img = Image.from_bytes(img.to_bytes())
    assert img.meta["segments"][0]["kind"] == "accel"

    def ran(*a, **k):
        raise AssertionError("a segment ran before the image was checked")
    monkeypatch.setattr(ISS, "run", ran)
    with pytest.raises(ImageError, match=f"segment {i}\\b") as e:
        run_image(img, {g.inputs[0]: x})
    assert re.search(message, str(e.value)), str(e.value)
