"""Cycle model of the accelerator's commands (used by the ISS and the compiler's reports).

The RTL controller runs one command at a time (a ``CONV``'s passes overlap each other),
beside a background weight load and a background ``POST`` (their flag ``ASYNC``): the ISS
books an ``ASYNC`` command's issue to it and the clocks a later command waits for it to
that command. The
constants below come from ``benchmarks/calibrate_cycles.py``, which runs micro-programs on
the RTL (Verilator, with cocotbext-axi's ``AxiRam`` as memory) and compares each command's
measured cost with this model; ``tests/test_accel_cocotb.py`` checks whole programs stay
within a few percent.

* a DMA read of ``n`` bytes costs ``n`` cycles (one byte per cycle) plus the bytes skipped
  to reach an unaligned start plus a fixed request/response overhead;
* instructions come from the fetch unit's queue (a clock each, plus decode); the unit
  reads a block of ``fetch_block`` instructions in whole beats when the queue runs empty;
* ``LOADW`` reads int8 taps a bus beat per cycle through the on-chip pre-adder;
* a ``CONV`` pass costs the weight load (one engine's words per cycle, overlapping the
  engine assignment), the FCU pipeline fill/drain and one cycle per streamed beat; with
  ``back_to_back`` only a piece's first pass loads and its last drains, and the passes
  between cost their beats (or their setup, if longer);
* ``POST`` issues one requantization per cycle into a pipeline (k² per output of a k x k
  pool). The byte writer sends a finished word while it collects the next, so POST waits
  only when a byte starts a new word fewer than ``SEND_BUSY`` clocks after the last one did
  (:func:`writer_stalls`), and at the end for the last word's answer.

Of those cycles, the model books as *stall* (the RTL's ``STALL`` counter: waiting for the bus)
a fixed latency per read request and the clocks POST waits for the writer;
:attr:`CycleModel.stall` holds the figure for the last command.
"""

from functools import lru_cache
from math import ceil

import numpy as np

from ffacc.hw.add import ADD_CHUNK, ADD_CHUNK_BEATS
from ffacc.hw.setup import loadw_rows_shift
from ffacc.hw.weights import set_bytes

__all__ = ["CycleModel", "packer_clocks", "writer_stalls"]

READ_OVERHEAD = 6
FETCH = 2           # take an instruction from the fetch queue, decode it
CHAINED = 1         # decode it at once: the queue holds it, the one before ended (hw/control.py)
NEXT = 1            # a command's last state
FETCH_BLOCK = 5
FETCH_INLINE = 14  # no fetch unit: an 8-byte read a byte a clock (hw/fetch.py's ByteFetch),
                   # decode
CONV_FIXED = 9
CONV_HAZARD_AT = 7  # CV_CHECK, CV_M1, CV_M3 (two clocks each), CV_GEOM's product
PASS_OVERHEAD = 6
SETUP_ASSIGN = 0    # back to back, a pass's setup: the engines' assignment (a clock each, the
                    # first in the swap's clock), then the swap
SETUP_WRITE = 2     # ... and its weights: the set's word read, its write to the FCUs
WRITE_END = 3       # the last word: its send and its answer, after POST's last byte
POST_ISSUE = 7      # PO_CHECK .. PO_M2 (the ceil(wout / L) and step loops aside)
POST_HANDOFF = 4    # without ASYNC: the command's transfer and PO_WAIT's end
POST_SEEN = 1       # the post-processor's idle reaches the controller
LOADW_FIXED = 9
LOADW_ISSUE = 4     # ASYNC: LW_CHECK .. LW_REQ, and NEXT
LOADW_ROWS = 2      # ... and W_M1's product, unless the engines are a power of two
LOADW_DRAIN = 2     # ASYNC: the pre-adder's last rows after the read's end
PACK4_EXTRA = 1     # PACK4: the unpacker's register
LOADA_FIXED = 8
LOADQ_FIXED = 8
LOADA_REQUEST = 5
LOADA_BYTE_REQUEST = -1
LOADW_BYTE_FIXED = 4
LOADA_BYTE_FIXED = 8
WORD_BURST = 2
POST_LANE = 8
ADD_AFFINE = 5          # ADD with AFFINE: the affine stage's registers
POST_AFFINE_LANE = 6    # AFFINE: the second record's read, the affine stage's five registers
ADD_FIXED = 12
ADD_CHUNK_COST = 12
ADD_ELEMENT = 3
ADD_BEATS_FIXED = 26    # wide loads: the command's setup, the first chunk's requests, the
                        # pipeline and the writer's end (measured)
