"""The ADD sequencer: a checked ``ADD`` → its two operands read in chunks → an element a clock,
``((a - za) * ka, (b - zb) * kb)``, to the post-processor, which sums and requantizes them.

With ``wide_loads`` the operands are read in whole bus beats, a chunk of ``a`` then a chunk of
``b`` (``ADD_CHUNK_BEATS`` beats' worth of elements, fewer at the end), each beat into its
operand's FIFO with the range of its bytes that belong to the chunk; a
:class:`~ffacc.hw.words.BeatBytes` behind each FIFO gives the operand's bytes out a byte a
clock, and an element leaves whenever both have one. The next chunk is read while the elements
before it go out (the FIFOs hold two chunks), so an ``ADD`` runs at an element a clock, the
post-processor's rate, on a bus of 4 bytes or more.

Without (the smallest parts) a chunk is ``ADD_CHUNK`` elements: the chunk of ``a`` is read,
then the chunk of ``b``, a byte a clock, into two shift registers; then the elements go out
one a clock from the registers' first entries, each register shifting down as one leaves (no
16-way multiplexer in front of the two multipliers). The post-processor takes the command
before the first element and writes the results; if it stops early (a write error), so does
the sequencer.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Err, Reg, reg_bits
from .axi import read_client_ports, read_ended
from .logic import act_value
from .post import EXT_LAYOUT
from .words import BeatBytes, beat_bytes_layout

__all__ = ["AddSequencer", "add_command_layout", "ADD_CHUNK", "ADD_CHUNK_BEATS", "add_fifo_beats"]

ADD_CHUNK = 16              # elements of a chunk read a byte a clock
ADD_CHUNK_BEATS = 16        # with wide_loads: a chunk is this many beats' worth of elements


def add_fifo_beats():
    """An operand FIFO's beats (wide loads): two chunks' reads, each at most a beat more than
    the chunk's elements fill (it may start inside a beat)."""
    return 2 * (ADD_CHUNK_BEATS + 1)


