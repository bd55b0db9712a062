"""The convolution sequencer: a checked ``CONV`` command → passes of beats for the line buffer
and the FCU array, the weights of each pass, and where each output beat accumulates.

A ``CONV`` sums ``npairs`` (input channel, kernel row) *pairs*, ``R`` per *pass* (one per row
engine), for each ``N``-tap column *piece* of the kernel. A pass streams ``ny`` output rows of
``bk`` beats (``D`` leading blocks the FFA needs, then ``wob`` stored ones); each beat reads
every engine's ``L`` columns from the line buffer. Before a pass its *setup* assigns each
engine its pair (a clock an engine) and writes the pass's weight set from the weight buffer
into the FCUs. With ``back_to_back`` the setup of the next pass runs while the current one
streams (into shadow registers and the FCUs' idle weight bank) and the two swap at its last
beat, so a piece's passes stream without a gap; otherwise each pass is set up, streamed and
drained in turn.

The output side counts the beats as they come out of the FCUs (a pass's ``ny * bk``, in
order), so it needs no signal from the stream side; the first pass of a command without
``ACCUMULATE`` overwrites the accumulators, the others add.
"""

from math import ceil

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Reg, reg_bits
from .logic import ge_const, lt_const

__all__ = ["ConvSequencer", "conv_command_layout", "conv_bounds"]


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
                m.d.sync += [self.act[r].eq(act_now), self.G[r].eq(cbase + pc - c.pt - c.hb0),
                             self.h0[r].eq(pc - c.pt)]
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
        cfg = self.cfg
        fc = cfg.fcu
        b2b = cfg.back_to_back
        NBANK = 3 if b2b else 1
        L, R, N = fc.L, fc.rows, fc.piece_taps
        g = conv_bounds(cfg)
        K0, n_pairs, n_kw, col_lo = g["K0"], g["n_pairs"], g["n_kw"], g["col_lo"]
        c = self.cmd.payload
        lb = self.lb.payload
        GW = len(lb.row[0])

        # ---- the command's state
        piece = Signal(range(cfg.max_kernel + 1))
        pieceoff = Signal(range(n_kw + 1))      # the piece's first kernel column
        colv = Signal(range(n_kw + L * K0 + 1))
        colblk0 = Signal(range(-K0, n_kw + L * K0 + 1))
        rot = Signal(range(L))
        col0 = Signal(range(-col_lo, n_kw + 1))     # a row's first column (L * colblk0 + rot)
        p0 = Signal(range(n_pairs + R + 1))         # the streaming pass's first pair
        wset = Signal(range(cfg.wb_sets + 2))       # the next pass's weight set
        first = Signal()                            # the pass coming out overwrites
        # the engines of the streaming pass: which run, their rows (g, a line-buffer row
        # modulo 2**GW: every row read is in [0, lb_rows), bad_row checks it) and their rows'
        # offsets from the output row (h0)
        # the pass being set up (PassSetup): the engine assignment and the weights of the pass
        # starting at pair su.p0. With back_to_back it fills its registers (a shadow of the
        # streaming pass's) and the FCUs' idle weight bank while the current pass streams;
        # swap() makes it current. Otherwise its registers are the streaming pass's, and it
        # writes them and the one bank between passes.
        su = m.submodules.setup = PassSetup(cfg, GW)
        su_next = Signal()              # a set-up pass waits to be swapped in (back_to_back)
        m.d.comb += su.cmd.eq(c)
        if b2b:
            eng_act = Signal(R)
            eng_G = [Signal(GW, name=f"eng{r}_G") for r in range(R)]
            eng_h0 = [Signal(signed(10), name=f"eng{r}_h0") for r in range(R)]
            slots = Signal(32)
        else:
            eng_act, slots = su.act, su.slots
            eng_G = [su.G[r] for r in range(R)]
            eng_h0 = [su.h0[r] for r in range(R)]
        # the FCU weight bank of the streaming pass (back_to_back: three, in turn). A beat's
        # products read its bank 3 clocks after its issue (line buffer, stage 2, the engine's
        # pre-add); the setup writes the bank after the streaming one, which the pass before
        # the last used, at the earliest 2 clocks after the swap that ended that pass (its
        # last beat was issued a pass, 2 clocks at least, before that swap): no wait
        bank = Signal(range(NBANK))
        bank_next = Signal(range(NBANK))
        m.d.comb += bank_next.eq(Mux(bank == NBANK - 1, 0, bank + 1))
        # stream counters: output row (absolute, and in the pass), beat in the row, column
        st_y = Signal(16)
        st_yl = Signal(range(cfg.acc_blocks + 1))
        st_b = Signal(range(g["n_blk"] + 1))
        st_col = Signal(range(-col_lo, g["n_col"] + 1))
        # output counters
        ot_b = Signal(range(g["n_blk"] + 1))
        ot_yl = Signal(range(cfg.acc_blocks + 1))
        ot_base = Signal(range(cfg.acc_blocks + 1))
        ot_pend = Signal(range(2 * (fc.latency + 4)))   # beats issued, not yet out

        # ---- beats: every engine's row at output row st_y, the columns from st_col
        issue = Signal()
        bad_row = Signal()
        # a beat that read a row outside the loaded band stops the command a clock later
        # (in STREAM or DRAIN): the check is off the path to the error registers
        bad_row_q = Signal()
        m.d.sync += bad_row_q.eq(bad_row)
        eng_h = [Signal(signed(18), name=f"eng{r}_h") for r in range(R)]
        eng_ok = Signal(R)
        for r in range(R):
            m.d.comb += [eng_h[r].eq(st_y + eng_h0[r]), lb.row[r].eq(eng_G[r] + st_y),
                         eng_ok[r].eq(eng_act[r] & (eng_h[r] >= 0) & (eng_h[r] < c.h))]
            rel = eng_h[r] - c.hb0
            with m.If(issue & eng_ok[r] & ((rel < 0) | (rel >= c.pitch))):
                m.d.comb += bad_row.eq(1)
        m.d.comb += [self.lb.valid.eq(issue), lb.use.eq(eng_ok), lb.act.eq(eng_act),
                     lb.blk.eq(colblk0 + st_b), lb.rot.eq(rot), lb.col.eq(st_col),
                     lb.tag.eq(bank), self.streaming.eq(issue), self.slots.eq(slots)]

        # ---- outputs: a pass's outputs are ny rows of bk beats; after its last the counters
        # start over for the next pass (back to back, its beats follow at once), and only the
        # first pass of a command without ACCUMULATE overwrites
        m.d.comb += [self.acc_valid.eq(self.o_next & (ot_b >= c.D)),
                     self.acc_addr.eq(ot_base + ot_b - c.D), self.acc_first.eq(first)]
        m.d.sync += ot_pend.eq(ot_pend + issue - self.o_next)
        with m.If(self.o_next):
            with m.If(ot_b == c.bk - 1):
                with m.If(ot_yl == c.ny - 1):
                    m.d.sync += [ot_b.eq(0), ot_yl.eq(0), ot_base.eq(c.acc), first.eq(0)]
                with m.Else():
                    m.d.sync += [ot_b.eq(0), ot_yl.eq(ot_yl + 1), ot_base.eq(ot_base + c.wob)]
            with m.Else():
                m.d.sync += ot_b.eq(ot_b + 1)

        # ---- pass setup: the weight buffer's word read, written to the FCUs' next bank
        m.d.comb += [self.w_set.eq(su.w_set), su.w_set_busy.eq(self.w_set_busy),
                     self.w_write.eq(su.w_write), self.w_bank.eq(bank_next)]

        def setup(first):
            """Set up the pass starting at pair ``first``: it takes the next weight set."""
            m.d.comb += [su.start.eq(1), su.first.eq(first), su.set.eq(wset)]
            m.d.sync += wset.eq(wset + 1)

        def stream_start():
            m.d.sync += [st_y.eq(c.y0), st_yl.eq(0), st_b.eq(0), st_col.eq(col0)]

        def swap():
            """The set-up pass becomes the streaming one (back_to_back); the setup of the pass
            after it starts, if the piece has one."""
            m.d.sync += [eng_act.eq(su.act), slots.eq(su.slots), p0.eq(su.p0),
                         bank.eq(bank_next)]
            m.d.sync += [eng_G[r].eq(su.G[r]) for r in range(R)]
            m.d.sync += [eng_h0[r].eq(su.h0[r]) for r in range(R)]
            stream_start()
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
                    m.d.sync += [piece.eq(0), pieceoff.eq(0), first.eq(c.overwrite),
                                 wset.eq(c.wset), ot_b.eq(0), ot_yl.eq(0), ot_base.eq(c.acc)]
                    m.next = "PIECE"
            with m.State("PIECE"):
                # the piece's first column, and its block by repeated subtraction (from
                # col0 + L * K0, which K0 makes non-negative for every legal padding)
                c0 = Signal(signed(17))
                m.d.comb += c0.eq(pieceoff - c.pl - Mux(c.mac, 0, g["d"]))
                m.d.sync += [col0.eq(c0), colv.eq(c0 + L * K0), colblk0.eq(-K0), p0.eq(0)]
                m.d.comb += su.restart.eq(1)
                m.next = "DIV"
            with m.State("DIV"):
                with m.If(ge_const(colv, L)):
                    m.d.sync += [colv.eq(colv - L), colblk0.eq(colblk0 + 1)]
                with m.Else():
                    m.d.sync += rot.eq(colv)
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
                        stream_start()
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += issue.eq(1)
                with m.If(bad_row_q):
                    end(err=1)
                with m.Elif(st_b == c.bk - 1):
                    m.d.sync += [st_b.eq(0), st_col.eq(col0), st_y.eq(st_y + 1),
                                 st_yl.eq(st_yl + 1)]
                    with m.If(st_yl == c.ny - 1):
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
                with m.Else():
                    m.d.sync += [st_b.eq(st_b + 1), st_col.eq(st_col + L)]
            if b2b:
                with m.State("WAIT"):
                    # the next pass's setup is still running (a pass shorter than its setup)
                    with m.If(bad_row_q):
                        end(err=1)
                    with m.Elif(su.ready):
                        with m.If(su.bad):
                            end(err=1)
                        with m.Else():
                            swap()
                            m.next = "STREAM"
            with m.State("DRAIN"):
                # every issued beat is out and accumulated
                with m.If(bad_row_q):
                    end(err=1)
                with m.Elif((ot_pend == 0) & ~self.acc_busy):
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
