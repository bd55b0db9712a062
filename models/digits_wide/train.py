"""Train the bundled wide digits CNN (scikit-learn's 8x8 digits, no download) and export it.

    python models/digits_wide/train.py   # writes digits_wide_float.onnx, digits_wide_int8.onnx

The larger model of the quantization table (``benchmarks/lowbit_digits.py``), beside
``models/digits``: 11x its weights (22.8k) and 14x its multiply-accumulates (460k), with a
hidden FC layer.

Network: conv 3x3 (1->16) - ReLU - conv 3x3 (16->32) - ReLU - max-pool 2 - conv 3x3 (32->32)
- ReLU - max-pool 2 - flatten - FC 128->64 - ReLU - FC 64->10 (every conv padded 1). Trained
in plain numpy (Adam with its rate decayed linearly to a twentieth, cross-entropy, the
training images shifted by up to a pixel) with a fixed seed on the same split as
``models/digits`` (``load_split``); the int8 model is onnxruntime ``quantize_static`` (QDQ,
per-channel int8 weights, uint8 activations) calibrated on 200 training images.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _digits_train():
    """``models/digits/train.py``: the split, its seed and the im2col helpers are shared."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("digits_train", HERE.parent / "digits" /
                                                  "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_dt = _digits_train()
SEED, _col2im, _im2col, load_split = _dt.SEED, _dt._col2im, _dt._im2col, _dt.load_split

# (kind, name, params): conv (k, cin, cout), pool, fc (cin, cout); ReLU after every layer
# but the last and the pools
LAYERS = [("conv", "conv1", (3, 1, 16)), ("conv", "conv2", (3, 16, 32)), ("pool", "pool1", None),
          ("conv", "conv3", (3, 32, 32)), ("pool", "pool2", None), ("flatten", "flatten", None),
          ("fc", "fc1", (128, 64)), ("fc", "fc2", (64, 10))]


class Net:
    def __init__(self, rng):
        self.p = {}
        for kind, name, a in LAYERS:
            if kind == "conv":
                k, ci, co = a
                self.p[name + "_w"] = rng.normal(0, np.sqrt(2 / (ci * k * k)),
                                                 (co, ci, k, k)).astype(np.float32)
                self.p[name + "_b"] = np.zeros(co, np.float32)
            elif kind == "fc":
                ci, co = a
                self.p[name + "_w"] = rng.normal(0, np.sqrt(2 / ci), (co, ci)).astype(np.float32)
                self.p[name + "_b"] = np.zeros(co, np.float32)

    def forward(self, x):
        tape = []
        last = LAYERS[-1][1]
        for kind, name, a in LAYERS:
            if kind == "conv":
                w, b = self.p[name + "_w"], self.p[name + "_b"]
                n, c, h, wd = x.shape
                cols = _im2col(x, a[0], a[0] // 2)
                y = (cols @ w.reshape(len(w), -1).T + b).reshape(n, h, wd, -1).transpose(0, 3, 1, 2)
                tape.append((kind, name, (cols, x.shape)))
            elif kind == "pool":
                n, c, h, wd = x.shape
                r = x.reshape(n, c, h // 2, 2, wd // 2, 2)
                y = r.max(axis=(3, 5))
                tape.append((kind, name, (r == y[:, :, :, None, :, None], x.shape)))
            elif kind == "flatten":
                tape.append((kind, name, x.shape))
                y = x.reshape(len(x), -1)
            else:
                y = x @ self.p[name + "_w"].T + self.p[name + "_b"]
                tape.append((kind, name, x))
            if kind in ("conv", "fc") and name != last:
                tape.append(("relu", name, y > 0))
                y = np.maximum(y, 0)
            x = y
        return x, tape

    def backward(self, tape, d):
        g = {}
        for kind, name, saved in reversed(tape):
            if kind == "relu":
                d = d * saved
            elif kind == "fc":
                g[name + "_w"] = d.T @ saved
                g[name + "_b"] = d.sum(0)
                d = d @ self.p[name + "_w"]
            elif kind == "flatten":
                d = d.reshape(saved)
            elif kind == "pool":
                mask, shape = saved
                d = (mask * d[:, :, :, None, :, None]).reshape(shape)
            else:
                cols, shape = saved
                w = self.p[name + "_w"]
                o, _, k, _ = w.shape
                d2 = d.transpose(0, 2, 3, 1).reshape(-1, o)
                g[name + "_w"] = (d2.T @ cols).reshape(w.shape)
                g[name + "_b"] = d2.sum(0)
                d = _col2im(d2 @ w.reshape(o, -1), shape, k, k // 2)
        return g


def _shift(x, rng):
    """Each image moved by up to a pixel in each direction (zeros shifted in)."""
    out = np.zeros_like(x)
    for i, (dy, dx) in enumerate(rng.integers(-1, 2, (len(x), 2))):
        src = x[i, :, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def train(epochs=60, batch=32, lr=2e-3):
    xtr, xte, ytr, yte = load_split()
    rng = np.random.default_rng(SEED)
    net = Net(rng)

    def report(ep):
        if (ep + 1) % 10 == 0:
            acc = (net.forward(xte)[0].argmax(1) == yte).mean()
            print(f"epoch {ep + 1}/{epochs}: held-out accuracy {acc:.4f}", file=sys.stderr)
    # the rate decayed to a twentieth at the end
    _dt.fit(net, rng, xtr, ytr, epochs, batch, lr, augment=_shift, decay=0.95,
            each_epoch=report)
    acc = (net.forward(xte)[0].argmax(1) == yte).mean()
    return net, acc, (xtr, xte, ytr, yte)


def to_onnx(net):
    from onnx import helper, numpy_helper
    inits = [numpy_helper.from_array(v, k) for k, v in net.p.items()]
    nodes, x = [], "input"
    last = LAYERS[-1][1]
    for kind, name, a in LAYERS:
        y = name
        if kind == "conv":
            k = a[0]
            nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [y], name=name,
                                          kernel_shape=[k, k], pads=[k // 2] * 4))
        elif kind == "pool":
            nodes.append(helper.make_node("MaxPool", [x], [y], name=name, kernel_shape=[2, 2],
                                          strides=[2, 2]))
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [y], name=name))
        else:
            y = "logits" if name == last else name
            nodes.append(helper.make_node("Gemm", [x, name + "_w", name + "_b"], [y], name=name,
                                          transB=1))
        if kind in ("conv", "fc") and name != last:
            nodes.append(helper.make_node("Relu", [y], [y + "_relu"], name=name + "_relu"))
            y = y + "_relu"
        x = y
    return _dt.digits_model(nodes, inits, "digits_wide_cnn", "ffacc models/digits_wide/train.py")


def main():
    net, acc, (xtr, xte, ytr, yte) = train()
    _dt.save(to_onnx(net), acc, xtr, yte, HERE, "digits_wide")


if __name__ == "__main__":
    main()
