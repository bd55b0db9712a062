"""Measure per-command RTL cycles on micro-programs (Verilator) to calibrate sim/cycles.py.

Usage: python benchmarks/calibrate_cycles.py [--config tiny|PRESET|FILE.toml] [--only TEXT]
       [--json]
Each command runs after the same SET prefix as a reference program without it; the
difference is the command's cost. Prints measured vs modelled cycles and stall cycles (the
RTL's STALL counter: clocks waiting for the bus). ``--only`` keeps the
micro-programs whose name contains TEXT (e.g. ``post``).
"""

import argparse
import json
import tempfile
from pathlib import Path

from ffacc.compiler.lower import MemoryPlan, build_image
from ffacc.firmware.isa import LoadWFlag, Op, Program, Reg
from ffacc.cli import load_accel_config
from ffacc.sim.cocotb_run import AccelBench
from ffacc.sim.programs import run_iss, Case


def programs(cfg):
    out = []
    for n in (1, 9):
        out.append((f"set x{n}", {"A_SRC": 0} if n == 1 else {"C_Y0": 0, "C_KH": 1, "C_KW": 1,
                    "C_PT": 0, "C_PL": 0, "C_NY": 1, "C_LANES": 1, "A_CH": 1, "A_H": 1}, None))
    for nch, nr, W, src, pitch in ((1, 1, 8, 0x100, 0), (1, 4, 30, 0x100, 0),
                                   (2, 3, 17, 0x103, 0), (1, 3, 10, 0x101, 30),
                                   (2, 16, 32, 0x100, 0), (36, 1, 1, 0x100, 0),
                                   (4, 1, 2, 0x101, 0), (3, 1, 5, 0x100, 0),
                                   (3, 2, 2, 0x100, 0), (1, 1, 3, 0x100, 0)):
        out.append((f"loada {nch}x{nr}x{W} @{src:x} p{pitch}", dict(
            A_SRC=src, A_CH=nch, A_H=nr, A_W=W, A_HB0=0, A_NR=nr, LB_PITCH=nr,
            A_PITCH=pitch), Op.LOADA))
    if cfg.strided_loads:
        # a stride phase: every 2**k-th byte of each row (a read a row), from line-buffer
        # row A_LB0 on
        for nch, nr, W, src, k, pitch in ((1, 1, 4, 0x100, 1, 8), (3, 4, 4, 0x100, 1, 16),
                                          (2, 3, 5, 0x101, 1, 20), (1, 2, 4, 0x103, 2, 32),
                                          (2, 2, 16, 0x100, 1, 64), (1, 1, 9, 0x102, 2, 64)):
            out.append((f"loada {nch}x{nr}x{W} @{src:x} step{1 << k}", dict(
                A_SRC=src, A_CH=nch, A_H=nr, A_W=W, A_HB0=0, A_NR=nr, LB_PITCH=nr,
                A_PITCH=pitch, A_CSHIFT=k, A_LB0=1), Op.LOADA))
    for n in (1, 3, 20):
        for mac in (0, 1):
            out.append((f"loadw {n}{' mac' if mac else ''}", dict(W_SRC=0x100, W_COUNT=n,
                                                                  W_DST=0), (Op.LOADW, mac)))
    if cfg.weight_prefetch:
        # in the background: what the run pays is the issue, then END's wait for the load
        for n in (1, 20):
            out.append((f"loadw {n} async", dict(W_SRC=0x100, W_COUNT=n, W_DST=0),
                        (Op.LOADW, LoadWFlag.ASYNC)))
        # a LOADA right behind the load waits for it
        out.append(("loadw 20 async + loada", dict(W_SRC=0x100, W_COUNT=20, W_DST=0,
                                                   A_SRC=0x100, A_CH=1, A_H=1, A_W=8,
                                                   A_HB0=0, A_NR=1, LB_PITCH=1),
                    lambda p: p.op(Op.LOADW, LoadWFlag.ASYNC).op(Op.LOADA)))
    for n in (1, 8):
        out.append((f"loadq {n}", dict(Q_SRC=0x100, Q_COUNT=n, Q_DST=0), Op.LOADQ))
    # the 4th to 8th run many passes: short ones (a pass shorter than its setup, one beat)
    # and long ones, over one and two pieces; the last three pad the map (chain_rows: their
    # rows stream as a chain)
    for k, nch, ny, wout, pad in ((3, 1, 1, 6, 0), (3, 2, 4, 12, 0), (5, 1, 2, 9, 0),
                                  (1, 3, 2, 8, 0), (3, 4, 1, 3, 0), (1, 8, 1, 3, 0),
                                  (3, 3, 4, 12, 0), (5, 2, 2, 9, 0), (3, 2, 4, 4, 1),
                                  (3, 3, 3, 7, 1), (2, 2, 3, 4, 0)):
        h = ny + k - 1 - 2 * pad
        out.append((f"conv k{k} ch{nch} ny{ny} w{wout}" + f" pad{pad}" * bool(pad), dict(
            C_KH=k, C_KW=k, C_PT=pad, C_PL=pad, C_WOUT=wout, C_ZX=0, C_Y0=0, C_NY=ny,
            A_CH=nch, C_WSET=0, C_LANES=1, A_H=h, A_W=wout + k - 1 - 2 * pad, A_HB0=0,
            LB_PITCH=h + ((k - h) % cfg.lb_banks)), Op.CONV))
    # the last three write every byte into a word of its own, a clock apart
    for lanes, ny, wout, flags, stride in ((1, 1, 6, 0, 1), (2, 2, 10, 0, 1), (1, 4, 8, 1, 1),
                                           (1, 4, 9, 0, 2), (2, 6, 1, 0, 1), (1, 2, 1, 0, 1),
                                           (2, 12, 1, 0, 1)):
        out.append((f"post l{lanes} ny{ny} w{wout} f{flags} s{stride}", dict(
            C_LANES=lanes, C_NY=ny, C_WOUT=wout, O_DST=0x800, O_W=max(wout, 8), O_CSTRIDE=64,
            O_Q=0, O_STRIDE=stride, O_ROW0=0, Q_SRC=0x100, Q_COUNT=2, Q_DST=0),
            (Op.POST, flags)))
    # short ADDs, then long ones from inside a beat (whole-beat reads with wide loads)
    for n, a, b, dst in ((1, 0x100, 0x140, 0x800), (16, 0x100, 0x140, 0x800),
                         (20, 0x100, 0x140, 0x800), (33, 0x100, 0x140, 0x800),
                         (64, 0x2001, 0x2803, 0x3000), (200, 0x2001, 0x2803, 0x3000),
                         (1000, 0x2001, 0x2803, 0x3000)):
        out.append((f"add {n} @{a:x},{b:x}", dict(A_SRC=a, D_SRC2=b, O_DST=dst, D_N=n,
                                                  D_KAB=1 | 1 << 16, D_M=1 << 30, D_SZ=31,
                                                  D_CLAMP=255 << 8), Op.ADD))
    if cfg.loop_depth:
        out.append(("inc", {"A_SRC": 0x100}, lambda p: p.inc(Reg.A_SRC, -8)))
        for n, body in ((4, 1), (3, 12), (2, 2 * cfg.fetch_block)):
            def loop(p, n=n, body=body):
                p.op(Op.LOOP, imm=n)
                for _ in range(body):
                    p.op(Op.NOP)
                p.op(Op.ENDLOOP)
            out.append((f"loop {n} x {body} nops", {"A_SRC": 0}, loop))
    return out