def add_command_layout(cfg):
    """A checked ``ADD``: its operands' addresses, the element count, zero points and
    multipliers."""
    aw = cfg.addr_bits + 1
    return data.StructLayout({
        "a": aw, "b": aw,                               # A_SRC, D_SRC2
        "n": reg_bits(cfg)[Reg.D_N],                    # D_N elements
        "za": 8, "zb": 8,                               # D_SZ[8:16], D_SZ[16:24]
        "ka": signed(16), "kb": signed(16),             # D_KAB's halves (int16)
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
        Reads through the read DMA (:func:`~ffacc.hw.axi.read_client_ports`): in whole beats
        with ``wide_loads``, else a byte a clock.
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
            **read_client_ports(cfg.addr_bits, cfg.bus_bytes if cfg.wide_loads else 1),
            "po_running": In(1), "po_err": In(range(max(Err) + 1)),
            "o": Out(stream.Signature(EXT_LAYOUT)),
        })

    def elaborate(self, platform):
        if self.cfg.wide_loads:
            return self._elaborate_beats()
        return self._elaborate_bytes()

    def _products(self, m, a, b):
        """The element of operand bytes ``a`` and ``b``: its two products on ``o``."""
        c = self.cmd.payload
        s8 = lambda v: act_value(v, signed=self.cfg.fcu.act_signed)     # noqa: E731
        pa = Signal(signed(10))
        pb = Signal(signed(10))
        m.d.comb += [pa.eq(s8(a) - s8(c.za)), pb.eq(s8(b) - s8(c.zb)),
                     self.o.payload.pa.eq(pa * c.ka), self.o.payload.pb.eq(pb * c.kb)]

    def _elaborate_beats(self):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        A, nb = cfg.addr_bits, cfg.bus_bytes
        sh = (nb - 1).bit_length()
        CB = ADD_CHUNK_BEATS
        C = CB * nb                                     # a chunk's elements
        depth = add_fifo_beats()
        lay = beat_bytes_layout(nb)

        # per operand: its FIFO of tagged beats, and the bytes out of it (both emptied as a
        # command ends: after a failed read they may hold some)
        flush = Signal()
        ops = []
        for name in ("a", "b"):
            fifo = ResetInserter(flush)(SyncFIFO(width=lay.size, depth=depth))
            split = BeatBytes(nb)
            m.submodules[f"fifo_{name}"] = fifo
            m.submodules[f"bytes_{name}"] = split
            m.d.comb += [split.i.valid.eq(fifo.r_rdy), split.i.payload.eq(fifo.r_data),
                         fifo.r_en.eq(split.i.ready), split.clear.eq(flush)]
            ops.append((fifo, split))
        (fa, sa), (fb, sb) = ops

        # elements: one whenever both operands have a byte
        out_k = Signal(len(c.n))                        # elements given out
        both = Signal()
        m.d.comb += [both.eq(sa.o.valid & sb.o.valid & self.cmd.valid),
                     self.o.valid.eq(both), sa.o.ready.eq(self.o.ready & both),
                     sb.o.ready.eq(self.o.ready & both),
                     self.o.payload.last.eq(out_k + 1 == c.n)]
        self._products(m, sa.o.payload, sb.o.payload)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out_k.eq(out_k + 1)

        # reads: a chunk of a, then of b, while both FIFOs have room for a chunk's beats
        rd_off = Signal(A + 1)                          # elements read (both operands)
        sz = Signal(range(C + 1))                       # this chunk's elements
        base = Signal(A + 1)                            # the operand's first byte of it
        nbytes = Signal(A + 1)                          # its read, in whole beats
        rem = Signal(range(C + 2 * nb))                 # bytes of the read from this beat on
        first = Signal()
        room = Signal()
        m.d.comb += [room.eq((fa.level <= depth - (CB + 1)) & (fb.level <= depth - (CB + 1))),
                     self.req.payload.addr.eq(Cat(Const(0, sh), base[sh:])),
                     self.req.payload.len.eq(nbytes)]
        tag = Signal(lay)
        m.d.comb += [tag.data.eq(self.beats.payload), tag.lo.eq(Mux(first, base[:sh], 0)),
                     tag.hi.eq(Mux(rem > nb, nb, rem)),
                     fa.w_data.eq(tag), fb.w_data.eq(tag)]

        def end(err):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err), flush.eq(1)]
            m.d.sync += [rd_off.eq(0), out_k.eq(0)]
            m.next = "CHUNK"

        with m.FSM(name="add"):
            with m.State("CHUNK"):              # idle until a command; then each chunk's start
                left = c.n - rd_off
                with m.If(self.cmd.valid):
                    with m.If(out_k == c.n):            # every element given out
                        end(0)
                    with m.Elif(~self.po_running):     # it stopped early: its error
                        end(self.po_err)
                    with m.Elif((rd_off != c.n) & room):
                        m.d.sync += [sz.eq(Mux(left > C, C, left)), base.eq(c.a + rd_off)]
                        m.next = "PA"
            # an operand's chunk: its read's length (registered: the operand address comes
            # from the parameter RAM, and the read DMA's own arithmetic follows the request),
            # the request, the beats into the FIFO with their ranges
            for op, fifo, nxt in (("A", fa, "B"), ("B", fb, None)):
                with m.State("P" + op):
                    m.d.sync += [nbytes.eq((base[:sh] + sz + nb - 1) >> sh << sh),
                                 rem.eq(base[:sh] + sz), first.eq(1)]
                    m.next = "R" + op
                with m.State("R" + op):
                    m.d.comb += self.req.valid.eq(1)
                    with m.If(self.req.ready):
                        m.next = "R" + op + "_DATA"
                with m.State("R" + op + "_DATA"):
                    m.d.comb += [self.beats.ready.eq(fifo.w_rdy),
                                 fifo.w_en.eq(self.beats.valid)]
                    with m.If(self.beats.valid & fifo.w_rdy):
                        m.d.sync += [rem.eq(rem - nb), first.eq(0)]
                    with read_ended(m, self.rd_done, self.rd_err, end):
                        if nxt:
                            m.d.sync += base.eq(c.b + rd_off)
                            m.next = "P" + nxt
                        else:
                            m.d.sync += rd_off.eq(rd_off + sz)
                            m.next = "CHUNK"
        return m

    def _elaborate_bytes(self):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        A = cfg.addr_bits
        reg_a = Array(Signal(8, name=f"a{k}", reset_less=True) for k in range(ADD_CHUNK))
        reg_b = Array(Signal(8, name=f"b{k}", reset_less=True) for k in range(ADD_CHUNK))
        off = Signal(A)                                 # the chunk's first element
        size = Signal(range(ADD_CHUNK + 1))             # its elements
        k = Signal(range(ADD_CHUNK + 1))                # the byte read / the element given
        addr = Signal(A + 1)                            # the request's address
        m.d.comb += [self.req.payload.addr.eq(addr), self.req.payload.len.eq(size),
                     self.beats.ready.eq(1)]

        # the element at the registers' heads: its two products, for the post-processor
        self._products(m, reg_a[0], reg_b[0])
        m.d.comb += self.o.payload.last.eq(off + k + 1 == c.n)

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
