"""A command's setup: its checks and geometry, between the controller's decode and the unit
that runs it.

Each setup is a component that takes a decoded command (the instruction's flags; the
parameter registers as they stand), checks it against the command table
(:mod:`ffacc.firmware.checks`, the one the ISS checks with), works out the sizes and addresses
its unit needs, a product at a time on the multiplier the setups share
(:class:`SizeMultiplier`), and hands the unit its command. It ends when the unit does, or at
the first check that fails, with the error.

Every setup has the same ports (:class:`CommandSetup`); the units' commands differ:

* :class:`LoadSetup` → :class:`~ffacc.hw.loada.ActivationLoader` (``LOADA``),
  :class:`~ffacc.hw.loadw.WeightLoader` (``LOADW``) and :class:`~ffacc.hw.loadq.RecordLoader`
  (``LOADQ``);
* :class:`ConvSetup` → :class:`~ffacc.hw.conv.ConvSequencer` (``CONV``);
* :class:`PostSetup` → :class:`~ffacc.hw.post.PostUnit` (``POST``, ``ADD``) and
  :class:`~ffacc.hw.add.AddSequencer` (``ADD``).

A setup runs one command at a time, and only one setup runs at a time (the controller
decodes one command at a time), so the setups share the multiplier and the register RAM's
read port by OR-ing what they present (an idle setup presents zeros): :func:`share`.
"""

from contextlib import contextmanager
from functools import partial, reduce
from operator import or_

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.checks import flag_bits, product_operands, rtl_ok
from ffacc.firmware.isa import (LEVEL_REGS, LOAD_LEVEL_REGS, MAX_LEVELS, QPARAM_WORDS, Err, Op,
                                PostFlag, Reg, reg_bits)
from .add import add_command_layout
from .conv import conv_bounds, conv_command_layout
from .loada import loada_command_layout
from .loadq import loadq_command_layout
from .loadw import loadw_command_layout
from .logic import act_value, addr_clamp, ge_const
from .post import post_command_layout
from .regs import hot_layout, ram_bits
from .weights import set_bytes

__all__ = ["narrow_dsp_product", "size_bits", "mul_signature", "SizeMultiplier",
           "blocks_signature", "RowBlocks",
           "CommandSetup", "LoadSetup", "ConvSetup", "PostSetup",
           "post_registers", "share", "loadw_rows_shift"]


def narrow_dsp_product(a, b, dsp_bits, limit_bits=None):
    """``a * b`` (unsigned) with one ``dsp_bits`` x ``dsp_bits`` hard multiplier for the low
    parts and the few upper bits as shifted additions in logic: on the iCE40 (16x16 SB_MAC16)
    an 18x18 product takes one DSP instead of three. The plain product when the operands fit.

    With ``limit_bits <= dsp_bits`` the product need only be exact below ``2**limit_bits``, a
    larger one showing some bit at or above it (the setups' address and size checks want no
    more): then an upper operand bit with a non-zero other operand makes the product at
    least ``2**dsp_bits``, and one flag above the low product says so, with no cross
    terms."""
    if max(len(a), len(b)) <= dsp_bits:
        return a * b
    lo = dsp_bits
    a_l, a_h, b_l, b_h = a[:lo], a[lo:], b[:lo], b[lo:]
    if limit_bits is not None and limit_bits <= lo:
        big = (a_h.any() & b.any()) | (b_h.any() & a.any())
        return Cat(a_l * b_l, big)
    # a*b = a_l*b_l + 2**lo * (a_h*b + b_h*a_l)
    cross = Const(0, 1)
    for i in range(len(a_h)):
        cross = cross + (Mux(a_h[i], b, 0) << i)
    for i in range(len(b_h)):
        cross = cross + (Mux(b_h[i], a_l, 0) << i)
    return a_l * b_l + (cross << lo)


def size_bits(cfg):
    """The shared multiplier's operand width: the widest size register a product reads (17
    bits, A_PITCH, O_W and O_ROW0, in every configuration: one DSP on the ECP5's 18x18 and
    two cross terms fewer around the iCE40's 16x16 than 18 bits would take)."""
    rb = reg_bits(cfg)
    return max(rb[r] for r in (Reg.A_CH, Reg.A_H, Reg.A_HB0, Reg.A_NR, Reg.A_W, Reg.A_PITCH,
                               Reg.LB_PITCH, Reg.W_DST, Reg.W_COUNT, Reg.Q_COUNT, Reg.C_KH,
                               Reg.C_WSET, Reg.C_LANES, Reg.C_NY, Reg.O_ROW0, Reg.O_W))


def tmp_bits(cfg):
    """Bits of a product a setup checks against ``lb_rows`` or ``acc_blocks``: exact below
    ``2**tmp_bits``; a sticky bit above (:func:`~ffacc.hw.logic.addr_clamp` to ``tmp_bits``)."""
    return max(cfg.lb_rows, cfg.acc_blocks).bit_length()


def mul_signature(cfg):
    """The shared multiplier, as its client sees it: operands ``a``, ``b`` with ``req``; the
    product ``p`` with ``valid`` the clock after."""
    sw = size_bits(cfg)
    return wiring.Signature({"req": Out(1), "a": Out(sw), "b": Out(sw),
                             "p": In(2 * sw), "valid": In(1), "last": In(tmp_bits(cfg) + 1)})


