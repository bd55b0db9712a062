"""The ``ffacc`` command line: one entry point, one subcommand per job.

Every report prints as a table, or as one JSON object with ``--json``.
"""

import argparse
import json
import os
import re
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["main", "load_fcu_config"]


class CLIError(Exception):
    """A user-facing error: printed as ``ffacc: error: ...`` with exit status 2."""


def _rate(v):
    """A rate for people: whole numbers from 100 up, three significant digits below."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _read_toml(spec):
    path = Path(spec)
    if not path.is_file():
        raise CLIError(f"--config {spec!r}: file not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CLIError(f"--config {spec}: invalid TOML: {e}") from e


def _not_found(spec, names):
    return CLIError(f"--config {spec!r}: not a preset ({', '.join(names)}) nor a .toml file")


def load_fcu_config(spec):
    """An :class:`~ffacc.hw.fcu.FCUConfig`: an FCU preset, an accelerator preset's unit, or a
    TOML file (fields at top level or under ``[fcu]``)."""
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.hw.fcu import PRESETS, FCUConfig

    if spec is None:
        return PRESETS["default"]
    if spec in PRESETS:
        return PRESETS[spec]
    if spec in ACCEL_PRESETS:
        return ACCEL_PRESETS[spec].fcu
    if not spec.endswith(".toml"):
        raise _not_found(spec, list(PRESETS) + list(ACCEL_PRESETS))
    table = _read_toml(spec)
    return FCUConfig.from_dict(table.get("fcu", table))


DEFAULT_ACCEL = "ulx3s"


def load_accel_config(spec):
    """An :class:`~ffacc.hw.config.AcceleratorConfig` from a preset or a TOML file (fields at
    top level, the unit under ``[fcu]``)."""
    from ffacc.hw.config import ACCEL_PRESETS, AcceleratorConfig

    spec = spec or DEFAULT_ACCEL
    if spec in ACCEL_PRESETS:
        return ACCEL_PRESETS[spec]
    if not spec.endswith(".toml"):
        raise _not_found(spec, list(ACCEL_PRESETS))
    return AcceleratorConfig.from_dict(_read_toml(spec))


def _write_atomic(out, text, hint):
    out = Path(out)
    if out.is_dir():
        raise CLIError(f"-o {out}: is a directory; give a file name such as {out / hint}")
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text) if isinstance(text, str) else tmp.write_bytes(text)
        tmp.replace(out)                           # never leave a half-written file
    except OSError as e:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise CLIError(f"-o {out}: cannot write it ({e.strerror or e})") from None
    return out


def _progress(as_json):
    """Where a command's progress lines go: stderr when stdout carries its JSON."""
    return (lambda *a: print(*a, file=sys.stderr)) if as_json else print


def _table(headers, rows):
    """A text table: columns of figures right-aligned, columns of words left-aligned."""
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    right = [all(re.match(r"[-+]?[\d.]", c) or c in ("", "-") for c in col[1:])
             for col in cols]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(map(str, cells), widths, right)).rstrip()
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)]
                     + [line(r) for r in rows])


# --- verilog -----------------------------------------------------------------------------
def cmd_verilog(args):
    from amaranth.back import verilog

    if args.fcu:
        from ffacc.hw.fcu import FastConvUnit
        cfg = load_fcu_config(args.config)
        name = args.name or "fcu"
        top = FastConvUnit(cfg)
        info = {"multipliers": cfg.multipliers, "outputs_per_cycle": cfg.L,
                "latency": cfg.latency}
        what = f"{cfg.multipliers} multipliers, {cfg.L} outputs/clock, latency {cfg.latency}"
    else:
        from ffacc.hw.accel import Accelerator
        cfg = load_accel_config(args.config)
        name = args.name or "ffacc_accel"
        top = Accelerator(cfg)
        info = {"multipliers": cfg.multipliers, "lanes": cfg.lanes, "rows": cfg.rows,
                "fingerprint": f"0x{cfg.fingerprint():08x}"}
        what = (f"{cfg.lanes} lanes x {cfg.rows} row engines, {cfg.multipliers} FCU "
                f"multipliers, fingerprint 0x{cfg.fingerprint():08x}")
    text = verilog.convert(top, name=name)
    out = _write_atomic(args.output, text, f"{name}.v")
    info.update({"output": str(out), "top": name, "config": cfg.to_dict(),
                 "lines": text.count("\n")})
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {out}: module {name}, {what}, {info['lines']} lines")
    return 0


# --- ffa ---------------------------------------------------------------------------------
def ffa_table(cfg):
    """Multiplications per 2-D output for k = 1..12: direct, best FFA, and this unit, with the
    mode the unit runs each in (k = 1: MAC mode, two output channels a unit with
    ``mac_pairs``)."""
    from ffacc.hw.ffa import best_ffa, direct_mults_per_output, mults_per_output
    from ffacc.sim.fcu_model import tasks_per_output_channel

    rows = []
    for k in range(1, 13):
        unit = k * k / cfg.mode_gain(k)         # a row's k MACs per output, k rows
        rows.append({"k": k, "direct": direct_mults_per_output(k),
                     "best_ffa": round(mults_per_output(k), 3),
                     "best_L": best_ffa(k).L if k > 1 else 1, "mode": cfg.mode_name(k),
                     "unit": round(unit, 3), "unit_tasks": tasks_per_output_channel(cfg, k, k),
                     "unit_outputs_per_cycle": round(cfg.multipliers / unit, 3)})
    return rows


def cmd_ffa(args):
    cfg = load_fcu_config(args.config)
    rows = ffa_table(cfg)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "kernels": rows}))
        return 0
    print(f"multiplications per output (k×k kernel, one input channel); unit = {args.config or 'default'}"
          f" config: {cfg.multipliers} multipliers, L={cfg.L}, rows={cfg.rows}")
    print(_table(["k", "direct k²", "best FFA", "best L", "mode", "unit", "unit tasks",
                  "unit out/clk"],
                 [[r["k"], r["direct"], r["best_ffa"], r["best_L"], r["mode"], r["unit"],
                   r["unit_tasks"], r["unit_outputs_per_cycle"]] for r in rows]))
    return 0


