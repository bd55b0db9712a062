"""The board's SDRAM behind a LiteDRAM controller: the generated core, its power-up sequence,
and the SoC's port onto it.

* :func:`litedram_core` generates the controller with LiteDRAM (a maintained, PyPI-installed
  core that knows the SDRAM chips) as Verilog: an SDR PHY, the controller with its refresh and
  bank machines, one AXI4 user port of the accelerator's bus width, and a Wishbone port onto
  its control registers. ``sim=True`` puts LiteDRAM's DFI-level SDRAM model (timings and a
  memory array of the whole chip) in place of the PHY and pins, for simulation. The core is
  generated in a child Python process (LiteX's builder prints and keeps global state) and cached
  by its parameters and LiteDRAM's version.
* :class:`SdramInit` plays LiteDRAM's power-up sequence for the chip (``litedram.init``: CKE,
  precharge, mode register, refreshes) over the control port, as LiteX's BIOS would, then
  hands the DFI to the controller and sets the core's ``init_done``: the SoC needs no CPU.
* :class:`SdramPort` puts the accelerator's AXI4 master and the host link's one-word accesses
  onto the core's single AXI4 port, and answers requests outside the memory with ``SLVERR``
  itself (LiteDRAM would wrap them around).
"""

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ffacc.hw.axi import axi_master_ports

__all__ = ["SDRAM_MODULES", "SdramCore", "SdramError", "litedram_core", "SdramInit", "SdramPort"]

# chips LiteDRAM knows (litedram.modules), by the bytes they hold; the ULX3S carries 32 MB
SDRAM_MODULES = {"MT48LC16M16": 32 << 20, "AS4C16M16": 32 << 20, "AS4C32M16": 64 << 20}

CORE_NAME = "litedram_core"
# LiteDRAM's DFII registers (litedram.init: the BIOS's sdram_init)
DFII_CONTROL = {"SEL": 0x01, "CKE": 0x02, "ODT": 0x04, "RESET_N": 0x08}
DFII_COMMAND = {"CS": 0x01, "WE": 0x02, "CAS": 0x04, "RAS": 0x08, "WRDATA": 0x10, "RDDATA": 0x20}
SOFTWARE = DFII_CONTROL["CKE"] | DFII_CONTROL["ODT"] | DFII_CONTROL["RESET_N"]
HARDWARE = DFII_CONTROL["SEL"]


class SdramError(RuntimeError):
    """The SDRAM core could not be generated (the message says why and what to install)."""


@dataclass(frozen=True)
class SdramCore:
    """A generated LiteDRAM core.

    Attributes
    ----------
    verilog : str
        The core's Verilog (module :data:`CORE_NAME`).
    size : int
        Bytes of memory behind the AXI4 port.
    data_bytes : int
        Width of the AXI4 port's data.
    steps : tuple of (int, int, int)
        The power-up sequence as Wishbone writes: (word address, value, clocks to wait after).
    module : str
        The SDRAM chip (:data:`SDRAM_MODULES`).
    sim : bool
        The core holds LiteDRAM's SDRAM model instead of the PHY and the chip's pins.
    """

    verilog: str
    size: int
    data_bytes: int
    steps: tuple
    module: str
    sim: bool


def _sequence(csr, init_sequence):
    """LiteDRAM's init sequence (``(comment, a, ba, cmd, delay)`` with ``cmd`` a ``|`` of
    DFII names) as Wishbone writes: control-register values are written, commands are given
    their address and bank and issued; each step then waits its delay in clocks."""
    def word(name):
        return csr[name]["addr"] >> 2

    def bits(names, table, prefix):
        v = 0
        for n in names.split("|"):
            n = n.strip()
            if not n.startswith(prefix) or n[len(prefix):] not in table:
                raise SdramError(f"LiteDRAM init sequence: unknown {prefix}* name {n!r}")
            v |= table[n[len(prefix):]]
        return v

    steps = [(word("sdram_dfii_control"), SOFTWARE, 0)]
    for _comment, a, ba, cmd, delay in init_sequence:
        if cmd.startswith("DFII_CONTROL"):
            steps.append((word("sdram_dfii_control"), bits(cmd, DFII_CONTROL, "DFII_CONTROL_"),
                          delay))
        else:
            steps += [(word("sdram_dfii_pi0_address"), a, 0),
                      (word("sdram_dfii_pi0_baddress"), ba, 0),
                      (word("sdram_dfii_pi0_command"), bits(cmd, DFII_COMMAND, "DFII_COMMAND_"),
                       0),
                      (word("sdram_dfii_pi0_command_issue"), 1, delay)]
    steps += [(word("sdram_dfii_control"), HARDWARE, 0), (word("ddrctrl_init_done"), 1, 0)]
    return tuple(steps)


