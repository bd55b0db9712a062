"""Train the bundled digits CNN (scikit-learn's 8x8 digits, no download) and export it.

    python models/digits/train.py        # writes digits_float.onnx, digits_int8.onnx, split.json

Network: conv 5x5 (1->8, pad 2) - ReLU - max-pool 2 - conv 3x3 (8->16, pad 1) - ReLU -
max-pool 2 - flatten - FC 64->10. Trained in plain numpy (Adam, cross-entropy) with a fixed
seed, so the files are reproducible bit for bit on the same numpy; the int8 model is
onnxruntime ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations) calibrated
on training images.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 0


def load_split():
    """Images (N, 1, 8, 8) float32 in [0, 1] and labels, split 80/20 (stratified, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, d.target, test_size=0.2, random_state=SEED, stratify=d.target)


def _im2col(x, k, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # n,c,h,w,k,k
    return cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * k * k)


def _col2im(dcols, shape, k, pad):
    n, c, h, w = shape
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    d = dcols.reshape(n, h, w, c, k, k)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + h, j:j + w] += d[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, pad:pad + h, pad:pad + w]


class Net:
    def __init__(self, rng):
        def he(*shape):
            fan = np.prod(shape[1:])
            return (rng.normal(0, np.sqrt(2.0 / fan), shape)).astype(np.float32)
        self.p = {"w1": he(8, 1, 5, 5), "b1": np.zeros(8, np.float32),
                  "w2": he(16, 8, 3, 3), "b2": np.zeros(16, np.float32),
                  "w3": he(10, 64), "b3": np.zeros(10, np.float32)}

    def conv(self, x, w, b, pad):
        n, c, h, wd = x.shape
        o, _, k, _ = w.shape
        cols = _im2col(x, k, pad)
        y = (cols @ w.reshape(o, -1).T + b).reshape(n, h, wd, o).transpose(0, 3, 1, 2)
        return y, cols

    @staticmethod
    def pool(x):
        n, c, h, w = x.shape
        r = x.reshape(n, c, h // 2, 2, w // 2, 2)
        y = r.max(axis=(3, 5))
        mask = r == y[:, :, :, None, :, None]
        return y, mask

    def forward(self, x):
        p, t = self.p, {}
        t["x"] = x
        t["c1"], t["cols1"] = self.conv(x, p["w1"], p["b1"], 2)
        t["r1"] = np.maximum(t["c1"], 0)
        t["p1"], t["m1"] = self.pool(t["r1"])
        t["c2"], t["cols2"] = self.conv(t["p1"], p["w2"], p["b2"], 1)
        t["r2"] = np.maximum(t["c2"], 0)
        t["p2"], t["m2"] = self.pool(t["r2"])
        t["f"] = t["p2"].reshape(len(x), -1)
        return t["f"] @ p["w3"].T + p["b3"], t

    def backward(self, t, dlogits):
        p, g = self.p, {}
        g["w3"] = dlogits.T @ t["f"]
        g["b3"] = dlogits.sum(0)
        dp2 = (dlogits @ p["w3"]).reshape(t["p2"].shape)
        dr2 = (t["m2"] * dp2[:, :, :, None, :, None]).reshape(t["r2"].shape)
        dc2 = dr2 * (t["c2"] > 0)
        n, o, h, w = dc2.shape
        d2 = dc2.transpose(0, 2, 3, 1).reshape(-1, o)
        g["w2"] = (d2.T @ t["cols2"]).reshape(p["w2"].shape)
        g["b2"] = d2.sum(0)
        dp1 = _col2im(d2 @ p["w2"].reshape(o, -1), t["p1"].shape, 3, 1)
        dr1 = (t["m1"] * dp1[:, :, :, None, :, None]).reshape(t["r1"].shape)
        dc1 = dr1 * (t["c1"] > 0)
        o1 = dc1.shape[1]
        d1 = dc1.transpose(0, 2, 3, 1).reshape(-1, o1)
        g["w1"] = (d1.T @ t["cols1"]).reshape(p["w1"].shape)
        g["b1"] = d1.sum(0)
        return g


def adam_step(params, grads, m, v, step, lr):
    """One Adam step (beta 0.9, 0.999) of every parameter, in place; ``m``, ``v`` its
    moments, ``step`` from 1."""
    for k in params:
        m[k] = 0.9 * m[k] + 0.1 * grads[k]
        v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
        mh, vh = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
        params[k] -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


def fit(net, rng, xtr, ytr, epochs, batch, lr, augment=None, decay=0.0, each_epoch=None):
    """Train ``net`` (its ``forward`` -> logits and a tape, ``backward(tape, dlogits)`` ->
    gradients) by Adam on softmax cross-entropy: ``epochs`` passes over the training images in
    ``rng``'s order, ``batch`` at a time, each batch through ``augment(x, rng)`` if given, the
    rate ``lr`` decayed linearly by ``decay`` over the epochs; ``each_epoch(ep)`` after each."""
    m = {k: np.zeros_like(v) for k, v in net.p.items()}
    v = {k: np.zeros_like(v) for k, v in net.p.items()}
    step = 0
    for ep in range(epochs):
        order = rng.permutation(len(xtr))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            logits, t = net.forward(xtr[idx] if augment is None else augment(xtr[idx], rng))
            z = logits - logits.max(1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            prob[np.arange(len(idx)), ytr[idx]] -= 1
            grads = net.backward(t, prob / len(idx))
            step += 1
            adam_step(net.p, grads, m, v, step, lr * (1 - decay * ep / epochs))
        if each_epoch is not None:
            each_epoch(ep)


def train(epochs=40, batch=32, lr=3e-3):
    xtr, xte, ytr, yte = load_split()
    rng = np.random.default_rng(SEED)
    net = Net(rng)
    fit(net, rng, xtr, ytr, epochs, batch, lr)
    acc = (net.forward(xte)[0].argmax(1) == yte).mean()
    return net, acc, (xtr, xte, ytr, yte)


def to_onnx(net):
    from onnx import helper, numpy_helper
    p = net.p
    inits = [numpy_helper.from_array(v, k) for k, v in p.items()]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[5, 5],
                         pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    return digits_model(nodes, inits, "digits_cnn", "ffacc models/digits/train.py")


def digits_model(nodes, inits, name, producer):
    """The checked ONNX model of graph ``nodes`` from an 8x8 image ``input`` to 10
    ``logits``."""
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph(nodes, name,
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                         [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.producer_name = producer
    onnx.checker.check_model(model)
    return model


def save(model, acc, xtr, yte, here, stem):
    """``stem_float.onnx``, its ``quantize_static`` int8 model ``stem_int8.onnx`` (calibrated
    on the first 200 training images) and ``split.json`` into ``here``."""
    import onnx
    from ffacc.compiler.zoo import quantize_model
    onnx.save(model, here / f"{stem}_float.onnx")
    calib = [xtr[i:i + 1] for i in range(0, 200)]
    quantize_model(model, here / f"{stem}_int8.onnx", calib=calib)
    (here / "split.json").write_text(json.dumps({"seed": SEED, "test_size": 0.2,
                                                 "numpy_float_accuracy": float(acc)}, indent=1))
    print(f"float accuracy (numpy) on {len(yte)} held-out images: {acc:.4f}")


def main():
    net, acc, (xtr, xte, ytr, yte) = train()
    save(to_onnx(net), acc, xtr, yte, HERE, "digits")


if __name__ == "__main__":
    main()