# --- selfcheck ---------------------------------------------------------------------------
def selfcheck(cfg, simulator="verilator", kernels=range(1, 13), width=48, quiet=True,
              progress=print):
    """Run every kernel size on the unit's Verilog; returns one result row per kernel."""
    from ffacc.sim.cocotb_run import FCUTestbench

    tb = FCUTestbench(cfg, simulator, quiet=quiet)
    t0 = time.time()
    progress(f"building {simulator} model of {tb.source} ...")
    tb.build()
    progress(f"  built in {time.time() - t0:.1f} s")
    rows = []
    kernels = list(kernels)
    for n, k in enumerate(kernels, 1):
        t = time.time()
        st = tb.run(k, seed=k, channels=2, height=k + 2, width=width, data="random",
                    name=f"selfcheck-k{k}")
        ex = tb.run(k, seed=100 + k, channels=1, data="extreme", name=f"selfcheck-extreme-k{k}")
        cyc = st["runs"][0]["stream_cycles"]
        # throughput per input channel: 2-D outputs x input channels / cycles
        row = {"k": k, "bit_exact": True, "passes": st["passes"], "outputs": st["outputs"],
               "input_channels": 2, "cycles": cyc,
               "outputs_per_cycle": round(st["outputs"] * 2 / cyc, 3),
               "stalled_cycles": st["runs"][1]["stream_cycles"],
               "extreme_bit_exact": True, "extreme_outputs": ex["outputs"]}
        rows.append(row)
        progress(f"  [{n}/{len(kernels)}] k={k:2d}: {st['outputs']} outputs (2 input channels) "
                 f"in {cyc} cycles, bit-exact; extremes bit-exact ({time.time() - t:.1f} s)")
    return rows


def cmd_selfcheck(args):
    cfg = load_fcu_config(args.config)
    say = _progress(args.json)
    rows = selfcheck(cfg, args.simulator, progress=say)
    return _report_selfcheck(cfg, rows, args.json, args.simulator)


def _report_selfcheck(cfg, rows, as_json, simulator, extra=None):
    table = {r["k"]: r for r in ffa_table(cfg)}
    for r in rows:
        # the testbench drives one output channel: MAC mode's second (mac_pairs) not counted
        r["asymptotic_outputs_per_cycle"] = round(table[r["k"]]["unit_outputs_per_cycle"]
                                                  / (cfg.mac_channels if r["k"] == 1 else 1), 3)
        r["mults_per_output_unit"] = table[r["k"]]["unit"]
        r["mults_per_output_direct"] = table[r["k"]]["direct"]
        r["mults_per_output_best_ffa"] = table[r["k"]]["best_ffa"]
    ok = all(r["bit_exact"] and r["extreme_bit_exact"] for r in rows)
    result = {"simulator": simulator, "config": cfg.to_dict(), "multipliers": cfg.multipliers,
              "bit_exact": ok, "kernels": rows, **(extra or {})}
    if as_json:
        print(json.dumps(result))
    else:
        print()
        print(f"FCU self-check on {simulator}: {cfg.multipliers} multipliers, "
              f"{'ALL BIT-EXACT' if ok else 'MISMATCH'}")
        print("out/clk: 2-D outputs x input channels per clock, measured on the RTL; "
              "(wide): the same for very wide rows")
        print(_table(["k", "passes", "outputs", "cycles", "out/clk", "out/clk (wide)",
                      "mult/out", "direct", "best FFA"],
                     [[r["k"], r["passes"], r["outputs"], r["cycles"], r["outputs_per_cycle"],
                       r["asymptotic_outputs_per_cycle"], r["mults_per_output_unit"],
                       r["mults_per_output_direct"], r["mults_per_output_best_ffa"]]
                      for r in rows]))
    return 0 if ok else 1


# --- demo --------------------------------------------------------------------------------
def cmd_demo(args):
    from ffacc.demo import run_demo

    cfg = load_accel_config(args.config)
    say = _progress(args.json)
    res = run_demo(cfg, images=args.images, out_dir=args.out, simulator=args.simulator,
                   progress=say)
    Path(args.out, "demo.json").write_text(json.dumps(res, indent=1))
    d = res["dram_per_image"]
    if args.json:
        print(json.dumps(res))
    else:
        print()
        print(f"digits CNN on {args.config or DEFAULT_ACCEL}: {res['multipliers']} multipliers")
        print(_table(["", "accuracy", "images"], [
            ["float (onnxruntime)", f"{res['float_accuracy']:.2%}", res["iss_images"]],
            ["int8 (onnxruntime)", f"{res['onnxruntime_int8_accuracy']:.2%}", res["iss_images"]],
            ["ffacc ISS", f"{res['iss_accuracy']:.2%}", res["iss_images"]],
            ["ffacc RTL", f"{res['accuracy']:.2%}", res["images"]]]))
        print(f"RTL == ISS == golden on every image: {res['bit_exact']}")
        print(f"cycles per image: {res['cycles_per_image']:.0f} (ideal "
              f"{res['ideal_cycles_per_image']}, utilization {res['utilization']:.1%}); "
              f"{_rate(res['images_per_second_at_target'])} images/s at the configuration's "
              f"{res['target_mhz']} MHz target clock")
        print("bus (DRAM) bytes per image (every map goes through memory: no fused layers):")
        print(_table(["", "code", "weights, records", "activations", "total"], [
            ["read (ISS's commands)", d["code_bytes"], d["weight_bytes_read"],
             d["act_bytes_read"], d["read_bytes"]],
            ["written (ISS's commands)", "", "", d["act_bytes_written"], d["written_bytes"]],
            ["read on the RTL's bus", "", "", "", d["rtl_bus_read_bytes"]],
            ["written on the RTL's bus", "", "", "", d["rtl_bus_written_bytes"]]]))
        print(f"RTL writes == ISS writes on every image: {d['rtl_writes_equal_iss']}; the "
              f"RTL reads the same bytes on every image: {d['rtl_reads_same_every_image']} "
              f"(whole {res['config'].get('bus_bytes', 4)}-byte bus beats)")
        print(f"Verilog: {res['verilog']}\nfirmware: {res['firmware']}\n"
              f"report: {Path(args.out, 'demo.json')}")
    return 0 if res["bit_exact"] and d["rtl_writes_equal_iss"] and \
        d["rtl_reads_same_every_image"] else 1


