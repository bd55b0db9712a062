"""Float ONNX model builders and the onnxruntime static quantization used by tests and
benchmarks (random weights, random calibration data: nothing is downloaded)."""

import os
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Builder", "quantize_model", "single_conv", "vgg16", "CLASSIC", "classic",
           "classic_int8"]


class Builder:
    """A tiny graph builder: ``b.conv(x, 8, 3)``, ``b.relu(x)``, ... then ``b.model()``."""

    def __init__(self, shape, seed=0, name="model"):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.shape = {"x": tuple(shape)}
        self.n = 0
        self.name = name
        self.input_shape = tuple(shape)

    def _name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def _init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))

    def conv(self, x, out_ch, k, stride=1, pads=None, group=1, bias=True):
        N, C, H, W = self.shape[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        pads = [kh // 2, kw // 2, (kh - 1) // 2, (kw - 1) // 2] if pads is None else list(pads)
        y = self._name("conv")
        w = self.rng.normal(0, 1.0 / np.sqrt(C // group * kh * kw), (out_ch, C // group, kh, kw))
        self._init(y + "_w", w)
        ins = [x, y + "_w"]
        if bias:
            self._init(y + "_b", self.rng.normal(0, 0.1, out_ch))
            ins.append(y + "_b")
        self.nodes.append(helper.make_node("Conv", ins, [y], name=y, kernel_shape=[kh, kw],
                                           strides=[stride, stride], pads=pads, group=group))
        Ho = (H + pads[0] + pads[2] - kh) // stride + 1
        Wo = (W + pads[1] + pads[3] - kw) // stride + 1
        self.shape[y] = (N, out_ch, Ho, Wo)
        return y

    def unary(self, op, x, **attrs):
        y = self._name(op.lower())
        self.nodes.append(helper.make_node(op, [x], [y], name=y, **attrs))
        self.shape[y] = self.shape[x]
        return y

    def relu(self, x):
        return self.unary("Relu", x)

    def pool(self, op, x, k, stride=None, pads=(0, 0, 0, 0), **attrs):
        N, C, H, W = self.shape[x]
        stride = stride or k
        y = self._name(op.lower())
        self.nodes.append(helper.make_node(op, [x], [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=list(pads), **attrs))
        self.shape[y] = (N, C, (H + pads[0] + pads[2] - k) // stride + 1,
                         (W + pads[1] + pads[3] - k) // stride + 1)
        return y

    def gap(self, x):
        y = self._name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [y], name=y))
        self.shape[y] = self.shape[x][:2] + (1, 1)
        return y

    def bn(self, x, scale=None):
        """A BatchNormalization over ``x``'s channels (random statistics; ``scale``: its
        gammas, random positive ones by default), which ``quantize_static`` without
        pre-processing leaves in float: a per-channel affine map."""
        C = self.shape[x][1]
        y = self._name("bn")
        gamma = self.rng.uniform(0.5, 1.5, C) if scale is None else np.asarray(scale, float)
        for n, v in [("s", gamma), ("b", self.rng.normal(0, 0.3, C)),
                     ("m", self.rng.normal(0, 0.3, C)), ("v", self.rng.uniform(0.3, 1.5, C))]:
            self._init(f"{y}_{n}", v)
        self.nodes.append(helper.make_node("BatchNormalization", [x] + [f"{y}_{n}" for n in
                                                                         "sbmv"], [y], name=y,
                                           epsilon=1e-3))
        self.shape[y] = self.shape[x]
        return y

    def add(self, a, b):
        y = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        self.shape[y] = self.shape[a]
        return y

    def concat(self, xs):
        y = self._name("cat")
        self.nodes.append(helper.make_node("Concat", list(xs), [y], name=y, axis=1))
        N, _, H, W = self.shape[xs[0]]
        self.shape[y] = (N, sum(self.shape[x][1] for x in xs), H, W)
        return y

    def flatten(self, x):
        y = self._name("flat")
        self.nodes.append(helper.make_node("Flatten", [x], [y], name=y))
        self.shape[y] = (self.shape[x][0], int(np.prod(self.shape[x][1:])))
        return y

    def fc(self, x, out):
        K = self.shape[x][1]
        y = self._name("fc")
        self._init(y + "_w", self.rng.normal(0, 1 / np.sqrt(K), (out, K)))
        self._init(y + "_b", self.rng.normal(0, 0.1, out))
        self.nodes.append(helper.make_node("Gemm", [x, y + "_w", y + "_b"], [y], name=y,
                                           transB=1))
        self.shape[y] = (self.shape[x][0], out)
        return y

    def model(self, out):
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             list(self.input_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                             list(self.shape[out]))],
                              self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def quantize_model(model, path, fmt="qdq", per_channel=True, calib=None, seed=0, samples=8):
    """Quantize a float model with onnxruntime ``quantize_static`` (uint8 acts, int8 weights)."""
    from .quantize import quantize_static_with
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    name = model.graph.input[0].name
    rng = np.random.default_rng(seed)
    data = calib if calib is not None else [rng.uniform(0, 1, shape).astype(np.float32)
                                            for _ in range(samples)]
    part = f"{path}.{os.getpid()}.tmp"      # then renamed: a concurrent reader (a cached model
    with tempfile.TemporaryDirectory() as tmp:  # shared by test workers) never sees half of it
        src = os.path.join(tmp, "float.onnx")
        onnx.save(model, src)
        quantize_static_with(src, part, [{name: d} for d in data], fmt, per_channel, "uint8")
    os.replace(part, path)
    return path


def single_conv(k, stride=1, C=3, O=4, H=None, W=None, pads=None, group=1, relu=True, seed=0):
    H = H or k + 6
    W = W or k + 7
    b = Builder((1, C, H, W), seed=seed, name=f"conv{k}")
    y = b.conv("x", O, k, stride=stride, pads=pads, group=group)
    if relu:
        y = b.relu(y)
    return b.model(y)


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_int8(folder, size=224, fc=(4096, 4096), samples=2, progress=None):
    """Path of the quantized VGG-16 at ``size``, built and quantized once into ``folder``."""
    from pathlib import Path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"vgg16_{size}.onnx" if tuple(fc) == (4096, 4096)
                     else f"vgg16_{size}_fc{'_'.join(map(str, fc))}.onnx")
    if not path.exists():
        if progress:
            progress(f"building and quantizing a {size}x{size} VGG-16 (random weights, "
                     f"onnxruntime quantize_static)")
        quantize_model(vgg16(size, fc=tuple(fc)), path, samples=samples)
    return path


def vgg16(size=224, classes=1000, seed=0, fc=(4096, 4096)):
    """A VGG-16-shaped network (random weights) at ``size``x``size``."""
    b = Builder((1, 3, size, size), seed=seed, name=f"vgg16_{size}")
    x = "x"
    for v in VGG16:
        x = b.pool("MaxPool", x, 2) if v == "M" else b.relu(b.conv(x, v, 3))
    x = b.flatten(x)
    for f in fc:
        x = b.relu(b.fc(x, f))
    return b.model(b.fc(x, classes))


def torch_export_cnn(seed=0, size=32, classes=10):
    """A float CNN in the form ``torch.onnx.export`` (TorchScript exporter, eval mode) writes
    for conv-BN-ReLU -> max-pool -> conv(stride 2)-BN-ReLU -> ``x.view(x.size(0), -1)`` ->
    Linear: BatchNormalization already folded into the convolutions, node names such as
    ``/c1/Conv``, a dynamic batch dimension ``N`` on the input and output, and the flatten
    as ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``. Input ``input``, output
    ``logits``."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: numpy_helper.from_array(np.asarray(a, dtype=np.float32))  # noqa: E731
    inits, nodes = [], []

    def init(name, arr):
        t = f32(arr) if np.asarray(arr).dtype.kind == "f" else numpy_helper.from_array(
            np.asarray(arr))
        t.name = name
        inits.append(t)
        return name

    def conv(x, name, cin, cout, stride):
        w = init(f"{name}.weight", rng.normal(0, 1 / np.sqrt(cin * 9), (cout, cin, 3, 3)))
        b = init(f"{name}.bias", rng.normal(0, 0.1, cout))
        y = f"/{name}/Conv_output_0"
        nodes.append(helper.make_node("Conv", [x, w, b], [y], name=f"/{name}/Conv",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[stride, stride], dilations=[1, 1], group=1))
        r = f"/Relu{'_1' if name == 'c2' else ''}_output_0"
        nodes.append(helper.make_node("Relu", [y], [r], name=r[:-9]))
        return r

    x = conv("input", "c1", 3, 8, 1)
    nodes.append(helper.make_node("MaxPool", [x], ["/MaxPool_output_0"], name="/MaxPool",
                                  kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
                                  ceil_mode=0))
    x = conv("/MaxPool_output_0", "c2", 8, 16, 2)
    side = size // 4
    nodes += [
        helper.make_node("Shape", [x], ["/Shape_output_0"], name="/Shape"),
        helper.make_node("Constant", [], ["/Constant_output_0"], name="/Constant",
                         value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
        helper.make_node("Gather", ["/Shape_output_0", "/Constant_output_0"],
                         ["/Gather_output_0"], name="/Gather", axis=0),
        helper.make_node("Constant", [], ["/Constant_1_output_0"], name="/Constant_1",
                         value=numpy_helper.from_array(np.array([0], dtype=np.int64))),
        helper.make_node("Unsqueeze", ["/Gather_output_0", "/Constant_1_output_0"],
                         ["/Unsqueeze_output_0"], name="/Unsqueeze"),
        helper.make_node("Constant", [], ["/Constant_2_output_0"], name="/Constant_2",
                         value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
        helper.make_node("Concat", ["/Unsqueeze_output_0", "/Constant_2_output_0"],
                         ["/Concat_output_0"], name="/Concat", axis=0),
        helper.make_node("Reshape", [x, "/Concat_output_0"], ["/Reshape_output_0"],
                         name="/Reshape"),
    ]
    K = 16 * side * side
    w = init("fc.weight", rng.normal(0, 1 / np.sqrt(K), (classes, K)))
    b = init("fc.bias", rng.normal(0, 0.1, classes))
    nodes.append(helper.make_node("Gemm", ["/Reshape_output_0", w, b], ["logits"],
                                  name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1))
    g = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                             producer_name="pytorch")


# --- the classic zoo topologies ---------------------------------------------------------
# onnx's wheel ships "light" versions of classic model-zoo CNNs under its backend test data:
# the real graphs (opset 9), each weight replaced by a ConstantOfShape of its shape. classic()
# turns one into a float model with random weights (nothing is downloaded).
CLASSIC = ("bvlc_alexnet", "zfnet512", "inception_v1", "inception_v2", "densenet121",
           "resnet50", "shufflenet", "squeezenet", "vgg19")


def _light_path(name):
    from pathlib import Path
    if name not in CLASSIC:
        raise ValueError(f"unknown classic model {name!r}; one of {', '.join(CLASSIC)}")
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / \
        f"light_{name}.onnx"


def _materialize(m, rng):
    """Each ``ConstantOfShape`` weight of a light model becomes a random initializer: He-normal
    weights, BatchNormalization scales and variances in [0.5, 1.5], other vectors N(0, 0.1)."""
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    role = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            role.setdefault(i, (n.op_type, k))
    keep, new = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            keep.append(n)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[n.input[0]]))
        out = n.output[0]
        op, k = role.get(out, (None, None))
        if len(shape) >= 2:
            a = rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif (op == "BatchNormalization" and k in (1, 4)) or \
                (op == "Unsqueeze" and out.rsplit("/", 1)[-1].startswith("bn_w")):
            a = rng.uniform(0.5, 1.5, shape)                # scales, variances, scale layers
        else:
            a = rng.normal(0, 0.1, shape)
        new.append(numpy_helper.from_array(a.astype(np.float32), out))
    used = {i for n in keep for i in n.input}
    del g.node[:]
    g.node.extend(keep)
    old = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(old + new)
    names = {i.name for i in g.initializer} | set(inits)
    ins = [i for i in g.input if i.name not in names and i.name in used]
    del g.input[:]
    g.input.extend(ins)
    m.ir_version = max(m.ir_version, 7)       # initializers need not be graph inputs


def _resize(m, size, fc, rng):
    """Input ``size`` x ``size`` (and hidden fully connected layers ``fc`` wide): Reshape
    targets, global pools (a pool whose output is 1x1) and the FC weights follow."""
    from onnx import shape_inference
    g = m.graph
    H0 = g.input[0].type.tensor_type.shape.dim[2].dim_value
    inits = {i.name: i for i in g.initializer}
    full = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in shape_inference.infer_shapes(m).graph.value_info}
    glob = {n.output[0] for n in g.node if n.op_type in ("AveragePool", "MaxPool")
            and full.get(n.output[0], [0, 0, 0, 0])[2:] == [1, 1]}
    gemms = [n for n in g.node if n.op_type == "Gemm"]
    for d in g.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_value = size
    for n in g.node:
        if n.op_type == "Reshape" and n.input[1] in inits and n.input[0] not in inits:
            t = numpy_helper.to_array(inits[n.input[1]]).copy()
            if len(t) == 2:
                t = np.array([t[0], -1])
            elif len(t) >= 4:
                if any(v * size % H0 for v in t[-2:]):
                    raise ValueError(f"{g.name}: size {size} does not divide the reshape "
                                     f"{n.name or n.output[0]} ({list(t)} at {H0})")
                t[-2:] = t[-2:] * size // H0
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(t.astype(np.int64), n.input[1]))

    def refill(name, shape):
        a = numpy_helper.to_array(inits[name])
        if a.shape != tuple(shape):
            fan = shape[1] if len(shape) > 1 else None
            a = (rng.normal(0, np.sqrt(2.0 / fan), shape) if fan else
                 rng.normal(0, 0.1, shape)).astype(np.float32)
            inits[name].CopyFrom(numpy_helper.from_array(a, name))

    for _ in range(3):                          # shapes settle front to back
        del g.value_info[:]
        inf = shape_inference.infer_shapes(m)
        shp = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
               for vi in list(inf.graph.value_info) + list(inf.graph.input)}
        for n in g.node:
            if n.output[0] in glob and n.input[0] in shp:
                for a in n.attribute:
                    if a.name == "kernel_shape":
                        a.ints[:] = shp[n.input[0]][2:]
                    elif a.name == "pads":
                        a.ints[:] = [0] * len(a.ints)
        for j, n in enumerate(gemms):
            if n.input[0] not in shp or n.input[1] not in inits:
                continue
            w = numpy_helper.to_array(inits[n.input[1]])
            N = fc if fc and j < len(gemms) - 1 else w.shape[0]
            refill(n.input[1], (N, shp[n.input[0]][1]))
            if len(n.input) > 2 and n.input[2] in inits:
                refill(n.input[2], (N,))
    del g.value_info[:]


def classic(name, size=224, fc=None, seed=0):
    """A classic zoo CNN (one of :data:`CLASSIC`) as a float ONNX model at opset 13 with random
    weights: the onnx wheel's light graph, at ``size`` x ``size`` input, with hidden fully
    connected layers ``fc`` wide if given (the classifier keeps its 1000 classes)."""
    from onnx import version_converter
    m = onnx.load(str(_light_path(name)))
    rng = np.random.default_rng(seed)
    _materialize(m, rng)
    if size != m.graph.input[0].type.tensor_type.shape.dim[2].dim_value or fc:
        _resize(m, size, fc, rng)
    m = version_converter.convert_version(m, 13)
    m.graph.name = f"{name}_{size}"
    return m


def classic_int8(folder, name, size=224, fc=None, samples=2, progress=None):
    """Path of :func:`classic` ``name`` quantized by onnxruntime's ``quantize_static`` (QDQ,
    per channel, no pre-processing), built once into ``folder``."""
    from pathlib import Path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_{size}{f'_fc{fc}' if fc else ''}.onnx"
    if not path.exists():
        if progress:
            progress(f"building and quantizing {name} at {size}x{size} (random weights, "
                     f"onnxruntime quantize_static)")
        quantize_model(classic(name, size, fc), path, samples=samples)
    return path
