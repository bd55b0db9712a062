"""Run a compiled firmware image: accelerator segments on the ISS or the RTL, host segments
in numpy/onnxruntime, all on one memory.

The same :func:`host_exec` serves the ISS path here and the RTL path inside the cocotb bench
(``AxiRam`` has the same ``read``/``write`` methods as :class:`~ffacc.sim.iss.ISS`).
"""

import numpy as np

from ffacc.compiler.ir import Graph, PhaseSplit, QTensor, Transpose, op_from_dict, run_op
from ffacc.firmware.image import Image, ImageError

__all__ = ["host_exec", "host_op", "check_segments", "run_image", "config_of", "write_inputs",
           "read_outputs", "EngineError", "InputError", "model_inputs", "model_outputs"]


class EngineError(RuntimeError):
    """The accelerator stopped with an error while running an image."""


def _qt(d):
    return QTensor(d["name"], tuple(d["shape"]), d["dtype"], d["scale"], d["zero_point"],
                   d.get("model_dtype"))


def _read_tensor(mem, d):
    t = _qt(d)
    raw = bytes(mem.read(d["addr"], t.nbytes))
    return np.frombuffer(raw, dtype=t.np_dtype).reshape(t.shape)


def _write_tensor(mem, d, value):
    t = _qt(d)
    mem.write(d["addr"], np.asarray(value).astype(t.np_dtype).tobytes())


_SEGMENT_FIELDS = ("op", "name", "inputs", "outputs", "attrs")
_TENSOR_FIELDS = {"name": str, "addr": int, "dtype": str, "shape": list, "scale": (int, float),
                  "zero_point": int}


def _check_tensor(d, what):
    if not isinstance(d, dict):
        raise ImageError(f"{what} is not an object")
    for k, t in _TENSOR_FIELDS.items():
        if k not in d:
            raise ImageError(f"{what}: missing field {k!r}")
        if not isinstance(d[k], t) or isinstance(d[k], bool):
            raise ImageError(f"{what}: field {k!r} has the wrong type ({d[k]!r:.40})")
    if d["addr"] < 0 or not all(type(n) is int and n >= 0 for n in d["shape"]):
        raise ImageError(f"{what}: negative address or shape {d['shape']!r:.40}")
    for k in ("dtype", "model_dtype"):
        if d.get(k) is not None:
            try:
                numeric = np.dtype(d[k]).kind in "biuf"
            except (TypeError, ValueError):
                numeric = False
            if not numeric:
                raise ImageError(f"{what}: {k} {d[k]!r:.40} is not a numeric type")


def host_op(seg, index=None):
    """The operator and one-operator graph of host segment ``seg``, every field checked.

    The operator is rebuilt from data (:func:`ffacc.compiler.ir.op_from_dict`: a class from
    an allow-list, JSON fields, ``.npy`` arrays); nothing in the image is executed.

    Raises
    ------
    ImageError
        Naming the segment (``index`` in the image's segment table, and its name): an
        unknown operator, a missing, unknown or malformed field.
    """
    name = seg.get("name") if isinstance(seg, dict) else None
    where = (f"host segment {index}" if index is not None else "host segment") + \
        (f" ({name!r:.60})" if isinstance(name, str) else "")
    try:
        if not isinstance(seg, dict):
            raise ImageError("not an object")
        missing = [k for k in _SEGMENT_FIELDS if k not in seg]
        if missing:
            raise ImageError(f"missing field(s) {', '.join(map(repr, missing))}")
        for role in ("inputs", "outputs"):
            if not isinstance(seg[role], list):
                raise ImageError(f"{role} is not a list of tensors")
            for j, d in enumerate(seg[role]):
                _check_tensor(d, f"{role}[{j}]")
        op = op_from_dict({"op": seg["op"], "name": seg["name"],
                           "inputs": [d["name"] for d in seg["inputs"]],
                           "outputs": [d["name"] for d in seg["outputs"]],
                           "attrs": seg["attrs"]})
        if isinstance(op, (PhaseSplit, Transpose)):
            op.check(seg["inputs"][0]["shape"], seg["outputs"][0]["shape"])
    except ImageError as e:
        raise ImageError(f"{where}: {e}") from None
    tensors = {d["name"]: _qt(d) for d in seg["inputs"] + seg["outputs"]}
    return op, Graph("host", tensors, [op], op.inputs, op.outputs)