# --- compiler commands -------------------------------------------------------------------
def _compile_errors():
    from ffacc.compiler.driver import CompileError, ImportError_
    from ffacc.compiler.quantize import QuantizeError
    from ffacc.firmware.image import ImageError
    from ffacc.sim.iss import BudgetExceeded
    from ffacc.sim.runner import EngineError, InputError
    return (CompileError, ImportError_, ImageError, EngineError, InputError, QuantizeError,
            BudgetExceeded)


def _board_errors():
    from ffacc.boards.build import BuildError
    from ffacc.firmware.link import LinkError
    return (BuildError, LinkError)


def _board(name):
    from ffacc.boards.build import BOARDS
    if name not in BOARDS:
        raise CLIError(f"--board {name}: unknown board; choose from {', '.join(BOARDS)}")
    return BOARDS[name]


def _check_board_fit(image, board, source):
    """Refuse (before anything is written or sent) an image the board's SoC memory cannot hold.
    The configuration is checked against the board's own ID when it runs (a board may be
    built with any --config)."""
    if image.mem_size > board.mem_bytes:
        raise CLIError(f"{source} needs {image.mem_size:,} bytes of memory; the {board.name} "
                       f"SoC has {board.mem_bytes:,} ({board.mem_bytes // 1024} KiB): use a "
                       f"smaller input or model")


def _memory_lines(image):
    from ffacc.api import board_fit
    from ffacc.boards.build import BOARDS
    fit = board_fit(image)
    boards = "; ".join(f"{r['board']} SoC"
                       + ("" if r["config"] == BOARDS[r["board"]].config
                          else f" (--config {r['config']})")
                       + f" {r['memory_bytes'] // 1024} KiB: "
                       f"{'fits' if r['fits'] else 'does NOT fit'}" for r in fit)
    return (f"memory: {image.mem_size:,} bytes ({image.mem_size / 1024:.1f} KiB)"
            + (f"; {boards}" if boards else "; no board SoC has this configuration")), fit


def cmd_quantize(args):
    from ffacc.compiler.quantize import quantize_onnx

    if not Path(args.model).is_file():
        raise CLIError(f"{args.model}: no such model file")
    calib = _load_array(args.calib, "--calib")
    say = _progress(args.json)
    info = quantize_onnx(args.model, args.output, calib, fmt=args.format,
                         activations=args.activations, per_channel=not args.per_tensor,
                         progress=say)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {info['output']}: {info['format'].upper()}, {info['activations']} "
              f"activations, int8 weights ({'per channel' if info['per_channel'] else 'per tensor'}"
              f"), calibrated on {info['samples']} samples")
    return 0


def cmd_compile(args):
    from ffacc.compiler.codes import CodesError
    from ffacc.compiler.compile import host_regions
    from ffacc.compiler.driver import compile_model

    board = _board(args.board) if args.board else None
    cfg = load_accel_config(args.config or (board.config if board else None))
    if not Path(args.model).is_file():
        raise CLIError(f"{args.model}: no such model file")
    calib = None
    if args.act_codes and not args.calib:
        raise CLIError("--act-codes needs --calib (samples to calibrate the levels on)")
    if args.calib:
        if not args.act_codes:
            raise CLIError("--calib is for --act-codes (the model is already quantized)")
        calib = _load_array(args.calib, "--calib")
        if isinstance(calib, dict):
            calib = [dict(zip(calib, v)) for v in zip(*calib.values())]
    try:
        g, c, secs = compile_model(args.model, cfg, batch=args.batch,
                                   polyphase=not args.no_polyphase, act_codes=args.act_codes,
                                   calib=calib, narrow_codes=not args.act_bytes,
                                   move_pools=not args.no_move_pools)
    except CodesError as e:
        raise CLIError(f"--act-codes: {e}") from e
    if board:
        _check_board_fit(c.image, board, f"{args.model} compiled for --config "
                                          f"{args.config or board.config}")
    raw = c.image.to_bytes()
    out = _write_atomic(args.output, raw, "model.ffw")
    mem_line, fit = _memory_lines(c.image)
    regions = host_regions(c.layers)
    info = {"output": str(out), "image_bytes": len(raw), "compile_seconds": round(secs, 3),
            "fingerprint": f"0x{cfg.fingerprint():08x}", "memory_bytes": c.image.mem_size,
            "boards": fit, "layers": len(c.layers),
            "accelerator_layers": sum(l["where"] == "accel" for l in c.layers),
            "host_ops": c.host_ops, "host_regions": regions["regions"],
            "accelerator_mac_share": round(regions["accel_mac_share"], 6),
            "host_bytes": regions["host_bytes"],
            "notes": c.image.meta.get("notes", []),
            "segments": len(c.image.meta["segments"]),
            "act_levels": {n: list(t.levels) for n, t in g.tensors.items()
                           if t.levels is not None},
            "act_maps_as_codes": sorted(n for n, t in g.tensors.items() if t.codes)}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {out}: {len(raw):,} bytes, {info['accelerator_layers']} of "
              f"{info['layers']} operators on the accelerator, {len(c.host_ops)} on the host, "
              f"compiled in {secs:.2f} s")
        print(mem_line)
        if info["act_levels"]:
            print(f"non-uniform levels ({args.act_codes}) on {len(info['act_levels'])} "
                  f"tensor(s); {len(info['act_maps_as_codes'])} map(s) stored as 4-bit codes")
        for n in info["notes"]:
            print(f"note: {n}")
        for h in c.host_ops:
            print(f"  host: {h['name']} ({h['op']}): {h['reason']}")
        _print_regions(regions)
    return 0


def _print_regions(regions):
    """The host regions (runs of host operators between accelerator code) and MAC shares."""
    rs = regions["regions"]
    total = regions["accel_macs"] + regions["host_macs"]
    print(f"accelerator share of MACs: {_pct(regions['accel_mac_share'])} "
          f"({regions['accel_macs']:,} of {total:,}); {len(rs)} host region(s), whose "
          f"operators read and write {regions['host_bytes']:,} bytes per image")
    for i, r in enumerate(rs):
        ops = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in r["ops"].items())
        span = r["first"] if r["first"] == r["last"] else f"{r['first']} .. {r['last']}"
        print(f"  host region {i}: {span}: {ops}; {r['macs']:,} MACs "
              f"({_pct(r['macs'] / total if total else 0.0)}), {r['bytes']:,} bytes")


