"""The convolution sequencer: a checked ``CONV`` command → passes of beats for the line buffer
and the FCU array, the weights of each pass, and where each output beat accumulates.

A ``CONV`` sums ``npairs`` (input channel, kernel row) *pairs*, ``R`` per *pass* (one per row
engine), for each ``N``-tap column *piece* of the kernel. A pass streams ``ny`` output rows of
``bk`` beats (``D`` leading blocks the FFA needs, then ``wob`` stored ones); each beat reads
every engine's ``L`` columns from the line buffer. With ``chain_rows`` the rows stream as one
chain where the map allows (:func:`ffacc.sim.iss.row_pitch`): each row but the last streams
``pb < bk`` beats, and a row's leading blocks are the row before's last ones, whose columns
are the padding between the two rows. Before a pass its *setup* assigns each
engine its pair (a clock an engine) and writes the pass's weight set from the weight buffer
into the FCUs. With ``back_to_back`` the setup of the next pass runs while the current one
streams (into shadow registers and the FCUs' idle weight bank) and the two swap at its last
beat, so a piece's passes stream without a gap; otherwise each pass is set up, streamed and
drained in turn.

The output side counts the beats as they come out of the FCUs (a pass's ``ny * bk``, in
order), so it needs no signal from the stream side; the first pass of a command without
``ACCUMULATE`` overwrites the accumulators, the others add.

:class:`ConvSequencer` is the command's state machine (pieces, passes, the swap of a set-up
pass) over four parts, each its own component: :class:`PassSetup` (a pass's engines and
weights), :class:`PieceColumn` (a piece's first column as block and rotation),
:class:`BeatStream` (a pass's beats and the band check) and :class:`OutputPlacer` (the
accumulator block of each beat out of the FCUs).
"""

from math import ceil

from amaranth.hdl import Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Reg, reg_bits
from .logic import ge_const, lt_const, reset_less_copy

__all__ = ["ConvSequencer", "PassSetup", "PieceColumn", "BeatStream", "OutputPlacer",
           "conv_command_layout", "conv_bounds"]


def conv_bounds(cfg):
    """Bounds of a ``CONV``'s counters, from the checks a command passed (and the FFA's ``d``,
    samples read before a piece's first column, and ``D``, leading output blocks)."""
    L, N = cfg.L, cfg.fcu.piece_taps
    d = (-(N - 1)) % L                      # samples read before a piece's first column
    D = (N - 1 + d) // L                    # leading output blocks not stored
    g = {"d": d, "D": D,
         "K0": ceil((cfg.max_kernel - 1 + d) / L) + 1,     # makes col0 + L*K0 >= 0
         "n_blk": cfg.acc_blocks + D,                     # column blocks of an output row
         "n_pairs": cfg.lb_rows * cfg.max_kernel,         # (channel, kernel row) pairs
         "n_kw": cfg.max_kernel + N,                      # kernel columns, piece-rounded
         "col_lo": cfg.max_kernel + d}                    # -col_lo <= a beat's first column
    g["n_col"] = L * g["n_blk"] + g["n_kw"] + L           # a beat's last column < n_col
    return g


def conv_command_layout(cfg):
    """A checked ``CONV``: its geometry (worked out by the controller) and the parameter
    registers the sequencer reads."""
    rb = reg_bits(cfg)
    g = conv_bounds(cfg)
    return data.StructLayout({
        "npairs": range(g["n_pairs"] + 1),      # channels * kernel rows
        "pieces": range(cfg.max_kernel + 1),    # N-tap column pieces of a kernel row
        "mac": 1,                               # kernel width 1: the FCUs' MAC mode
        "D": range(g["D"] + 1),                 # leading blocks of a row (0 in MAC mode)
        "wob": range(cfg.acc_blocks + 1),       # stored blocks of a row
        "bk": range(g["n_blk"] + 1),            # beats of a row: D + wob
        "pb": range(g["n_blk"] + 1),            # beats of each row but a pass's last
        "slots": 16,                            # multiplier slots of an engine's beat
        "overwrite": 1,                         # no ACCUMULATE: the first pass overwrites
        "wset": range(cfg.wb_sets),             # the first pass's weight set (C_WSET)
        "kh": range(cfg.max_kernel + 1),        # C_KH
        "pt": 8, "pl": 8,                       # C_PT, C_PL: the padding above, at the left
        "ny": range(cfg.acc_blocks + 1),        # C_NY: output rows
        "acc": range(cfg.acc_blocks + 1),       # C_ACC: the first accumulator block
        "y0": unsigned(rb[Reg.C_Y0]),           # C_Y0: the first output row
        "h": 16, "hb0": 16,                     # A_H, A_HB0: the map's rows, the band's first
        "pitch": 16,                            # LB_PITCH: a channel's line-buffer rows
    })


