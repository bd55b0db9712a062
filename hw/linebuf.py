"""The line buffer (:class:`LineBuffer`) and its writer's gearbox (:class:`RowPacker`).

The line buffer keeps column ``j`` of a row in byte-wide sub-bank ``j mod L``, so ``L``
consecutive columns starting at a multiple of ``L`` (a *block*) are written in one clock.
``LOADA`` reads a run of rows (a channel's band, or one row of a column tile) as bus beats;
:class:`RowPacker` re-cuts that byte stream into blocks: every row starts a new block, and a
row's last block is partial when the row width is not a multiple of ``L`` (its byte enables
say which columns it writes). That moves ``min(L, bus bytes)`` activations per clock instead of
one.

:class:`LineBuffer` holds the rows: ``banks`` (a power of two, at least the row engines) of
byte-wide sub-banks, row ``g`` in bank ``g mod banks``, so the ``R`` engines of a pass, whose
rows the compiler puts in distinct banks, read in the same clock.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from .logic import reset_less_copy

__all__ = ["RowPacker", "LineBuffer"]


class RowPacker(wiring.Component):
    """Bus beats in, line-buffer blocks out.

    Ports
    -----
    clear : In(1)
        Start a transfer of ``nbytes`` bytes (whole rows of ``width``) whose first beat holds
        them from byte ``skip`` on.
    skip, nbytes, width : In
    i : In(stream of [bus_bytes] bytes)
        The read's beats; bytes before ``skip`` in the first beat and after ``nbytes`` in the
        last are dropped. ``i.ready`` is a register: it depends on no input of this clock.
    o : Out(stream of {data: [L] bytes, en: L, row_end: 1})
        Blocks in row order: ``data[j]`` is column ``L * b + j`` of the row, written where
        ``en[j]``; ``row_end`` marks a row's last block (the next block is column 0 of the
        next row).
    idle : Out(1)
        Every byte of the transfer is given out.
    """

    def __init__(self, *, L, bus_bytes, max_width, max_bytes):
        if not isinstance(L, int) or not 1 <= L <= 12:
            raise ValueError(f"L must be 1..12, not {L!r}")
        if bus_bytes not in (1, 2, 4, 8):
            raise ValueError(f"bus_bytes must be 1, 2, 4 or 8, not {bus_bytes!r}")
        self.L, self.nb = L, bus_bytes
        self.max_width, self.max_bytes = max_width, max_bytes
        super().__init__({
            "clear": In(1), "skip": In(range(bus_bytes)), "nbytes": In(range(max_bytes + 1)),
            "width": In(range(max_width + 1)),
            "i": In(stream.Signature(data.ArrayLayout(8, bus_bytes))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(8, L), "en": L, "row_end": 1}))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, nb = self.L, self.nb
        # room for a beat beside what a block leaving this clock frees: `i.ready` is then a
        # register (the room there was before this clock's block left), so no read's
        # handshake runs through the block logic into the read DMA; it takes a beat whenever
        # the room after the block would have taken it
        cap = 2 * L + nb - 1
        buf = [Signal(8, name=f"buf{k}", reset_less=True) for k in range(cap)]   # fill counts
        fill = Signal(range(cap + 1))
        left = Signal(range(self.max_bytes + 1))      # bytes still to take from beats
        out_left = Signal(range(self.max_bytes + 1))  # bytes still to give out
        row_left = Signal(range(self.max_width + 1))  # of the current row
        first = Signal()                              # the next beat is the first
        skip = Signal(range(nb))

        # the block now: up to L bytes, fewer at the end of a row. ``size`` is a register
        # (kept as min(row_left, L) with row_left), and the sums below are formed for both
        # outcomes of ``emit`` and chosen by it last: the handshake's `emit` and the counts'
        # arithmetic run side by side into `ready` and the buffer, not one after the other
        size = Signal(range(L + 1))
        emit = Signal()
        m.d.comb += emit.eq((~self.o.valid | self.o.ready) & (out_left != 0) & (fill >= size))

        # the beat now: bytes from `lo` on, at most `left` of them
        lo = Signal(range(nb))
        m.d.comb += lo.eq(Mux(first, skip, 0))
        avail = Signal(range(nb + 1))
        m.d.comb += avail.eq(nb - lo)
        got = Signal(range(nb + 1))
        m.d.comb += got.eq(Mux(left < avail, left, avail))
        ready = Signal(init=1)              # (with nothing to take, beats are dropped)
        m.d.comb += [self.i.ready.eq(ready),
                     self.idle.eq((out_left == 0) & ~self.o.valid)]
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready & (left != 0))

        def clamp(v):
            return Mux(v < L, v, L)

        blk = reset_less_copy(m, self.o.payload, name="blk_q")    # data: valid qualifies it
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(emit):
            ends = size == row_left
            after = Signal.like(row_left)
            m.d.comb += after.eq(row_left - size)
            m.d.sync += [self.o.valid.eq(1), out_left.eq(out_left - size),
                         blk.row_end.eq(ends),
                         row_left.eq(Mux(ends, self.width, after)),
                         size.eq(Mux(ends, clamp(self.width), clamp(after)))]
            for j in range(L):
                m.d.sync += [blk.data[j].eq(buf[j]), blk.en[j].eq(j < size)]
        # the buffer moves down by the block that leaves; the beat's bytes land after the rest
        # (at fill - size if a block leaves, else at fill)
        for k in range(cap):
            kept = buf[k]
            for sh in range(1, L + 1):
                if k + sh < cap:
                    kept = Mux(emit & (size == sh), buf[k + sh], kept)
            new = kept
            for b in range(nb):
                for s in range(nb):                    # byte b of the beat, s bytes skipped
                    pos = k - (b - s)                  # lands at rest + b - s
                    if b >= s and 0 <= pos <= cap - nb:
                        at = Mux(emit, fill - size == pos, fill == pos)
                        new = Mux(take & (lo == s) & at, self.i.payload[b], new)
            m.d.sync += buf[k].eq(new)
        left_next = Mux(take, left - got, left)
        plus = Signal(range(cap + nb + 1))             # the fill with the beat, before a block
        m.d.comb += plus.eq(fill + Mux(take, got, 0))
        room = Mux(emit, plus + nb <= cap + size, plus + nb <= cap)
        with m.If(take):
            m.d.sync += [left.eq(left_next), first.eq(0)]
        m.d.sync += [fill.eq(Mux(emit, plus - size, plus)),
                     ready.eq((left_next == 0) | room)]
        with m.If(self.clear):
            m.d.sync += [fill.eq(0), left.eq(self.nbytes), out_left.eq(self.nbytes),
                         ready.eq(1), size.eq(clamp(self.width)),
                         row_left.eq(self.width), first.eq(1), skip.eq(self.skip),
                         self.o.valid.eq(0)]
        return m


class LineBuffer(wiring.Component):
    """Rows of activations for the row engines: written a block a clock, read a beat a clock.

    A row takes a power of two of block addresses (``blocks`` rounded up), so a row's address
    is a shift, not a multiplication. A beat reads, for each of the ``R`` engines, ``L``
    consecutive columns of its row from any column: column ``c`` is in sub-bank ``c mod L`` at
    block ``c // L``, so sub-bank ``j`` reads block ``blk + (j < rot)`` of a beat that starts at
    column ``L * blk + rot``, and the ``L`` bytes are rotated into column order. Padding is
    made at read time: a column outside ``[0, width)`` or a row the engine does not ``use``
    reads as ``zero``, so maps are dense in memory.

    Parameters
    ----------
    L, engines, banks, slots, blocks : int
        Columns per block, row engines ``R``, banks (a power of two ≥ ``R``), rows per bank,
        blocks per row.
    act_shape : shape
        An activation (the FCU's input).
    col_shape : shape
        The signed column a beat starts at (padding puts it below 0 or past ``width``).
    tags : int
        Values of the tag a beat carries through (the FCUs' weight bank).

    Ports
    -----
    w : In(stream of {row, blk, data: [L] bytes, en: L}), always ready
        Write column ``L * blk + j`` of line-buffer row ``row`` with ``data[j]`` where ``en[j]``.
    r : In(stream of {row: [R], use: R, act: R, blk, rot, col, tag}), always ready
        A beat: engine ``e`` reads columns ``col .. col + L - 1`` of row ``row[e]`` (its low
        :attr:`row_bits` bits) where ``use[e]``; ``col = L * blk + rot`` (the sequencer keeps
        both, so neither a division nor a product by ``L`` is on the read path), ``blk`` modulo
        the block addresses. An engine without ``act`` gets zeros (it takes no part in the pass).
        The banks the engines that ``use`` their rows read must be distinct.
    width : In
        Columns of the map (``A_W``), sampled with each beat.
    zero : In(act_shape)
        The value of a column outside the map or a row not used (the input's zero point),
        sampled with each beat.
    o : Out(stream of {x: [R] of [L] activations, tag}), always ready
        The beat, two clocks after ``r``: a clock for the memories, a clock for the rotation
        and the bank of each engine (registered: the FCUs take it without an input register).
    """

    def __init__(self, *, L, engines, banks, slots, blocks, act_shape, col_shape, tags=1):
        if banks & (banks - 1) or banks < engines:
            raise ValueError(f"banks={banks}: must be a power of two, at least engines="
                             f"{engines}")
        self.L, self.R, self.B, self.slots, self.tags = L, engines, banks, slots, tags
        self.blk_bits = max(1, (blocks - 1).bit_length())
        self.bank_bits = (banks - 1).bit_length()
        self.depth = slots << self.blk_bits
        #: bits of a row index the buffer looks at (bank and slot): rows are modulo 2**row_bits
        self.row_bits = self.bank_bits + max(1, (self.depth - 1).bit_length()) - self.blk_bits
        self.act_shape = act_shape
        super().__init__({
            "w": In(stream.Signature(data.StructLayout({
                "row": self.row_bits, "blk": self.blk_bits, "data": data.ArrayLayout(8, L),
                "en": L}), always_ready=True)),
            "r": In(stream.Signature(data.StructLayout({
                "row": data.ArrayLayout(self.row_bits, engines), "use": engines,
                "act": engines, "blk": self.blk_bits, "rot": range(L), "col": col_shape,
                "tag": range(tags)}), always_ready=True)),
            "width": In(16),
            "zero": In(act_shape),
            "o": Out(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(data.ArrayLayout(act_shape, L), engines),
                "tag": range(tags)}), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        L, R, B, bb = self.L, self.R, self.B, self.bank_bits
        slot_bits = self.row_bits - bb
        mems = [[Memory(shape=unsigned(8), depth=self.depth, init=[]) for _ in range(L)]
                for _ in range(B)]
        wp, rp = [], []
        for k in range(B):
            for j in range(L):
                m.submodules[f"lb{k}_{j}"] = mems[k][j]
            wp.append([mems[k][j].write_port() for j in range(L)])
            rp.append([mems[k][j].read_port(transparent_for=()) for j in range(L)])

        # ---- write: a block of one row, the columns its enables name
        w = self.w.payload
        for k in range(B):
            for j in range(L):
                m.d.comb += [wp[k][j].addr.eq(Cat(w.blk, w.row[bb:])),
                             wp[k][j].data.eq(w.data[j]),
                             wp[k][j].en.eq(self.w.valid & ((w.row[:bb] == k) if bb else 1)
                                            & w.en[j])]

        # ---- read, stage 0: addresses. The column block depends only on the sub-bank
        # (shared by every bank), the slot only on the bank (the engine that reads it, at most
        # one; none: 0)
        r = self.r.payload
        for k in range(B):
            slot = Signal(slot_bits, name=f"slot{k}")
            sel = Const(0, slot_bits)
            for e in range(R):
                mine = r.use[e] & ((r.row[e][:bb] == k) if bb else 1)
                sel = sel | Mux(mine, r.row[e][bb:], 0)
            m.d.comb += slot.eq(sel)
            for j in range(L):
                m.d.comb += rp[k][j].addr.eq(Cat((r.blk + (j < r.rot))[:self.blk_bits], slot))

        # stage 1: the memories' data, with what the beat needs to pick from it
        s1_valid = Signal()
        s1_bank = [Signal(max(1, bb), name=f"s1_bank{e}") for e in range(R)]
        s1_use = Signal(R)
        s1_act = Signal(R)
        s1_colok = Signal(L)
        s1_rot = Signal(range(L))
        s1_tag = Signal(range(self.tags))
        s1_zero = Signal(self.act_shape)
        m.d.sync += s1_valid.eq(self.r.valid)
        with m.If(self.r.valid):
            m.d.sync += [s1_use.eq(r.use), s1_act.eq(r.act), s1_rot.eq(r.rot), s1_tag.eq(r.tag),
                         s1_zero.eq(self.zero)]
            for e in range(R):
                m.d.sync += s1_bank[e].eq(r.row[e][:bb] if bb else 0)
            for q in range(L):
                col = r.col + q
                m.d.sync += s1_colok[q].eq((col >= 0) & (col < self.width))

        # stage 1 -> 2: rotate each bank's sub-banks into column order (the rotation is
        # common to all engines), then pick each engine's bank: B*L L-way and R*L B-way byte
        # multiplexers instead of R*L (B*L)-way ones
        rot = []
        for q in range(L):
            idx = Signal(range(L), name=f"s1_idx{q}")
            m.d.comb += idx.eq(Mux(s1_rot + q >= L, s1_rot + q - L, s1_rot + q))
            per_bank = []
            for k in range(B):
                b = Signal(8, name=f"s1_rot{k}_{q}")
                m.d.comb += b.eq(Array(rp[k][j].data for j in range(L))[idx])
                per_bank.append(b)
            rot.append(Array(per_bank))
        m.d.sync += [self.o.valid.eq(s1_valid)]
        beat = reset_less_copy(m, self.o.payload, name="beat_q")   # data: valid qualifies it
        with m.If(s1_valid):
            m.d.sync += beat.tag.eq(s1_tag)
            for e in range(R):
                for q in range(L):
                    byte = rot[q][s1_bank[e] if bb else 0]
                    val = Mux(s1_use[e] & s1_colok[q], byte, s1_zero)
                    m.d.sync += beat.x[e][q].eq(Mux(s1_act[e], val, 0))
        return m
