"""Single-port RAM for the SoC memory on parts whose large memory is single-ported (iCE40UP5K:
four SB_SPRAM256KA, 16 K x 16 bits each).

One port: each cycle is a write (``wen``, a byte mask, non-zero), a read (``ren``) or idle.
``rdata`` is the last read's word from the cycle after the read until the next access; after
a write it is undefined (the SPRAM's output register holds through idle cycles and is
undefined after a write: yosys's ``SB_SPRAM256KA`` model). The behavioural model
(``kind="model"``, for simulation) imitates that by presenting a garbage pattern after any
write until the next read, so a user that relies on the output across a write fails its tests
instead of working by accident. Yosys does not infer SPRAM from a read/write
port pair (measured: a 32-bit x 32 K memory became 256 SB_RAM40_4K), hence the instances.
"""

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SinglePortRAM", "SPRAM_WORDS", "SPRAM_BLOCKS"]

SPRAM_WORDS = 16 * 1024      # 16-bit words per SB_SPRAM256KA
SPRAM_BLOCKS = 4             # on the iCE40UP5K
GARBAGE = 0xA5C3_5A3C_96E1_1E69


class SinglePortRAM(wiring.Component):
    """``depth`` words of ``8 * nb`` bits behind one port (see the module docstring)."""

    def __init__(self, depth, nb, kind="model"):
        if kind not in ("model", "spram"):
            raise ValueError(f"single-port RAM kind {kind!r}: 'model' or 'spram'")
        if depth & (depth - 1):
            raise ValueError(f"single-port RAM depth {depth}: must be a power of two")
        if kind == "spram":
            wide, deep = 8 * nb // 16, max(1, depth // SPRAM_WORDS)
            if wide * deep > SPRAM_BLOCKS:
                raise ValueError(f"{depth} x {8 * nb} bits needs {wide * deep} SB_SPRAM256KA; "
                                 f"the iCE40UP5K has {SPRAM_BLOCKS} (at most "
                                 f"{SPRAM_BLOCKS * SPRAM_WORDS * 2 // 1024} KiB)")
        self.depth, self.nb, self.kind = depth, nb, kind
        ab = max(1, (depth - 1).bit_length())
        super().__init__({"addr": In(ab), "wdata": In(8 * nb), "wen": In(nb), "ren": In(1),
                          "rdata": Out(8 * nb)})

    def elaborate(self, platform):
        m = Module()
        nb = self.nb
        write = self.wen.any()
        read = self.ren & ~write
        if self.kind == "model":
            valid = Signal()                    # the output holds a read's word
            with m.If(read):
                m.d.sync += valid.eq(1)
            with m.Elif(write):
                m.d.sync += valid.eq(0)
            mem = m.submodules.mem = Memory(shape=8 * nb, depth=self.depth, init=[])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port(transparent_for=())
            m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.wen),
                         rp.addr.eq(self.addr), rp.en.eq(read),
                         self.rdata.eq(Mux(valid, rp.data, Const(GARBAGE, 64)[:8 * nb]))]
            return m
        wide = 8 * nb // 16
        deep = max(1, self.depth // SPRAM_WORDS)
        bank = self.addr[14:] if deep > 1 else Const(0, 1)
        rd_bank = Signal(range(deep))
        with m.If(read):
            m.d.sync += rd_bank.eq(bank)
        outs = []
        for d in range(deep):
            halves = []
            for w in range(wide):
                dout = Signal(16, name=f"spram{d}_{w}_dout")
                lo, hi = self.wen[2 * w], self.wen[2 * w + 1]
                m.submodules[f"spram{d}_{w}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=self.addr[:14], i_DATAIN=self.wdata[16 * w:16 * w + 16],
                    i_MASKWREN=Cat(lo, lo, hi, hi), i_WREN=write,
                    i_CHIPSELECT=(bank == d) & (write | read), i_CLOCK=ClockSignal(),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=dout)
                halves.append(dout)
            outs.append(Cat(*halves))
        m.d.comb += self.rdata.eq(Array(outs)[rd_bank] if deep > 1 else outs[0])
        return m