def check_segments(image):
    """Check ``image``'s segment table before anything runs: every segment is accelerator code
    with an entry address or a host operator :func:`host_op` accepts; :class:`ImageError`
    naming the segment otherwise."""
    segs = image.meta.get("segments", [{"kind": "accel", "entry": image.entry}])
    if not isinstance(segs, list):
        raise ImageError("image segment table (META segments) is not a list")
    for i, seg in enumerate(segs):
        kind = seg.get("kind") if isinstance(seg, dict) else None
        if kind == "host":
            host_op(seg, i)
        elif kind != "accel":
            raise ImageError(f"segment {i}: unknown kind {kind!r:.40} (accel or host)")
        elif type(seg.get("entry")) is not int:
            raise ImageError(f"segment {i} (accel): no entry address")


def host_exec(seg, mem):
    """Execute one host segment against ``mem`` (anything with ``read``/``write``); a
    malformed segment raises :class:`ImageError` (:func:`host_op`) before anything runs."""
    op, g = host_op(seg)
    vals = {d["name"]: _read_tensor(mem, d).astype(np.int64 if g.tensors[d["name"]].quantized
                                                    else np.float32) for d in seg["inputs"]}
    for d, v in zip(seg["outputs"], run_op(op, g, vals)):
        _write_tensor(mem, d, v)


def config_of(image):
    """The accelerator configuration an image was built for (checked against its fingerprint).

    The image's segment table is checked here too (:func:`check_segments`), so a malformed
    image stops with an :class:`ImageError` before anything runs.
    """
    from ffacc.hw.config import AcceleratorConfig
    if "config" not in image.meta:
        raise ImageError("image has no configuration record (META)")
    try:
        cfg = AcceleratorConfig.from_dict(image.meta["config"])
    except (TypeError, ValueError) as e:
        raise ImageError(f"image configuration record (META) is malformed: {e}") from None
    if cfg.fingerprint() != image.fingerprint:
        raise ImageError("image configuration record does not match its fingerprint")
    check_segments(image)
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


class InputError(ValueError):
    """An input that does not fit the model (the message names the input, what it takes and
    what was given)."""


def _shape_hint(got, want):
    if len(got) == 4 and len(want) == 4 and got == (want[0], want[2], want[3], want[1]):
        return ("; this looks like NHWC (channels last), the model takes NCHW: "
                "x.transpose(0, 3, 1, 2)")
    if got == want[1:]:
        return "; add the batch dimension: x[None]"
    if len(got) == len(want) and got[1:] == want[1:]:
        return (f"; the image was compiled for a batch of {want[0]}: run the {got[0]} samples "
                f"one at a time")
    return ""


def model_inputs(image, x):
    """The model's inputs as the accelerator stores them: ``{tensor name: integer array}``.

    ``x`` is one array (single-input models) or a dict keyed by the ONNX input names. Float
    arrays are quantized with the model's own input quantization (where the model takes
    floats); integer arrays must have the model's integer type. The shape must be the
    model's: nothing is reshaped or transposed. Anything else raises :class:`InputError`.
    """
    from ffacc.compiler.ir import quantize
    from ffacc.compiler.retype import to_storage

    descs = [t for t in image.tensors if t.role == "input"]
    names = [t.onnx_name for t in descs]
    if not isinstance(x, dict):
        if len(descs) != 1:
            raise InputError(f"the model has {len(descs)} inputs ({', '.join(names)}); give "
                             f"them by name")
        x = {names[0]: x}
    unknown = sorted(set(x) - set(names) - {t.name for t in descs})
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; the model's inputs are "
                         f"{', '.join(names)}")
    out = {}
    for t, name in zip(descs, names):
        v = x.get(name, x.get(t.name))
        if v is None:
            raise InputError(f"missing input {name!r}")
        v = np.asarray(v)
        want, got = tuple(t.shape), tuple(v.shape)
        if got != want:
            raise InputError(f"input {name!r} has shape {got}, the model takes {want}"
                             + _shape_hint(got, want))
        qtype = t.model_type
        if v.dtype.kind == "f":
            if not t.model_float:
                raise InputError(f"input {name!r} takes {qtype} integers, not {v.dtype}")
            if not np.all(np.isfinite(v)):
                raise InputError(f"input {name!r} has values that are not finite (NaN or inf)")
            out[t.name] = quantize(v, _qt(t.__dict__))
        elif v.dtype.kind in "iu" and v.dtype == np.dtype(qtype):
            out[t.name] = to_storage(v, t).astype(t.dtype)
        else:
            zp = t.zero_point - int(to_storage(0, t))    # the model's zero point
            takes = (f"float32 values (quantized with scale {t.scale:g}, zero point {zp}) or "
                     f"{qtype} integers" if t.model_float else f"{qtype} integers")
            raise InputError(f"input {name!r} is {v.dtype}; the model takes {takes}")
    return out