ADD_READ_GAP = 6        # ... a chunk's read: its length, request and the DMA's address phase
READ_STALL = 1      # stall cycles per read request (address handshake, first data)
FETCH_STALL = 1
WRITE_END_WAIT = 4  # STALL clocks of the flush: from the flush until the last answer
SEND_BUSY = 2       # clocks the writer's send register holds a word (taken at once)

# ``read_registers``: the read DMA registers a request before it checks it (a clock per read)
# and takes the bus's beats through a two-beat FIFO (a clock per burst, a stall clock), and
# POST registers its accumulator read (a clock per lane). Added to the constants above
READ_REGISTERS = {
    "READ_OVERHEAD": 2, "FETCH_BLOCK": 2, "FETCH_INLINE": 2, "LOADW_FIXED": 2,
    "LOADQ_FIXED": 2, "LOADA_REQUEST": 2, "WORD_BURST": 1, "POST_LANE": 1, "ADD_FIXED": 1,
    "ADD_CHUNK_COST": 4, "ADD_BEATS_FIXED": 5, "ADD_READ_GAP": 2, "READ_STALL": 1,
    "FETCH_STALL": 1,
}


def _packer_block(fill, row_left, out_left, width, L):
    """The row packer's block in a clock: up to ``L`` bytes of the row when it holds them.
    Returns ``(bytes it keeps, row_left, out_left)`` after it."""
    size = min(row_left, L)
    if fill < size:
        return fill, row_left, out_left
    return fill - size, width if size == row_left else row_left - size, out_left - size