class PassSetup(wiring.Component):
    """A pass's setup: each of the ``R`` engines is assigned its (channel, kernel row) pair, a
    clock an engine, and the pass's weight set is read from the weight buffer and written to
    the FCUs the clock after.

    Parameters
    ----------
    cfg : AcceleratorConfig
    row_bits : int
        Bits of a line-buffer row index (the line buffer's ``row_bits``).

    Ports
    -----
    cmd : In(:func:`conv_command_layout`)
        The command's fields (held while it runs).
    restart : In(1)
        A piece starts: the next pair assigned is its first (channel 0, kernel row 0).
    start, first, set : In
        Set up the pass whose first pair is ``first``, with weight set ``set``. With
        ``back_to_back`` the first engine is assigned in this clock (the clock that swaps the
        previous setup's registers into the streaming pass).
    act, G, h0, slots : Out
        The pass's engines: which run, their line-buffer rows at output row 0 (modulo
        ``2**row_bits``) and their rows' offsets from the output row, and the multiplier
        slots of a beat (registers, written as the engines are assigned).
    p0 : Out
        The pass's first pair.
    w_set : Out, w_set_busy : In(1), w_write : Out(1)
        The weight set read (its word is there the clock after), whether a background load
        is writing it (the read waits), and the FCUs' write of the word read the clock before.
    bad : Out(1)
        The set is past the weight buffer.
    last : Out(1), ready : Out(1)
        The setup's last clock; the set-up pass can start (``last``, or no setup runs).
    """

    def __init__(self, cfg, row_bits):
        self.cfg = cfg
        g = conv_bounds(cfg)
        R = cfg.rows
        super().__init__({
            "cmd": In(conv_command_layout(cfg)),
            "restart": In(1), "start": In(1), "first": In(range(g["n_pairs"] + R + 1)),
            "set": In(range(cfg.wb_sets + 2)),
            "act": Out(R), "G": Out(data.ArrayLayout(row_bits, R)),
            "h0": Out(data.ArrayLayout(signed(10), R)), "slots": Out(32),
            "p0": Out(range(g["n_pairs"] + R + 1)),
            "w_set": Out(range(cfg.wb_sets + 2)), "w_set_busy": In(1), "w_write": Out(1),
            "bad": Out(1), "last": Out(1), "ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd
        b2b, R = cfg.back_to_back, cfg.rows
        run = Signal()
        # an engine's row and offset: data its act qualifies, flip-flops without reset (with
        # a reset, yosys 0.70 merged two of G's bits into one net driven by two flip-flops on
        # the ULX3S, which nextpnr refused)
        G = reset_less_copy(m, self.G, name="G_q")
        h0 = reset_less_copy(m, self.h0, name="h0_q")
        asg = Signal(range(R + 1))                  # engines assigned
        pc = Signal(range(cfg.max_kernel + 1))      # the next pair's kernel row
        # the next pair's channel's first line-buffer row, c * pitch: below lb_rows for every
        # channel c < nch (the controller checks), which are the engines that run; past the
        # last one it may wrap (those engines are inactive)
        cbase = Signal(range(2 * cfg.lb_rows))
        wa = Signal()                               # the set's word is read
        m.d.sync += self.w_write.eq(0)
        # back to back, the pass can start in the clock its weights are written (the idle
        # bank: its first beat is multiplied 3 clocks later); with one bank the write is over
        # first
        m.d.comb += [self.last.eq(run & ge_const(asg, R) & wa
                                  & (Const(1) if b2b else ~self.w_write)),
                     self.ready.eq(self.last | ~run)]

        def assign(r_now, pair, slots_before):
            """Engine ``r_now`` takes pair ``pair`` (at pc, cbase), the pass's multiplier slots
            so far being ``slots_before``; the pair after it is next."""
            act_now = pair < c.npairs

            def engine(r):
                m.d.sync += [self.act[r].eq(act_now), G[r].eq(cbase + pc - c.pt - c.hb0),
                             h0[r].eq(pc - c.pt)]
            if isinstance(r_now, int):
                engine(r_now)
            else:
                with m.Switch(r_now):
                    for r in range(R):
                        with m.Case(r):
                            engine(r)
            m.d.sync += self.slots.eq(slots_before + Mux(act_now, c.slots, 0))
            with m.If(pc + 1 == c.kh):
                m.d.sync += [pc.eq(0), cbase.eq(cbase + c.pitch)]
            with m.Else():
                m.d.sync += pc.eq(pc + 1)
            m.d.sync += asg.eq(r_now + 1)

        with m.If(self.restart):
            m.d.sync += [pc.eq(0), cbase.eq(0)]
        with m.If(self.start):
            m.d.sync += [run.eq(1), asg.eq(0), wa.eq(0), self.act.eq(0), self.slots.eq(0),
                         self.bad.eq(ge_const(self.set, cfg.wb_sets)),
                         self.w_set.eq(self.set), self.p0.eq(self.first)]
            if b2b:
                assign(0, self.first, 0)
        with m.Elif(run):
            with m.If(lt_const(asg, R)):
                assign(asg, self.p0 + asg, self.slots)
            with m.If(~wa & ~self.w_set_busy):
                m.d.sync += [wa.eq(1), self.w_write.eq(1)]
            with m.If(self.last):
                m.d.sync += run.eq(0)
        return m


class OutputPlacer(wiring.Component):
    """Where each FCU output beat of a ``CONV`` accumulates, for an :class:`AcceleratorConfig`
    ``cfg``: a pass's outputs are its first ``D`` beats (the FFA's leading blocks), dropped,
    then ``ny`` rows of ``pb`` beats (``bk`` without a chain; the last row ``wob``), of which
    each row's first ``wob`` go to blocks ``acc + row * wob``, ``+ 1``, ... and the rest,
    the next row's leading blocks, are dropped; after a pass's last beat the count starts
    over for the next pass, and only the first pass of a command without ``ACCUMULATE``
    overwrites.

    Ports
    -----
    cmd : In(:func:`conv_command_layout`)
        The command (``D``, ``bk``, ``pb``, ``ny``, ``wob``, ``acc``, ``overwrite``), held.
        A pass's beats out are ``D`` leading ones, then ``pb`` a row, of which the first
        ``wob`` are stored (the rest lead the next row), the last row's ``wob``. With
        ``pb = bk`` (rows not chained) that is ``bk`` a row, the first ``D`` leading.
    start : In(1)
        The command starts: the next beat out is its first pass's first.
    issue : In(1)
        A beat goes into the FCUs this clock.
    o_next : In(1)
        The FCUs give out a beat next clock.
    acc_valid, acc_addr, acc_first : Out
        With ``o_next``: the beat is kept, into accumulator block ``acc_addr``, which it
        overwrites with ``acc_first``.
    pending : Out(1)
        Beats issued are not yet out.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "cmd": In(conv_command_layout(cfg)), "start": In(1), "issue": In(1),
            "o_next": In(1), "acc_valid": Out(1), "acc_addr": Out(range(max(2, cfg.acc_blocks))),
            "acc_first": Out(1), "pending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd
        g = conv_bounds(cfg)
        lead = Signal(range(g["D"] + 1))                    # leading beats still to come
        mb = Signal(range(g["n_blk"] + 1))                  # beat in the output row
        yl = Signal(range(cfg.acc_blocks + 1))              # row in the pass
        base = Signal(range(cfg.acc_blocks + 1))            # the row's first block
        first = Signal()                                    # the pass overwrites
        pend = Signal(range(2 * (cfg.fcu.latency + 4)))     # beats issued, not yet out
        m.d.comb += [self.acc_valid.eq(self.o_next & (lead == 0) & (mb < c.wob)),
                     self.acc_addr.eq(base + mb), self.acc_first.eq(first),
                     self.pending.eq(pend != 0)]
        m.d.sync += pend.eq(pend + self.issue - self.o_next)
        with m.If(self.start):
            m.d.sync += [lead.eq(c.D), mb.eq(0), yl.eq(0), base.eq(c.acc),
                         first.eq(c.overwrite)]
        with m.Elif(self.o_next):
            with m.If(lead != 0):
                m.d.sync += lead.eq(lead - 1)
            with m.Elif((yl == c.ny - 1) & (mb == c.wob - 1)):      # the pass's last
                m.d.sync += [lead.eq(c.D), mb.eq(0), yl.eq(0), base.eq(c.acc), first.eq(0)]
            with m.Elif(mb == c.pb - 1):
                m.d.sync += [mb.eq(0), yl.eq(yl + 1), base.eq(base + c.wob)]
            with m.Else():
                m.d.sync += mb.eq(mb + 1)
        return m


class BeatStream(wiring.Component):
    """A pass's beats for the line buffer: ``ny`` output rows from ``y0`` of ``bk`` beats
    (with ``chain_rows``, each but the last ``pb``), a
    beat reading every running engine's row at the output row (its row offset ``h0`` added)
    and ``L`` columns from the piece's first column ``col0``, ``L`` more each beat. A row
    outside the map (``h``) reads padding; one outside the loaded band (``hb0`` + ``pitch``
    rows) is a parameter error.

    Ports
    -----
    cmd : In(:func:`conv_command_layout`)
        The command (``y0``, ``bk``, ``pb``, ``ny``, ``h``, ``hb0``, ``pitch``), held.
    act : In(R)
        The streaming pass's engines that run (held while it streams).
    G : In(R x GW); h0 : In(R x signed(10))
        The starting pass's engines: their line-buffer rows at output row 0 (modulo
        ``2**GW``) and their input rows' offsets from the output row, sampled with ``start``
        (the unit keeps each engine's row and input row in its own registers, so a beat's
        row address is a flip-flop, not a sum).
    col0, colblk0, rot : In
        The piece's first column, as a signed column and as block and rotation.
    tag : In
        The weight bank the beats carry to the FCUs.
    start : In(1)
        The pass streams from its first beat on the next clock.
    issue : In(1)
        A beat goes out this clock (``lb.valid``); the counters move on.
    lb : Out(stream of ``beat_shape``), always ready
        The beats.
    last : Out(1)
        This clock's beat is the pass's last.
    bad : Out(1)
        A beat issued the clock before read a row outside the loaded band (registered: the
        check is off the path to the error registers).
    """

    def __init__(self, cfg, beat_shape):
        self.cfg = cfg
        g = conv_bounds(cfg)
        R = cfg.fcu.rows
        GW = Shape.cast(data.Layout.cast(beat_shape)["row"].shape.elem_shape).width
        super().__init__({
            "cmd": In(conv_command_layout(cfg)),
            "act": In(R), "G": In(data.ArrayLayout(GW, R)),
            "h0": In(data.ArrayLayout(signed(10), R)),
            "col0": In(range(-g["col_lo"], g["n_kw"] + 1)),
            "colblk0": In(range(-g["K0"], g["n_kw"] + cfg.L * g["K0"] + 1)),
            "rot": In(range(cfg.L)), "tag": In(range(3 if cfg.back_to_back else 1)),
            "start": In(1), "issue": In(1),
            "lb": Out(stream.Signature(beat_shape, always_ready=True)),
            "last": Out(1), "bad": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c, lb = self.cfg, self.cmd, self.lb.payload
        g = conv_bounds(cfg)
        L, R = cfg.L, cfg.fcu.rows
        # output row in the pass, beat in the row, column
        yl = Signal(range(cfg.acc_blocks + 1))
        b = Signal(range(g["n_blk"] + 1))
        col = Signal(range(-g["col_lo"], g["n_col"] + 1))
        # each row but the last streams pb beats (bk when rows are not chained): the row's
        # last beat, registered
        rl = Signal.like(b)

        def row_len(last_row):
            return Mux(last_row, c.bk - 1, c.pb - 1)
        row_end = b == rl
        last = Signal()
        m.d.comb += self.last.eq(row_end & last)
        with m.If(self.start):
            m.d.sync += [rl.eq(row_len(c.ny == 1)), last.eq(c.ny == 1)]
        with m.Elif(self.issue & row_end):
            m.d.sync += [rl.eq(row_len(yl + 2 == c.ny)), last.eq(yl + 2 == c.ny)]
        # each engine's line-buffer row and input row at the output row: set at the start
        # (the pass's engines plus y0), one more at each row's end
        eng_row = [Signal.like(lb.row[r], reset_less=True, name=f"eng{r}_row") for r in range(R)]
        eng_h = [Signal(signed(18), reset_less=True, name=f"eng{r}_h") for r in range(R)]
        with m.If(self.start):
            m.d.sync += [yl.eq(0), b.eq(0), col.eq(self.col0)]
            m.d.sync += [eng_row[r].eq(self.G[r] + c.y0) for r in range(R)]
            m.d.sync += [eng_h[r].eq(self.h0[r] + c.y0) for r in range(R)]
        with m.Elif(self.issue & row_end):
            m.d.sync += [b.eq(0), col.eq(self.col0), yl.eq(yl + 1)]
            m.d.sync += [eng_row[r].eq(eng_row[r] + 1) for r in range(R)]
            m.d.sync += [eng_h[r].eq(eng_h[r] + 1) for r in range(R)]
        with m.Elif(self.issue):
            m.d.sync += [b.eq(b + 1), col.eq(col + L)]

        bad = Signal()
        m.d.sync += self.bad.eq(bad)
        eng_ok = Signal(R)
        for r in range(R):
            m.d.comb += [lb.row[r].eq(eng_row[r]),
                         eng_ok[r].eq(self.act[r] & (eng_h[r] >= 0) & (eng_h[r] < c.h))]
            rel = eng_h[r] - c.hb0
            with m.If(self.issue & eng_ok[r] & ((rel < 0) | (rel >= c.pitch))):
                m.d.comb += bad.eq(1)
        m.d.comb += [self.lb.valid.eq(self.issue), lb.use.eq(eng_ok), lb.act.eq(self.act),
                     lb.blk.eq(self.colblk0 + b), lb.rot.eq(self.rot), lb.col.eq(col),
                     lb.tag.eq(self.tag)]
        return m


class PieceColumn(wiring.Component):
    """A kernel piece's first column as a line-buffer block and rotation,
    ``col = L * blk + rot`` with ``0 <= rot < L``, by repeated subtraction: a clock per block
    from ``-K0`` (the column plus ``L * K0`` is non-negative for every legal padding).

    Ports
    -----
    start : In(1); col : In(signed)
        Divide ``col`` (sampled with ``start``).
    col0, blk, rot : Out
        The column, its block and its rotation; ``blk`` and ``rot`` are final once ``done``.
    done : Out(1)
        The division is over (from the clock after ``start``; it holds until the next).
    """

    def __init__(self, cfg):
        g = conv_bounds(cfg)
        self.cfg = cfg
        super().__init__({
            "start": In(1), "col": In(signed(17)),
            "col0": Out(range(-g["col_lo"], g["n_kw"] + 1)),
            "blk": Out(range(-g["K0"], g["n_kw"] + cfg.L * g["K0"] + 1)),
            "rot": Out(range(cfg.L)), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g, L = conv_bounds(self.cfg), self.cfg.L
        K0, n_kw = g["K0"], g["n_kw"]
        v = Signal(range(n_kw + L * K0 + 1))        # col + L * K0 - L * (blk + K0)
        more = ge_const(v, L)
        m.d.comb += [self.done.eq(~more), self.rot.eq(v)]
        with m.If(self.start):
            m.d.sync += [self.col0.eq(self.col), v.eq(self.col + L * K0), self.blk.eq(-K0)]
        with m.Elif(more):
            m.d.sync += [v.eq(v - L), self.blk.eq(self.blk + 1)]
        return m


class ConvSequencer(wiring.Component):
    """Passes and beats of one ``CONV`` at a time, for an :class:`AcceleratorConfig` ``cfg``.

    Parameters
    ----------
    cfg : AcceleratorConfig
    beat_shape : shape
        The line buffer's beat (:class:`~ffacc.hw.linebuf.LineBuffer`'s ``r`` payload).

    Ports
    -----
    cmd : In(stream of :func:`conv_command_layout`)
        A command, checked by the controller: it starts while the sequencer is idle and is
        taken in the clock it ends (its producer holds the payload meanwhile, as a stream's
        rule has it).
    err : Out(1)
        With ``cmd.ready``: the command stopped at a parameter error (a beat read a row outside
        the loaded band, or a pass's weight set is past the buffer).
    lb : Out(stream of ``beat_shape``), always ready
        The beats, a clock each while a pass streams.
    w_set : Out, w_set_busy : In(1)
        The weight set a setup reads (the weight buffer's read address; its word is there the
        clock after), and whether a background load is writing that set (the setup waits).
    w_write : Out(1), w_bank : Out
        The FCUs write the weight word read the clock before into their bank ``w_bank``.
    o_next : In(1)
        The FCUs give out a beat next clock.
    acc_valid, acc_addr, acc_first : Out
        With ``o_next``: the beat is kept (not a leading block), into accumulator block
        ``acc_addr``, which it overwrites with ``acc_first``.
    acc_busy : In(1)
        The accumulators still write a beat (a command ends when they are done).
    streaming : Out(1), slots : Out(32)
        A beat is issued this clock, and the multiplier slots it uses (profiling).
    """

    def __init__(self, cfg, beat_shape):
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(conv_command_layout(cfg))),
            "err": Out(1),
            "lb": Out(stream.Signature(beat_shape, always_ready=True)),
            "w_set": Out(range(cfg.wb_sets + 2)), "w_set_busy": In(1),
            "w_write": Out(1), "w_bank": Out(range(3 if cfg.back_to_back else 1)),
            "o_next": In(1),
            "acc_valid": Out(1), "acc_addr": Out(range(max(2, cfg.acc_blocks))),
            "acc_first": Out(1), "acc_busy": In(1),
            "streaming": Out(1), "slots": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c, b2b = self.cfg, self.cmd.payload, self.cfg.back_to_back
        NBANK = 3 if b2b else 1
        R, N = cfg.fcu.rows, cfg.fcu.piece_taps
        g = conv_bounds(cfg)
        n_pairs, n_kw = g["n_pairs"], g["n_kw"]
        GW = len(self.lb.payload.row[0])

        # ---- the command's state: the piece, its first kernel column (pieceoff) and first
        # line-buffer column (pc), the streaming pass's first pair, the next pass's weight set
        piece, pieceoff = Signal(range(cfg.max_kernel + 1)), Signal(range(n_kw + 1))
        pc = m.submodules.column = PieceColumn(cfg)
        p0, wset = Signal(range(n_pairs + R + 1)), Signal(range(cfg.wb_sets + 2))
        # the pass being set up (PassSetup): the engine assignment and the weights of the pass
        # starting at pair su.p0. With back_to_back it fills its registers (a shadow of the
        # streaming pass's engines: eng_act, slots; the beat stream keeps their rows, taken
        # as the pass starts) and the FCUs' idle weight bank while the current
        # pass streams; swap() makes it current. Otherwise its registers are the streaming
        # pass's, and it writes them and the one bank between passes.
        su = m.submodules.setup = PassSetup(cfg, GW)
        su_next = Signal()              # a set-up pass waits to be swapped in (back_to_back)
        m.d.comb += su.cmd.eq(c)
        if b2b:
            eng_act = Signal(R)
            slots = Signal(32)
        else:
            eng_act, slots = su.act, su.slots
        # the FCU weight bank of the streaming pass (back_to_back: three, in turn). A beat's
        # products read its bank 3 clocks after its issue; the setup writes the next bank
        # (the pass before the last used it) 2 clocks after the swap that ended that pass at
        # the earliest, and its last beat was issued 2 clocks before that swap: no wait
        bank, bank_next = Signal(range(NBANK)), Signal(range(NBANK))
        m.d.comb += bank_next.eq(Mux(bank == NBANK - 1, 0, bank + 1))

        # ---- beats: every engine's row at the output row, the columns from col0
        issue = Signal()
        bs = m.submodules.beats = BeatStream(cfg, self.lb.payload.shape())
        wiring.connect(m, bs.lb, wiring.flipped(self.lb))
        m.d.comb += [bs.cmd.eq(c), bs.act.eq(eng_act), bs.col0.eq(pc.col0), bs.colblk0.eq(pc.blk),
                     bs.rot.eq(pc.rot), bs.tag.eq(bank), bs.issue.eq(issue),
                     self.streaming.eq(issue), self.slots.eq(slots)]
        # the engines' rows, which the beat stream samples as a pass starts: the set-up pass's
        # (whose registers hold until the setup after it starts, in the clock of the swap)
        m.d.comb += [bs.G[r].eq(su.G[r]) for r in range(R)]
        m.d.comb += [bs.h0[r].eq(su.h0[r]) for r in range(R)]

        # ---- outputs: the accumulator block of each beat out of the FCUs
        ou = m.submodules.outputs = OutputPlacer(cfg)
        m.d.comb += [ou.cmd.eq(c), ou.issue.eq(issue), ou.o_next.eq(self.o_next),
                     self.acc_valid.eq(ou.acc_valid), self.acc_addr.eq(ou.acc_addr),
                     self.acc_first.eq(ou.acc_first)]

        # ---- pass setup: the weight buffer's word read, written to the FCUs' next bank
        m.d.comb += [self.w_set.eq(su.w_set), su.w_set_busy.eq(self.w_set_busy),
                     self.w_write.eq(su.w_write), self.w_bank.eq(bank_next)]

        def setup(first):
            """Set up the pass starting at pair ``first``: it takes the next weight set."""
            m.d.comb += [su.start.eq(1), su.first.eq(first), su.set.eq(wset)]
            m.d.sync += wset.eq(wset + 1)

        def swap():
            """The set-up pass becomes the streaming one (back_to_back); the setup of the pass
            after it starts, if the piece has one."""
            m.d.sync += [eng_act.eq(su.act), slots.eq(su.slots), p0.eq(su.p0),
                         bank.eq(bank_next)]
            m.d.comb += bs.start.eq(1)
            more = su.p0 + R < c.npairs
            m.d.sync += su_next.eq(more)
            with m.If(more):
                setup(su.p0 + R)

        def end(err=0):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err)]
            m.next = "IDLE"

        with m.FSM(name="seq"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.d.sync += [piece.eq(0), pieceoff.eq(0), wset.eq(c.wset)]
                    m.d.comb += ou.start.eq(1)
                    m.next = "PIECE"
            with m.State("PIECE"):
                # the piece's first column, as block and rotation
                m.d.comb += [pc.start.eq(1), pc.col.eq(pieceoff - c.pl - Mux(c.mac, 0, g["d"])),
                             su.restart.eq(1)]
                m.d.sync += p0.eq(0)
                m.next = "DIV"
            with m.State("DIV"):
                with m.If(pc.done):
                    m.next = "PASS"
            with m.State("PASS"):
                # a piece's first pass (back_to_back), or each pass: set it up
                with m.If(ge_const(wset, cfg.wb_sets)):
                    end(err=1)
                with m.Else():
                    setup(p0)
                    m.next = "SETUP"
            with m.State("SETUP"):
                with m.If(su.last):
                    if b2b:
                        swap()
                    else:
                        m.d.comb += bs.start.eq(1)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += issue.eq(1)
                with m.If(bs.bad):
                    end(err=1)
                with m.Elif(bs.last):
                    # the pass's last beat: the next one follows at once when it is set up
                    if b2b:
                        with m.If(~su_next):
                            m.next = "DRAIN"
                        with m.Elif(su.ready & ~su.bad):
                            swap()
                        with m.Else():
                            m.next = "WAIT"
                    else:
                        m.next = "DRAIN"
            if b2b:
                with m.State("WAIT"):
                    # the next pass's setup is still running (a pass shorter than its setup)
                    with m.If(bs.bad):
                        end(err=1)
                    with m.Elif(su.ready):
                        with m.If(su.bad):
                            end(err=1)
                        with m.Else():
                            swap()
                            m.next = "STREAM"
            with m.State("DRAIN"):
                # every issued beat is out and accumulated
                with m.If(bs.bad):
                    end(err=1)
                with m.Elif(~ou.pending & ~self.acc_busy):
                    # one pass at a time: the next is set up now (back to back, a piece's
                    # passes have all streamed)
                    more = Const(0) if b2b else p0 + R < c.npairs
                    with m.If(more):
                        m.d.sync += p0.eq(p0 + R)
                        m.next = "PASS"
                    with m.Elif(piece + 1 == c.pieces):
                        end()
                    with m.Else():
                        m.d.sync += [piece.eq(piece + 1), pieceoff.eq(pieceoff + N)]
                        m.next = "PIECE"
        return m