def _load_array(path, what):
    import numpy as np
    if not Path(path).is_file():
        raise CLIError(f"{what} {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CLIError(f"{what} {path}: not a .npy or .npz array file ({e})") from e
    if hasattr(data, "files"):                     # .npz: arrays by name
        with data:
            return {k: data[k] for k in data.files}
    return data


def cmd_run(args):
    import io

    import numpy as np
    from ffacc.firmware.image import Image
    from ffacc.sim.runner import config_of, model_inputs, model_outputs, run_image

    image = Image.load(args.image)
    cfg = config_of(image)              # also checks every segment before anything runs
    if args.config:
        want = load_accel_config(args.config)
        if want.fingerprint() != image.fingerprint:
            raise CLIError(f"{args.image} was built for configuration 0x{image.fingerprint:08x},"
                           f" --config {args.config} is 0x{want.fingerprint():08x}")
    outs_desc = [t for t in image.tensors if t.role == "output"]
    out = Path(args.output)
    if out.suffix not in (".npz", ".npy"):
        raise CLIError(f"-o {out}: give a .npz file (every output by its ONNX name) or, for a "
                       f"model with one output, .npy")
    if out.suffix == ".npy" and len(outs_desc) > 1:
        raise CLIError(f"-o {out}: the model has {len(outs_desc)} outputs ("
                       f"{', '.join(t.onnx_name for t in outs_desc)}); write them "
                       f"all with -o {out.with_suffix('.npz')}")
    board = _board(args.board) if args.board else None
    budget = {"max_instructions": args.max_instructions, "max_cycles": args.max_cycles}
    if (board or args.engine != "iss") and any(v is not None for v in budget.values()):
        raise CLIError("--max-instructions / --max-cycles are budgets of the ISS (--engine iss)")
    if board:
        _check_board_fit(image, board, args.image)
    x = model_inputs(image, _load_array(args.input, "--input"))
    if board:
        outs, st = _run_on_board(args, image, x)
    else:
        outs, st = run_image(image, x, engine=args.engine, simulator=args.simulator, **budget)
    ys = model_outputs(image, outs, raw=args.raw)
    buf = io.BytesIO()
    if out.suffix == ".npz":
        np.savez(buf, **ys)
    else:
        np.save(buf, next(iter(ys.values())), allow_pickle=False)
    _write_atomic(out, buf.getvalue(), f"y{out.suffix}")
    stats = {"engine": f"board:{args.board}" if args.board else args.engine,
             "cycles": int(st.get("cycles", 0)), "output": str(out),
             "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                         for k, v in ys.items()}}
    stats["microseconds_at_clock"] = round(stats["cycles"] / cfg.target_mhz, 1)
    for k in ("busy", "stall", "mult_slots", "instructions"):
        if k in st:
            stats[k] = int(st[k])
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=1))
    if args.json:
        print(json.dumps(stats))
    else:
        shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in ys.items())
        print(f"wrote {out} ({shapes}): {stats['cycles']:,} cycles on {stats['engine']} "
              f"({stats['microseconds_at_clock']:,} µs at {cfg.target_mhz} MHz)")
    return 0


def _run_on_board(args, image, x):
    from ffacc.boards.host import SerialLink, run_firmware, run_serial

    if not args.port:
        raise CLIError("--board needs --port (the board's serial port, e.g. /dev/ttyUSB0)")
    if args.baud is not None and args.baud <= 0:
        raise CLIError(f"--baud {args.baud}: must be positive")
    baud = args.baud or _board(args.board).baud
    link = SerialLink(args.port, baud)
    say = _progress(True)
    t0, shown = time.monotonic(), [0]

    def progress(sent, total):
        # about every 64 KiB, and the last frame: bytes, and seconds per MB so far
        if sent == total or sent - shown[0] >= 1 << 16:
            shown[0] = sent
            dt = time.monotonic() - t0
            rate = f", {dt / (sent / 1e6):.1f} s per MB" if sent and dt > 0 else ""
            say(f"    loading firmware: {sent:,}/{total:,} bytes at {baud:,} baud{rate}")
    try:
        return run_serial(run_firmware(image, x, progress=progress,
                                       poll=lambda: time.sleep(0.001)), link)
    finally:
        link.close()


# --- board builds ------------------------------------------------------------------------
def cmd_build(args):
    from ffacc.boards.build import build, critical_path_text

    cfg = load_accel_config(args.config or _board(args.board).config)
    say = _progress(args.json)
    out = args.out or f"build/{args.board}"
    if args.pnr_attempts < 1:
        raise CLIError(f"--pnr-attempts {args.pnr_attempts}: at least 1")
    if args.baud is not None and args.baud <= 0:
        raise CLIError(f"--baud {args.baud}: must be positive")
    rep = build(args.board, cfg, out, baud=args.baud, progress=say, run=not args.no_run,
                attempts=args.pnr_attempts, memory=args.memory)
    if args.json:
        print(json.dumps(rep))
        return 0
    if not rep.get("built"):
        print(f"{rep['board']}: wrote {len(rep['files'])} files to {out} ({rep['note']})")
        return 0
    print(_table(["resource", "cell", "used", "available", "use"],
                 [[k, r["cell"], r["used"], r["available"],
                   f"{100 * r['used'] / r['available']:.0f}%" if r["available"] else "-"]
                  for k, r in rep["resources"].items()]))
    peak = rep["peak_gops_at_fmax"]
    print(f"{rep['board']} ({rep['device']}): Fmax {rep['fmax_mhz']} MHz, clock "
          f"{rep['clock_mhz']:g} MHz (target {rep['target_mhz']} MHz); built in "
          f"{rep['build_seconds']:.0f} s\npeak {rep['peak_gops_at_clock']:g} GOP/s at the "
          f"clock, {'-' if peak is None else peak} at Fmax ({rep['multipliers']} multipliers "
          f"x FFA gain {rep['ffa_gain']:g} x 2 ops)\n"
          f"{critical_path_text(rep['pnr_attempts'][-1])}\nbitstream: {rep['bitstream']}\n"
          f"report: {Path(out) / 'report.json'}")
    return 0


