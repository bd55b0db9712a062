"""The accelerator's instruction set: one definition for encoder, RTL decoder, ISS, disassembler.

An instruction is 64 bits, two little-endian 32-bit words in memory::

    word 0: opcode[7:0] | flags[15:8] | reg[23:16] | reserved[31:24] (must be 0)
    word 1: imm[31:0]

``SET reg, imm`` writes a *parameter register* (as wide as :func:`reg_bits` gives for the
configuration; a wider value is an error); the commands (``LOADA``, ``LOADW``,
``LOADQ``, ``CONV``, ``POST``, ``ADD``) take their operands from the parameter registers, so
the instruction format stays fixed while the commands can have many operands. ``END`` stops
with status *done*. ``LOOP n`` … ``ENDLOOP`` runs the instructions between them ``n`` times
(nested up to the configuration's ``loop_depth``); ``INC reg, imm`` adds a signed value to a
parameter register, so a loop body can step addresses and rows. Loop counts are immediates, so
every program still ends. Opcode ``0x00`` is illegal on purpose: running into zeroed memory stops
with an error instead of running on. A program must not overwrite its own code during a run:
the fetch unit's queue keeps the instructions it read, and a loop's body runs from it. The
semantics of every command are in :mod:`ffacc.sim.iss` (the executable specification) and
summarised in :data:`OPCODES`.

A run that fails stops with status *error*: ``ERROR`` holds the code (:class:`Err`) and
``ERROR_PC`` the failing instruction, the same on the ISS and the RTL. What the failing
command wrote before it failed is not part of the contract: the RTL writes in bus words as it
goes (an ``ADD`` whose later chunk's read fails has written the chunks before it); the ISS
checks an ``ADD``'s ranges before it writes and writes a ``POST`` row by row. Treat the
failing command's destination as undefined; what earlier commands wrote is intact.
"""

from dataclasses import dataclass
from enum import IntEnum

from amaranth.lib import data

__all__ = ["INSTR_LAYOUT", "INSTR_BYTES", "Op", "Reg", "Err", "ConvFlag", "PostFlag", "LoadWFlag",
           "Instr",
           "encode", "decode", "LOOP_MAX", "simm", "decode_program", "disassemble", "Program",
           "ISAError", "OPCODES", "QPARAM_WORDS", "reg_bits", "pack_qparam", "unpack_qparam",
           "pack_affine", "unpack_affine", "AFFINE_C_BITS", "AFFINE_MAX_K",
           "LEVEL_REGS", "LOAD_LEVEL_REGS", "MAX_LEVELS", "CODE_LEVELS", "pack_levels", "unpack_levels",
           "pack_load_levels", "LoadAFlag"]

INSTR_LAYOUT = data.StructLayout({
    "opcode": 8,
    "flags": 8,
    "reg": 8,
    "reserved": 8,
    "imm": 32,
})
INSTR_BYTES = INSTR_LAYOUT.size // 8
LOOP_BITS = 16                  # a LOOP count is 1..LOOP_MAX
LOOP_MAX = (1 << LOOP_BITS) - 1


class Op(IntEnum):
    END = 0x01
    SET = 0x02
    LOOP = 0x03
    ENDLOOP = 0x04
    INC = 0x05
    NOP = 0x0F
    LOADA = 0x10
    LOADW = 0x11
    LOADQ = 0x12
    CONV = 0x20
    POST = 0x30
    ADD = 0x31