def build(cfg, regs, command, with_command):
    p = Program().set(**regs)
    if "Q_SRC" in regs:
        p.op(Op.LOADQ)
    if callable(command) and with_command:
        command(p)
    elif command is not None and with_command:
        op, flags = command if isinstance(command, tuple) else (command, 0)
        p.op(op, flags)
    p.end()
    mem = MemoryPlan(base=0x100)
    # qparams with a legal shift so POST runs: bias 0, M 2^30, shift 31
    mem.place("pad", bytes(0x700))
    img = build_image(cfg, p, mem, mem_size=1 << 14, code_addr=0x1000)
    rec = ((0).to_bytes(4, "little") + (1 << 30).to_bytes(4, "little")
           + (31 | 255 << 24).to_bytes(4, "little"))
    img.sections.append(type(img.sections[0])(3, 0x100, rec * 2))
    return img


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="", metavar="TEXT",
                    help="only the micro-programs whose name contains TEXT")
    args = ap.parse_args(argv)
    cfg = load_accel_config(args.config)
    bench = AccelBench(cfg, "verilator", quiet=True).build()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        chosen = [p for p in programs(cfg) if args.only in p[0]]
        if not chosen:
            ap.error(f"no micro-program's name contains {args.only!r}")
        for name, regs, command in chosen:
            cyc = []
            for with_cmd in (False, True):
                img = build(cfg, regs, command, with_cmd)
                path = img.save(Path(tmp) / "p.ffw")
                r = bench.run_image(path, [], name="calib")
                _, iss = run_iss(Case(name, img), cfg)
                stall = sum(p[3] for p in iss.per_instruction)
                cyc.append((r["cycles"], iss.cycles, r["error"], iss.error, r["stall"], stall))
            (r0, i0, _, _, rs0, is0), (r1, i1, e1, ie1, rs1, is1) = cyc
            rows.append({"command": name, "rtl": r1 - r0 if command else r1,
                         "model": i1 - i0 if command else i1, "rtl_error": e1, "iss_error": ie1,
                         "rtl_stall": rs1 - rs0 if command else rs1,
                         "model_stall": is1 - is0 if command else is1})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['command']:32s} rtl {r['rtl']:6d}  model {r['model']:6d}  "
                  f"stall {r['rtl_stall']:4d}/{r['model_stall']:4d}  "
                  f"err {r['rtl_error']}/{r['iss_error']}")


if __name__ == "__main__":
    main()
