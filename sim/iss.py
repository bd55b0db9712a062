"""Instruction-set simulator: runs firmware bit-exactly as the RTL does, with a cycle estimate.

This is the executable specification of :mod:`ffacc.firmware.isa`. State: byte-addressed
memory, parameter registers, line buffer, weight buffer, quantization-parameter buffer and the
int32 accumulators. ``CONV`` runs the FFA datapath model (:meth:`ffacc.hw.ffa.FFA.filter_blocks`)
on the pre-added weights exactly as the row engines see them, including the order of rows in a
pass, so the accumulators match the RTL in every element.
"""

from dataclasses import dataclass, field, replace
from math import ceil

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import threadpool_limits

from ffacc.hw.fetch import block_length
from ffacc.hw.ffa import exact_matmul
from ffacc.hw.weights import preadd_set, set_bytes, unpack4
from ffacc.sim.cycles import CycleModel, writer_stalls
from ffacc.firmware.checks import CheckError, enforce
from ffacc.firmware.isa import (INSTR_BYTES, LOOP_MAX, NUM_REGS, QPARAM_WORDS, ConvFlag, Err,
                                unpack_affine, unpack_qparam,
                                LoadWFlag, Op, WAITS_FOR_LOADER, WAITS_FOR_POST, reg_bits, simm,
                                PostFlag, Reg, decode, LEVEL_REGS, LOAD_LEVEL_REGS, LoadAFlag,
                                unpack_levels)
from ffacc.sim import golden

__all__ = ["ISS", "RunResult", "conv_geometry", "row_pitch", "AccelError", "BudgetExceeded"]

INT32 = 1 << 32


class AccelError(RuntimeError):
    """The accelerator stopped with an error status (code, pc)."""

    def __init__(self, code, pc, detail=""):
        self.code, self.pc, self.detail = Err(code), pc, detail
        super().__init__(f"accelerator error {Err(code).name} at pc 0x{pc:08x}"
                         + (f": {detail}" if detail else ""))


class BudgetExceeded(RuntimeError):
    """A run needed more than the instruction or cycle budget given to :meth:`ISS.run`.

    Not an accelerator error: the program was stopped by the caller's budget. ``kind`` is
    ``"instruction"`` or ``"cycle"``, ``limit`` the budget, ``pc`` where the run stopped and
    ``result`` the :class:`RunResult` so far.
    """

    def __init__(self, kind, limit, pc, result):
        self.kind, self.limit, self.pc, self.result = kind, limit, pc, result
        super().__init__(f"{kind} budget of {limit:,} reached at pc 0x{pc:08x} "
                         f"({result.instructions:,} instructions, {result.cycles:,} cycles "
                         f"without END)")


@dataclass
class RunResult:
    status: str                      # "done" or "error"
    error: int = 0
    error_pc: int = 0
    detail: str = ""
    instructions: int = 0
    cycles: int = 0
    per_instruction: list = field(default_factory=list)   # (pc, op name, cycles, stall cycles)
    # bytes the run moves over the bus, by pc: [code, weights and parameters, activations
    # read, activations written] (the bytes commands need: a read in whole beats reads more)
    traffic: dict = field(default_factory=dict)


def _wrap32(v):
    v = np.asarray(v, dtype=np.int64) & (INT32 - 1)
    return np.where(v >= 1 << 31, v - INT32, v)


@dataclass(frozen=True)
class ConvGeometry:
    N: int          # taps per piece
    mac: bool
    pieces: int
    d: int          # extra samples read before the first column
    D: int          # leading output blocks not stored
    wob: int        # stored blocks per output row
    bk: int         # beats per output row
    passes_per_piece: int
    pb: int         # beats of each output row but a pass's last (chain_rows; else bk)

    def pass_beats(self, ny):
        """Beats of a pass over ``ny`` output rows."""
        return (ny - 1) * self.pb + self.bk if ny else 0


def row_pitch(cfg, g, wout, width, pl):
    """Beats each output row but a pass's last streams (``chain_rows``): the least
    ``pb >= wob``, below ``bk``, whose ``pb * L`` columns hold a row's data and the ``d``
    samples read before it, and reach past the last column the row's outputs read with every
    tap of its pieces (``pieces * N`` of them: a weight set's taps past ``C_KW`` need not be
    zero), so that its right padding comes from the next row's left margin, which is padding
    too; ``bk`` if there is none, in MAC mode, or without ``chain_rows``. The RTL's
    :class:`~ffacc.hw.setup.ConvSetup` works out the same value."""
    L = cfg.L
    if g.mac or not cfg.chain_rows:
        return g.bk
    for j in range(g.D):
        cols = (g.wob + j) * L
        if cols >= width + pl + g.d and cols + pl + 1 >= wout + g.pieces * g.N:
            return g.wob + j
    return g.bk


def conv_geometry(cfg, kh, kw, wout, npairs, width=None, pl=0):
    """How ``CONV`` cuts a layer into pieces, passes and beats (shared by ISS, RTL, compiler).
    With the map's ``width`` and left padding ``pl``, ``pb`` is :func:`row_pitch`'s; without,
    ``bk`` (every row streamed on its own: never fewer beats than the RTL's)."""
    L, N = cfg.L, cfg.fcu.piece_taps
    mac = kw == 1
    pieces = 1 if mac else ceil(kw / N)
    d = 0 if mac else (-(N - 1)) % L
    D = 0 if mac else (N - 1 + d) // L
    wob = ceil(wout / L)
    g = ConvGeometry(N, mac, pieces, d, D, wob, D + wob, ceil(npairs / cfg.rows), D + wob)
    if width is None:
        return g
    return replace(g, pb=row_pitch(cfg, g, wout, width, pl))


