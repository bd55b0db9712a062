"""Run a compiled firmware image: accelerator segments on the ISS or the RTL, host segments
in numpy/onnxruntime, all on one memory.

The same :func:`host_exec` serves the ISS path here and the RTL path inside the cocotb bench
(``AxiRam`` has the same ``read``/``write`` methods as :class:`~ffacc.sim.iss.ISS`).
"""

import base64
import io
import pickle

import numpy as np

from ffacc.compiler.ir import (AvgPool, Concat, Graph, HostFloat, HostQuant, MaxPool, QTensor,
                               run_op)
from ffacc.firmware.image import Image, ImageError

__all__ = ["host_exec", "run_image", "config_of", "write_inputs", "read_outputs", "EngineError"]


class EngineError(RuntimeError):
    """The accelerator stopped with an error while running an image."""


def _arr(b64):
    return np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)


def _qt(d):
    return QTensor(d["name"], tuple(d["shape"]), d["dtype"], d["scale"], d["zero_point"])


def _read_tensor(mem, d):
    t = _qt(d)
    raw = bytes(mem.read(d["addr"], t.nbytes))
    return np.frombuffer(raw, dtype=t.np_dtype).reshape(t.shape)


def _write_tensor(mem, d, value):
    t = _qt(d)
    mem.write(d["addr"], np.asarray(value).astype(t.np_dtype).tobytes())


def host_exec(seg, mem):
    """Execute one host segment against ``mem`` (anything with ``read``/``write``)."""
    tensors = {d["name"]: _qt(d) for d in seg["inputs"] + seg["outputs"]}
    vals = {d["name"]: _read_tensor(mem, d).astype(np.int64 if tensors[d["name"]].quantized
                                                    else np.float32) for d in seg["inputs"]}
    ins = [d["name"] for d in seg["inputs"]]
    outs = [d["name"] for d in seg["outputs"]]
    a = seg.get("attrs", {})
    kind = seg["op"]
    if kind == "MaxPool":
        op = MaxPool(seg["name"], ins, outs, tuple(a["kernel"]), tuple(a["strides"]),
                     tuple(a["pads"]))
    elif kind == "AvgPool":
        op = AvgPool(seg["name"], ins, outs, tuple(a["kernel"]) if a["kernel"] else None,
                     tuple(a["strides"]) if a["strides"] else None, tuple(a["pads"]),
                     a["count_include_pad"])
    elif kind == "Concat":
        op = Concat(seg["name"], ins, outs, a["axis"])
    elif kind in ("HostFloat", "HostQuant"):
        cls = HostFloat if kind == "HostFloat" else HostQuant
        op = cls(seg["name"], ins, outs, base64.b64decode(a["node"]), a["op_type"],
                 {k: _arr(v) for k, v in a["initializers"].items()})
    else:
        op = pickle.loads(base64.b64decode(a["ir"]))
    g = Graph("host", tensors, [op], ins, outs)
    for d, v in zip(seg["outputs"], run_op(op, g, vals)):
        _write_tensor(mem, d, v)


def config_of(image):
    """The accelerator configuration an image was built for (checked against its fingerprint)."""
    from ffacc.hw.config import AcceleratorConfig
    if "config" not in image.meta:
        raise ImageError("image has no configuration record (META)")
    cfg = AcceleratorConfig.from_dict(image.meta["config"])
    if cfg.fingerprint() != image.fingerprint:
        raise ImageError("image configuration record does not match its fingerprint")
    return cfg


def write_inputs(image, mem, inputs):
    """Write quantized inputs (name -> array, or a single array) into ``mem``."""
    descs = [t for t in image.tensors if t.role == "input"]
    if not isinstance(inputs, dict):
        inputs = {descs[0].name: inputs}
    for t in descs:
        if t.name not in inputs:
            raise ValueError(f"missing input {t.name!r}")
        v = np.asarray(inputs[t.name])
        if tuple(v.shape) != tuple(t.shape):
            raise ValueError(f"input {t.name!r} has shape {v.shape}, the model expects "
                             f"{tuple(t.shape)}")
        mem.write(t.addr, v.astype(t.dtype).tobytes())


def read_outputs(image, mem):
    out = {}
    for t in image.tensors:
        if t.role == "output":
            dt = np.dtype(t.dtype)
            raw = bytes(mem.read(t.addr, int(np.prod(t.shape)) * dt.itemsize))
            out[t.name] = np.frombuffer(raw, dtype=dt).reshape(t.shape)
    return out


def run_image(image, inputs, engine="iss", simulator="verilator", timing_only=False):
    """Run ``image`` on quantized ``inputs``; returns ``(outputs, stats)``.

    ``engine`` is ``"iss"`` or ``"rtl"`` (cocotb on ``simulator``). ``stats`` has total cycles
    and per-segment figures.
    """
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        image = Image.load(image)
    cfg = config_of(image)
    if engine == "iss":
        from .iss import ISS
        iss = ISS(cfg, mem_size=image.mem_size, timing_only=timing_only)
        if not timing_only:
            for a, d in image.loaded():
                iss.load(a, d)
        else:       # only the code is needed to follow the program
            for s in image.sections:
                if s.kind == 1:
                    iss.load(s.addr, s.data)
        write_inputs(image, iss, inputs)
        st = {"engine": "iss", "cycles": 0, "instructions": 0, "segments": []}
        for seg in image.meta.get("segments", [{"kind": "accel", "entry": image.entry}]):
            if seg["kind"] == "host":
                if not timing_only:
                    host_exec(seg, iss)
                st["segments"].append({"kind": "host", "op": seg["op"]})
                continue
            r = iss.run(seg["entry"])
            if r.status != "done":
                raise EngineError(f"ISS stopped with {r.detail or r.error} at pc 0x{r.error_pc:x}")
            st["cycles"] += r.cycles
            st["instructions"] += r.instructions
            st["segments"].append({"kind": "accel", "cycles": r.cycles,
                                   "per_instruction": r.per_instruction})
        return read_outputs(image, iss), st
    if engine == "rtl":
        from .cocotb_run import AccelBench
        return AccelBench(cfg, simulator, quiet=True).run_model(image, inputs)
    raise ValueError(f"unknown engine {engine!r} (iss or rtl)")