def model_outputs(image, outs, raw=False):
    """The accelerator's outputs as the ONNX model gives them: ``{ONNX output name: array}``,
    dequantized to float32 where the model's output is float (integers with ``raw``), else
    in the model's integer type."""
    from ffacc.compiler.ir import dequantize
    from ffacc.compiler.retype import to_model

    res = {}
    for t in image.tensors:
        if t.role != "output":
            continue
        v = np.asarray(outs[t.name])
        if t.dtype in ("uint8", "int8"):
            if t.model_float and not raw:
                v = dequantize(v, _qt(t.__dict__))
            else:
                v = to_model(v, t).astype(t.model_type)
        res[t.onnx_name] = v
    return res


def read_outputs(image, mem):
    out = {}
    for t in image.tensors:
        if t.role == "output":
            dt = np.dtype(t.dtype)
            raw = bytes(mem.read(t.addr, int(np.prod(t.shape)) * dt.itemsize))
            out[t.name] = np.frombuffer(raw, dtype=dt).reshape(t.shape)
    return out


def _left(budget, used):
    return None if budget is None else budget - used


def run_image(image, inputs, engine="iss", simulator="verilator", timing_only=False,
              max_instructions=None, max_cycles=None):
    """Run ``image`` on quantized ``inputs``; returns ``(outputs, stats)``.

    ``engine`` is ``"iss"`` or ``"rtl"`` (cocotb on ``simulator``). ``stats`` has total cycles
    and per-segment figures. ``max_instructions`` / ``max_cycles`` are optional budgets for
    the whole run on the ISS (none by default); a run that needs more raises
    :class:`~ffacc.sim.iss.BudgetExceeded`.
    """
    if engine != "iss" and (max_instructions is not None or max_cycles is not None):
        raise ValueError("max_instructions / max_cycles are budgets of the ISS engine")
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        image = Image.load(image)
    cfg = config_of(image)
    if engine == "iss":
        from .iss import ISS, BudgetExceeded
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
            try:    # each segment gets what the earlier ones left of the budgets
                r = iss.run(seg["entry"],
                            max_instructions=_left(max_instructions, st["instructions"]),
                            max_cycles=_left(max_cycles, st["cycles"]))
            except BudgetExceeded as e:     # report the whole run's budget and totals
                e.result.instructions += st["instructions"]
                e.result.cycles += st["cycles"]
                raise BudgetExceeded(e.kind, e.limit + st[e.kind + "s"], e.pc, e.result) from None
            if r.status != "done":
                raise EngineError(f"ISS stopped with {r.detail or r.error} at pc 0x{r.error_pc:x}")
            st["cycles"] += r.cycles
            st["instructions"] += r.instructions
            st["segments"].append({"kind": "accel", "cycles": r.cycles,
                                   "per_instruction": r.per_instruction,
                                   "traffic": r.traffic})
        return read_outputs(image, iss), st
    if engine == "rtl":
        from .cocotb_run import AccelBench
        return AccelBench(cfg, simulator, quiet=True).run_model(image, inputs)
    raise ValueError(f"unknown engine {engine!r} (iss or rtl)")