@lru_cache(maxsize=1 << 16)       # (the compiler's planner asks the same rows again and again)
def packer_clocks(nbytes, width, L, bus, skip=0, first_beat=0, burst=64, gap=WORD_BURST,
                  unpack=False):
    """Clocks the row packer (:class:`~ffacc.hw.linebuf.RowPacker`) takes to give out the
    blocks of ``nbytes`` (rows of ``width``) from the clock the read's first beat is offered:
    its rules clock by clock (a block of up to ``L`` bytes out when it holds them, a beat in
    when it held at most ``2 L - 1`` bytes at the clock's start: its ``ready`` is a register),
    the first beat's bytes from ``skip`` on, the beats back to back but ``gap`` clocks apart
    where a burst of ``burst`` beats (aligned to its length; ``first_beat`` is the read's
    first beat's place in its burst) ends.

    ``unpack``: the read holds 4-bit codes (``LOADA`` flag ``DECODE``); ``nbytes``, ``width``
    and ``skip`` count codes. The :class:`~ffacc.hw.codes.CodeUnpacker` takes a bus beat into
    its register when it is empty or gives out its last half, and offers the packer the
    beat's halves from the clock after; a read from the second half of its first beat starts
    there."""
    fill, left, out_left, row_left = 0, nbytes, nbytes, width
    lo, beat, offered, clk = skip, first_beat, 0, 0
    # the unpacker: bus beats still to come, whether it holds one, and which half is next
    mem_left = -(-(skip + nbytes) // (2 * bus)) if unpack else 0
    full = half = 0
    skip_half = unpack and skip >= bus
    if skip_half:
        lo = skip - bus
    while out_left:
        room = left and fill <= 2 * L - 1       # (the packer's ready: this clock's start)
        rest, row_left, out_left = _packer_block(fill, row_left, out_left, width, L)
        got = 0
        if not unpack:
            if room and clk >= offered:
                got = min(left, bus - lo)
                left, lo, beat = left - got, 0, beat + 1
                offered = clk + 1 + (gap if beat % burst == 0 else 0)
        else:
            taken = full and (room or not left)
            release = taken and half
            if taken and left:
                got = min(left, bus - lo)
                left, lo = left - got, 0
            if taken:
                half ^= 1
                full = 0 if release else full
            if (not full or release) and mem_left and clk >= offered:
                first = beat == first_beat
                full, half, mem_left, beat = 1, int(first and skip_half), mem_left - 1, beat + 1
                offered = clk + 1 + (gap if beat % burst == 0 else 0)
        fill = rest + got
        clk += 1
    return clk


@lru_cache(maxsize=1 << 16)
def decimated_packer_clocks(nbytes, width, L, bus, step, skip=0, first_beat=0, burst=64,
                            gap=WORD_BURST):
    """Clocks a read of ``nbytes`` from byte ``skip`` of its first beat takes through the
    :class:`~ffacc.hw.decimate.ColumnDecimator` (every ``step``-th byte, ``step > 1``) and the
    row packer, for one row of ``width`` kept bytes, from the clock its first beat is offered:
    the decimator takes a beat when its output register is empty or being taken, and gives
    out one after ``step`` beats (or the read's last); the packer as in
    :func:`packer_clocks`."""
    fill, left, out_left, row_left = 0, width, width, width
    lo = skip // step                   # the first kept byte's place in the decimated beat
    raw_left = -(-(skip + nbytes) // bus)
    ov = slot = clk = offered = 0
    beat = first_beat
    while out_left:
        ready = not left or fill <= 2 * L - 1
        rest, row_left, out_left = _packer_block(fill, row_left, out_left, width, L)
        got = 0
        if ov and ready and left:
            got = min(left, bus - lo)
            left, lo = left - got, 0
        nov = ov and not ready
        if raw_left and (not ov or ready) and clk >= offered:
            raw_left, beat = raw_left - 1, beat + 1
            offered = clk + 1 + (gap if beat % burst == 0 else 0)
            if slot == step - 1 or not raw_left:
                nov, slot = 1, 0
            else:
                slot += 1
        ov = nov
        fill = rest + got
        clk += 1
    return clk


def writer_stalls(words, per_byte=1, fifo=False):
    """Clocks a stream of bytes waits for the byte writer: ``(clocks POST waits, clocks the
    STALL counter counts)``.

    ``words``: the bus word of each byte, one row per POST lane, in write order; the bytes
    of a row come ``per_byte`` clocks apart (k² for an output of a k x k pool), and rows far
    apart (a lane's setup). A byte in another word than the byte before it (the last lane's
    last byte, for a lane's first) hands a word to the send register, which is free again
    ``SEND_BUSY`` clocks later. ``fifo`` (the configuration's ``write_slice``): the bytes go
    through a two-entry FIFO, which hides a clock of a lane that waits two or more, and the
    writer, which holds a byte it cannot take yet, counts two more.
    """
    w = np.asarray(words)
    if w.ndim < 2 or w.size < 2:
        return 0, 0
    new = np.zeros(w.shape, bool)
    new[:, 1:] = w[:, 1:] != w[:, :-1]
    new[1:, 0] = w[1:, 0] != w[:-1, -1]
    lane, j = np.nonzero(new)
    gap = np.diff(j) * per_byte
    same_lane = lane[1:] == lane[:-1]
    waits = np.bincount(lane[1:][same_lane], np.maximum(SEND_BUSY - gap[same_lane], 0),
                        minlength=w.shape[0]).astype(np.int64)
    deep = (waits >= 2) if fifo else 0
    return int((waits - deep).sum()), int((waits + deep).sum())


class CycleModel:
    """Estimated cycles per command for one configuration."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.bus = cfg.bus_bytes
        self.stall = 0
        # the constants that ``read_registers`` changes, as this configuration has them
        for name, extra in READ_REGISTERS.items():
            setattr(self, name, globals()[name] + extra * cfg.read_registers)

    def read(self, nbytes, start=0):
        """A DMA read of ``nbytes`` starting at byte address ``start``."""
        self.stall += self.READ_STALL
        return nbytes + start % self.bus + self.READ_OVERHEAD

    @property
    def fetch(self):
        if not self.cfg.fetch_block:        # the controller reads the instruction itself
            self.stall += self.FETCH_STALL
            return self.FETCH_INLINE
        return FETCH

    def decode(self, chained):
        """An instruction's fetch and decode (a command's own clocks come after):
        ``chained``, decoded in the clock after the one before it ends (the fetch unit's
        queue holds it, and it need not wait), or fetched first."""
        return CHAINED if chained else self.fetch

    @property
    def next(self):
        return NEXT

    def _extra_bursts(self, start, beats):
        """Clocks lost to the bursts beyond the first of a read of ``beats`` whole beats at
        byte ``start`` (bursts are aligned to their length); integers, or numpy arrays of
        reads, elementwise."""
        bl = self.cfg.burst_beats
        return self.WORD_BURST * (-(-(start // self.bus % bl + beats) // bl) - 1)

    def fetch_block(self, n, pc, first=False):
        """The fetch unit reads ``n`` instructions at ``pc`` (whole beats, one per clock, in
        bursts aligned to their length); the first block after a (re)start waits a clock for
        its registered length."""
        beats = n * 8 // self.bus
        extra = self._extra_bursts(pc, beats)
        self.stall += self.FETCH_STALL + extra
        return self.FETCH_BLOCK + beats + extra + bool(first)

    def loada(self, starts, nbytes, width, decode=False, step=1):
        """One read of ``nbytes`` (whole rows of ``width``) at each address of ``starts``, in
        whole beats through the row packer, which writes a line-buffer block a clock.
        ``decode``: the bytes hold 4-bit codes, rows of ``ceil(width / 2)`` bytes, which the
        packer gets as levels, a row of ``width`` rounded up to even. ``step > 1``
        (``A_CSHIFT``): each read is one row whose every ``step``-th byte is kept, through
        the column decimator."""
        c = self.cfg
        if not c.wide_loads:           # the reader's byte stream, a byte a clock
            return LOADA_BYTE_FIXED + sum(self.read(nbytes, s) + LOADA_BYTE_REQUEST
                                          for s in starts)
        total = LOADA_FIXED
        for s in starts:
            beats = -(-(s % self.bus + nbytes) // self.bus)
            self.stall += self.READ_STALL + self._extra_bursts(s, beats)
            # the request, then the beats through the packer (and the decimator, step > 1),
            # clock by clock (measured)
            first = s // self.bus % c.burst_beats
            if step > 1:
                total += self.LOADA_REQUEST + decimated_packer_clocks(
                    nbytes, width, c.L, self.bus, step, s % self.bus, first, c.burst_beats,
                    self.WORD_BURST)
                continue
            k = 2 if decode else 1
            total += self.LOADA_REQUEST + packer_clocks(
                k * nbytes, width + width % k, c.L, self.bus, k * (s % self.bus), first,
                c.burst_beats, self.WORD_BURST, decode)
        return total

    def loadw(self, nsets, start=0, mac=False, packed=False):
        """``nsets`` int8 weight sets read in whole beats (a beat per clock, bursts aligned to
        their length) through the on-chip pre-adder, which gives out an engine per clock;
        ``packed`` (PACK4): half the bytes, each beat unpacked in two clocks."""
        c = self.cfg
        nbytes = nsets * set_bytes(c.fcu, c.lanes, mac)
        if not c.wide_loads:           # the reader's byte stream, a byte a clock
            return LOADW_BYTE_FIXED + self.read(nbytes, start)
        if packed:
            nbytes = (nbytes + 1) // 2
        beats = -(-nbytes // self.bus)
        extra = self._extra_bursts(start, beats)
        self.stall += self.READ_STALL + extra
        fixed = self.LOADW_FIXED + self._loadw_rows()
        if packed:
            return fixed + PACK4_EXTRA + max(2 * beats + extra, nsets * c.rows)
        return fixed + max(beats + extra, nsets * c.rows)

    def _loadw_rows(self):
        """LOADW's setup clocks for its engine count (wide loads): a shift, or a product."""
        return 0 if loadw_rows_shift(self.cfg) is not None else LOADW_ROWS

    def loadw_async(self, nsets, start=0, mac=False, packed=False):
        """A ``LOADW`` with flag ``ASYNC`` (weight_prefetch): ``(issue, read_end, end)``, the
        clocks of the instruction itself and, from its decode, the clocks to the end of its
        read (the DMA is free) and to its last row in the buffer."""
        end = self.loadw(nsets, start, mac, packed)
        return LOADW_ISSUE + self._loadw_rows(), end - LOADW_DRAIN, end

    def prefetch_wait(self, left):
        """Clocks a command waits for a background ``LOADW`` that has ``left`` clocks to
        run."""
        return max(0, left)

    def loadq(self, n, start=0):
        """``n`` records of 12 bytes: a byte a clock, or with wide loads in whole beats, a
        beat a clock, its words one a clock into the buffer (the last beat's extra word
        too)."""
        c = self.cfg
        if not c.wide_loads:
            return 1 + self.read(n * 12, start)
        beats = -(-n * 12 // self.bus)
        words = self.bus // 4
        extra = self._extra_bursts(start, beats)
        self.stall += self.READ_STALL + extra
        return self.LOADQ_FIXED + max(beats + extra, beats * words) - (words - 1)

    def conv(self, g, ny, passes, pl=0, blocks=None):
        c = self.cfg
        # the accelerator's FCUs have no input register (its line-buffer pipeline registers
        # their inputs): one clock less than the unit's latency. A pass streams its rows
        # as a chain (chain_rows: each but the last pb beats) or each on its own (pb = bk)
        beats = g.pass_beats(ny)
        if c.back_to_back:
            # a piece's first pass is set up, and its last drained, as one pass alone; the
            # passes between follow each other at once unless one is shorter than the next
            # one's setup (an engine's assignment a clock, the first in the clock the setup
            # starts; the weights, all at once, the clock after; the pass starts in the clock
            # its weights are written)
            setup = max(c.rows + SETUP_ASSIGN, SETUP_WRITE)
            per_pass = setup + c.fcu.latency - 2 + PASS_OVERHEAD
            period = beats if beats >= setup else max(beats + 1, setup)
            return (self.conv_fixed(g, pl, blocks) + g.pieces * (per_pass - 1 + beats)
                    + (passes - g.pieces) * period)
        # one pass at a time: its setup assigns an engine a clock and writes all their
        # weights at once, a clock later (two at least)
        per_pass = max(c.rows, 2) + c.fcu.latency - 2 + PASS_OVERHEAD
        return self.conv_fixed(g, pl, blocks) + passes * (per_pass + beats)

    def conv_hazard_at(self, g, blocks=None):
        """Clocks from a ``CONV``'s decode to its check of the accumulator blocks (CV_M4),
        where it waits for a background ``POST`` that reads them."""
        return CONV_HAZARD_AT + max(g.wob if blocks is None else blocks, g.pieces)

    def conv_fixed(self, g, pl, blocks=None):
        """CONV's cycles before and between its passes. ``blocks``: the clocks
        :class:`~ffacc.hw.setup.RowBlocks` counts ``ceil(wout / L)`` (None: ``wob``, from
        zero; 0 when it holds that count from the command before)."""
        c = self.cfg
        L = c.L
        # per piece, CV_PIECE and CV_DIV: the first column's block by repeated subtraction
        # from col0 + L * K0 (K0 makes it non-negative for every legal padding)
        d = (-(c.fcu.piece_taps - 1)) % L
        k0 = -(-(c.max_kernel - 1 + d) // L) + 1
        pieces = sum(2 + (p * g.N - pl - g.d + L * k0) // L for p in range(g.pieces))
        # CV_GEOM finds ceil(wout / L) and the pieces by repeated addition
        return CONV_FIXED + max(g.wob if blocks is None else blocks, g.pieces) + pieces

    def post(self, lanes, subs_per_lane, wob, stride, write_stalls=(0, 0), blocks=None,
             affine=False):
        """``POST``: the controller's part (:meth:`post_issue`), then the post-processor's
        (:meth:`post_run`) while the controller waits."""
        return self.post_issue(wob, stride, blocks) + POST_HANDOFF + self.post_run(
            lanes, subs_per_lane, write_stalls, affine)

    def post_issue(self, wob, stride, blocks=None):
        """The controller's clocks of a ``POST``: its checks and geometry (``ceil(wout / L)``
        and the step's blocks by repeated addition and subtraction), then the command to the
        post-processor. With flag ``ASYNC`` that is all of it. ``blocks``: as for
        :meth:`conv_fixed`."""
        return POST_ISSUE + (wob if blocks is None else blocks) + stride // self.cfg.L

    def post_run(self, lanes, subs_per_lane, write_stalls=(0, 0), affine=False):
        """The post-processor's clocks, from taking the command to the last write's
        answer: per lane the record's read and one sub-element (k² per output of a k x k
        pool) per clock through the pipeline, the clocks it waits for the byte writer
        (:func:`writer_stalls`: those it waits, those the STALL counter counts), and the last
        word's write. ``affine`` (flag ``AFFINE``): per lane the second record's read and
        the affine stage's registers."""
        waits, counted = write_stalls
        self.stall += counted + WRITE_END_WAIT
        # act_codes: the output stage's three registers (a lane ends when it is empty)
        per_lane = (self.POST_LANE + self.cfg.qparams_in_registers + 3 * self.cfg.act_codes
                    + POST_AFFINE_LANE * bool(affine) + subs_per_lane)
        return lanes * per_lane + waits + WRITE_END

    def post_wait(self, left):
        """Clocks a command waits for a background ``POST`` that has ``left`` clocks to
        run (it sees the post-processor idle a clock after the last write's answer)."""
        return max(0, left + POST_SEEN)

    def add(self, n, a=0, b=0, affine=False):
        """``n`` elements of operands at ``a`` and ``b``. With wide loads: chunks of
        ``ADD_CHUNK_BEATS`` beats' worth of elements, each operand's read in whole beats
        (from the beat its first byte is in); the elements go out a clock each once the first
        chunk of ``a`` is in and ``b``'s has begun, the later chunks read meanwhile (a chunk
        whose two reads take longer than its elements holds them up). Without: chunks of
        ``ADD_CHUNK`` elements, per chunk its two reads' requests, the bytes before each
        operand's start in its first beat (the reader skips them a clock each) and the
        pipeline's drain, per element its two bytes read (a byte a clock) and a clock in the
        pipeline (the writer never holds it up). ``affine`` (flag ``AFFINE``): the affine
        stage's registers after the last element."""
        c = self.cfg
        if not c.wide_loads:
            chunks = ceil(n / ADD_CHUNK)
            self.stall += 2 * chunks * self.READ_STALL + WRITE_END_WAIT
            return (self.ADD_FIXED + 3 * c.act_codes + ADD_ELEMENT * n
                    + chunks * (self.ADD_CHUNK_COST + a % self.bus + b % self.bus))
        nb = self.bus
        size = ADD_CHUNK_BEATS * nb
        self.stall += WRITE_END_WAIT
        fixed = self.ADD_BEATS_FIXED + 3 * c.act_codes + ADD_AFFINE * bool(affine)
        if n == 0:
            return fixed
        # every chunk's two reads at once: its elements, and per operand its beats and the
        # bursts beyond the first (bursts are aligned to their length)
        off = np.arange(0, n, size, dtype=np.int64)
        k = np.minimum(size, n - off)
        pair = np.zeros(len(off), np.int64)
        first = 0
        for i, base in enumerate((a, b)):
            start = base + off
            beats = -(-(start % nb + k) // nb)
            extra = self._extra_bursts(start, beats)
            self.stall += int(self.READ_STALL * len(off) + (extra // self.WORD_BURST).sum())
            pair += self.ADD_READ_GAP + beats + extra
            if i == 0:
                first = int(beats[0] + extra[0])    # the first chunk of a, before any element
        return fixed + first + n + int(np.maximum(0, pair[1:] - size).sum())