class SizeMultiplier(wiring.Component):
    """The one small multiplier every address and size product goes through, so that no
    command needs a DSP of its own, with registered operands: a client presents them (``req``)
    in one clock and finds the product in the next (``valid``), so neither the operand
    selection nor what follows the product shares the multiplier's clock.

    Ports
    -----
    i : In(:func:`mul_signature`)
        ``req`` with ``a``, ``b``: multiply; ``valid`` the clock after, with ``p``. A client
        that keeps ``req`` high gets ``valid`` every other clock (a product each two).
        ``last``: the last product as :func:`tmp_bits` bits and a sticky bit for any above
        (:func:`~ffacc.hw.logic.addr_clamp`), from the clock after ``valid`` until the next product:
        the checks of a setup's next state read it (a band's or an accumulator's extent).

    Every product with an operand at or above ``2**dsp_bits`` is exact below
    ``2**max(addr_bits, tmp_bits)`` and shows a bit above that when it is larger (the
    setups clamp it, :func:`~ffacc.hw.logic.addr_clamp`); the others are exact.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({"i": In(mul_signature(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg, i = self.cfg, self.i
        a, b = Signal.like(i.a), Signal.like(i.b)
        last = Signal.like(i.last)
        with m.If(i.req):
            m.d.sync += [a.eq(i.a), b.eq(i.b)]
        m.d.sync += i.valid.eq(i.req & ~i.valid)
        m.d.comb += [i.p.eq(narrow_dsp_product(
            a, b, cfg.dsp_bits, limit_bits=max(cfg.addr_bits, tmp_bits(cfg)))), i.last.eq(last)]
        with m.If(i.valid):
            # a product too large for lb_rows or acc_blocks stays too large
            m.d.sync += last.eq(addr_clamp(i.p, tmp_bits(cfg)))
        return m


def blocks_signature(cfg):
    """The row-block count, as its client sees it: ``clear`` (start from 0), ``step`` (count a
    block while ``busy``); ``busy`` (blocks are left to count), ``wob`` (the count), ``cols``
    (``L * wob``, the columns of the blocks)."""
    return wiring.Signature({"clear": Out(1), "step": Out(1), "busy": In(1),
                             "wob": In(range(cfg.acc_blocks + 1)),
                             "cols": In(range(cfg.L * cfg.acc_blocks + cfg.L + 1))})


class RowBlocks(wiring.Component):
    """The output blocks of a band's row, ``ceil(C_WOUT / L)``, by repeated addition, a block a
    clock, for the ``CONV`` and ``POST`` setups, which share it. Its count is the last one's
    and holds until the next ``clear``: the sequencer reads it while its ``CONV`` runs, the
    post-processor while its ``POST`` runs (or, with ``post_overlap``, copies it as it takes
    the command); no other setup runs meanwhile.

    Ports
    -----
    wout : In
        ``C_WOUT``.
    i : In(:func:`blocks_signature`)
        ``clear``: the count starts from 0 (next clock), unless it already is
        ``ceil(wout / L)`` (the command before had as many blocks: then it stays, and ``busy``
        is low at once); ``step``: while ``busy`` (``wout`` not yet reached), a block more;
        ``wob``: the count; ``cols``: ``L * wob``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({"wout": In(reg_bits(cfg)[Reg.C_WOUT]), "i": In(blocks_signature(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg, i = self.cfg, self.i
        L = cfg.L
        t = Signal(range(L * cfg.acc_blocks + L + 1))       # L * wob
        m.d.comb += [i.busy.eq(t < self.wout), i.cols.eq(t)]
        # a count for this wout already (the command before had the same ceil(wout / L)):
        # kept, so no clock goes to counting it again
        with m.If(i.clear & ~((t >= self.wout) & (t < self.wout + L))):
            m.d.sync += [t.eq(0), i.wob.eq(0)]
        with m.Elif(i.step & i.busy):
            m.d.sync += [t.eq(t + L), i.wob.eq(i.wob + 1)]
        return m


def share(m, clients, mul, regs, blocks):
    """Connect the setups ``clients`` to the multiplier port ``mul`` (:class:`SizeMultiplier`'s
    ``i``), to the register RAM's read port of :class:`~ffacc.hw.regs.ParamRegs` ``regs`` and,
    those that have one, to the row-block count ``blocks`` (:class:`RowBlocks`'s ``i``): what
    they present OR-ed (one runs at a time; the others present zeros), the results to all.
    Returns the OR of their ``cold_addr`` (the caller ORs in any other reader's)."""
    for name in ("req", "a", "b"):
        m.d.comb += getattr(mul, name).eq(reduce(or_, (getattr(c.mul, name) for c in clients)))
    counting = [c for c in clients if "blocks" in c.signature.members]
    for name in ("clear", "step"):
        m.d.comb += getattr(blocks, name).eq(
            reduce(or_, (getattr(c.blocks, name) for c in counting), Const(0, 1)))
    for c in clients:
        m.d.comb += [c.mul.p.eq(mul.p), c.mul.valid.eq(mul.valid), c.mul.last.eq(mul.last),
                     c.cold_data.eq(regs.r_data)]
    for c in counting:
        m.d.comb += [c.blocks.busy.eq(blocks.busy), c.blocks.wob.eq(blocks.wob),
                     c.blocks.cols.eq(blocks.cols)]
    return reduce(or_, (c.cold_addr for c in clients))


class CommandSetup(wiring.Component):
    """The ports every setup has (see the module's docstring).

    Ports
    -----
    cmd : In(stream of {flags})
        A decoded command (the instruction's flags): it starts while the setup is idle and is
        taken in the clock it ends (its producer holds it meanwhile, as a stream's rule has
        it), with ``err``.
    err : Out(Err)
        With ``cmd.ready``: the first failed check's or the unit's error (0: none).
    regs : In(struct of the hot parameter registers)
        :class:`~ffacc.hw.regs.ParamRegs`'s ``hot``; they hold while the command runs.
    cold_addr : Out, cold_data : In
        The register RAM's read port: the cold register a state reads is presented the clock
        before (zero while idle).
    mul : Out(:func:`mul_signature`)
        The shared multiplier (zero while idle).
    o : Out(stream of the unit's command)
        (a setup with a ``layout``: one unit) The unit's command, held until the unit takes
        it as it ends.
    o_err : In(Err)
        With ``o.ready``: the unit's error.
    """

    op = None
    layout = None       # the unit's command layout, of a configuration

    def __init__(self, cfg, cmd_fields=None, **ports):
        self.cfg = cfg
        self.rbits = reg_bits(cfg)
        if self.layout is not None:
            ports.update(o=Out(stream.Signature(type(self).layout(cfg))),
                         o_err=In(range(max(Err) + 1)))
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({"flags": 8, **(cmd_fields or {})}))),
            "err": Out(range(max(Err) + 1)),
            "regs": In(hot_layout(cfg)),
            "cold_addr": Out(range(len(Reg))), "cold_data": In(ram_bits(cfg)),
            "mul": Out(mul_signature(cfg)),
            **ports,
        })

    # ---- helpers for the subclasses' elaborate
    def reg(self, r):
        """Hot register ``r``."""
        return self.regs[r.name.lower()]

    def flag(self, f):
        """Instruction flag ``f`` (a flag enum member)."""
        return self.cmd.payload.flags[f.bit_length() - 1]

    def cold(self, m, r):
        """Cold register ``r``: presented now, its value (a clock later) returned. A state
        presents what the next reads (and what it reads itself, when it stays)."""
        m.d.comb += self.cold_addr.eq(r)
        return self.cold_data[:self.rbits[r]]

    def cold_value(self, r):
        """The value of the cold register presented the clock before."""
        return self.cold_data[:self.rbits[r]]

    def checked(self, stage, op=None, **given):
        """Whether the checks of ``op`` (``self.op``) in ``stage`` hold: hot registers and
        flags by name, cold registers and derived values as ``given``."""
        op = self.op if op is None else op
        return rtl_ok(op, stage, self.cfg, partial(self._env, op, given))

    def operands(self, name, op=None, **given):
        """Derived value ``name``'s product operands (of ``op``, ``self.op``)."""
        op = self.op if op is None else op
        return product_operands(op, name, self.cfg, partial(self._env, op, given))

    def _env(self, op, given, name):
        if name in given:
            return given[name]
        if name in flag_bits():
            return self.flag(flag_bits()[name])
        r = Reg[name]
        if r.name.lower() in self.regs.shape().members:
            return self.reg(r)
        raise ValueError(f"a check of {Op(op).name} reads register {name}, which is "
                         "cold: the state that checks it gives its value")

    @contextmanager
    def product(self, m, a, b):
        """Multiply ``a`` by ``b`` on the shared multiplier: the body runs with the product
        in the second clock (the first presents the operands)."""
        sw = len(self.mul.a)
        for v in (a, b):
            if isinstance(v, int):
                assert 0 <= v < 1 << sw, v
            else:
                v = Value.cast(v)
                assert len(v) - v.shape().signed <= sw, (v, sw)
        m.d.comb += [self.mul.req.eq(1), self.mul.a.eq(a), self.mul.b.eq(b)]
        with m.If(self.mul.valid):
            yield self.mul.p

    def aclamp(self, v):
        return addr_clamp(v, self.cfg.addr_bits)

    def read_bound(self, n):
        """One more than the longest read of a checked command that reads at most ``n``
        bytes (in whole beats with wide loads): a length register's range. (The checks bound
        the product; a register as wide as an address was one logic cell a bit on the
        iCE40.)"""
        n += self.cfg.bus_bytes if self.cfg.wide_loads else 0
        assert n < 1 << self.cfg.addr_bits, n
        return n + 1

    def read_len(self, n):
        """A read of ``n`` bytes: in whole bus beats with wide loads."""
        if not self.cfg.wide_loads:
            return self.aclamp(n)
        nb = self.cfg.bus_bytes
        return self.aclamp(n + (nb - 1)) & ~(nb - 1)

    def run_from(self, m, op, src, o, o_err):
        """A load's last state: the checks of its source address (cold register ``src``; with
        wide loads it starts on a bus word, as the read is in whole beats), then its unit
        runs."""
        addr = self.cold(m, src)
        with m.If(~self.checked("src", op=op, **{src.name: addr})):
            self.fail(m, Err.PARAM)
        with m.Else():
            self.run(m, o, o_err)

    def fail(self, m, code):
        """End the command with error ``code``."""
        m.d.comb += [self.cmd.ready.eq(1), self.err.eq(code)]
        m.next = "CHECK"

    def run(self, m, o=None, o_err=None):
        """The unit runs the command (``o``, ``self.o``; held meanwhile); the command ends
        when it does, with its error (``o_err``, ``self.o_err``)."""
        o = self.o if o is None else o
        o_err = self.o_err if o_err is None else o_err
        m.d.comb += o.valid.eq(1)
        with m.If(o.ready):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(o_err)]
            m.next = "CHECK"