def _child(spec, out):
    """Runs in the child process: LiteDRAM's standalone core for ``spec`` into ``out``."""
    import logging
    import types

    logging.disable(logging.CRITICAL)
    # litedram.gen's simulation branch imports its PHY settings from litex_sim, which pulls in
    # the Ethernet and scope cores; LiteDRAM's own copy of the function is the same
    from litedram.phy.model import get_sdram_phy_settings
    shim = types.ModuleType("litex.tools.litex_sim")
    shim.get_sdram_phy_settings = get_sdram_phy_settings
    sys.modules["litex.tools.litex_sim"] = shim
    from litex.build.sim import SimPlatform
    from litex.soc.integration.builder import Builder
    from litedram import modules, phy
    from litedram.gen import LiteDRAMCore
    from litedram.init import get_sdram_phy_init_sequence

    config = {"memtype": "SDR", "cpu": None, "sdram_module": getattr(modules, spec["module"]),
              "sdram_module_nb": 2, "sdram_rank_nb": 1, "sdram_phy": phy.GENSDRPHY,
              "sys_clk_freq": float(spec["clock_hz"]),
              "user_ports": {"acc": {"type": "axi", "id_width": 1,
                                     "data_width": 8 * spec["data_bytes"]}}}
    if spec["sim"]:
        platform = SimPlatform("", io=[])
    else:           # the ECP5: LiteDRAM's SDR PHY in the I/O registers, on our clock and reset
        from litex.build.lattice import LatticePlatform
        platform = LatticePlatform(spec["device"], io=[], toolchain="trellis")
    soc = LiteDRAMCore(platform, config)
    builder = Builder(soc, output_dir=out, compile_gateware=False, compile_software=False,
                      csr_json=str(Path(out) / "csr.json"))
    path = Path(out) / "gateware" / f"{CORE_NAME}.v"
    if spec["sim"]:
        # the builder writes the register map; the Verilog is written here, as the
        # simulation toolchain would go on to build a Verilator model of its own
        builder.build(build_name=CORE_NAME, build=False, run=False)
        fragment = soc.get_fragment()
        soc.platform.finalize(fragment)
        path.parent.mkdir(parents=True, exist_ok=True)
        soc.platform.get_verilog(fragment, name=CORE_NAME, regular_comb=False).write(str(path))
    else:           # the Trellis toolchain writes its Verilog (and scripts we do not run)
        builder.build(build_name=CORE_NAME, run=False)
    if not spec["sim"]:
        # the data pins go through the core's own TRELLIS_IO, but Migen declares the port an
        # input
        text, dq = path.read_text(), "input  wire   [15:0] sdram_dq,"
        if dq not in text:
            raise SdramError(f"LiteDRAM's core has no port {dq!r}")
        path.write_text(text.replace(dq, "inout  wire   [15:0] sdram_dq,"))
    csr = json.loads((Path(out) / "csr.json").read_text())["csr_registers"]
    phy = soc.ddrphy if spec["sim"] else soc.sdrphy
    steps = _sequence(csr, get_sdram_phy_init_sequence(phy.settings, None)[0])
    (Path(out) / "core.json").write_text(json.dumps({"steps": steps}))


def litedram_core(module="MT48LC16M16", clock_hz=50_000_000, data_bytes=4, sim=True,
                  cache_dir=None, device="LFE5U-85F-6BG381C"):
    """Generate (or reuse) the LiteDRAM core for ``module`` at ``clock_hz`` with an AXI4 port of
    ``data_bytes``; returns an :class:`SdramCore`. ``sim=False``: the core for the ECP5
    ``device``, with the chip's pins (``sdram_*``: LiteDRAM's SDR PHY in the I/O registers)
    and ``clk``/``rst`` inputs; the chip's clock pin is the SoC's to drive."""
    if module not in SDRAM_MODULES:
        raise SdramError(f"SDRAM module {module!r}: known are {', '.join(SDRAM_MODULES)}")
    try:
        from importlib.metadata import version
        versions = {p: version(p) for p in ("litedram", "litex", "migen")}
    except Exception as e:      # PackageNotFoundError
        raise SdramError(f"the SDRAM controller needs LiteDRAM: pip install litedram litex "
                         f"migen ({e})") from None
    spec = {"module": module, "clock_hz": int(clock_hz), "data_bytes": int(data_bytes),
            "sim": bool(sim), "versions": versions, "device": None if sim else device}
    from ffacc.sim.cocotb_run import default_build_root, locked
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(cache_dir or default_build_root()) / "litedram" / key
    done = out / "core.json"
    # one process generates a core at a time (test workers and builds share the folder); the
    # others find it done
    with locked(out / "generate.lock"):
        if not done.exists():
            code = ("import json, sys; from ffacc.boards.sdram import _child; "
                    "_child(json.loads(sys.argv[1]), sys.argv[2])")
            r = subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(out)],
                               capture_output=True, text=True)
            if r.returncode or not done.exists():
                raise SdramError(f"LiteDRAM did not generate the {module} core "
                                 f"(exit {r.returncode}):\n{r.stderr[-2000:]}")
    info = json.loads(done.read_text())
    size = SDRAM_MODULES[module]
    return SdramCore(verilog=(out / "gateware" / f"{CORE_NAME}.v").read_text(), size=size,
                     data_bytes=data_bytes,
                     steps=tuple(tuple(s) for s in info["steps"]), module=module, sim=sim)


