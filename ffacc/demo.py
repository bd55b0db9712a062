"""``ffacc demo``: the bundled digits CNN from ONNX to the simulated RTL, with its accuracies.

Compiles ``models/digits/digits_int8.onnx`` for a configuration, writes the accelerator's
Verilog and the firmware image, then classifies held-out digits (scikit-learn's 8x8 set, the
split of ``models/digits/train.py``): float and int8 on onnxruntime and ffacc's ISS over the
whole split, the RTL (Verilator) on the first ``images``, checking RTL ≡ ISS ≡ golden. It
reports the bytes each image moves over the bus (the DRAM traffic; every map goes through
memory, no layers are fused): what the ISS's commands move (code, weights, activations read
and written), and what the RTL's bus carries, which must write exactly the ISS's bytes (reads
come in whole bus beats).
"""

import importlib.util
import time
from pathlib import Path

import numpy as np

__all__ = ["load_split", "run_demo"]


def load_split():
    """``(x_train, x_test, y_train, y_test)`` exactly as the bundled model was trained."""
    from ffacc.models import path
    spec = importlib.util.spec_from_file_location("ffacc_digits_train",
                                                  str(path("digits/train.py")))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load_split()


def _ort_accuracy(model, x, y):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return float(np.mean([sess.run(None, {name: xi[None]})[0].argmax() == yi
                          for xi, yi in zip(x, y)]))


def run_demo(cfg, images=50, out_dir="out", simulator="verilator", chunk=10, progress=print):
    from amaranth.back import verilog
    from ffacc.compiler.driver import compile_model, traffic_per_pc, traffic_sum
    from ffacc.compiler.ir import quantize, reference_run
    from ffacc.hw.accel import Accelerator
    from ffacc.models import path
    from ffacc.sim.cocotb_run import AccelBench
    from ffacc.sim.runner import run_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = path("digits/digits_int8.onnx")
    _, xte, _, yte = load_split()
    n = min(images, len(yte))
    progress(f"1/5 onnxruntime: float and int8 accuracy on {len(yte)} held-out digits")
    float_acc = _ort_accuracy(path("digits/digits_float.onnx"), xte, yte)
    int8_acc = _ort_accuracy(model, xte, yte)

    progress("2/5 compiling the int8 model and writing the hardware")
    g, c, secs = compile_model(model, cfg)
    fw = c.image.save(out / "digits.ffw")
    vpath = out / "ffacc_accel.v"
    vpath.write_text(verilog.convert(Accelerator(cfg), name="ffacc_accel"))
    qin, qout = g.inputs[0], g.outputs[0]
    xq = np.stack([quantize(x[None], g.tensors[qin]) for x in xte])

    progress(f"3/5 ISS on all {len(yte)} test images")
    iss_out, iss_cycles, iss_traffic, golden_ok = [], [], [], True
    for i in range(len(yte)):
        o, st = run_image(c.image, {qin: xq[i]})
        iss_out.append(o[qout])
        iss_cycles.append(st["cycles"])
        iss_traffic.append(traffic_sum(traffic_per_pc(st["segments"]).values()))
        golden_ok &= bool(np.array_equal(o[qout], reference_run(g, {qin: xq[i]})[qout]))
    iss_out = np.stack(iss_out)
    if any(t != iss_traffic[0] for t in iss_traffic):
        raise RuntimeError("the ISS moved different bytes for different images of one program")
    iss_acc = float(np.mean(iss_out.reshape(len(yte), -1).argmax(1) == yte))

    progress(f"4/5 building the RTL model ({simulator})")
    bench = AccelBench(cfg, simulator, quiet=True)
    t = time.time()
    bench.build()
    progress(f"    built in {time.time() - t:.0f} s")
    progress(f"5/5 RTL on {n} images")
    rtl_out, rtl_cycles, rtl_bus = [], [], []
    t = time.time()
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        o, items = bench.run_batch(c.image, {qin: xq[first:last]}, name="demo")
        rtl_out.append(o[qout])
        rtl_cycles += [r["cycles"] for r in items]
        rtl_bus += [(r["bus_read_bytes"], r["bus_written_bytes"]) for r in items]
        done = len(rtl_cycles)
        bar = "#" * (30 * done // n)
        progress(f"    [{bar:<30}] {done}/{n} images, {time.time() - t:.0f} s")
    rtl_out = np.concatenate(rtl_out)
    rtl_acc = float(np.mean(rtl_out.reshape(n, -1).argmax(1) == yte[:n]))
    rtl_equals_iss = bool(np.array_equal(rtl_out, iss_out[:n]))
    dram = _dram_per_image(iss_traffic, rtl_bus)
    macs = sum(l["macs"] for l in c.layers)
    cyc = float(np.mean(rtl_cycles))
    ideal = macs / (cfg.multipliers * cfg.ffa_gain)
    return {
        "model": str(model), "config": cfg.to_dict(), "images": n,
        "accuracy": rtl_acc, "iss_accuracy": iss_acc, "iss_images": len(yte),
        "onnxruntime_int8_accuracy": int8_acc, "float_accuracy": float_acc,
        "bit_exact": bool(rtl_equals_iss and golden_ok), "rtl_equals_iss": rtl_equals_iss,
        "iss_equals_golden": golden_ok, "cycles_per_image": cyc,
        "iss_cycles_per_image": float(np.mean(iss_cycles)), "macs_per_image": macs,
        "ideal_cycles_per_image": round(ideal), "utilization": round(ideal / cyc, 4),
        "multipliers": cfg.multipliers, "target_mhz": cfg.target_mhz,
        "images_per_second_at_target": round(cfg.target_mhz * 1e6 / cyc, 1),
        "dram_per_image": dram,
        "host_ops": c.host_ops, "verilog": str(vpath), "firmware": str(fw),
    }


def _dram_per_image(iss_traffic, rtl_bus):
    """Bytes over the bus per image: the ISS's commands' (the same for every image, checked
    after the ISS's run) and the RTL bus's (the most of any image), with whether the RTL wrote
    exactly the ISS's bytes and read the same bytes on every image it ran."""
    first = iss_traffic[0]
    iss_read = first["code_bytes"] + first["weight_bytes_read"] + first["act_bytes_read"]
    reads = {r for r, _ in rtl_bus}
    return {
        **first, "read_bytes": iss_read, "written_bytes": first["act_bytes_written"],
        "rtl_bus_read_bytes": max(reads), "rtl_bus_written_bytes": max(w for _, w in rtl_bus),
        "rtl_writes_equal_iss": all(w == first["act_bytes_written"] for _, w in rtl_bus),
        "rtl_reads_same_every_image": len(reads) == 1,
    }