OPCODES = {
    Op.END: "stop; status done",
    Op.SET: "parameter register[reg] = imm",
    Op.LOOP: f"run the instructions up to the matching ENDLOOP imm times (1..{LOOP_MAX}); "
             "loops nest up to the configuration's loop_depth (configurations with loops)",
    Op.ENDLOOP: "end of the innermost loop: back to the instruction after its LOOP until it "
                "ran its count, then on",
    Op.INC: "parameter register[reg] += imm (imm signed), modulo 2**width (reg_bits): a "
            "loop's last step may leave a register outside the range its command accepts; "
            "the command checks it when it runs (configurations with loops)",
    Op.NOP: "nothing",
    Op.LOADA: "activations DRAM -> line buffer: channels A_CH, rows A_HB0.. (A_NR), A_W bytes "
              "each, of an A_H-row map at A_SRC with row pitch A_PITCH (0: A_W) and channel "
              "pitch A_H*pitch; row (c, h) -> line-buffer row A_LB0 + c*LB_PITCH + h - A_HB0; "
              "with A_CSHIFT = k > 0 (strided_loads; A_PITCH given) a row's activations are "
              "every 2**k-th byte from its first, a read of (A_W - 1) * 2**k + 1 bytes: a "
              "stride phase of the map (2**k at most the bus width); "
              "flag DECODE (act_codes): the map holds 4-bit codes, two a byte (the even "
              "column low), a row in ceil(A_W/2) bytes (the default pitch), each loaded as "
              "its level (A_LV*)",
    Op.LOADW: "W_COUNT weight sets of int8 taps DRAM W_SRC -> weight buffer sets W_DST.., "
              "pre-added on chip (hw/weights.py): a set is [engine][tap][lane], N taps of the "
              "reversed kernel-row piece per engine and lane; flag MAC: [engine][lane], one "
              "weight per engine and lane (fcu.mac_pairs: [engine][channel], two per engine "
              "and lane, channel lanes + k the second of lane k); with wide_loads W_SRC is a "
              "multiple of the bus "
              "width and read in whole bus words; flag ASYNC (configurations with "
              "weight_prefetch): the read runs in the background while the next instructions "
              "run; a load, ADD, END or instruction fetch waits for it, and a CONV pass whose "
              "weight set it loads waits for it, so results are as in order; a read error "
              "stops the run before the next instruction, with ERROR_PC at this LOADW; "
              "flag PACK4 (packed_weights): the taps are 4-bit two's complement, two a byte "
              "(the even one in the low nibble), the read ceil(taps / 2) bytes",
    Op.LOADQ: "Q_COUNT quantization records (3 words) DRAM Q_SRC -> parameter buffer Q_DST..; "
              "with wide_loads Q_SRC is a multiple of the bus width and read in whole bus "
              "words",
    Op.CONV: "for each kernel piece and each group of `rows` of the A_CH * C_KH (channel, "
             "kernel-row) pairs: load weight set C_WSET++, stream rows C_Y0..+C_NY through the "
             "FCU array, accumulate into the int32 accumulator from block C_ACC on (flag "
             "ACCUMULATE keeps previous sums); a row's words past C_WOUT in its last block "
             "are undefined (chain_rows: the next row's inputs reach them); C_KW = 1 is MAC "
             "mode, where with fcu.mac_pairs accumulator lanes lanes..2*lanes-1 get each "
             "unit's second output channel (C_LANES up to 2*lanes; other CONVs leave them)",
    Op.POST: "accumulators (from block C_ACC) of lanes 0..C_LANES-1 -> +bias, requantize, "
             "clamp, optional max-pool (flag POOL: the O_POOLK x O_POOLK windows at stride "
             "O_STRIDE that lie in the band: rows and columns 0, s, 2s, ...; with pool_pads, in "
             "the band padded by O_POOLPAD's rows and columns, which hold no value: a window's "
             "maximum is of its values in the band) or O_STRIDE "
             "subsampling (band rows 0, s, 2s, ...) "
             "-> with flag AFFINE (post_affine) lane l's records are O_Q + 2l and O_Q + 2l + 1 "
             "(else O_Q + l), and each output v -> requantize(K (v - zp) + C) by the second "
             "(pack_affine: zp is the first's zero point) "
             "-> with O_NLEV = n > 0 (2..64, act_codes) each value v -> level l[c], c = the "
             "number of thresholds t[j], j < n - 1, with v >= t[j] (O_TH*, O_LV*); with flag "
             "CODES (n <= 16) c itself is written, two a byte (the even column low, a row's odd "
             "last code with 0 above it), and O_W, O_CSTRIDE count those bytes "
             "-> bytes at O_DST + lane * O_CSTRIDE + (O_ROW0 + row) * O_W; flag ASYNC "
             "(configurations with post_overlap): it runs in the background while the next "
             "instructions run; a load of activations or records, POST, ADD or END waits for "
             "it, and so does a CONV into its accumulator blocks, so results are as in "
             "order; an error stops the run at the next instruction, with ERROR_PC at "
             "this POST",
    Op.ADD: "D_N bytes: requantize((a - za) ka + (b - zb) kb), ka and kb int16 (D_KAB), for a "
              "at A_SRC, b at D_SRC2 (may be A_SRC) -> with flag AFFINE (post_affine) each "
              "value v -> requantize(K (v - zy) + C) by record O_Q (pack_affine) -> "
              "O_DST (configurations with add_unit; an illegal opcode otherwise)",
}