def cmd_verify(args):
    from ffacc.compiler.driver import verify_model

    cfg = load_accel_config(args.config)
    if not Path(args.model).is_file():
        raise CLIError(f"{args.model}: no such model file")
    x = _load_array(args.input, "--input") if args.input else None
    res = verify_model(args.model, cfg, engine=args.engine, x=x, simulator=args.simulator,
                       batch=args.batch)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.model} on {args.engine}: bit-exact vs golden: {res['bit_exact']}; vs "
              f"onnxruntime: max {res['max_lsb_vs_onnxruntime']} LSB on "
              f"{res['mismatch_fraction_vs_onnxruntime']:.4%} of outputs; {res['cycles']:,} "
              f"cycles; host ops: {', '.join(h['op'] for h in res['host_ops']) or 'none'}")
        w = res["worst_layer_vs_onnxruntime"] or {}
        worst = (f"{w['max_lsb']} LSB on {w['mismatch_fraction']:.3%} of its outputs"
                 if "max_lsb" in w else f"relative error {w.get('float_rel_error', 0):.2g}")
        print(f"per layer vs onnxruntime (on its own inputs): "
              f"{res['layers_checked_vs_onnxruntime']} layers, worst {w.get('layer', '-')} "
              f"({w.get('op', '-')}): {worst}; "
              f"{'within' if res['layers_ok'] else 'OUTSIDE'} the bounds")
        by_op = res["layers_vs_onnxruntime_by_op"]
        print(_table(["op", "layers", "outputs", "differ", "max LSB"],
                     [[op, t["layers"], f"{t['outputs']:,}",
                       f"{t['differ']:,} ({t['differ'] / max(1, t['outputs']):.2%})",
                       t["max_lsb"]] for op, t in sorted(by_op.items())]))
        for n in res["notes"]:
            print(f"note: {n}")
        print(f"note: {res['reference_note']}")
    return 0 if res["ok"] else 1


def _pct(v):
    return f"{100 * v:.1f}%" if v is not None else "-"


def cmd_report(args):
    from ffacc.compiler.compile import host_regions
    from ffacc.compiler.driver import layer_report
    from ffacc.firmware.image import Image

    image = Image.load(args.image)
    rows, tot = layer_report(image)
    mem_line, fit = _memory_lines(image)
    tot["boards"] = fit
    regions = host_regions(rows)
    tot["host_regions"] = regions["regions"]
    tot["host_bytes"] = regions["host_bytes"]
    tot["accelerator_mac_share"] = round(regions["accel_mac_share"], 6)
    fusion = image.meta.get("fusion")
    if args.json:
        print(json.dumps({"layers": rows, "totals": tot, "fusion": fusion}))
        return 0
    print(_table(["layer", "op", "in", "out", "k", "mode", "MACs", "work", "cycles", "µs",
                  "ideal", "util", "of bound", "POST", "weight B", "read B", "written B",
                  "where"],
                 [[r["name"], r["op"], "x".join(map(str, r["in_shape"])),
                   "x".join(map(str, r["out_shape"])),
                   "x".join(map(str, r["kernel"])) if r.get("kernel") else "-",
                   r.get("mode") or "-",
                   f"{r['macs']:,}",
                   f"{r['computed_macs'] / r['macs']:.2f}x"
                   if r.get("computed_macs") and r["macs"] else "-",
                   f"{r['cycles']:,}", f"{r['microseconds']:,.1f}",
                   f"{r['ideal_cycles']:,}", _pct(r["utilization"]) if r["where"] == "accel"
                   else "-", f"{_pct(r['of_bound'])} {r['bound']}" if r.get("bound") else "-",
                   _pct(r["post_share"]) if r.get("post_bound") else "-",
                   f"{r['weight_bytes']:,}",
                   f"{r['weight_bytes_read'] + r['act_bytes_read']:,}"
                   if "act_bytes_read" in r else "-",
                   f"{r['act_bytes_written']:,}" if "act_bytes_written" in r else "-",
                   r["where"] if r["where"] == "accel" else f"host: {r.get('reason')}"]
                  for r in rows]))
    print("work: the MACs the FCU array computes ÷ the layer's MACs (a strided layer's "
          "columns are computed at stride 1, and POST keeps every stride-th output; a "
          "Conv+Polyphase layer, split by the host, and a Conv+Phases layer, whose LOADAs "
          "take its input's stride phases, compute their outputs only, and their split "
          "kernel's zero taps); read/written B: "
          "the bytes its commands move over the bus per image (ISS)")
    print(f"total: {tot['macs']:,} MACs, {tot['cycles']:,} cycles = "
          f"{tot['microseconds']:,.1f} µs per image at {tot['clock_mhz']} MHz "
          f"({_rate(tot['images_per_second'])} images/s; ideal {tot['ideal_cycles']:,} cycles, "
          f"utilization {_pct(tot['utilization'])}), {tot['instructions']:,} instructions, "
          f"{tot['host_layers']} operators on the host (not timed)")
    print(f"bus traffic per image (layer by layer, accelerator): read "
          f"{tot['weight_bytes_read'] + tot['act_bytes_read'] + tot['code_bytes']:,} B "
          f"(weights and parameters {tot['weight_bytes_read']:,}, activations "
          f"{tot['act_bytes_read']:,}, code {tot['code_bytes']:,}), written "
          f"{tot['act_bytes_written']:,} B")
    _print_regions(regions)
    m = tot["memory"]
    print(f"{mem_line}\n  activations {m['activations']:,} B, weights and parameters "
          f"{m['weights']:,} B, code {m['code']:,} B; image file {tot['image_bytes']:,} B")
    if fusion:
        _print_fusion(fusion)
    return 0


