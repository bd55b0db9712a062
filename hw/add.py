"""The ADD sequencer: a checked ``ADD`` → its two operands read in chunks → an element a clock,
``((a - za) * ka, (b - zb) * kb)``, to the post-processor, which sums and requantizes them.

A chunk is ``ADD_CHUNK`` elements (fewer at the end): the chunk of ``a`` is read, then the
chunk of ``b``, a byte a clock, into two shift registers; then the elements go out one a clock
from the registers' first entries, each register shifting down as one leaves: no 16-way
multiplexer in front of the two multipliers (that was once the ULX3S's critical path). The
post-processor takes the command before the first element and writes the results; if it
stops early (a write error), so does the sequencer.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Err, Reg, reg_bits
from .axi import read_client_ports, read_ended
from .logic import act_value
from .post import EXT_LAYOUT

__all__ = ["AddSequencer", "add_command_layout", "ADD_CHUNK"]

ADD_CHUNK = 16


def add_command_layout(cfg):
    """A checked ``ADD``: its operands' addresses, the element count, zero points and
    multipliers."""
    aw = cfg.addr_bits + 1
    return data.StructLayout({
        "a": aw, "b": aw,                               # A_SRC, D_SRC2
        "n": reg_bits(cfg)[Reg.D_N],                    # D_N elements
        "za": 8, "zb": 8,                               # D_SZ[8:16], D_SZ[16:24]
        "ka": 16, "kb": 16,                             # D_KAB's halves (unsigned)
    })


class AddSequencer(wiring.Component):
    """``ADD``'s operand reads and products for an :class:`AcceleratorConfig` ``cfg``.

    Ports
    -----
    cmd : In(stream of :func:`add_command_layout`)
        A command: it starts while the sequencer is idle and is taken in the clock its last
        element is handed out or it fails (its producer holds the payload meanwhile). The
        post-processor must be running the ADD's command by then.
    err : Out(Err)
        With ``cmd.ready``: a read's error, or the post-processor's when it stopped early.
    req, beats, rd_done, rd_err
        Byte reads through the read DMA (:func:`~ffacc.hw.axi.read_client_ports`).
    po_running : In(1), po_err : In(Err)
        The post-processor has the ADD's command (it stops early with ``po_err``).
    o : Out(stream of :data:`~ffacc.hw.post.EXT_LAYOUT`)
        The elements' two products, ``last`` on the ADD's last.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(add_command_layout(cfg))),
            "err": Out(range(max(Err) + 1)),
            **read_client_ports(cfg.addr_bits, 1),
            "po_running": In(1), "po_err": In(range(max(Err) + 1)),
            "o": Out(stream.Signature(EXT_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        A = cfg.addr_bits
        s8 = lambda v: act_value(v, signed=cfg.fcu.act_signed)     # noqa: E731
        reg_a = Array(Signal(8, name=f"a{k}", reset_less=True) for k in range(ADD_CHUNK))
        reg_b = Array(Signal(8, name=f"b{k}", reset_less=True) for k in range(ADD_CHUNK))
        off = Signal(A)                                 # the chunk's first element
        size = Signal(range(ADD_CHUNK + 1))             # its elements
        k = Signal(range(ADD_CHUNK + 1))                # the byte read / the element given
        addr = Signal(A + 1)                            # the request's address
        m.d.comb += [self.req.payload.addr.eq(addr), self.req.payload.len.eq(size),
                     self.beats.ready.eq(1)]

        # the element at the registers' heads: its two products, for the post-processor
        pa = Signal(signed(10))
        pb = Signal(signed(10))
        m.d.comb += [pa.eq(s8(reg_a[0]) - s8(c.za)), pb.eq(s8(reg_b[0]) - s8(c.zb)),
                     self.o.payload.pa.eq(pa * Cat(c.ka, Const(0, 1)).as_signed()),
                     self.o.payload.pb.eq(pb * Cat(c.kb, Const(0, 1)).as_signed()),
                     self.o.payload.last.eq(off + k + 1 == c.n)]

        def end(err):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err)]
            m.d.sync += off.eq(0)
            m.next = "CHUNK"

        def read_ok():
            return read_ended(m, self.rd_done, self.rd_err, end)

        with m.FSM(name="add"):
            with m.State("CHUNK"):              # idle until a command; then each chunk's start
                left = c.n - off
                with m.If(self.cmd.valid):
                    with m.If(off >= c.n):
                        end(0)
                    with m.Elif(~self.po_running):     # it stopped early: its error
                        end(self.po_err)
                    with m.Else():
                        m.d.sync += [size.eq(Mux(left > ADD_CHUNK, ADD_CHUNK, left)), k.eq(0),
                                     addr.eq(c.a + off)]
                        m.next = "RA"
            # the chunk of a, then the chunk of b, into their registers; the request's address
            # is a register (set a state ahead): the operand addresses come from the parameter
            # RAM's read port, and that sum feeding the read DMA's own address arithmetic was
            # the ULX3S's critical path
            for st, regs, nxt in (("RA", reg_a, "RB"), ("RB", reg_b, "RUN")):
                with m.State(st):
                    m.d.comb += self.req.valid.eq(1)
                    with m.If(self.req.ready):
                        if st == "RA":
                            m.d.sync += addr.eq(c.b + off)
                        m.next = st + "_DATA"
                with m.State(st + "_DATA"):
                    with m.If(self.beats.valid):
                        m.d.sync += [regs[k[:4]].eq(self.beats.payload[0]), k.eq(k + 1)]
                    with read_ok():
                        m.d.sync += k.eq(0)
                        m.next = nxt
            # an element a clock to the post-processor
            with m.State("RUN"):
                m.d.comb += self.o.valid.eq(k != size)
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += k.eq(k + 1)
                    for regs in (reg_a, reg_b):
                        m.d.sync += [regs[j].eq(regs[j + 1]) for j in range(ADD_CHUNK - 1)]
                with m.If(~self.po_running):         # it stopped early: its error
                    end(self.po_err)
                with m.Elif(k == size):
                    m.d.sync += off.eq(off + size)
                    m.next = "CHUNK"
        return m