class Reg(IntEnum):
    """Parameter registers (widths per configuration: :func:`reg_bits`)."""
    A_SRC = 0       # activation map base address (channel 0 of the band)
    A_CH = 1        # channels in the band
    A_H = 2         # map height
    A_W = 3         # map width (= row pitch in bytes)
    A_HB0 = 4       # first row of the band
    A_NR = 5        # rows per channel to load
    LB_PITCH = 6    # line-buffer rows per channel
    W_SRC = 7
    W_COUNT = 8
    W_DST = 9
    Q_SRC = 10
    Q_COUNT = 11
    Q_DST = 12
    C_KH = 13
    C_KW = 14
    C_PT = 15       # padding top
    C_PL = 16       # padding left
    C_WOUT = 17     # stride-1 output width
    C_ZX = 18       # input zero point (padding value)
    C_Y0 = 19       # first output row of the band (stride-1 coordinates)
    C_NY = 20       # output rows in the band
    O_ROW0 = 21     # output row of the band's first kept row
    C_WSET = 22     # first weight set
    C_LANES = 23    # active output lanes
    O_DST = 24      # output map address of lane 0, row 0
    O_W = 25        # output row pitch (bytes)
    O_CSTRIDE = 26  # bytes between output channels
    O_Q = 27        # parameter-buffer index of lane 0
    O_STRIDE = 28   # subsampling stride (1 = none)
    D_SRC2 = 29
    D_N = 30
    D_KAB = 31      # ka[15:0] | kb[31:16], each int16
    D_M = 32        # add requantization multiplier
    D_SZ = 33       # shift[7:0] | za[15:8] | zb[23:16] | zy[31:24]
    D_CLAMP = 34    # qmin[7:0] | qmax[15:8]
    A_PITCH = 35    # row pitch of the map in memory (0: = A_W); lets LOADA take a column tile
    C_ACC = 36      # accumulator block of the band's first row (CONV writes, POST reads): the
                    # accumulator holds several lane groups' bands, so an input channel group
                    # loads once for all of them
    O_NLEV = 37     # POST's output levels: 0 = none (every requantized value), 2..64 = each
                    # value is replaced by the level its thresholds give (act_codes)
    O_TH0 = 38      # POST's thresholds t0..t15 (byte j: t[4k + j], an activation), k = 0..15
    O_TH1 = 39
    O_TH2 = 40
    O_TH3 = 41
    O_LV0 = 42      # POST's levels l0..l15 (byte j: l[4k + j], an activation), k = 0..15
    O_LV1 = 43
    O_LV2 = 44
    O_LV3 = 45
    A_LV0 = 46      # LOADA's levels of codes 0..3 (byte j: code 4k + j's), k = 0..3 (flag
    A_LV1 = 47      # DECODE, act_codes)
    A_LV2 = 48
    A_LV3 = 49
    # POST's thresholds t16..t62 and levels l16..l63 (as O_TH0..3, O_LV0..3): up to 64 levels
    O_TH4, O_TH5, O_TH6, O_TH7, O_TH8, O_TH9, O_TH10, O_TH11 = range(50, 58)
    O_TH12, O_TH13, O_TH14, O_TH15 = range(58, 62)
    O_LV4, O_LV5, O_LV6, O_LV7, O_LV8, O_LV9, O_LV10, O_LV11 = range(62, 70)
    O_LV12, O_LV13, O_LV14, O_LV15 = range(70, 74)
    A_CSHIFT = 74   # LOADA's column step 2**A_CSHIFT: a row is every step-th byte from A_SRC's
                    # column on (strided_loads; 0: every column)
    A_LB0 = 75      # LOADA's first line-buffer row (strided_loads)
    O_POOLK = 76    # POST's max-pool window (flag POOL): O_POOLK x O_POOLK, 2..max_pool
    O_POOLPAD = 77  # POST's pool padding (pool_pads), 4 bits each below O_POOLK: the band's
                    # top rows (bits 0-3), left columns (4-7), bottom rows (8-11) and right
                    # columns (12-15) that the windows reach past the band; no value is there