class ISS:
    """Instruction-set simulator for one :class:`~ffacc.hw.config.AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
    mem_size : int
        Bytes of memory; accesses at or beyond it stop with ``Err.ADDRESS`` (as in the RTL,
        whose ``MEM_SIZE`` register holds the same bound).
    """

    def __init__(self, config, mem_size=1 << 20, timing_only=False):
        self.cfg = c = config
        self.timing_only = timing_only
        self.mem = np.zeros(mem_size, dtype=np.uint8)
        self.regs = [0] * NUM_REGS
        self.reg_bits = reg_bits(c)
        # the accelerator addresses 2**addr_bits bytes: beyond that is outside memory too
        self.mem_limit = min(mem_size, 1 << c.addr_bits)
        L = c.L
        # activations as float64 (exact: bytes), ready for the CONV products in BLAS
        self.lb = np.zeros((c.lb_rows, c.lb_blocks * L), dtype=np.float64)
        self.wb = np.zeros((c.wb_sets, c.weight_words, c.lanes), dtype=np.int64)
        self.qb = np.zeros((c.qb_entries, QPARAM_WORDS), dtype=np.int64)
        self.acc = np.zeros((c.acc_lanes, c.acc_blocks, L), dtype=np.int64)
        self.moved = [0, 0, 0, 0]       # this instruction's bytes (see RunResult.traffic)
        self.now = 0                    # the clock this instruction started (run)
        self.chained = False            # it follows the one before at once (run)
        self.row_blocks = 0             # the count RowBlocks holds (hw/setup.py), ceil(wout/L)
        self.lw_rd_until = self.lw_bg_until = 0
        self.lw_sets = (0, 0)
        self.po_until = 0
        self.po_blocks = self.po_recs = (0, 0)

    # --- memory ----------------------------------------------------------------------------
    def _check(self, addr, n):
        if addr < 0 or addr + n > self.mem_limit:
            raise AccelError(Err.ADDRESS, self.pc, f"bytes [{addr}, {addr + n}) outside memory "
                                                   f"of {self.mem_limit} bytes")

    def _check_read(self, src, nbytes):
        """A load's read of ``nbytes`` at ``src`` (a bus word with wide loads: the command's
        checks): in whole bus words with wide loads, else a byte stream; ADDRESS outside the
        memory."""
        c = self.cfg
        if c.wide_loads:
            nbytes = -(-nbytes // c.bus_bytes) * c.bus_bytes
        self._check(src, nbytes)

    def load(self, addr, data):
        data = np.frombuffer(bytes(data), dtype=np.uint8)
        self._check(addr, len(data))
        self.mem[addr:addr + len(data)] = data

    def read(self, addr, n):
        self._check(addr, n)
        return bytes(self.mem[addr:addr + n])

    def _acts(self, addr, n):
        self._check(addr, n)
        v = self.mem[addr:addr + n]
        return v.view(np.int8).astype(np.int64) if self.cfg.fcu.act_signed else v.astype(np.int64)

    def _words(self, addr, n, dtype):
        size = np.dtype(dtype).itemsize
        self._check(addr, n * size)
        return np.frombuffer(self.mem[addr:addr + n * size].tobytes(), dtype=dtype).astype(np.int64)

    def _s8(self, v):
        """The low byte of ``v`` (an integer or an array) as an activation value: sign-extended
        when activations are signed."""
        x = 0x80 if self.cfg.fcu.act_signed else 0
        return ((v & 0xFF) ^ x) - x

    def _err(self, detail):
        raise AccelError(Err.PARAM, self.pc, detail)

    def _enforce(self, op, ins):
        """The command's checks (:mod:`ffacc.firmware.checks`, the table the RTL's checks are
        generated from): PARAM naming the first that fails."""
        try:
            enforce(op, self.cfg, self.regs, ins.flags)
        except CheckError as e:
            self._err(str(e))

    # --- run -------------------------------------------------------------------------------
    def run(self, prog_base=0, max_instructions=None, max_cycles=None):
        """Execute from ``prog_base`` until ``END`` or an error. Returns a :class:`RunResult`.

        The ISA's only jumps are ``ENDLOOP``s with immediate counts, so every program ends (at
        ``END``, an error, or ``Err.ADDRESS`` when it runs off memory) and there is no limit by
        default.
        ``max_instructions`` / ``max_cycles`` are optional budgets: a run that needs more
        raises :class:`BudgetExceeded`.
        """
        # the products are many small ones: BLAS threads only contend (with pytest-xdist's
        # workers, two per core)
        with threadpool_limits(1, user_api="blas"):
            return self._run(prog_base, max_instructions, max_cycles)

    def _run(self, prog_base, max_instructions, max_cycles):
        self.pc = prog_base
        self.loops = []         # [first pc of the body, iterations left after this one]
        self.jump = None
        res = RunResult("done")
        queued = 0              # instructions in the fetch unit's queue (hw/fetch.py)
        qbase = qlen = 0        # the queue's block: its first instruction's pc, its length
        restart = True          # the fetch unit restarts (a run's start, a loop's jump back)
        ended = False           # the instruction before ended with the next one in the queue
        # a background LOADW (weight_prefetch): the clock its read ends (the fetch unit may
        # ask for a block again), the clock its last row is written, and its sets
        self.lw_rd_until = self.lw_bg_until = 0
        self.lw_sets = (0, 0)
        # a background POST (post_overlap): the clock it ends and its accumulator blocks
        self.po_until = 0
        self.po_blocks = self.po_recs = (0, 0)
        try:
            if prog_base % INSTR_BYTES:
                raise AccelError(Err.ADDRESS, prog_base, f"program base 0x{prog_base:x} is not "
                                                         f"a multiple of {INSTR_BYTES}")
            while True:
                if max_instructions is not None and res.instructions >= max_instructions:
                    raise BudgetExceeded("instruction", max_instructions, self.pc, res)
                self.cost.stall = 0
                self.moved = [0, 0, 0, 0]
                fetch = 0
                fetched = not queued and self.cfg.fetch_block
                if fetched:
                    # the next block is read while the previous instruction's pc is current:
                    # the RTL's profile books it there (after a background LOADW's read)
                    queued = block_length(self.cfg.fetch_block, self.pc, self.mem_limit)
                    qbase, qlen = self.pc, queued
                    self.moved[0] += queued * INSTR_BYTES
                    fetch = (self.cost.fetch_block(queued, self.pc, first=restart)
                             + self.cost.prefetch_wait(self.lw_rd_until - res.cycles))
                    restart = False
                    if res.per_instruction:
                        pc, name, cyc, stall = res.per_instruction[-1]
                        res.per_instruction[-1] = (pc, name, cyc + fetch,
                                                   stall + self.cost.stall)
                        res.cycles += fetch
                        self.cost.stall = fetch = 0
                ins = decode(int.from_bytes(self.read(self.pc, INSTR_BYTES), "little"))
                if not self.cfg.fetch_block:
                    self.moved[0] += INSTR_BYTES        # the controller reads it itself
                # chained decode (hw/control.py): straight from the queue after the one
                # before it ended (not a block's first, nor the first after a loop's jump
                # back), unless it would wait for a background unit in the clock before
                self.chained = bool(self.cfg.fetch_block and ended and not fetched
                                    and not self._waits(ins.op, res.cycles - 1, chain=True))
                queued -= 1
                res.instructions += 1
                self.now = res.cycles + fetch
                self.held = 0
                cyc = fetch + self.step(ins)
                res.cycles += cyc
                if self.held and res.per_instruction:
                    # a wait in FETCH (for a background load or POST): the RTL's profile books
                    # it to the instruction before, whose pc is current until this one leaves
                    # FETCH
                    pc, name, c0, stall = res.per_instruction[-1]
                    res.per_instruction[-1] = (pc, name, c0 + self.held, stall)
                    cyc -= self.held
                res.per_instruction.append((self.pc, Op(ins.op).name, cyc, self.cost.stall))
                t = res.traffic.setdefault(self.pc, [0, 0, 0, 0])
                for k in range(4):
                    t[k] += self.moved[k]
                if max_cycles is not None and res.cycles > max_cycles:
                    raise BudgetExceeded("cycle", max_cycles, self.pc, res)
                if ins.op == Op.END:
                    break
                ended = self.jump is None
                if self.jump is not None:
                    # a loop's jump back into the block in the queue runs from the queue
                    # (the fetch unit's loop buffer); elsewhere the fetch unit reads afresh
                    k = (self.jump - qbase) // INSTR_BYTES
                    if self.cfg.fetch_block and qbase <= self.jump and k < qlen:
                        self.pc, queued = self.jump, qlen - k
                    else:
                        self.pc, queued, restart = self.jump, 0, True
                    self.jump = None
                else:
                    self.pc += INSTR_BYTES
        except AccelError as e:
            res.status, res.error, res.error_pc, res.detail = "error", int(e.code), e.pc, e.detail
        return res

    def step(self, ins):
        """Execute one instruction; returns its estimated cycles."""
        if ins.reserved or ins.op not in Op._value2member_map_:
            raise AccelError(Err.OPCODE, self.pc, f"opcode 0x{ins.op:02x}")
        op = Op(ins.op)
        if op == Op.SET:
            if ins.reg >= len(Reg):
                raise AccelError(Err.REG, self.pc, f"register {ins.reg}")
            bits = self.reg_bits[Reg(ins.reg)]
            if ins.imm >> bits:
                raise AccelError(Err.PARAM, self.pc, f"SET {Reg(ins.reg).name}, {ins.imm}: wider "
                                                     f"than the register's {bits} bits")
            self.regs[ins.reg] = ins.imm
            return self.cost.decode(self.chained)
        if op in (Op.LOOP, Op.ENDLOOP, Op.INC):
            return self._loop_op(op, ins)
        if op == Op.ADD and not self.cfg.add_unit:
            raise AccelError(Err.OPCODE, self.pc, "ADD: this configuration has no ADD unit "
                                                  "(add_unit=false)")
        if op == Op.NOP:
            return self.cost.decode(self.chained)
        wait = self._waits(op, self.now)
        self.now += wait
        self.held = wait            # in FETCH, while the instruction before is current
        if op == Op.END:
            return wait + self.cost.decode(self.chained)
        return (wait + self.cost.decode(self.chained) + self.cost.next
                + getattr(self, f"_{op.name.lower()}")(ins))

    def _waits(self, op, t, chain=False):
        """Clocks an instruction ``op`` in FETCH at clock ``t`` waits for a background unit
        (``chain``: non-zero if it must not be chained at ``t``, a clock before its decode:
        then also a LOADQ while any POST runs)."""
        # a command that reads memory, and END, wait in FETCH for a background LOADW
        # (and those that need the post-processor, for a background POST: both at once)
        wait = 0
        if op in WAITS_FOR_LOADER:
            wait = self.cost.prefetch_wait(self.lw_bg_until - t)
        if self.po_until > t and (op in WAITS_FOR_POST or op == Op.LOADQ and (chain or _overlap(
                self.r(Reg.Q_DST), self.r(Reg.Q_DST) + self.r(Reg.Q_COUNT), self.po_recs))):
            wait = max(wait, self.cost.post_wait(self.po_until - t))
        return wait

    def _loop_op(self, op, ins):
        depth = self.cfg.loop_depth
        if not depth:
            raise AccelError(Err.OPCODE, self.pc, f"{op.name}: this configuration has no "
                                                  f"hardware loops (loop_depth=0)")
        if op == Op.INC:
            if ins.reg >= len(Reg):
                raise AccelError(Err.REG, self.pc, f"register {ins.reg}")
            r = Reg(ins.reg)
            self.regs[r] = (self.regs[r] + simm(ins.imm)) % (1 << self.reg_bits[r])
            # its register is read in the clock before its decode
            return self.cost.decode(self.chained)
        if op == Op.LOOP:
            if not 1 <= ins.imm <= LOOP_MAX:
                self._err(f"LOOP count {ins.imm} outside 1..{LOOP_MAX}")
            if len(self.loops) == depth:
                raise AccelError(Err.LOOP, self.pc, f"LOOP nested deeper than loop_depth "
                                                    f"{depth}")
            self.loops.append([self.pc + INSTR_BYTES, ins.imm - 1])
            return self.cost.decode(self.chained)
        if not self.loops:
            raise AccelError(Err.LOOP, self.pc, "ENDLOOP without a LOOP")
        top = self.loops[-1]
        if top[1]:
            top[1] -= 1
            self.jump = top[0]
        else:
            self.loops.pop()
        return self.cost.decode(self.chained)

    @property
    def cost(self):
        if not hasattr(self, "_cost"):
            self._cost = CycleModel(self.cfg)
        return self._cost

    def r(self, reg):
        return self.regs[reg]

    # --- commands --------------------------------------------------------------------------
    def _loada(self, ins):
        src, nch, H, W = self.r(Reg.A_SRC), self.r(Reg.A_CH), self.r(Reg.A_H), self.r(Reg.A_W)
        hb0, nr, pitch = self.r(Reg.A_HB0), self.r(Reg.A_NR), self.r(Reg.LB_PITCH)
        self._enforce(Op.LOADA, ins)
        decode = bool(ins.flags & LoadAFlag.DECODE) and self.cfg.act_codes   # else ignored
        wb = -(-W // 2) if decode else W            # a row's bytes in memory
        rp = self.r(Reg.A_PITCH) or wb
        # strided_loads: a row of every 2**k-th byte (a stride phase) is a read of its own,
        # of rb bytes; the rows from line-buffer row A_LB0 on
        k, lb0 = self.r(Reg.A_CSHIFT), self.r(Reg.A_LB0)
        step, rb = 1 << k, (W - 1 << k) + 1 if k else wb
        contiguous = rp == wb and k == 0
        starts = []
        if decode:                                  # the levels, as activations
            lv = np.array([self._s8(self.r(r) >> 8 * j) for r in LOAD_LEVEL_REGS
                           for j in range(4)], dtype=np.int64)

        def rows(addr, n):
            """``n`` rows of the map from ``addr``: their first ``W`` activations."""
            if k:                                   # one row, every step-th byte
                return self._acts(addr, rb)[None, ::step]
            if not decode:
                return self._acts(addr, n * wb).reshape(n, wb)
            self._check(addr, n * wb)
            raw = self.mem[addr:addr + n * wb].astype(np.int64).reshape(n, wb)
            codes = np.stack([raw & 15, raw >> 4], axis=-1).reshape(n, 2 * wb)
            return lv[codes[:, :W]]

        if self.cfg.wide_loads and contiguous and nr == H:
            # whole maps, contiguous in memory: one read of them all, each channel's rows at
            # its pitch in the line buffer
            if self.timing_only:
                self._check(src, nch * nr * wb)
            else:
                maps = rows(src, nch * nr).reshape(nch, nr, W)
                for ch in range(nch):
                    self.lb[lb0 + ch * pitch:lb0 + ch * pitch + nr, :W] = maps[ch]
            self.moved[2] += nch * nr * wb
            return self.cost.loada([src], nch * nr * wb, W, decode)
        for ch in range(nch):
            base = src + ch * H * rp + hb0 * rp
            if contiguous:
                if self.timing_only:
                    self._check(base, nr * wb)
                else:
                    self.lb[lb0 + ch * pitch:lb0 + ch * pitch + nr, :W] = rows(base, nr)
                starts.append(base)
                continue
            for h in range(nr):
                if self.timing_only:
                    self._check(base + h * rp, rb)
                else:
                    self.lb[lb0 + ch * pitch + h, :W] = rows(base + h * rp, 1)[0]
                starts.append(base + h * rp)
        self.moved[2] += nch * nr * rb
        return self.cost.loada(starts, nr * wb if contiguous else rb, W, decode, step)

    def _loadw(self, ins):
        c = self.cfg
        src, n, dst = self.r(Reg.W_SRC), self.r(Reg.W_COUNT), self.r(Reg.W_DST)
        mac = bool(ins.flags & LoadWFlag.MAC)
        packed = bool(ins.flags & LoadWFlag.PACK4) and c.packed_weights
        self._enforce(Op.LOADW, ins)
        per_set = set_bytes(c.fcu, c.lanes, mac)
        nbytes = (n * per_set + 1) // 2 if packed else n * per_set
        self._check_read(src, nbytes)
        if not self.timing_only:
            if packed:      # 4-bit taps, two a byte, sign-extended as they load
                raw = unpack4(self.mem[src:src + nbytes].tobytes(), n * per_set)
            else:
                raw = self._words(src, n * per_set, "i1")
            shape = ((c.rows, c.lanes * c.fcu.mac_channels) if mac
                     else (c.rows, c.fcu.piece_taps, c.lanes))
            G = preadd_set(c.fcu, raw.reshape((n,) + shape), mac)
            self.wb[dst:dst + n] = G.reshape(n, c.weight_words, c.lanes)
        self.moved[1] += nbytes
        if ins.flags & LoadWFlag.ASYNC and c.weight_prefetch:
            # the read and the pre-adder run beside the next instructions
            issue, rd_end, bg_end = self.cost.loadw_async(n, src, mac, packed)
            t = self.now + self.cost.decode(self.chained)
            self.lw_rd_until, self.lw_bg_until = t + rd_end, t + bg_end
            self.lw_sets = (dst, dst + n)
            return issue
        return self.cost.loadw(n, src, mac, packed)

    def _loadq(self, ins):
        src, n, dst = self.r(Reg.Q_SRC), self.r(Reg.Q_COUNT), self.r(Reg.Q_DST)
        self._enforce(Op.LOADQ, ins)
        self._check_read(src, 4 * QPARAM_WORDS * n)
        self.qb[dst:dst + n] = self._words(src, n * QPARAM_WORDS, "<u4").reshape(n, QPARAM_WORDS)
        self.moved[1] += 4 * QPARAM_WORDS * n
        return self.cost.loadq(n, src)

    def conv_params(self, ins):
        c = self.cfg
        self._enforce(Op.CONV, ins)
        p = {k: self.r(getattr(Reg, k)) for k in (
            "C_KH", "C_KW", "C_PT", "C_PL", "C_WOUT", "C_ZX", "C_Y0", "C_NY", "A_CH",
            "C_WSET", "C_LANES", "A_H", "A_W", "A_HB0", "LB_PITCH", "C_ACC")}
        kh, kw = p["C_KH"], p["C_KW"]
        npairs = p["C_NPAIRS"] = p["A_CH"] * kh
        g = conv_geometry(c, kh, kw, p["C_WOUT"], npairs, p["A_W"], p["C_PL"])
        # checked as it runs (RUNTIME): by the sequencer at each pass's setup in the RTL
        used = g.pieces * g.passes_per_piece
        if p["C_WSET"] + used > c.wb_sets:
            self._err(f"CONV: its {used} weight sets from set {p['C_WSET']} run past the "
                      f"weight buffer's {c.wb_sets}")
        return p, g

    def _count_blocks(self, wob):
        """The clocks the setups' shared RowBlocks counts a command's ``wob`` (0: it holds
        that count from the command before, which it keeps)."""
        counted = 0 if wob == self.row_blocks else wob
        self.row_blocks = wob
        return counted

    def _conv(self, ins):
        c = self.cfg
        p, g = self.conv_params(ins)
        # a pass whose weight set a background LOADW loads waits for it (the model: the
        # CONV's first pass, whose setup starts after the CONV's own fixed clocks)
        lo, hi = self.lw_sets
        used = p["C_WSET"], p["C_WSET"] + g.pieces * g.passes_per_piece
        wait = 0
        counted = self._count_blocks(g.wob)
        if lo < used[1] and used[0] < hi:
            start = (self.now + self.cost.decode(self.chained)
                     + self.cost.conv_fixed(g, p["C_PL"], counted))
            wait = self.cost.prefetch_wait(self.lw_bg_until - start)
        # and a CONV into the blocks a background POST reads waits for it (in CV_M4, after
        # its geometry)
        a0, a1 = p["C_ACC"], p["C_ACC"] + p["C_NY"] * g.wob
        if self.po_until > self.now and _overlap(a0, a1, self.po_blocks):
            at = (self.now + self.cost.decode(self.chained)
                  + self.cost.conv_hazard_at(g, counted))
            wait = max(wait, self.cost.post_wait(self.po_until - at))
        if self.timing_only:
            return wait + self.cost.conv(g, p["C_NY"], g.pieces * g.passes_per_piece,
                                         p["C_PL"], counted)
        L, R, s = c.L, c.rows, c.fcu.ffa
        M, T = s.M, c.fcu.subtaps
        kh, npairs, ny = p["C_KH"], p["C_NPAIRS"], p["C_NY"]
        H, W, pitch, hb0 = p["A_H"], p["A_W"], p["LB_PITCH"], p["A_HB0"]
        zx = p["C_ZX"] if not c.fcu.act_signed else self._s8(p["C_ZX"])
        ys = np.arange(p["C_Y0"], p["C_Y0"] + ny)
        # the lanes written: with mac_pairs a MAC CONV's units' second channels too
        nl = c.acc_lanes if g.mac else c.lanes
        acc = self.acc[:nl, a0:a0 + ny * g.wob].reshape(nl, ny, g.wob * L)
        if not ins.flags & ConvFlag.ACCUMULATE:
            acc[:] = 0
        wset = p["C_WSET"]
        npass = g.passes_per_piece
        # passes are summed in int64 and wrapped once: the 32-bit accumulator is a sum mod 2**32
        # whatever the order, and each pass's sum is far below 2**63 / passes
        chunk = max(1, (1 << 22) // max(1, R * ny * g.bk * L))    # bounds the gathered rows
        for piece in range(g.pieces):
            col0 = piece * g.N - p["C_PL"] - g.d         # the piece's first input column
            c0, c1 = max(col0, 0), min(col0 + g.bk * L, W)      # those inside the map
            for q0 in range(0, npass, chunk):
                nq = min(chunk, npass - q0)
                s0 = wset + piece * npass + q0
                G = np.moveaxis(self.wb[s0:s0 + nq].reshape(nq * R, M, T, c.lanes), -1, 1)
                # the passes' (channel, kernel row) pairs, each over the ny output rows
                pair = q0 * R + np.arange(nq * R)
                ch, i = np.divmod(pair, kh)
                h = ys[None, :] + i[:, None] - p["C_PT"]                 # (pairs, ny)
                used = (pair < npairs)[:, None] & (h >= 0) & (h < H)     # else zx (padding)
                lrow = ch[:, None] * pitch + h - hb0
                bad = used & ~((h - hb0 >= 0) & (h - hb0 < pitch) & (lrow < c.lb_rows))
                if bad.any():
                    r, n = np.argwhere(bad)[0]
                    self._err(f"CONV reads input row {h[r, n]} of channel {ch[r]}, not in "
                              f"the loaded band (first row {hb0}, pitch {pitch})")
                # float64 holding integers: the products below run in BLAS, exactly
                X = np.full((nq * R, ny, g.bk * L), zx, dtype=np.float64)
                if c1 > c0:
                    X[:, :, c0 - col0:c1 - col0] = self.lb[:, c0:c1][np.where(used, lrow, 0)]
                    X[~used] = zx
                X[pair >= npairs] = 0                                    # rows past the last
                blocks = X.reshape(nq * R, ny * g.bk, L)
                if g.mac:                                         # lane k: sum_r x_r * w_rk
                    # output q of lane k is product q (x_q G[q]); with mac_pairs lane
                    # lanes + k is product L + q (x_q G[L + q])
                    Gm = np.concatenate([G[:, :, h * L:(h + 1) * L, 0]
                                         for h in range(c.fcu.mac_channels)], axis=1)
                    total = exact_matmul(blocks.transpose(2, 1, 0),
                                         Gm.transpose(2, 0, 1)).transpose(2, 1, 0)
                else:                                             # every row and lane at once
                    total = s.filter_rows(G, blocks)
                total = total.reshape(nl, ny, g.bk, L)
                acc += total[:, :, g.D:, :].reshape(nl, ny, g.wob * L)
        acc[:] = _wrap32(acc)
        passes = g.pieces * npass
        return wait + self.cost.conv(g, ny, passes, p["C_PL"], counted)

    @staticmethod
    def _bad_shift(q):
        """Index of the first record in ``q`` whose shift is outside 1..62, or ``None``."""
        sh = np.asarray(q, dtype=np.int64)[:, 2] & 0xFF
        bad = np.flatnonzero((sh < 1) | (sh > 62))
        return int(bad[0]) if bad.size else None

    def _requant(self, v, q):
        """Requantize accumulators ``v`` ``(lanes, ...)`` with each lane's record ``q[lane]``
        (bias, multiplier, shift/zero point/clamp word), exactly: in int64 while every
        product fits, else in Python integers."""
        q = np.asarray(q, dtype=np.int64)
        bias = np.where(q[:, 0] >> 31, q[:, 0] - INT32, q[:, 0])
        mult, word = q[:, 1], q[:, 2]
        sh = word & 0xFF                        # 1..62: the caller checks (_bad_shift)
        zp, lo, hi = (self._s8(word >> k) for k in (8, 16, 24))
        ex = (slice(None),) + (None,) * (np.ndim(v) - 1)            # per lane, broadcast
        v = np.asarray(v, dtype=np.int64) + bias[ex]
        if v.size and int(np.abs(v).max()) * int(mult.max()) < 1 << 62:
            out = (v * mult[ex] + (1 << (sh - 1))[ex]) >> sh[ex]
        else:                                   # products beyond int64: exact, slower
            o = v.astype(object) * mult[ex].astype(object) + (1 << (sh - 1))[ex].astype(object)
            out = o >> sh[ex].astype(object)
        return np.clip(out + zp[ex], lo[ex], hi[ex]).astype(np.int64)

    def _affine(self, v, zp, recs2):
        """Flag ``AFFINE``: each lane's values ``v`` ``(lanes, ...)``, of zero point ``zp[lane]``,
        mapped by its record (:func:`~ffacc.firmware.isa.pack_affine`):
        ``requantize(K (v - zp) + C)``."""
        signed = self.cfg.fcu.act_signed
        ex = (slice(None),) + (None,) * (np.ndim(v) - 1)
        zp = np.asarray(zp, dtype=np.int64)
        p = [unpack_affine(r, signed) for r in recs2]
        K, C = (np.array([r[k] for r in p], dtype=np.int64) for k in ("K", "C"))
        M, sh, z2, lo, hi = (np.array([r[k] for r in p], dtype=np.int64)
                             for k in ("multiplier", "shift", "zp", "qmin", "qmax"))
        # |acc| < 2**26 and M < 2**32: the product fits int64
        acc = K[ex] * (np.asarray(v, dtype=np.int64) - zp[ex]) + C[ex]
        out = (acc * M[ex] + (np.int64(1) << (sh - 1))[ex]) >> sh[ex]
        return np.clip(out + z2[ex], lo[ex], hi[ex])

    def _post(self, ins):
        c = self.cfg
        L = c.L
        wout, ny, row0, lanes = (self.r(Reg.C_WOUT), self.r(Reg.C_NY), self.r(Reg.O_ROW0),
                                 self.r(Reg.C_LANES))
        dst, opitch, cstride, q0, stride = (self.r(Reg.O_DST), self.r(Reg.O_W),
                                            self.r(Reg.O_CSTRIDE), self.r(Reg.O_Q),
                                            self.r(Reg.O_STRIDE))
        a0 = self.r(Reg.C_ACC)
        self._enforce(Op.POST, ins)
        wob = ceil(wout / L)
        pool = bool(ins.flags & PostFlag.POOL)
        k = self.r(Reg.O_POOLK) if pool else 1      # a pool's window: k x k elements
        codes = bool(ins.flags & PostFlag.CODES) and c.act_codes    # else ignored
        # with a pool, the k x k windows at stride O_STRIDE that lie in the band, padded by
        # O_POOLPAD's rows and columns (pool_pads), which hold no value
        pv = self.r(Reg.O_POOLPAD) if pool and c.pool_pads else 0
        pt, pl, pb, pr = ((pv >> 4 * i) & 15 for i in range(4))
        rows_out = max(0, (ny + pt + pb - k) // stride + 1)
        cols_out = max(0, (wout + pl + pr - k) // stride + 1)
        cb = -(-cols_out // 2) if codes else cols_out      # a row's bytes
        addrs = (dst + np.arange(lanes)[:, None, None] * cstride
                 + (row0 + np.arange(rows_out))[None, :, None] * opitch
                 + np.arange(cb)[None, None, :]).reshape(lanes, -1)
        stalls = writer_stalls(addrs // c.bus_bytes, k * k * (1 + codes), c.write_slice)
        addrs = addrs.reshape(-1)
        subs = rows_out * cols_out * k * k
        counted = self._count_blocks(wob)
        # (post_affine; the checks refuse AFFINE elsewhere) lane l's records are q0 + 2l and
        # q0 + 2l + 1, the second mapping each output once more
        affine = bool(ins.flags & PostFlag.AFFINE)
        nrec = 1 + affine
        if ins.flags & PostFlag.ASYNC and c.post_overlap:
            # the post-processor runs it beside the next instructions
            cost = self.cost.post_issue(wob, stride, counted)
            self.po_until = (self.now + self.cost.decode(self.chained) + cost
                             + self.cost.post_run(lanes, subs, stalls, affine))
            self.po_blocks = (a0, a0 + ny * wob)
            self.po_recs = (q0, q0 + nrec * lanes)
        else:
            cost = self.cost.post(lanes, subs, wob, stride, stalls, counted, affine)
        self.moved[3] += lanes * rows_out * cb
        if self.timing_only:
            return cost
        recs = self.qb[q0:q0 + nrec * lanes:nrec]
        recs2 = self.qb[q0 + 1:q0 + 2 * lanes:2] if affine else recs[:0]
        # a lane stops the run (the lanes before it written) if either record's shift is bad
        bads = [b for b in (self._bad_shift(recs), self._bad_shift(recs2)) if b is not None]
        bad = min(bads) if bads else None
        if bad is not None:             # lanes before the bad record are written, then stop
            word = (recs[bad] if self._bad_shift(recs[bad:bad + 1]) is not None
                    else recs2[bad])
            lanes, recs, recs2 = bad, recs[:bad], recs2[:bad]
            addrs = addrs[:bad * rows_out * cb]
        a = self.acc[:lanes, a0:a0 + ny * wob].reshape(lanes, ny, wob * L)[:, :, :wout]
        v = self._requant(a, recs)
        if pool:
            if pv:          # the padding: each lane's clamp minimum, below none of its values
                lo = np.array([unpack_qparam(r, c.fcu.act_signed)["qmin"] for r in recs])
                full = np.empty((lanes, ny + pt + pb, wout + pl + pr), v.dtype)
                full[...] = lo.reshape(-1, 1, 1).astype(v.dtype)
                full[:, pt:pt + ny, pl:pl + wout] = v
                v = full
            v = sliding_window_view(v, (k, k), axis=(1, 2))[:, ::stride, ::stride] \
                .max(axis=(3, 4)) if rows_out and cols_out else v[:, :rows_out, :cols_out]
        else:
            v = v[:, ::stride, ::stride]
        if affine:
            # (each value's zero point: its lane's first record's)
            zp = [unpack_qparam(r, c.fcu.act_signed)["zp"] for r in recs]
            v = self._affine(v, zp, recs2)
        nlev, th, lv = unpack_levels({r: self.r(r) for r in (Reg.O_NLEV,) + LEVEL_REGS},
                                     c.fcu.act_signed)
        nlev = nlev if c.act_codes else 0       # without act_codes nothing reads O_NLEV
        if codes:                       # two codes a byte, the even column low
            k = golden.to_codes(v, th)
            k = np.concatenate([k, np.zeros(k.shape[:2] + (cols_out % 2,), k.dtype)], axis=2)
            v = k[:, :, 0::2] | k[:, :, 1::2] << 4
        elif nlev:
            v = golden.to_levels(v, th, lv)
        v = (v & 0xFF).astype(np.uint8)
        first = dst + row0 * opitch
        last = first + (lanes - 1) * cstride + (v.shape[1] - 1) * opitch + v.shape[2]
        apart = ((v.shape[1] == 1 or v.shape[2] <= opitch) and
                 (lanes == 1 or (v.shape[1] - 1) * opitch + v.shape[2] <= cstride))
        if lanes and apart and last <= self.mem_limit:      # one scatter, no overlaps
            self.mem[addrs] = v.reshape(-1)
        else:                           # overlapping rows, or a bad address: in write order
            for lane in range(lanes):
                for n in range(v.shape[1]):
                    addr = dst + lane * cstride + (row0 + n) * opitch
                    self._check(addr, v.shape[2])
                    self.mem[addr:addr + v.shape[2]] = v[lane, n]
        if bad is not None:
            self._err(f"POST shift {int(word[2]) & 0xFF} outside 1..62")
        return cost

    def _add(self, ins):
        a_src, b_src, dst, n = (self.r(Reg.A_SRC), self.r(Reg.D_SRC2), self.r(Reg.O_DST),
                                self.r(Reg.D_N))
        kab, M, sz, cl = (self.r(Reg.D_KAB), self.r(Reg.D_M), self.r(Reg.D_SZ),
                          self.r(Reg.D_CLAMP))
        sh = sz & 0xFF
        self._enforce(Op.ADD, ins)
        if self.cfg.wide_loads:         # each operand read from the beat its first byte is in
            nb = self.cfg.bus_bytes
            for src in (a_src, b_src):
                self._check_read(src - src % nb, src % nb + n)
        self.moved[2] += 2 * n
        self.moved[3] += n
        # (post_affine; the checks refuse AFFINE elsewhere) each result mapped by record O_Q
        affine = bool(ins.flags & PostFlag.AFFINE)
        if self.timing_only:
            return self.cost.add(n, a_src, b_src, affine)
        rec = self.qb[self.r(Reg.O_Q):self.r(Reg.O_Q) + 1]
        if affine and self._bad_shift(rec) is not None:     # before any element (the RTL)
            self._err(f"ADD's affine record {self.r(Reg.O_Q)}: shift "
                      f"{int(rec[0, 2]) & 0xFF} outside 1..62")
        a, b = self._acts(a_src, n), self._acts(b_src, n)
        za, zb, zy = self._s8(sz >> 8), self._s8(sz >> 16), self._s8(sz >> 24)
        ka, kb = (((v & 0xFFFF) ^ 0x8000) - 0x8000 for v in (kab, kab >> 16))     # int16s
        acc = (a - za) * ka + (b - zb) * kb
        wide = int(np.abs(acc).max()) * M >= 1 << 62        # else exact in int64
        out = ((acc.astype(object) if wide else acc) * M + (1 << (sh - 1))) >> sh
        out = np.clip(out + zy, self._s8(cl), self._s8(cl >> 8)).astype(np.int64)
        if affine:                      # (its input's zero point: the ADD's output's)
            out = self._affine(out[None], [zy], rec)[0]
        self._check(dst, n)
        self.mem[dst:dst + n] = (out & 0xFF).astype(np.uint8)
        return self.cost.add(n, a_src, b_src, affine)


def _overlap(lo, hi, span):
    """``[lo, hi)`` and ``span`` (a ``(lo, hi)`` pair) share an entry: the hazard check of a
    command against a background POST's accumulator blocks or records."""
    return lo < span[1] and span[0] < hi


def _iss_write(self, addr, data):
    """Memory write (the same name as cocotbext-axi's ``AxiRam.write``)."""
    self.load(addr, data)


ISS.write = _iss_write