def loadw_rows_shift(cfg):
    """With wide loads, ``LOADW``'s engine count ``W_COUNT * rows`` is ``W_COUNT`` shifted
    left by this (rows a power of two), or, None, a product on the shared multiplier."""
    r = cfg.fcu.rows
    return r.bit_length() - 1 if r & (r - 1) == 0 else None


class LoadSetup(CommandSetup):
    """The loads' checks and geometry, one load at a time (they share their length register
    and states: on the iCE40 a setup of each took 42 logic cells more):

    * ``LOADA`` → :class:`~ffacc.hw.loada.ActivationLoader`'s command (``loada``): the first
      read's address and length, the steps between reads (a channel's band, a row of a column
      tile or, with a column step, of a stride phase), and whether a band is one read (whole
      maps contiguous in memory: one read of every channel with wide loads). Four products
      (eight clocks) before the loader starts.
    * ``LOADW`` → :class:`~ffacc.hw.loadw.WeightLoader`'s command (``loadw``): the read's
      length (with wide loads also the engines' words to expect: the last beat's extra bytes
      are dropped after them; a product of its own only when the engines per unit are not
      a power of two: :func:`loadw_rows_shift`).
    * ``LOADQ`` → :class:`~ffacc.hw.loadq.RecordLoader`'s command (``loadq``): the read's
      length.

    Further ports
    -------------
    cmd : In(stream of {flags, op})
        ``op``: which load.
    loada, loadw, loadq : Out(stream of the loader's command); loada_err, loadw_err,
    loadq_err : In(Err)
        Each loader's command, held until it takes it as it ends, and its error then.
    """

    op = None               # each check names its load
    UNITS = {Op.LOADA: loada_command_layout, Op.LOADW: loadw_command_layout,
             Op.LOADQ: loadq_command_layout}

    def __init__(self, cfg):
        ports = {}
        for o, layout in self.UNITS.items():
            name = o.name.lower()
            ports[name] = Out(stream.Signature(layout(cfg)))
            ports[f"{name}_err"] = In(range(max(Err) + 1))
        super().__init__(cfg, cmd_fields={"op": 8}, **ports)

    def elaborate(self, platform):
        m = Module()
        cfg, fc, P = self.cfg, self.cfg.fcu, self.cfg.lanes
        aw = cfg.addr_bits + 1
        rg = self.reg
        op, flags = self.cmd.payload.op, self.cmd.payload.flags
        last = self.mul.last            # the product before
        # a read: a band (or every channel's, or a row; at most the line buffer's bytes), the
        # weight sets or the records
        nbytes = Signal(range(max(self.read_bound(n) for n in (
            cfg.lb_rows * cfg.lb_width, cfg.wb_sets * set_bytes(fc, P, False),
            cfg.qb_entries * 4 * QPARAM_WORDS))))
        # LOADA
        nch, H, W = rg(Reg.A_CH), rg(Reg.A_H), rg(Reg.A_W)
        hb0, nr, pitch, apitch = rg(Reg.A_HB0), rg(Reg.A_NR), rg(Reg.LB_PITCH), rg(Reg.A_PITCH)
        decode = flags[0]
        chan_step = Signal(aw)          # a channel's bytes (H rows)
        addr, contig = Signal(aw), Signal()
        # a row's bytes in memory: ceil(W / 2) for 4-bit codes (flag DECODE, act_codes)
        wbytes = Mux(decode, (W + 1) >> 1, W) if cfg.act_codes else W
        row_step = Mux(apitch == 0, wbytes, apitch)
        # strided_loads: a row of every 2**A_CSHIFT-th byte is a read of (W - 1) * 2**k + 1
        # bytes, one a row (the rows of a stride phase are A_PITCH apart)
        cshift = rg(Reg.A_CSHIFT) if cfg.strided_loads else Const(0, 1)
        read_bytes = (Mux(cshift == 0, wbytes, ((W - 1) << cshift) + 1) if cfg.strided_loads
                      else wbytes)
        # whole maps, contiguous in memory (wide loads): one read of all A_CH * A_NR rows
        # instead of the band's offset, 0), each channel's rows at its pitch (the flag is
        # registered in CHECK, off the multiplier's operand path)
        whole = Signal() if cfg.wide_loads else Const(0, 1)
        contig_now = ((apitch == 0) | (apitch == wbytes)) & (cshift == 0)
        # LOADW
        count = rg(Reg.W_COUNT)
        rows = Signal(range(cfg.wb_sets * fc.rows + 1))
        # with wide loads, the engines to give out (W_COUNT * rows): a shift for a power of
        # two (no product, two clocks fewer), else a product in W_M1 (shift None)
        shift = None
        if cfg.wide_loads:
            shift = loadw_rows_shift(cfg)
        # LOADQ
        qdst, qcount = rg(Reg.Q_DST), rg(Reg.Q_COUNT)
        with m.FSM():
            with m.State("CHECK"):
                with m.If(self.cmd.valid), m.Switch(op):
                    with m.Case(Op.LOADA):
                        if cfg.wide_loads:
                            m.d.sync += whole.eq(contig_now & (nr == H))
                        with m.If(~self.checked("regs", op=Op.LOADA)):
                            self.fail(m, Err.PARAM)
                        with m.Else(), self.product(m, *self.operands("band", op=Op.LOADA)):
                            m.next = "A_M1"
                    with m.Case(Op.LOADW):
                        if shift is not None:       # rows: W_COUNT times a power of two
                            m.d.sync += rows.eq(count << shift)
                        with m.If(~self.checked("regs", op=Op.LOADW)):
                            self.fail(m, Err.PARAM)
                        with m.Else():
                            m.next = "W_M1" if shift is None else "W_M2"
                    with m.Case(Op.LOADQ):
                        self.cold(m, Reg.Q_SRC)
                        with m.If(~self.checked("regs", op=Op.LOADQ)):
                            self.fail(m, Err.PARAM)
                        with m.Else(), self.product(m, qcount, 4 * QPARAM_WORDS) as p:
                            m.d.sync += nbytes.eq(self.read_len(p))
                            m.next = "RUN"
            with m.State("A_M1"):
                with m.If(~self.checked("band", op=Op.LOADA, band=last)):
                    self.fail(m, Err.PARAM)
                with m.Else(), self.product(m, H, row_step) as p:
                    m.d.sync += chan_step.eq(self.aclamp(p))
                    m.next = "A_M2"
            with m.State("A_M2"):
                src = self.cold(m, Reg.A_SRC)           # there in the product's clock
                with self.product(m, Mux(whole, nch, hb0), Mux(whole, nr, row_step)) as p:
                    m.d.sync += [addr.eq(self.aclamp(src + self.aclamp(Mux(whole, 0, p)))),
                                 contig.eq(contig_now)]
                    m.next = "A_M3"
            with m.State("A_M3"), self.product(m, Mux(whole, last, nr), wbytes) as p:
                # contiguous rows: one read per channel (or of all); a column tile: one a row
                m.d.sync += nbytes.eq(Mux(contig, self.aclamp(p), read_bytes))
                m.next = "RUN"
            if shift is None:
                with m.State("W_M1"), self.product(m, count, fc.rows) as p:
                    m.d.sync += rows.eq(p)
                    m.next = "W_M2"
            with m.State("W_M2"):
                self.cold(m, Reg.W_SRC)
                per_set = Mux(flags[0], set_bytes(fc, P, True), set_bytes(fc, P, False))
                with self.product(m, count, per_set) as p:
                    p = Mux(flags[2] & cfg.packed_weights, (p + 1) >> 1, p)     # PACK4
                    m.d.sync += nbytes.eq(self.read_len(p))
                    m.next = "RUN"
            with m.State("RUN"):
                with m.Switch(op):
                    with m.Case(Op.LOADA):
                        self.run(m, self.loada, self.loada_err)
                    with m.Case(Op.LOADW):
                        self.run_from(m, Op.LOADW, Reg.W_SRC, self.loadw, self.loadw_err)
                    with m.Case(Op.LOADQ):
                        self.run_from(m, Op.LOADQ, Reg.Q_SRC, self.loadq, self.loadq_err)
        la, lw, lq = self.loada.payload, self.loadw.payload, self.loadq.payload
        m.d.comb += [la.addr.eq(addr), la.nbytes.eq(nbytes), la.contig.eq(contig),
                     la.nch.eq(Mux(whole, 1, nch)), la.nr.eq(nr), la.pitch.eq(pitch),
                     la.width.eq(W), la.row_step.eq(row_step), la.chan_step.eq(chan_step)]
        if cfg.strided_loads:
            m.d.comb += [la.cshift.eq(cshift), la.lb0.eq(rg(Reg.A_LB0))]
        if cfg.act_codes:
            m.d.comb += [la.decode.eq(decode),
                         la.levels.eq(Cat(*(rg(r) for r in LOAD_LEVEL_REGS)))]
        m.d.comb += [lw.src.eq(self.cold_value(Reg.W_SRC)), lw.nbytes.eq(nbytes),
                     lw.rows.eq(rows), lw.dst.eq(rg(Reg.W_DST)), lw.n.eq(count),
                     lw.flags.eq(flags)]
        m.d.comb += [lq.src.eq(self.cold_value(Reg.Q_SRC)), lq.nbytes.eq(nbytes),
                     lq.dst.eq(qdst), lq.end.eq(qdst + qcount)]
        return m