def _print_fusion(fusion):
    """The depth-first plan the compiler made (compiler/fusion.py): its groups and, for both
    objectives, on-chip storage and memory traffic per image against layer by layer."""
    plan = fusion["bytes"]
    print("\ndepth-first plan (a plan: the accelerator runs layer by layer today), objective "
          "'bytes' (a group grows while that moves fewer bytes in all):")
    print(_table(["group", "layers", "steps", "on-chip px", "act read B", "act written B",
                  "weights B", "ends"],
                 [[g["group"], ", ".join(g["layers"]) if len(g["layers"]) <= 4 else
                   f"{g['layers'][0]} … {g['layers'][-1]} ({len(g['layers'])})",
                   g["steps"], f"{g['onchip_pixels']:,}", f"{g['act_read']:,}",
                   f"{g['act_written']:,}", f"{g['weight_traffic']:,}",
                   g["ends"] if g["fused"] else "alone: " + g["ends"]]
                  for g in plan["groups"]]))
    rows = []
    for obj, p in fusion.items():
        t = p["totals"]
        rows.append([obj, f"{t['fused_layers']}/{t['layers']}", f"{t['onchip_pixels']:,}",
                     f"{t['act_read'] + t['act_written']:,}",
                     f"{t['act_read_layer_by_layer'] + t['act_written_layer_by_layer']:,}",
                     f"{t['act_traffic_ratio']}x", f"{t['weight_traffic']:,}",
                     f"{t['weight_bytes']:,}"])
    print(_table(["objective", "fused layers", "on-chip px", "act B fused",
                  "act B layer by layer", "act saved", "weight B read", "weight B"], rows))
    print("on-chip px: the largest group's regions (line buffer: "
          f"{plan['totals']['capacity_pixels']:,}); act B: activation bytes read + written "
          "per image by the accelerator's layers; weight B read: per image, once a step when a "
          "group's weights exceed the weight buffer")


# --- csr ---------------------------------------------------------------------------------
def cmd_csr(args):
    from ffacc.firmware import csr
    from ffacc.firmware.isa import Err

    cfg = load_accel_config(args.config) if args.config else None
    if args.header:
        text, what = csr.c_header(cfg), "C header"
    elif args.markdown:
        text, what = csr.markdown_table(), "Markdown table"
    elif args.json:
        res = {"registers": csr.csr_table(), "ctrl_start": csr.CTRL_START,
               "info_version": csr.INFO_VERSION,
               "errors": [{"name": e.name, "code": int(e)} for e in Err]}
        if cfg is not None:
            res["config"] = csr.config_values(cfg)
        text, what = json.dumps(res) + "\n", "JSON"
    else:
        table = csr.csr_table()
        parts = [_table(["offset", "register", "access", "description"],
                        [[f"0x{r['offset']:02X}", r["name"], r["access"], r["description"]]
                         for r in table])]
        for r in table:
            if r["fields"]:
                parts.append(f"{r['name']}:\n" + _table(
                    ["shift", "mask", "field", "description"],
                    [[f["shift"], f"0x{f['mask']:X}", f["name"], f["description"]]
                     for f in r["fields"]]))
        parts.append("ERROR codes: " + ", ".join(f"{int(e)} {e.name}" for e in Err))
        if cfg is not None:
            parts.append("this configuration: " + ", ".join(
                f"{k} 0x{v:X}" if k in ("ID", "INFO") else f"{k} {v}"
                for k, v in csr.config_values(cfg).items()))
        text, what = "\n\n".join(parts) + "\n", "register table"
    if args.output:
        out = _write_atomic(args.output, text, "ffacc_csr.h" if args.header else "csr.md")
        print(f"wrote {out}: {what}", file=sys.stderr if args.json else sys.stdout)
    else:
        sys.stdout.write(text)
    return 0


# --- checks ------------------------------------------------------------------------------
def cmd_checks(args):
    from ffacc.firmware import checks

    cfg = load_accel_config(args.config) if args.config else None
    rows = checks.table(cfg)
    if args.command:
        rows = [r for r in rows if r["command"] == args.command.upper()]
        if not rows:
            known = sorted({r["command"] for r in checks.table()})
            raise SystemExit(f"ffacc checks: no command {args.command!r}; one of "
                             f"{', '.join(known)}")
    if args.json:
        sizes = ({n: getattr(cfg, n) for n in ("lb_width", "lb_rows", "lb_banks", "wb_sets",
                                                "qb_entries", "max_kernel", "max_pool", "lanes",
                                                "acc_lanes", "acc_blocks", "L", "bus_bytes")}
                 if cfg is not None else None)
        print(json.dumps({"checks": rows, "sizes": sizes}))
        return 0

    def note(r):
        if "applies" not in r:
            return ""
        return ("not in this configuration" if not r["applies"] else
                "always (register widths)" if r["always_holds"] else "")
    head = ["command", "stage", "check", "expression"] + (["here"] if cfg is not None else [])
    print(_table(head, [[r["command"], r["stage"], r["check"], r["expression"]]
                        + ([note(r)] if cfg is not None else []) for r in rows]))
    print("\nA command that breaks a check stops with ERROR PARAM (3) at its pc. The RTL's "
          "conditions and the ISS's are both generated from this table (ffacc/firmware/"
          "checks.py).")
    if cfg is not None:
        print("sizes: " + ", ".join(f"{n} {getattr(cfg, n)}" for n in (
            "lb_width", "lb_rows", "lb_banks", "wb_sets", "qb_entries", "max_kernel", "max_pool",
            "lanes", "acc_lanes", "acc_blocks", "L", "bus_bytes")))
    return 0