NUM_REGS = 128


def reg_bits(cfg):
    """Width in bits of every parameter register for one accelerator configuration.

    A register is as wide as its largest legal value in ``cfg`` needs (addresses and byte
    counts: ``cfg.addr_bits``; sizes: the buffer they index; packed fields: 32), so a small
    configuration has small registers and narrow checks. ``SET`` of a value that does not fit
    stops with ``Err.PARAM`` at the ``SET`` (a value that fits but exceeds the configuration
    is refused by the command that uses it, as before).
    """
    def need(v):
        return max(1, int(v).bit_length())
    a = cfg.addr_bits
    bits = {
        Reg.A_SRC: a, Reg.W_SRC: a, Reg.Q_SRC: a, Reg.O_DST: a, Reg.D_SRC2: a,
        Reg.O_CSTRIDE: a, Reg.D_N: a,
        Reg.A_CH: need(cfg.lb_rows), Reg.A_NR: need(cfg.lb_rows), Reg.LB_PITCH: need(cfg.lb_rows),
        Reg.A_H: 16, Reg.A_HB0: 16, Reg.A_W: need(cfg.lb_width),
        Reg.W_COUNT: need(cfg.wb_sets), Reg.W_DST: need(cfg.wb_sets - 1),
        Reg.Q_COUNT: need(cfg.qb_entries), Reg.Q_DST: need(cfg.qb_entries),
        Reg.C_KH: need(cfg.max_kernel), Reg.C_KW: need(cfg.max_kernel),
        Reg.C_PT: need(cfg.max_kernel - 1), Reg.C_PL: need(cfg.max_kernel - 1),
        Reg.C_WOUT: need(cfg.acc_blocks * cfg.L), Reg.C_ZX: 8, Reg.C_Y0: 15,
        Reg.C_NY: need(cfg.acc_blocks), Reg.O_ROW0: 17, Reg.C_WSET: need(cfg.wb_sets - 1),
        Reg.C_LANES: need(cfg.acc_lanes), Reg.O_W: 17, Reg.O_Q: need(cfg.qb_entries - 1),
        Reg.O_STRIDE: 8, Reg.D_KAB: 32, Reg.D_M: 32, Reg.D_SZ: 32, Reg.D_CLAMP: 16,
        Reg.A_PITCH: 17, Reg.C_ACC: need(cfg.acc_blocks - 1),
        # without act_codes the level registers are a bit wide and nothing reads them (a
        # wider SET fails at the SET; POST's CODES and LOADA's DECODE are ignored)
        Reg.O_NLEV: 7 if cfg.act_codes else 1,
        # without strided_loads a bit wide (LOADA refuses any value but 0)
        Reg.A_CSHIFT: 2 if cfg.strided_loads else 1,
        Reg.A_LB0: need(cfg.lb_rows - 1) if cfg.strided_loads else 1,
        Reg.O_POOLK: need(cfg.max_pool),
        # without pool_pads a bit wide, and nothing reads it (POST's windows are unpadded)
        Reg.O_POOLPAD: 16 if cfg.pool_pads else 1,
        **{r: 32 if cfg.act_codes else 1 for r in LEVEL_REGS + LOAD_LEVEL_REGS},
    }
    assert set(bits) == set(Reg)
    return {r: min(32, b) for r, b in bits.items()}


MAX_LEVELS = 64        # a POST's output levels (O_NLEV), its thresholds one fewer
CODE_LEVELS = 16       # levels a stored code can name: 4-bit codes, two a byte (POST's CODES,
                       # LOADA's DECODE); a map of more levels is stored a level a byte