class SdramInit(wiring.Component):
    """Plays a power-up sequence of Wishbone writes, each followed by its wait.

    Parameters
    ----------
    steps : sequence of (word address, value, clocks)
        :attr:`SdramCore.steps`.

    Ports
    -----
    wb_cyc, wb_stb, wb_we : Out(1)
        Wishbone (classic) master, one write at a time, held until ``wb_ack``.
    wb_adr : Out(30)
    wb_dat_w : Out(32)
    wb_sel : Out(4)
        Always all four bytes.
    wb_ack : In(1)
    done : Out(1)
        High from the clock after the last write's wait, for good.
    """

    wb_cyc: Out(1)
    wb_stb: Out(1)
    wb_we: Out(1)
    wb_adr: Out(30)
    wb_dat_w: Out(32)
    wb_sel: Out(4)
    wb_ack: In(1)
    done: Out(1)

    def __init__(self, steps):
        if not steps:
            raise ValueError("SdramInit: an empty power-up sequence")
        for adr, value, wait in steps:
            if not (0 <= adr < 1 << 30 and 0 <= value < 1 << 32 and 0 <= wait < 1 << 24):
                raise ValueError(f"SdramInit: step {(adr, value, wait)} out of range")
        self.steps = tuple(steps)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        n = len(self.steps)
        wait_max = max(w for _, _, w in self.steps)
        rom = m.submodules.rom = Memory(shape=30 + 32 + 24, depth=n, init=[
            a | v << 30 | w << 62 for a, v, w in self.steps])
        rd = rom.read_port(domain="comb")
        idx = Signal(range(n + 1))
        wait = Signal(range(wait_max + 1))
        m.d.comb += [rd.addr.eq(idx), self.wb_adr.eq(rd.data[:30]),
                     self.wb_dat_w.eq(rd.data[30:62]), self.wb_sel.eq(0xF), self.wb_we.eq(1)]
        with m.FSM():
            with m.State("WRITE"):
                m.d.comb += [self.wb_cyc.eq(1), self.wb_stb.eq(1)]
                with m.If(self.wb_ack):
                    m.d.sync += wait.eq(rd.data[62:])
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wait != 0):
                    m.d.sync += wait.eq(wait - 1)
                with m.Elif(idx == n - 1):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "WRITE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m


def _flip(ports):
    return {k: v.flip() for k, v in ports.items()}