# --- bench -------------------------------------------------------------------------------
def cmd_bench(args):
    from ffacc.bench import run_bench

    cfg = load_accel_config(args.config)
    say = _progress(args.json)
    res = run_bench(cfg, vgg_size=args.vgg_size, simulator=args.simulator, out_dir=args.out,
                    progress=say, chart=not args.no_chart)
    if args.json:
        print(json.dumps(res))
        return 0
    print()
    print(_table(["model", "layer", "op", "k", "MACs", "cycles", "ideal", "util",
                  "compute bound", "traffic bound", "of bound", "stall", "source",
                  "ISS vs RTL"],
                 [[l["model"], l["name"][:22], l["op"],
                   "x".join(map(str, l["kernel"])) if l.get("kernel") else "-", l["macs"],
                   l["cycles"], l["ideal_cycles"], _pct(l["utilization"]),
                   l.get("compute_bound", ""), l.get("traffic_bound", ""),
                   f"{_pct(l['of_bound'])} {l['bound'][0]}" if l.get("bound") else "",
                   l["stall_cycles"], l["source"], f"{100 * l['iss_deviation']:+.1f}%"
                   if l.get("iss_deviation") is not None else ""] for l in res["layers"]]))
    rows = [[name, t["macs"], t["cycles"], t["ideal_cycles"], _pct(t["utilization"]),
             t["stall_cycles"], t["ops_per_multiplier_cycle"]] for name, t in res["models"].items()]
    t = res["totals"]
    rows.append(["total", t["macs"], t["cycles"], t["ideal_cycles"], _pct(t["utilization"]),
                 t["stall_cycles"], t["ops_per_multiplier_cycle"]])
    print()
    print(_table(["model", "MACs", "cycles", "ideal", "util", "stall", "ops/mult/cycle"], rows))
    d = res["iss_vs_rtl"]
    print(f"\n{res['multipliers']} multipliers (FFA gain {res['ffa_gain']}); ISS cycle model vs "
          f"RTL on the digits layers: max |deviation| {_pct(d['max_abs_layer_deviation'])}, "
          f"mean {_pct(d['mean_abs_layer_deviation'])}, whole model "
          f"{100 * d['model_deviation']:+.2f}%")
    ks = res["kernels"]
    print(f"\nper kernel size: one k×k conv {ks['layer']} ('same' padding); mults/output per "
          f"input channel: direct, best FFA, this unit; bound = outputs × the unit's mults ÷ "
          f"multipliers")
    print(_table(["k", "direct", "best FFA", "unit", "unit/best", "MACs", "bound", "cycles",
                  "of bound", "util", "ops/mult/cycle", "source", "ISS vs RTL"],
                 [[r["k"], r["direct"], r["best_ffa"], r["unit"], r["unit_over_best"],
                   r["macs"], r["compute_bound"], r["cycles"], _pct(r["of_bound"]),
                   _pct(r["utilization"]), r["ops_per_multiplier_cycle"], r["source"],
                   f"{100 * r['iss_deviation']:+.1f}%" if "iss_deviation" in r else ""]
                  for r in ks["rows"]]))
    if res.get("stem"):
        st = res["stem"]
        print(f"\n11×11 stride-4 stem 3→64: {st['stride4']['cycles']:,} cycles as "
              f"{st['stride4']['kernel_run'][0]}×{st['stride4']['kernel_run'][1]} convs on its "
              f"stride phases (host space-to-depth), {100 * st['cycles_vs_stride1']:.1f}% of "
              f"its stride-1 twin's {st['stride1']['cycles']:,} (ideal "
              f"{100 * st['ideal_vs_stride1']:.2f}%); strided, without the split: "
              f"{st['strided']['cycles']:,} ({100 * st['strided_vs_stride1']:.1f}%)")
    if res.get("fusion"):
        print("\ndepth-first plans (compiler/fusion.py; the accelerator runs layer by layer): "
              "bytes per image")
        rows = []
        for model, plans in res["fusion"].items():
            for obj, t in plans.items():
                rows.append([model, obj, f"{t['fused_layers']}/{t['layers']}",
                             f"{t['onchip_pixels']:,}", f"{t['act_read'] + t['act_written']:,}",
                             f"{t['act_read_layer_by_layer'] + t['act_written_layer_by_layer']:,}",
                             f"{t['act_traffic_ratio']}x", f"{t['weight_traffic']:,}",
                             f"{t['weight_bytes']:,}"])
        print(_table(["model", "objective", "fused", "on-chip px", "act B", "act B layer by "
                      "layer", "act saved", "weight B read", "weight B"], rows))
    print(f"JSON: {res['json']}" + (f"\nchart: {res['chart']}" if res.get("chart") else "")
          + (f", {res['fusion_chart']}" if res.get("fusion_chart") else ""))
    return 0