LEVEL_REGS = (tuple(Reg[f"O_TH{k}"] for k in range(MAX_LEVELS // 4))
              + tuple(Reg[f"O_LV{k}"] for k in range(MAX_LEVELS // 4)))
LOAD_LEVEL_REGS = (Reg.A_LV0, Reg.A_LV1, Reg.A_LV2, Reg.A_LV3)


def pack_load_levels(levels):
    """The ``SET`` values of a ``LOADA``'s levels (flag ``DECODE``): ``{A_LV0..3}``, code
    ``c``'s level in byte ``c mod 4`` of ``A_LV{c // 4}`` (unused codes: 0)."""
    if not 2 <= len(levels) <= CODE_LEVELS:
        raise ISAError(f"{len(levels)} levels of codes: need 2..{CODE_LEVELS} (4-bit codes)")
    vals = [int(v) & 0xFF for v in levels] + [0] * (CODE_LEVELS - len(levels))
    return {r: sum(v << 8 * j for j, v in enumerate(vals[4 * k:4 * k + 4]))
            for k, r in enumerate(LOAD_LEVEL_REGS)}


def pack_levels(levels, thresholds):
    """The ``SET`` values of a POST's output levels: ``{O_NLEV: n, O_TH.., O_LV..}`` for ``n``
    levels (2..64) and their ``n - 1`` thresholds, each an activation (int8 or uint8) stored
    as its byte; unused bytes of a word are 0. Only the words that hold a threshold or level
    are given (nothing reads the others, so a program need not set them)."""
    n = len(levels)
    if not 2 <= n <= MAX_LEVELS or len(thresholds) != n - 1:
        raise ISAError(f"{n} levels and {len(thresholds)} thresholds: need 2..{MAX_LEVELS} "
                       f"levels and one threshold fewer")
    regs = {Reg.O_NLEV: n}
    for name, vals in (("O_TH", list(thresholds)), ("O_LV", list(levels))):
        words = (len(vals) + 3) // 4
        vals = [int(v) & 0xFF for v in vals] + [0] * (4 * words - len(vals))
        for k in range(words):
            regs[Reg[f"{name}{k}"]] = sum(v << 8 * j for j, v in enumerate(vals[4 * k:4 * k + 4]))
    return regs


def unpack_levels(regs, act_signed):
    """``(n, thresholds, levels)`` of a POST from its registers (a mapping ``Reg -> value``);
    ``n = 0``: no levels. Bytes are activations (signed with ``act_signed``); a register
    missing from ``regs`` counts as 0."""
    n = regs[Reg.O_NLEV]

    def field(name):
        words = [regs.get(Reg[f"{name}{k}"], 0) for k in range(MAX_LEVELS // 4)]
        return [_s8(w >> 8 * j, act_signed) for w in words for j in range(4)]
    return n, field("O_TH")[:max(0, n - 1)], field("O_LV")[:n]


class ConvFlag(IntEnum):
    ACCUMULATE = 1


class LoadAFlag(IntEnum):
    DECODE = 1      # the map holds 4-bit codes, two a byte: each is loaded as its level


class LoadWFlag(IntEnum):
    MAC = 1         # one weight per engine and lane (1x1 kernels, fully-connected layers)
    ASYNC = 2       # read in the background (weight_prefetch): the next instructions run
    PACK4 = 4       # 4-bit taps, two a byte (the even one low), sign-extended (packed_weights)


# the commands (and END) that wait for a background LOADW (LoadWFlag.ASYNC) before they run:
# they need the read DMA or end the run; the RTL's FETCH and the ISS both use this list
WAITS_FOR_LOADER = (Op.LOADA, Op.LOADW, Op.LOADQ, Op.ADD, Op.END)


class PostFlag(IntEnum):
    POOL = 1        # max-pool after requantization: O_POOLK x O_POOLK windows, stride O_STRIDE
    ASYNC = 2       # run in the background (post_overlap): the next instructions run
    CODES = 4       # write each output's code (O_NLEV levels), two a byte (act_codes)
    AFFINE = 8      # map each output by its lane's second record (post_affine): a fused
                    # per-channel affine map (a BatchNormalization left after the conv);
                    # ADD's too: each result by record O_Q (a second affine map after one)


# the commands (and END) that wait for a background POST (PostFlag.ASYNC) before they run:
# they read memory it may write or need its requantizer; the RTL's FETCH and the ISS both use
# this list. A CONV waits only if its accumulator blocks overlap the POST's, a LOADQ only if
# the records it writes overlap those the POST reads (``[O_Q, O_Q + C_LANES)``, with flag
# AFFINE ``[O_Q, O_Q + 2 C_LANES)``).
WAITS_FOR_POST = (Op.LOADA, Op.POST, Op.ADD, Op.END)


class Err(IntEnum):
    """Error codes in the ERROR register (0 = none)."""
    NONE = 0
    OPCODE = 1      # illegal opcode or non-zero reserved field
    REG = 2         # SET of a register that does not exist
    PARAM = 3       # inconsistent command parameters (sizes beyond the configuration), or a
                    # SET value wider than its register (see reg_bits)
    ADDRESS = 4     # memory access outside [0, MEM_SIZE)
    BUS = 5         # AXI error response
    TIMEOUT = 6     # memory did not answer
    LOOP = 7        # LOOP nested deeper than loop_depth, or ENDLOOP without a LOOP


QPARAM_WORDS = 3


def pack_qparam(bias, multiplier, shift, zp, qmin, qmax):
    """One output channel's post-processing record: three 32-bit words."""
    def u8(v):
        return int(v) & 0xFF
    return [int(bias) & 0xFFFFFFFF, int(multiplier) & 0xFFFFFFFF,
            u8(shift) | u8(zp) << 8 | u8(qmin) << 16 | u8(qmax) << 24]


AFFINE_C_BITS = 24     # a second record's constant: signed, in word 0's low bits
AFFINE_MAX_K = 14      # its slope K = +-2**k (k <= AFFINE_MAX_K) or 0


def pack_affine(ka, kb, zb, x_zp, multiplier, shift, zp, qmin, qmax):
    """A lane's second record (``POST`` flag ``AFFINE``): the per-channel affine map
    ``requantize((x - x_zp) ka + (x - zb) kb)`` of :func:`ffacc.sim.golden.channel_affine`
    (``x``: the lane's first requantized value, ``x_zp`` its zero point) written as
    ``requantize(K (x - x_zp) + C)``, ``K = ka + kb``, ``C = kb (x_zp - zb)``: word 0 holds
    ``C`` (24-bit two's complement) in bits 0..23, ``k`` (``|K| = 2**k``) in 24..27, ``K < 0``
    in bit 28 and ``K = 0`` in bit 29; words 1 and 2 are :func:`pack_qparam`'s (multiplier;
    shift, zero point and clamp of the output). Three words."""
    K, C = int(ka) + int(kb), int(kb) * (int(x_zp) - int(zb))
    if K and (abs(K) & (abs(K) - 1) or abs(K).bit_length() - 1 > AFFINE_MAX_K):
        raise ValueError(f"affine record: K = ka + kb = {K} is not 0 or +-2**k, "
                         f"k <= {AFFINE_MAX_K}")
    if not -(1 << (AFFINE_C_BITS - 1)) <= C < 1 << (AFFINE_C_BITS - 1):
        raise ValueError(f"affine record: C = kb (x_zp - zb) = {C} does not fit "
                         f"{AFFINE_C_BITS} bits")
    k = abs(K).bit_length() - 1 if K else 0
    w0 = (C & ((1 << AFFINE_C_BITS) - 1)) | k << 24 | (K < 0) << 28 | (K == 0) << 29
    return [w0] + pack_qparam(0, multiplier, shift, zp, qmin, qmax)[1:]


def unpack_affine(words, act_signed):
    """:func:`pack_affine`'s record as ``{"K", "C", "multiplier", "shift", "zp", "qmin",
    "qmax"}``."""
    w0 = int(words[0])
    C = w0 & ((1 << AFFINE_C_BITS) - 1)
    C -= (C >> (AFFINE_C_BITS - 1)) << AFFINE_C_BITS
    K = 0 if w0 >> 29 & 1 else (-1 if w0 >> 28 & 1 else 1) << (w0 >> 24 & 0xF)
    out = unpack_qparam([0, words[1], words[2]], act_signed)
    del out["bias"]
    return {"K": K, "C": C, **out}


def _s8(v, signed):
    v &= 0xFF
    return v - 256 if signed and v >= 128 else v


def unpack_qparam(words, act_signed):
    bias = words[0] - (1 << 32) if words[0] >> 31 else words[0]
    w = words[2]
    return {"bias": bias, "multiplier": words[1], "shift": w & 0xFF,
            "zp": _s8(w >> 8, act_signed), "qmin": _s8(w >> 16, act_signed),
            "qmax": _s8(w >> 24, act_signed)}


class ISAError(ValueError):
    """An instruction that cannot be encoded or decoded."""


@dataclass(frozen=True)
class Instr:
    op: int
    reg: int = 0
    imm: int = 0
    flags: int = 0
    reserved: int = 0

    def __str__(self):
        try:
            name = Op(self.op).name
        except ValueError:
            return f".word 0x{self.op:02x} flags=0x{self.flags:02x} reg={self.reg} imm=0x{self.imm:08x}"
        if self.op in (Op.SET, Op.INC):
            try:
                rname = Reg(self.reg).name
            except ValueError:
                rname = f"r{self.reg}"
            return f"{name} {rname}, {simm(self.imm) if self.op == Op.INC else self.imm}"
        if self.op == Op.LOOP:
            return f"LOOP {self.imm}"
        fl = ""
        if self.flags:
            names = {Op.CONV: ConvFlag, Op.POST: PostFlag, Op.LOADW: LoadWFlag,
                     Op.LOADA: LoadAFlag}.get(Op(self.op))
            parts = [f.name for f in names if self.flags & f] if names else []
            fl = " " + "|".join(parts or [f"0x{self.flags:02x}"])
        return name + fl


def simm(imm):
    """An instruction's 32-bit immediate read as a signed value (``INC``)."""
    return imm - (1 << 32) if imm >> 31 else imm


def encode(op, reg=0, imm=0, flags=0):
    """The 64-bit integer of one instruction (fields range-checked)."""
    for name, v, bits in (("op", op, 8), ("reg", reg, 8), ("flags", flags, 8)):
        if not 0 <= int(v) < 1 << bits:
            raise ISAError(f"{name}={v} does not fit {bits} bits")
    imm = int(imm)
    if not -(1 << 31) <= imm < 1 << 32:
        raise ISAError(f"imm={imm} does not fit 32 bits")
    return int(op) | int(flags) << 8 | int(reg) << 16 | (imm & 0xFFFFFFFF) << 32


def decode(word):
    """Split a 64-bit instruction into its fields (no validity check: see :meth:`Instr`)."""
    word = int(word)
    return Instr(op=word & 0xFF, flags=(word >> 8) & 0xFF, reg=(word >> 16) & 0xFF,
                 reserved=(word >> 24) & 0xFF, imm=(word >> 32) & 0xFFFFFFFF)


def decode_program(code):
    """Decode a code section (bytes) into a list of :class:`Instr`."""
    if len(code) % INSTR_BYTES:
        raise ISAError(f"code size {len(code)} is not a multiple of {INSTR_BYTES} bytes")
    return [decode(int.from_bytes(code[i:i + INSTR_BYTES], "little"))
            for i in range(0, len(code), INSTR_BYTES)]


def disassemble(code, base=0):
    """Human-readable listing of a code section."""
    return "\n".join(f"{base + n * INSTR_BYTES:08x}: {ins}"
                     for n, ins in enumerate(decode_program(code)))


class Program:
    """Assembler: build a code section instruction by instruction.

    ``p.set(Reg.C_KH, 3)`` or ``p.set(C_KH=3, C_KW=3)``; ``p.inc(Reg.A_SRC, -64)``;
    ``p.op(Op.CONV, flags=...)``; ``p.op(Op.LOOP, imm=4)``; ``p.end()``; ``bytes(p)``.
    Loop nests with register strides are built by :class:`ffacc.compiler.emit.Nest`.
    """

    def __init__(self):
        self.words = []

    def set(self, reg=None, value=None, **regs):
        if reg is not None:
            self.words.append(encode(Op.SET, int(reg), value))
        for name, v in regs.items():
            self.words.append(encode(Op.SET, Reg[name], v))
        return self

    def op(self, op, flags=0, imm=0):
        self.words.append(encode(op, 0, imm, flags))
        return self

    def inc(self, reg, value):
        """``INC reg, value`` (signed)."""
        self.words.append(encode(Op.INC, int(reg), value))
        return self

    def raw(self, word):
        self.words.append(int(word))
        return self

    def insert(self, index, other):
        """Put the instructions of program ``other`` before instruction ``index``."""
        self.words[index:index] = other.words
        return self

    def end(self):
        return self.op(Op.END)

    def __bytes__(self):
        return b"".join(w.to_bytes(INSTR_BYTES, "little") for w in self.words)

    def __len__(self):
        return len(self.words)