class SdramPort(wiring.Component):
    """The accelerator's AXI4 master and the host's word accesses onto one AXI4 port.

    Parameters
    ----------
    data_bytes : int
        Data width of both AXI4 sides.
    size : int
        Bytes of memory (a power of two); the memory side's addresses are ``log2(size)`` bits.
    acc_addr_bits : int
        Address width of the accelerator's master.

    Ports
    -----
    s_axi_* : the accelerator's master connects here: INCR read bursts, several in flight;
        writes (bursts pass too, but only single beats are tested: the accelerator's writer
        sends those).
    m_axi_* : to the memory (the LiteDRAM core's user port).
    h_rd, h_wr : In(1)
        The host asks for a read or a write of the word at ``h_addr`` (a byte address; its low
        bits are ignored), with ``h_wdata`` and byte enables ``h_wstrb``. Held until ``h_done``.
    h_done : Out(1)
        For one clock, the write was answered or the read's word is on ``h_rdata``. An access
        outside the memory is answered at once, as long as it is asked.
    h_err : Out(1)
        With ``h_done``: the access was outside the memory (nothing was written or read).
        (The memory's own responses are not looked at: LiteDRAM's are always OKAY.)

    The bus is the accelerator's unless the host asks. While the host asks, the accelerator's
    new requests wait, so the bus passes to the host once the accelerator's outstanding ones
    are answered; it comes back after the host's one transaction. A request of the
    accelerator that runs past ``size`` (or sets an address bit above it) is not passed on:
    the port answers it with ``SLVERR`` on every beat, once the requests before it in that
    direction are answered (AXI4 orders one ID's responses).
    """

    def __init__(self, data_bytes, size, acc_addr_bits):
        if size & (size - 1):
            raise ValueError(f"SdramPort: size {size} must be a power of two")
        if size < data_bytes:
            raise ValueError(f"SdramPort: size {size} is less than a beat ({data_bytes} bytes)")
        self.nb, self.size, self.aab = data_bytes, size, acc_addr_bits
        self.ab = (size - 1).bit_length()
        ports = {}
        ports.update(_flip(axi_master_ports("s_axi", data_bytes, acc_addr_bits)))
        ports.update(axi_master_ports("m_axi", data_bytes, self.ab))
        ports.update({"h_rd": In(1), "h_wr": In(1), "h_addr": In(acc_addr_bits),
                      "h_wdata": In(8 * data_bytes), "h_wstrb": In(data_bytes),
                      "h_done": Out(1), "h_rdata": Out(8 * data_bytes), "h_err": Out(1)})
        super().__init__(ports)

    def _outside(self, addr, beats):
        """Combinational: a burst of ``beats`` from byte address ``addr`` leaves the memory."""
        sh = (self.nb - 1).bit_length()
        high = addr[self.ab:].any() if self.aab > self.ab else 0
        end = (addr[sh:self.ab] if self.aab > self.ab else addr[sh:]) + beats
        return high | (end > (self.size >> sh))

    def elaborate(self, platform):
        m = Module()
        s = lambda n: getattr(self, f"s_axi_{n}")       # noqa: E731
        d = lambda n: getattr(self, f"m_axi_{n}")       # noqa: E731
        size_code = (self.nb - 1).bit_length()

        host = Signal()                 # the host owns the memory side
        rd_out = Signal(8)              # accelerator reads passed on and not finished
        wr_out = Signal(8)              # accelerator writes passed on (AW) and not answered
        aw_ahead = Signal(signed(9))    # write addresses passed on minus write data passed on
        # the accelerator's error answers: beats left to answer a read; a write's data to take
        # (``wr_err``), then its response to give (``wr_err_b``)
        rd_err, rd_err_left = Signal(), Signal(9)
        wr_err, wr_err_b = Signal(), Signal()
        acc = ~host
        # the host asks: the accelerator's new requests wait (those already in go on)
        h_ask = self.h_rd | self.h_wr
        h_req = h_ask & ~host

        # ---- accelerator reads: passed on, or answered with SLVERR once none is outstanding
        # a read request is first taken into a register, with its range checked, so the
        # accelerator's address logic and the memory's ready are not one path (the ULX3S's
        # critical path ran through both); a clock between bursts
        ar_q, ar_addr, ar_len, ar_out = Signal(), Signal(self.aab), Signal(8), Signal()
        m.d.comb += s("arready").eq(~ar_q & ~h_req)
        with m.If(s("arvalid") & ~ar_q & ~h_req):
            m.d.sync += [ar_q.eq(1), ar_addr.eq(s("araddr")), ar_len.eq(s("arlen")),
                         ar_out.eq(self._outside(s("araddr"), s("arlen") + 1))]
        ar_pass = acc & ar_q & ~ar_out & ~rd_err
        ar_take_err = acc & ar_q & ar_out & ~rd_err & (rd_out == 0)
        with m.If((ar_pass & d("arready")) | ar_take_err):
            m.d.sync += ar_q.eq(0)
        m.d.comb += [d("arvalid").eq(ar_pass), d("araddr").eq(ar_addr),
                     d("arlen").eq(ar_len), d("arsize").eq(size_code), d("arburst").eq(1),
                     d("arid").eq(0),
                     s("rid").eq(0)]
        with m.If(ar_take_err):
            m.d.sync += [rd_err.eq(1), rd_err_left.eq(ar_len + 1)]
        with m.If(rd_err):
            m.d.comb += [s("rvalid").eq(1), s("rresp").eq(2), s("rlast").eq(rd_err_left == 1)]
            with m.If(s("rready")):
                m.d.sync += rd_err_left.eq(rd_err_left - 1)
                with m.If(rd_err_left == 1):
                    m.d.sync += rd_err.eq(0)
        with m.Else():
            m.d.comb += [s("rvalid").eq(acc & d("rvalid")), s("rdata").eq(d("rdata")),
                         s("rresp").eq(d("rresp")), s("rlast").eq(d("rlast")),
                         d("rready").eq(s("rready") | host)]
        m.d.sync += rd_out.eq(rd_out + (d("arvalid") & d("arready") & acc) -
                              (d("rvalid") & d("rready") & d("rlast") & acc))

        # ---- accelerator writes: its data follows its address (it may go in the same clock,
        # or before it if the memory takes it so); a write outside the memory has its data
        # taken here and is answered with SLVERR, once none is outstanding
        aw_out = self._outside(s("awaddr"), s("awlen") + 1)
        # (a write whose data went ahead of its address is let through: the host waits for it)
        aw_new = acc & s("awvalid") & ~wr_err & ~(h_req & (aw_ahead >= 0))
        aw_pass = aw_new & ~aw_out
        aw_take_err = aw_new & aw_out & (wr_out == 0)
        w_pass = acc & ~wr_err & ((aw_ahead > 0) | ((aw_ahead == 0) & aw_pass))
        m.d.comb += [d("awvalid").eq(aw_pass), d("awaddr").eq(s("awaddr")),
                     d("awlen").eq(s("awlen")), d("awsize").eq(size_code), d("awburst").eq(1),
                     d("awid").eq(0), s("awready").eq((aw_pass & d("awready")) | aw_take_err),
                     d("wvalid").eq(w_pass & s("wvalid")), d("wdata").eq(s("wdata")),
                     d("wstrb").eq(s("wstrb")), d("wlast").eq(s("wlast")), s("bid").eq(0)]
        with m.If(aw_take_err):
            m.d.sync += wr_err.eq(1)
        with m.If(wr_err & ~wr_err_b):
            m.d.comb += s("wready").eq(1)
            with m.If(s("wvalid") & s("wlast")):
                m.d.sync += wr_err_b.eq(1)
        with m.Else():
            m.d.comb += s("wready").eq(w_pass & d("wready"))
        with m.If(wr_err_b):
            m.d.comb += [s("bvalid").eq(1), s("bresp").eq(2)]
            with m.If(s("bready")):
                m.d.sync += [wr_err.eq(0), wr_err_b.eq(0)]
        with m.Else():
            m.d.comb += [s("bvalid").eq(acc & d("bvalid")), s("bresp").eq(d("bresp")),
                         d("bready").eq(s("bready") | host)]
        aw_fire = d("awvalid") & d("awready") & acc
        m.d.sync += [aw_ahead.eq(aw_ahead + aw_fire -
                                 (d("wvalid") & d("wready") & d("wlast") & acc)),
                     wr_out.eq(wr_out + aw_fire - (d("bvalid") & d("bready") & acc))]

        # ---- the host: one single-beat transaction while it owns the memory side
        h_ar, h_aw, h_w = Signal(), Signal(), Signal()      # its channels still to hand over
        # (a request the accelerator presents and the port holds back does not count)
        acc_quiet = ((rd_out == 0) & (wr_out == 0) & (aw_ahead == 0) & ~rd_err & ~wr_err &
                     ~ar_q)
        with m.If(~host):
            with m.If(h_ask & self._outside(self.h_addr, 1)):
                m.d.comb += [self.h_done.eq(1), self.h_err.eq(1)]
            with m.Elif(h_ask & acc_quiet):
                m.d.sync += [host.eq(1), h_ar.eq(self.h_rd), h_aw.eq(self.h_wr),
                             h_w.eq(self.h_wr)]
        with m.Else():
            m.d.comb += [d("arvalid").eq(h_ar), d("araddr").eq(self.h_addr), d("arlen").eq(0),
                         d("awvalid").eq(h_aw), d("awaddr").eq(self.h_addr), d("awlen").eq(0),
                         d("wvalid").eq(h_w), d("wdata").eq(self.h_wdata),
                         d("wstrb").eq(self.h_wstrb), d("wlast").eq(1),
                         self.h_rdata.eq(d("rdata"))]
            with m.If(d("arready")):
                m.d.sync += h_ar.eq(0)
            with m.If(d("awready")):
                m.d.sync += h_aw.eq(0)
            with m.If(d("wready")):
                m.d.sync += h_w.eq(0)
            with m.If((d("rvalid") & d("rlast")) | d("bvalid")):
                m.d.comb += self.h_done.eq(1)
                m.d.sync += host.eq(0)
        return m