class ConvSetup(CommandSetup):
    """``CONV``'s checks and geometry → :class:`~ffacc.hw.conv.ConvSequencer`'s command: the
    (channel, kernel row) pairs, the column pieces of a kernel row, the output blocks of a
    row and its beats (alone, and in a chain: :func:`ffacc.sim.iss.row_pitch`), the
    multiplier slots of a beat, and the FCUs' mode.

    Further ports
    -------------
    mac : Out(1)
        The FCUs' MAC mode (kernel width 1), from the last ``CONV`` on (the FCUs' pipeline
        still drains its last beats after the command ends).
    reading : In(struct of {busy, lo, hi})  (``post_overlap``)
        A background ``POST`` reads accumulator blocks ``lo`` to ``hi``; a ``CONV`` into any
        of them waits until it is done.
    """

    op = Op.CONV
    layout = staticmethod(conv_command_layout)

    def __init__(self, cfg):
        ports = {"mac": Out(1), "blocks": Out(blocks_signature(cfg))}
        if cfg.post_overlap:
            ab = range(cfg.acc_blocks + 1)
            ports["reading"] = In(data.StructLayout({"busy": 1, "lo": ab, "hi": ab}))
        super().__init__(cfg, **ports)

    def elaborate(self, platform):
        m = Module()
        cfg, fc = self.cfg, self.cfg.fcu
        N, MT = fc.piece_taps, fc.ffa.M * fc.subtaps
        cb = conv_bounds(cfg)
        rg = self.reg
        kh, kw = rg(Reg.C_KH), rg(Reg.C_KW)
        last = self.mul.last            # the product before
        npairs = Signal(range(cb["n_pairs"] + 1))
        wob = self.blocks.wob
        pieces = Signal(range(cfg.max_kernel + 1))
        slots = Signal(16)
        t2 = Signal(range(cb["n_kw"] + 1))
        bk = Signal(range(cb["n_blk"] + 1))
        D = Signal(range(cb["D"] + 1))
        pb = Signal.like(bk)
        if cfg.chain_rows:      # row_pitch's bound on a chained row's data: A_W + C_PL + d
            rb = reg_bits(cfg)
            e1 = Signal(max(rb[Reg.A_W], rb[Reg.C_PL]) + 2)
        mac = self.mac
        with m.If(self.cmd.valid):
            self.cold(m, Reg.C_Y0)          # the sequencer's command: there from M1 on
        with m.FSM():
            with m.State("CHECK"):
                with m.If(self.cmd.valid):
                    with m.If(~self.checked("regs")):
                        self.fail(m, Err.PARAM)
                    with m.Else(), self.product(m, *self.operands("band")):
                        m.d.comb += self.blocks.clear.eq(1)
                        m.d.sync += [t2.eq(0), pieces.eq(0), mac.eq(kw == 1)]
                        m.next = "M1"
            with m.State("M1"):
                with m.If(~self.checked("band", band=last)):
                    self.fail(m, Err.PARAM)
                with m.Else(), self.product(m, rg(Reg.A_CH), kh) as p:
                    m.d.sync += npairs.eq(p)
                    m.next = "M2"
            # the multiplier slots of an engine's beat: a lane's M * T products, or in MAC
            # mode the L an output channel uses (C_LANES channels: with mac_pairs up to two
            # a lane)
            with m.State("M2"), self.product(m, rg(Reg.C_LANES), Mux(mac, cfg.L, MT)) as p:
                m.d.sync += slots.eq(p)
                if cfg.chain_rows:
                    m.d.sync += e1.eq(rg(Reg.A_W) + rg(Reg.C_PL) + cb["d"])
                m.next = "GEOM"
            with m.State("GEOM"):
                # ceil(wout / L) and the number of N-tap pieces by repeated addition
                m.d.comb += self.blocks.step.eq(1)
                busy_w = self.blocks.busy
                busy_p = t2 < kw
                with m.If(busy_p):
                    m.d.sync += [t2.eq(t2 + N), pieces.eq(pieces + 1)]
                with m.If(~busy_w & ~busy_p), self.product(m, *self.operands("acc", wob=wob)):
                    with m.If(mac):
                        m.d.sync += [pieces.eq(1), D.eq(0), bk.eq(wob), pb.eq(wob)]
                    with m.Else():
                        m.d.sync += [D.eq(cb["D"]), bk.eq(wob + cb["D"]),
                                     pb.eq(wob + cb["D"])]
                        if cfg.chain_rows:
                            # the least pb >= wob whose columns hold the row and reach past
                            # the last column its pieces' taps read (t2: the kernel's width
                            # in whole pieces) (row_pitch)
                            for j in reversed(range(cb["D"])):
                                cols = self.blocks.cols + j * cfg.L     # (wob + j) * L
                                with m.If((cols >= e1) &
                                          (cols + rg(Reg.C_PL) + 1 >= rg(Reg.C_WOUT) + t2)):
                                    m.d.sync += pb.eq(wob + j)
                    m.next = "ACC"
            with m.State("ACC"):
                acc = rg(Reg.C_ACC)
                if cfg.post_overlap:
                    r = self.reading
                    hold = r.busy & (acc < r.hi) & (r.lo < acc + last)
                else:
                    hold = Const(0, 1)
                with m.If(~self.checked("acc", acc=last)):
                    self.fail(m, Err.PARAM)
                with m.Elif(hold):
                    pass                # its blocks are being read by a background POST
                with m.Else():
                    m.d.comb += self.o.valid.eq(1)      # it starts now
                    m.next = "RUN"
            with m.State("RUN"):
                self.run(m)
        sc = self.o.payload
        m.d.comb += [sc.npairs.eq(npairs), sc.pieces.eq(pieces), sc.mac.eq(mac), sc.D.eq(D),
                     sc.wob.eq(wob), sc.bk.eq(bk), sc.pb.eq(pb), sc.slots.eq(slots),
                     sc.overwrite.eq(~self.cmd.payload.flags[0]), sc.wset.eq(rg(Reg.C_WSET)),
                     sc.kh.eq(kh), sc.pt.eq(rg(Reg.C_PT)), sc.pl.eq(rg(Reg.C_PL)),
                     sc.ny.eq(rg(Reg.C_NY)), sc.acc.eq(rg(Reg.C_ACC)),
                     sc.y0.eq(self.cold_value(Reg.C_Y0)), sc.h.eq(rg(Reg.A_H)),
                     sc.hb0.eq(rg(Reg.A_HB0)), sc.pitch.eq(rg(Reg.LB_PITCH))]
        return m