def build_parser():
    from ffacc.hw.config import ACCEL_PRESETS
    presets = f"accelerator preset ({', '.join(ACCEL_PRESETS)}; default {DEFAULT_ACCEL})"
    from ffacc import __version__
    p = argparse.ArgumentParser(prog="ffacc", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"ffacc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def config_arg(sp):
        sp.add_argument("--config", metavar="PRESET|FILE.toml",
                        help="hardware configuration: a preset (default, tiny, p2, p3t2) or a "
                             "TOML file")

    sp = sub.add_parser("verilog", help="write the accelerator's (or the unit's) Verilog")
    sp.add_argument("--config", metavar="PRESET|FILE.toml",
                    help=f"{presets} or TOML file; with --fcu an FCU preset (default, tiny, "
                         f"p2, p3t2)")
    sp.add_argument("--fcu", action="store_true", help="only the fast convolution unit")
    sp.add_argument("-o", "--output", required=True, metavar="FILE.v")
    sp.add_argument("--name", help="top module name (default ffacc_accel, or fcu)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_verilog)

    sp = sub.add_parser("ffa", help="multiplications per output: direct vs FFA vs this unit")
    config_arg(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_ffa)

    sp = sub.add_parser("selfcheck", help="run every kernel size on the unit's RTL vs golden")
    config_arg(sp)
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_selfcheck)

    def accel_config(sp):
        sp.add_argument("--config", metavar="PRESET|FILE.toml",
                        help=f"{presets} or TOML file")

    def batch_arg(sp):
        sp.add_argument("--batch", type=int, default=1,
                        help="the batch size a dynamic batch dimension is pinned to (default 1)")

    sp = sub.add_parser("quantize", help="float ONNX model -> quantized ONNX model (onnxruntime "
                                         "preprocess + quantize_static with ffacc's recipe)")
    sp.add_argument("model", metavar="MODEL.onnx")
    sp.add_argument("-o", "--output", required=True, metavar="OUT_int8.onnx")
    sp.add_argument("--calib", required=True, metavar="CALIB.npy|.npz",
                    help="calibration inputs: an array of samples stacked on the batch axis "
                         "(N, C, H, W), or a .npz of such arrays by input name")
    sp.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    sp.add_argument("--activations", choices=["uint8", "int8"], default="uint8")
    sp.add_argument("--per-tensor", action="store_true",
                    help="one weight scale per tensor (default: per output channel)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_quantize)

    sp = sub.add_parser("compile", help="quantized ONNX model -> firmware image (.ffw)")
    sp.add_argument("model", metavar="MODEL.onnx")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.ffw")
    accel_config(sp)
    sp.add_argument("--board", help="refuse an image that the board's SoC cannot run "
                                    "(ulx3s-85f, icebreaker, arty-a7-35); its preset is the "
                                    "default --config")
    batch_arg(sp)
    sp.add_argument("--no-polyphase", action="store_true",
                    help="keep strided convs on the host's input strided (by default, where "
                         "the cycle model finds it cheaper, the host splits their input into "
                         "its stride phases and the conv runs at stride 1)")
    sp.add_argument("--no-move-pools", action="store_true",
                    help="keep every max-pool where the model has it (by default one after a "
                         "Concat of convs, or after per-channel maps that never decrease, "
                         "moves before them into the convs' POST: the same integers)")
    sp.add_argument("--act-codes", metavar="METHOD:BITS",
                    help="non-uniform activation levels on every conv/Gemm output but the "
                         "model's: ed (equal-distance) or kmeans, 2..6 bits, e.g. kmeans:4; "
                         "maps of at most 16 levels only convolutions read are stored as 4-bit "
                         "codes")
    sp.add_argument("--act-bytes", action="store_true",
                    help="store a uniform 2- to 4-bit activation map a value a byte (by "
                         "default, on a configuration with act_codes, one that only "
                         "convolutions read is stored as 4-bit codes: half the bytes, a few "
                         "more clocks)")
    sp.add_argument("--calib", metavar="CALIB.npy|.npz",
                    help="with --act-codes: float samples stacked on the batch axis (.npz: "
                         "by input name) to calibrate the levels on")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_compile)

    sp = sub.add_parser("run", help="run a firmware image on the ISS, the RTL or a board")
    sp.add_argument("image", metavar="OUT.ffw")
    sp.add_argument("--input", required=True, metavar="X.npy|X.npz",
                    help="float input (quantized with the model's input quantization) or the "
                         "model's integers; .npz: the inputs by ONNX name")
    sp.add_argument("-o", "--output", required=True, metavar="Y.npz|Y.npy",
                    help=".npz: every output by ONNX name; .npy: a model's only output")
    sp.add_argument("--engine", choices=["iss", "rtl"], default="iss")
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sp.add_argument("--stats", metavar="STATS.json")
    sp.add_argument("--raw", action="store_true", help="write quantized integers")
    sp.add_argument("--max-instructions", type=int, metavar="N",
                    help="ISS: fail if the run needs more than N instructions (default: no limit)")
    sp.add_argument("--max-cycles", type=int, metavar="N",
                    help="ISS: fail if the run needs more than N cycles (default: no limit)")
    sp.add_argument("--board", help="run on a board over its UART link (ulx3s-85f, icebreaker, "
                                    "arty-a7-35) instead of a simulator")
    sp.add_argument("--port", help="the board's serial port (with --board)")
    sp.add_argument("--baud", type=int, help="the link's rate (default: the board's: "
                                             "2,000,000 on the ULX3S and Arty, 1,000,000 on "
                                             "the iCEBreaker)")
    accel_config(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("verify", help="compile, run, compare with golden and onnxruntime")
    sp.add_argument("model", metavar="MODEL.onnx")
    accel_config(sp)
    sp.add_argument("--engine", choices=["iss", "rtl"], default="iss")
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sp.add_argument("--input", metavar="X.npy|X.npz")
    batch_arg(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("report", help="per-layer cycles, utilization and sizes of an image")
    sp.add_argument("image", metavar="OUT.ffw")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("demo", help="the main job: the bundled digits CNN on the simulated RTL")
    accel_config(sp)
    sp.add_argument("--images", type=int, default=50, help="images on the RTL (default 50)")
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sp.add_argument("--out", default="out", help="output folder (default ./out)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("bench", help="per-layer performance: digits on the RTL, VGG-16 on the "
                                      "ISS cycle model")
    accel_config(sp)
    sp.add_argument("--vgg-size", type=int, default=32,
                    help="VGG-16 input size (default 32; 224 is the full network)")
    sp.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    sp.add_argument("--out", default="out", help="output folder for bench.json and bench.png")
    sp.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("csr", help="the control registers: table, Markdown, JSON or C header")
    what = sp.add_mutually_exclusive_group()
    what.add_argument("--header", action="store_true", help="the C header ffacc_csr.h")
    what.add_argument("--markdown", action="store_true", help="the tables in Markdown")
    what.add_argument("--json", action="store_true")
    sp.add_argument("--config", metavar="PRESET|FILE.toml",
                    help=f"{presets} or TOML file: adds its ID, INFO and sizes")
    sp.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    sp.set_defaults(func=cmd_csr)

    sp = sub.add_parser("checks", help="the command constraints (ERROR PARAM): the table the "
                                       "RTL's and the ISS's checks are generated from")
    sp.add_argument("command", nargs="?", help="only this command (LOADA, CONV, ...)")
    sp.add_argument("--config", metavar="PRESET|FILE.toml",
                    help=f"{presets} or TOML file: its sizes, and which checks apply there")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_checks)

    sp = sub.add_parser("build", help="SoC bitstream for a board (YoWASP) with Fmax and "
                                      "resource report; Verilog + constraints for Vivado boards")
    sp.add_argument("--board", required=True, help="ulx3s-85f, icebreaker or arty-a7-35")
    sp.add_argument("--config", metavar="PRESET|FILE.toml",
                    help="accelerator preset or TOML (default: the board's preset)")
    sp.add_argument("--out", help="output folder (default build/BOARD)")
    sp.add_argument("--baud", type=int, help="UART link baud rate (default: the board's, "
                                             "3,000,000 on the ULX3S and Arty, 1,000,000 on "
                                             "the iCEBreaker)")
    sp.add_argument("--memory", choices=("sdram", "bram"),
                    help="the SoC's memory: the board's SDRAM through LiteDRAM (the ULX3S's "
                         "default: 32 MB) or on-chip block RAM (64 KiB)")
    sp.add_argument("--no-run", action="store_true",
                    help="write the build files (Verilog, constraints, script) only")
    sp.add_argument("--pnr-attempts", type=int, default=3, metavar="N",
                    help="place and route at most N times (nextpnr seeds 2, 3, ... after the "
                         "first) until the clock is met (default 3)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_build)
    return p


def main(argv=None):
    from ffacc.hw.fcu import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ConfigError) + _compile_errors() + _board_errors() as e:
        print(f"ffacc: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (ffacc report ... | head): stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
