"""The SDRAM side of the SoC (boards/sdram.py): the power-up player and the port that shares the
memory's AXI4 port between the accelerator and the host link, in amaranth.sim against Python
models of a Wishbone slave and of an AXI4 memory with random delays."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.boards.sdram import (DFII_COMMAND, HARDWARE, SOFTWARE, SdramError, SdramInit,
                                SdramPort, _sequence, litedram_core)

STEPS = [(512, 14, 0), (515, 1024, 3), (514, 1, 17), (513, 11, 0), (0, 1, 5)]


def _run(dut, step, clocks):
    """Each clock: ``step(ctx, "drive")`` before the settle, ``step(ctx, "sample")`` after."""
    out = {}

    async def bench(ctx):
        for n in range(clocks):
            step(ctx, "drive", n)
            await ctx.delay(1e-9)
            if step(ctx, "sample", n):
                out["clocks"] = n
                return
            await ctx.tick()
        raise AssertionError(f"not finished in {clocks} clocks")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out["clocks"]


@pytest.mark.parametrize("seed", [1, 2])
def test_init_writes_every_step_in_order_and_waits_its_clocks(seed):
    rng = np.random.default_rng(seed)
    dut = SdramInit(STEPS)
    writes, state = [], {"ack": False, "last": None, "done_seen": False}

    def step(ctx, phase, n):
        if phase == "drive":
            state["ack"] = bool(ctx.get(dut.wb_cyc)) and rng.random() < 0.4
            ctx.set(dut.wb_ack, int(state["ack"]))
            return False
        if ctx.get(dut.done):
            assert len(writes) == len(STEPS), writes
            assert n > state["last"] + STEPS[-1][2], "done before the last wait ended"
            return True
        assert not (ctx.get(dut.wb_cyc) and not ctx.get(dut.wb_stb))
        if state["ack"]:
            assert ctx.get(dut.wb_we) and ctx.get(dut.wb_sel) == 0xF
            if writes:
                wait = STEPS[len(writes) - 1][2]
                gap = n - state["last"]
                assert gap > wait, f"step {len(writes)} came {gap} clocks after the one before"
            writes.append((ctx.get(dut.wb_adr), ctx.get(dut.wb_dat_w)))
            state["last"] = n
        return False

    _run(dut, step, 2000)
    assert writes == [(a, v) for a, v, _ in STEPS]


def test_init_refuses_an_empty_or_out_of_range_sequence():
    with pytest.raises(ValueError, match="empty"):
        SdramInit([])
    with pytest.raises(ValueError, match="out of range"):
        SdramInit([(1 << 30, 0, 0)])


def test_litedram_sequence_becomes_register_writes():
    csr = {n: {"addr": 0x800 + 4 * i} for i, n in enumerate(
        ["sdram_dfii_control", "sdram_dfii_pi0_command", "sdram_dfii_pi0_command_issue",
         "sdram_dfii_pi0_address", "sdram_dfii_pi0_baddress"])}
    csr["ddrctrl_init_done"] = {"addr": 0}
    seq = [("CKE", 0, 0, "DFII_CONTROL_CKE|DFII_CONTROL_ODT|DFII_CONTROL_RESET_N", 20000),
           ("Precharge All", 0x400, 0, "DFII_COMMAND_RAS|DFII_COMMAND_WE|DFII_COMMAND_CS", 3)]
    steps = _sequence(csr, seq)
    assert steps == ((512, SOFTWARE, 0), (512, SOFTWARE, 20000),
                     (515, 0x400, 0), (516, 0, 0),
                     (513, DFII_COMMAND["RAS"] | DFII_COMMAND["WE"] | DFII_COMMAND["CS"], 0),
                     (514, 1, 3), (512, HARDWARE, 0), (0, 1, 0))
    with pytest.raises(Exception, match="DFII_COMMAND_NOP"):
        _sequence(csr, [("x", 0, 0, "DFII_COMMAND_NOP", 0)])


# ------------------------------------------------------------------------------ the port
class AxiMemory:
    """An AXI4 slave memory with random ready and valid: INCR read bursts in order, writes
    whose data may come before their address, responses in order."""

    def __init__(self, dut, size, nb, rng):
        self.dut, self.nb, self.rng = dut, nb, rng
        self.mem = bytearray(rng.integers(0, 256, size).astype(np.uint8).tobytes())
        self.reads, self.aws, self.ws, self.bs = [], [], [], []
        self.rbeat = self.b = None

    def p(self, n):
        return getattr(self.dut, f"m_axi_{n}")

    def drive(self, ctx):
        r = self.rng.random
        ctx.set(self.p("arready"), int(r() < 0.6))
        ctx.set(self.p("awready"), int(r() < 0.6))
        ctx.set(self.p("wready"), int(r() < 0.6))
        self.rbeat = None
        if self.reads and r() < 0.7:
            addr, left = self.reads[0]
            self.rbeat = (addr, left)
            ctx.set(self.p("rdata"), int.from_bytes(self.mem[addr:addr + self.nb], "little"))
            ctx.set(self.p("rlast"), int(left == 1))
        ctx.set(self.p("rvalid"), int(self.rbeat is not None))
        ctx.set(self.p("rresp"), 0)
        self.b = bool(self.bs) and r() < 0.7
        ctx.set(self.p("bvalid"), int(self.b))
        ctx.set(self.p("bresp"), 0)

    def sample(self, ctx):
        g = lambda n: ctx.get(self.p(n))      # noqa: E731
        if self.rbeat and g("rready"):
            addr, left = self.reads[0]
            self.reads[0] = (addr + self.nb, left - 1)
            if left == 1:
                self.reads.pop(0)
        if self.b and g("bready"):
            self.bs.pop(0)
        if g("arvalid") and g("arready"):
            assert g("arburst") == 1 and g("arsize") == (self.nb - 1).bit_length()
            self.reads.append((g("araddr") // self.nb * self.nb, g("arlen") + 1))
        if g("awvalid") and g("awready"):
            assert g("awlen") == 0
            self.aws.append(g("awaddr") // self.nb * self.nb)
        if g("wvalid") and g("wready"):
            assert g("wlast")
            self.ws.append((g("wdata"), g("wstrb")))
        while self.aws and self.ws:
            a, (data, strb) = self.aws.pop(0), self.ws.pop(0)
            for k in range(self.nb):
                if strb >> k & 1:
                    self.mem[a + k] = data >> 8 * k & 0xFF
            self.bs.append(a)


class Accelerator:
    """The accelerator's side: read bursts (several in flight) and single-beat writes
    (address and data presented together, each taken on its own), some outside the memory; a
    read waits for the writes before it to be answered and a write for the reads, as the
    accelerator's hazard rules make it."""

    def __init__(self, dut, nb, lo, hi, top, rng, ops, reads_only=False):
        self.dut, self.nb, self.lo, self.hi, self.top, self.rng = dut, nb, lo, hi, top, rng
        self.ops, self.errors, self.checked = ops, 0, 0
        self.reads_only = reads_only
        self.cur = None             # the op being issued
        self.rd = []                # reads in flight: [addr, beats left, outside]
        self.wr = []                # writes in flight: outside?
        self.expect = {}            # the bytes this side wrote (its region is its own)

    def s(self, n):
        return getattr(self.dut, f"s_axi_{n}")

    def _new(self):
        r = self.rng
        if r.random() < 0.15:       # outside the memory, or running past its end
            addr = self.top - self.nb * int(r.integers(0, 3)) if r.random() < 0.5 else \
                self.top * int(r.integers(1, 4)) + self.nb * int(r.integers(0, 8))
        else:
            addr = self.nb * int(r.integers(self.lo // self.nb, self.hi // self.nb - 16))
        if self.reads_only or r.random() < 0.5:
            return ["r", addr, int(r.integers(1, 9))]
        strb = int(r.integers(1, 1 << self.nb))
        return ["w", addr, int(r.integers(0, 1 << 8 * self.nb)), strb, False, False]

    def drive(self, ctx):
        if self.cur is None and self.ops:
            op = self._new()
            if (op[0] == "w" and not self.rd) or (op[0] == "r" and not self.wr):
                self.cur = op
                self.ops -= 1
        c = self.cur
        ctx.set(self.s("arvalid"), int(bool(c) and c[0] == "r"))
        ctx.set(self.s("awvalid"), int(bool(c) and c[0] == "w" and not c[4]))
        ctx.set(self.s("wvalid"), int(bool(c) and c[0] == "w" and not c[5]))
        if c and c[0] == "r":
            ctx.set(self.s("araddr"), c[1])
            ctx.set(self.s("arlen"), c[2] - 1)
        if c and c[0] == "w":
            ctx.set(self.s("awaddr"), c[1])
            ctx.set(self.s("awlen"), 0)
            ctx.set(self.s("wdata"), c[2])
            ctx.set(self.s("wstrb"), c[3])
            ctx.set(self.s("wlast"), 1)
        ctx.set(self.s("rready"), int(self.rng.random() < 0.7))
        ctx.set(self.s("bready"), int(self.rng.random() < 0.7))

    def _outside(self, addr, beats):
        return addr + beats * self.nb > self.top

    def sample(self, ctx, mem):
        g = lambda n: ctx.get(self.s(n))      # noqa: E731
        if g("rvalid") and g("rready"):
            assert self.rd, "a read beat nobody asked for"
            addr, left, outside = self.rd[0]
            assert g("rlast") == (left == 1)
            if outside:
                assert g("rresp") == 2
            else:
                assert g("rresp") == 0
                want = bytes(self.expect.get(addr + k, mem.mem[addr + k]) for k in range(self.nb))
                got = g("rdata").to_bytes(self.nb, "little")
                assert got == want, f"read at 0x{addr:x}: {got.hex()} != {want.hex()}"
                self.checked += 1
            if left == 1:
                self.rd.pop(0)
            else:
                self.rd[0] = [addr + self.nb, left - 1, outside]
        if g("bvalid") and g("bready"):
            assert self.wr, "a write response nobody asked for"
            outside = self.wr.pop(0)
            assert g("bresp") == (2 if outside else 0)
        c = self.cur
        if c and c[0] == "r" and g("arready"):
            self.rd.append([c[1], c[2], self._outside(c[1], c[2])])
            self.errors += self.rd[-1][2]
            self.cur = None
        elif c and c[0] == "w":
            c[4] |= bool(g("awready"))
            c[5] |= bool(g("wready"))
            if c[4] and c[5]:
                outside = self._outside(c[1], 1)
                self.wr.append(outside)
                self.errors += outside
                if not outside:
                    for k in range(self.nb):
                        if c[3] >> k & 1:
                            self.expect[c[1] + k] = c[2] >> 8 * k & 0xFF
                self.cur = None

    @property
    def idle(self):
        return not self.ops and self.cur is None and not self.rd and not self.wr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_port_shares_the_memory_and_answers_outside_requests_itself(seed):
    nb, size = 4, 4096
    rng = np.random.default_rng(seed)
    dut = SdramPort(nb, size, acc_addr_bits=16)
    mem = AxiMemory(dut, size, nb, rng)
    acc = Accelerator(dut, nb, size // 2, size, size, rng, ops=120)
    host = {"ops": 80, "cur": None, "expect": {}, "done": 0, "errors": 0}

    def host_drive(ctx):
        if host["cur"] is None and host["ops"]:
            host["ops"] -= 1
            out = rng.random() < 0.1
            addr = size + int(rng.integers(0, 64)) if out else int(rng.integers(0, size // 2))
            host["cur"] = (bool(rng.random() < 0.5), addr, int(rng.integers(0, 1 << 32)),
                           int(rng.integers(1, 16)), out)
        c = host["cur"]
        ctx.set(dut.h_rd, int(bool(c) and not c[0]))
        ctx.set(dut.h_wr, int(bool(c) and c[0]))
        if c:
            ctx.set(dut.h_addr, c[1])
            ctx.set(dut.h_wdata, c[2])
            ctx.set(dut.h_wstrb, c[3])

    def host_sample(ctx):
        c = host["cur"]
        if not (c and ctx.get(dut.h_done)):
            return
        assert ctx.get(dut.h_err) == c[4]
        a = c[1] // nb * nb
        if c[4]:
            host["errors"] += 1
        elif c[0]:
            for k in range(nb):
                if c[3] >> k & 1:
                    host["expect"][a + k] = c[2] >> 8 * k & 0xFF
                    # answered only once the memory has it (not by the accelerator's answer)
                    assert mem.mem[a + k] == host["expect"][a + k], f"host write 0x{a:x} early"
        else:
            want = bytes(host["expect"].get(a + k, mem.mem[a + k]) for k in range(nb))
            assert ctx.get(dut.h_rdata).to_bytes(nb, "little") == want
        host["done"] += 1
        host["cur"] = None

    def step(ctx, phase, n):
        if phase == "drive":
            mem.drive(ctx)
            acc.drive(ctx)
            host_drive(ctx)
            return False
        acc.sample(ctx, mem)
        host_sample(ctx)
        mem.sample(ctx)
        return acc.idle and not host["ops"] and host["cur"] is None

    _run(dut, step, 40000)
    # every access happened, errors among them, and the memory holds what each side wrote
    assert host["done"] == 80 and host["errors"] > 0 and acc.errors > 0 and acc.checked > 50
    for a, v in {**host["expect"], **acc.expect}.items():
        assert mem.mem[a] == v, f"byte 0x{a:x}"


def test_the_host_gets_the_bus_while_the_accelerator_streams_reads():
    """The accelerator asks for read after read, never idle; the host's reads still get the
    bus within a few bursts each (its new requests wait while the host asks)."""
    nb, size = 4, 4096
    rng = np.random.default_rng(7)
    dut = SdramPort(nb, size, acc_addr_bits=16)
    mem = AxiMemory(dut, size, nb, rng)
    acc = Accelerator(dut, nb, size // 2, size, size, rng, ops=100_000, reads_only=True)
    host = {"left": 10, "since": 0, "waits": []}

    def step(ctx, phase, n):
        if phase == "drive":
            mem.drive(ctx)
            acc.drive(ctx)
            ctx.set(dut.h_rd, int(host["left"] > 0))
            ctx.set(dut.h_addr, 4 * host["left"])
            return False
        acc.sample(ctx, mem)
        mem.sample(ctx)
        host["since"] += 1
        if host["left"] and ctx.get(dut.h_done):
            want = bytes(mem.mem[4 * host["left"]:4 * host["left"] + 4])
            assert ctx.get(dut.h_rdata).to_bytes(4, "little") == want
            host["waits"].append(host["since"])
            host["left"] -= 1
            host["since"] = 0
        return host["left"] == 0

    _run(dut, step, 20000)
    assert max(host["waits"]) < 150 and acc.checked > 20, (host["waits"], acc.checked)


def test_a_write_whose_data_went_first_is_let_through_when_the_host_asks():
    """The memory takes a write's data before its address; the host asks in between. The
    address must still go (the host waits for it), or neither side ever finishes."""
    dut = SdramPort(4, 4096, acc_addr_bits=16)
    log = {"b": 0, "host": 0, "aw": 0, "maw": 0}

    def step(ctx, phase, n):
        p = lambda x: getattr(dut, x)       # noqa: E731
        if phase == "drive":
            # the accelerator: one write at 0x800, held until each channel is taken
            ctx.set(p("s_axi_awvalid"), int(log["aw"] == 0))
            ctx.set(p("s_axi_awaddr"), 0x800)
            ctx.set(p("s_axi_wvalid"), int(n == 0))
            ctx.set(p("s_axi_wdata"), 0x12345678)
            ctx.set(p("s_axi_wstrb"), 0xF)
            ctx.set(p("s_axi_wlast"), 1)
            ctx.set(p("s_axi_bready"), 1)
            # the memory: data taken at once, the address only from clock 3; answers at once
            ctx.set(p("m_axi_wready"), 1)
            ctx.set(p("m_axi_awready"), int(n >= 3))
            ctx.set(p("m_axi_arready"), 1)
            ctx.set(p("m_axi_bvalid"), int(log["b"] < log["maw"]))
            ctx.set(p("m_axi_rvalid"), 0)
            # the host asks for a write from clock 1
            ctx.set(p("h_wr"), int(n >= 1 and not log["host"]))
            ctx.set(p("h_addr"), 0x10)
            ctx.set(p("h_wstrb"), 0xF)
            return False
        if ctx.get(p("s_axi_awvalid")) and ctx.get(p("s_axi_awready")):
            log["aw"] += 1
        if ctx.get(p("m_axi_bvalid")) and ctx.get(p("m_axi_bready")):
            log["b"] += 1
        if ctx.get(p("m_axi_awvalid")) and ctx.get(p("m_axi_awready")):
            log["maw"] += 1
        if ctx.get(p("h_done")):
            log["host"] += 1
        return log["host"] == 1 and log["b"] == 2

    assert _run(dut, step, 200) < 50


def test_the_host_waits_for_the_accelerators_write_response():
    """A write of the accelerator is in the memory, its response slow; the host asks. The
    host gets the bus only after that response went to the accelerator, and its own answer
    is its own write's."""
    dut = SdramPort(4, 4096, acc_addr_bits=16)
    log = {"acc_b": 0, "maw": 0, "mb": 0, "done_at": None}

    def step(ctx, phase, n):
        p = lambda x: getattr(dut, x)       # noqa: E731
        if phase == "drive":
            ctx.set(p("s_axi_awvalid"), int(n == 0))
            ctx.set(p("s_axi_wvalid"), int(n == 0))
            ctx.set(p("s_axi_awaddr"), 0x800)
            ctx.set(p("s_axi_wstrb"), 0xF)
            ctx.set(p("s_axi_wlast"), 1)
            ctx.set(p("s_axi_bready"), 1)
            for ch in ("awready", "wready", "arready"):
                ctx.set(p(f"m_axi_{ch}"), 1)
            # the first response comes at clock 10, the next at once
            ctx.set(p("m_axi_bvalid"), int(log["mb"] < log["maw"] and (n >= 10 or log["mb"])))
            ctx.set(p("h_wr"), int(n >= 1 and log["done_at"] is None))
            ctx.set(p("h_addr"), 0x10)
            ctx.set(p("h_wstrb"), 0xF)
            return False
        if ctx.get(p("s_axi_bvalid")) and ctx.get(p("s_axi_bready")):
            log["acc_b"] += 1
        if ctx.get(p("h_done")):
            assert log["acc_b"] == 1 and log["maw"] == 2, log    # its own answer
            log["done_at"] = n
        if ctx.get(p("m_axi_bvalid")) and ctx.get(p("m_axi_bready")):
            log["mb"] += 1
        if ctx.get(p("m_axi_awvalid")) and ctx.get(p("m_axi_awready")):
            log["maw"] += 1
        return log["done_at"] is not None

    assert _run(dut, step, 200) > 10


def test_port_refuses_a_size_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        SdramPort(4, 3000, 16)
    with pytest.raises(ValueError, match="less than a beat"):
        SdramPort(8, 4, 16)


def test_an_unknown_sdram_chip_is_refused_by_name(tmp_path):
    with pytest.raises(SdramError, match="'IS42S16160': known are MT48LC16M16"):
        litedram_core("IS42S16160", cache_dir=tmp_path)