def post_registers(cfg, pp, rg, is_add, s8, flags):
    """The assignments of the post-processor's command fields ``pp`` that are parameter
    registers (``rg``, the hot ones by :class:`Reg`) or instruction ``flags``: a POST's sizes,
    records, levels and codes, an ADD's requantizer (``s8``: an 8-bit field's activation
    value)."""
    out = [pp.lanes.eq(rg[Reg.C_LANES]), pp.ny.eq(rg[Reg.C_NY]), pp.wout.eq(rg[Reg.C_WOUT]),
           pp.acc0.eq(rg[Reg.C_ACC]), pp.q0.eq(rg[Reg.O_Q]), pp.pitch.eq(rg[Reg.O_W]),
           pp.poolk.eq(rg[Reg.O_POOLK])]
    if cfg.add_unit:
        dsz, dcl = rg[Reg.D_SZ], rg[Reg.D_CLAMP]
        out += [pp.add.eq(is_add), pp.q.mult.eq(rg[Reg.D_M]), pp.q.shift.eq(dsz[:8]),
                pp.q.zp.eq(s8(dsz[24:32])), pp.q.lo.eq(s8(dcl[:8])), pp.q.hi.eq(s8(dcl[8:16]))]
    if cfg.post_affine:
        out += [pp.affine.eq(flags[PostFlag.AFFINE.bit_length() - 1])]
    if cfg.pool_pads:
        out += [pp.pads.eq(rg[Reg.O_POOLPAD])]
    if cfg.act_codes:
        out += [pp.codes.eq(flags[PostFlag.CODES.bit_length() - 1]),
                pp.levels.n.eq(rg[Reg.O_NLEV]),
                pp.levels.t.eq(Cat(*(rg[r] for r in LEVEL_REGS[:MAX_LEVELS // 4]))
                               [:8 * (MAX_LEVELS - 1)]),
                pp.levels.l.eq(Cat(*(rg[r] for r in LEVEL_REGS[MAX_LEVELS // 4:])))]
    return out


class PostSetup(CommandSetup):
    """``POST``'s and ``ADD``'s checks and geometry → the post-processor's command
    (:class:`~ffacc.hw.post.PostUnit`), and ``ADD``'s operands → the
    :class:`~ffacc.hw.add.AddSequencer`'s command.

    A ``POST`` works out its band's accumulator blocks, lane 0's first output address, the
    output step as blocks and columns and the step rows' blocks, then gives the
    post-processor its command and waits until it is done, or, with ``ASYNC``
    (``post_overlap``), ends at once: the post-processor copies the command as it takes it and
    runs beside what follows. An ``ADD`` gives the post-processor its command (the elements it
    will get and where to write them), then runs the add sequencer, then waits for the
    post-processor's last write.

    Further ports
    -------------
    cmd : In(stream of {flags, add, pc})
        ``add``: the command is an ``ADD``; ``pc``: its address (a background ``POST``'s
        error names it).
    unit_busy : In(1)
        The post-processor runs a command (``o.valid`` or this: one is pending).
    clear : In(1)
        A run starts: no ``POST`` ran in the background.
    background, bg_pc : Out
        The last ``POST`` given runs (or ran) in the background, and its ``pc``: its error,
        if it has one, is reported by the controller later.
    add_o : Out(stream of :func:`~ffacc.hw.add.add_command_layout`), add_err : In(Err)
        (``add_unit``) The add sequencer's command; its error with ``add_o.ready``.
    """

    op = Op.POST
    layout = staticmethod(post_command_layout)

    def __init__(self, cfg):
        aw = cfg.addr_bits + 1
        ports = {"unit_busy": In(1), "clear": In(1), "background": Out(1), "bg_pc": Out(aw),
                 "blocks": Out(blocks_signature(cfg))}
        if cfg.add_unit:
            ports.update(add_o=Out(stream.Signature(add_command_layout(cfg))),
                         add_err=In(range(max(Err) + 1)))
        super().__init__(cfg, cmd_fields={"add": 1, "pc": aw}, **ports)

    def elaborate(self, platform):
        m = Module()
        cfg, L = self.cfg, self.cfg.L
        rb = self.rbits
        rg = {r: self.regs[r.name.lower()] for r in Reg
              if r.name.lower() in self.regs.shape().members}
        c = self.cmd.payload
        flags, pool = c.flags, c.flags[0]
        tmp = Signal(tmp_bits(cfg) + 1)             # the band's blocks (acc1 - acc0)
        wob = self.blocks.wob
        step = Signal(8)                            # the output step in accumulator columns
        sblk, ssub = Signal(range(256)), Signal(9)  # ... as blocks (step // L) and columns
        rowstep = Signal(range(cfg.acc_blocks + 1))
        base = Signal(cfg.addr_bits + 1)            # lane 0's first output
        cstride = Signal(rb[Reg.O_CSTRIDE])
        # the command to the post-processor, until it takes it
        valid = Signal()
        m.d.comb += self.o.valid.eq(valid)
        with m.If(self.o.ready):
            m.d.sync += valid.eq(0)
        pending = valid | self.unit_busy
        with m.If(self.clear):
            m.d.sync += self.background.eq(0)
        with m.FSM():
            with m.State("CHECK"):
                post = self.cmd.valid
                if cfg.add_unit:
                    post = self.cmd.valid & ~c.add
                    with m.If(self.cmd.valid & c.add):
                        self.cold(m, Reg.O_DST)         # DST's
                        with m.If(~self.checked("regs", op=Op.ADD)):
                            self.fail(m, Err.PARAM)
                        with m.Else():
                            m.next = "DST"
                with m.If(post):
                    with m.If(~self.checked("regs")):
                        self.fail(m, Err.PARAM)
                    with m.Else():
                        m.d.comb += self.blocks.clear.eq(1)
                        m.d.sync += step.eq(rg[Reg.O_STRIDE][:8])
                        m.next = "GEOM"
            with m.State("GEOM"):
                # ceil(wout / L) by repeated addition, then the band's blocks
                self.cold(m, Reg.O_ROW0)                # M1's product operand
                m.d.comb += self.blocks.step.eq(1)
                with m.If(~self.blocks.busy), self.product(m, *self.operands("acc", wob=wob)) as p:
                    m.d.sync += tmp.eq(addr_clamp(p, tmp_bits(cfg)))
                    m.next = "M1"
            with m.State("M1"):
                dst = self.cold(m, Reg.O_DST)           # there in the product's clock
                with m.If(~self.checked("acc", acc=tmp)):
                    self.fail(m, Err.PARAM)
                with m.Else(), self.product(m, self.cold_value(Reg.O_ROW0), rg[Reg.O_W]) as p:
                    # lane 0's first output row; each lane adds O_CSTRIDE
                    m.d.sync += [base.eq(self.aclamp(dst + self.aclamp(p))), sblk.eq(0),
                                 ssub.eq(step)]
                    m.next = "M2"
            with m.State("M2"):
                # the step in (block, column) form and the row step in accumulator words,
                # then the post-processor gets the command
                cs = self.cold(m, Reg.O_CSTRIDE)        # there in the product's clock
                with m.If(ge_const(ssub, L)):
                    m.d.sync += [ssub.eq(ssub - L), sblk.eq(sblk + 1)]
                with m.Else(), self.product(m, step, wob) as p:
                    m.d.sync += [rowstep.eq(p), valid.eq(1), self.bg_pc.eq(c.pc)]
                    if cfg.post_overlap:
                        m.d.sync += [cstride.eq(cs), self.background.eq(flags[1])]
                        with m.If(flags[1]):
                            m.d.comb += self.cmd.ready.eq(1)    # ASYNC: it ends here
                            m.next = "CHECK"
                        with m.Else():
                            m.next = "WAIT"
                    else:
                        m.next = "WAIT"
            with m.State("WAIT"):
                # a POST (without ASYNC) or ADD: until the post-processor is done
                self.cold(m, Reg.O_CSTRIDE)
                with m.If(~pending):
                    m.d.comb += [self.cmd.ready.eq(1), self.err.eq(self.o_err)]
                    m.next = "CHECK"
            if cfg.add_unit:
                with m.State("DST"):
                    # the post-processor writes the elements from O_DST on
                    self.cold(m, Reg.A_SRC)             # the sequencer's, from now on
                    m.d.sync += [base.eq(self.aclamp(self.cold_value(Reg.O_DST))),
                                 valid.eq(1), self.background.eq(0)]
                    m.next = "ADD"
                with m.State("ADD"):
                    # the add sequencer runs the command (held meanwhile), then WAIT waits for
                    # the post-processor's last write
                    self.cold(m, Reg.A_SRC)
                    m.d.comb += self.add_o.valid.eq(1)
                    with m.If(self.add_o.ready):
                        with m.If(self.add_err != 0):
                            self.fail(m, self.add_err)
                        with m.Else():
                            m.next = "WAIT"
        pp = self.o.payload
        s8 = partial(act_value, signed=cfg.fcu.act_signed)   # an 8-bit field's value
        m.d.comb += [pp.pool.eq(pool), pp.step.eq(step), pp.sblk.eq(sblk), pp.ssub.eq(ssub),
                     pp.wob.eq(wob), pp.rowstep.eq(rowstep), pp.acc1.eq(rg[Reg.C_ACC] + tmp),
                     pp.base.eq(base),
                     # copied with post_overlap (the unit runs on), else read in place
                     pp.cstride.eq(cstride if cfg.post_overlap
                                   else self.cold_value(Reg.O_CSTRIDE)),
                     *post_registers(cfg, pp, rg, c.add, s8, flags)]
        if cfg.add_unit:
            sz, kab = rg[Reg.D_SZ], rg[Reg.D_KAB]
            ac = self.add_o.payload
            m.d.comb += [ac.a.eq(self.cold_value(Reg.A_SRC)), ac.b.eq(rg[Reg.D_SRC2]),
                         ac.n.eq(rg[Reg.D_N]), ac.za.eq(sz[8:16]), ac.zb.eq(sz[16:24]),
                         ac.ka.eq(kab[:16]), ac.kb.eq(kab[16:32])]
        return m
