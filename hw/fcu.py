"""The fast convolution unit (FCU): FFA row engines, an adder tree, streams in and out.

Structure
---------
A :class:`RowEngine` is an ``L``-parallel FFA filter with ``T`` taps per sub-filter, so it
filters one input row with a kernel-row *piece* of up to ``N = L T`` taps and produces ``L``
outputs per clock. Its datapath comes entirely from :func:`ffacc.hw.ffa.ffa` (pre-addition
``B``, products, post-addition ``C`` with a one-block delay) and is pipelined:

1. input pre-addition ``u_m = sum_j B[m, j] x_j`` (registered);
2. products ``u_m * G[m, t]`` with the compiler's pre-added weights (registered, DSP-shaped);
3. sub-filter accumulation in transposed form (registered: one adder per tap per clock);
4. post-addition ``y_p = sum_m C[p,m,0] P_m + C[p,m,1] P_m(previous block)`` (registered).

In *MAC mode* (1×1 kernels, fully-connected) the pre- and post-additions are bypassed and
product ``m < L`` is ``x_m * G[m, 0]``: the engine is ``L`` plain multipliers. With
``mac_pairs`` (an FFA with ``M >= 2 L`` products) products ``L <= m < 2 L`` are
``x_{m - L} * G[m, 0]`` too: the same ``L`` activations times a second output channel's
weight, so MAC mode uses ``2 L`` of the ``M`` multipliers and computes two output channels per
unit (outputs ``y2``; the unit's second adder tree).

The :class:`FastConvUnit` runs ``rows`` engines in lock-step and sums their outputs in a
registered adder tree. Each engine takes its own input row, so one pass computes the sum of
``rows`` arbitrary (input channel, kernel row, column piece) *tasks*: a ``k``×``k`` kernel is
``k * ceil(k / N)`` tasks, accumulated over ``ceil(tasks / rows)`` passes
(:mod:`ffacc.sim.fcu_model` builds the schedule). A whole pipeline stalls on output
back-pressure; each input beat yields one output beat, ``latency`` clocks later.

Bit widths come from the configuration by interval arithmetic on the exact value ranges; sums
whose true value fits a narrower signal are computed modulo ``2**width`` (exact, since the
datapath is a ring homomorphism), so no stage is wider than its result needs.
"""

from dataclasses import dataclass, fields, asdict
from math import ceil, prod

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .ffa import ffa
from .logic import reset_less_copy

__all__ = ["FCUConfig", "ConfigError", "RowEngine", "FastConvUnit", "FcuArray", "PRESETS"]


class ConfigError(ValueError):
    """An invalid hardware configuration parameter (the message names it)."""


def _bits_for(lo, hi):
    """Smallest signed shape holding ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    need_lo = (-lo - 1).bit_length() + 1 if lo < 0 else 1
    need_hi = hi.bit_length() + 1
    return signed(max(need_lo, need_hi))


def _mul_range(a, b):
    c = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(c), max(c)


@dataclass(frozen=True)
class FCUConfig:
    """Parameters of the fast convolution unit.

    Attributes
    ----------
    parallel : tuple of int
        FFA cascade (factors 2 and 3, outermost first): ``(3,)`` is the 3-parallel FFA,
        ``(2,)`` 2-parallel, ``(2, 3)`` 6-parallel, ...
    subtaps : int
        Taps per sub-filter ``T``; a row engine handles kernel-row pieces of ``N = L T`` taps.
    rows : int
        Row engines per unit (tasks summed per pass).
    act_bits, weight_bits : int
        Activation and weight widths, 4…8.
    act_signed : bool
        Activations are signed (int8) rather than unsigned (uint8).
    mac_pairs : bool
        MAC mode computes two output channels per unit: products ``m < L`` the first,
        ``L <= m < 2 L`` the second, each ``L`` outputs summed by its own adder tree (one
        multiplication per MAC on the 3-parallel FFA, instead of two). Needs ``M >= 2 L``
        (3-parallel and the cascades; not the 2-parallel FFA, ``M = 3``). Costs a second
        adder tree per unit and ``lanes`` more accumulator lanes (block RAMs), no multiplier.
    """

    parallel: tuple = (3,)
    subtaps: int = 1
    rows: int = 6
    act_bits: int = 8
    weight_bits: int = 8
    act_signed: bool = False
    mac_pairs: bool = False

    def __post_init__(self):
        par = self.parallel
        if isinstance(par, int):
            object.__setattr__(self, "parallel", par := (par,))
        if isinstance(par, list):
            object.__setattr__(self, "parallel", par := tuple(par))
        if not par or any(f not in (2, 3) for f in par) or prod(par) > 12:
            raise ConfigError(f"parallel={par!r}: FFA factors must be 2 or 3 with a product of "
                              f"at most 12, e.g. (3,), (2,), (2, 2), (3, 2)")
        for name, lo, hi in (("subtaps", 1, 12), ("rows", 1, 64),
                             ("act_bits", 4, 8), ("weight_bits", 4, 8)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"{name}={v!r}: must be an integer in {lo}..{hi}")
        for name in ("act_signed", "mac_pairs"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be true or false")
        if self.mac_pairs and self.ffa.M < 2 * self.ffa.L:
            raise ConfigError(f"mac_pairs: the {self.ffa.L}-parallel FFA has {self.ffa.M} "
                              f"products, fewer than two output channels' {2 * self.ffa.L} "
                              f"in MAC mode; set mac_pairs = false")

    @classmethod
    def from_dict(cls, d):
        """Build from a mapping (e.g. a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown FCU config key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self):
        d = asdict(self)
        d["parallel"] = list(self.parallel)
        return d

    # --- derived quantities -------------------------------------------------------------
    @property
    def ffa(self):
        return ffa(*self.parallel)

    @property
    def L(self):
        """Outputs per clock per engine."""
        return self.ffa.L

    @property
    def mac_channels(self):
        """Output channels a unit computes in MAC mode: 2 with ``mac_pairs``, else 1."""
        return 2 if self.mac_pairs else 1

    def mode_gain(self, kw):
        """Direct MACs per multiplication for a kernel ``kw`` columns wide, in the mode ``CONV``
        runs it: MAC mode (``kw == 1``) uses ``L`` of an engine's ``M * T`` multipliers (``2 L``
        with ``mac_pairs``: two output channels); the FFA mode computes ``ceil(kw / N)`` pieces
        of ``N`` taps."""
        s, T = self.ffa, self.subtaps
        if kw == 1:
            return s.L * self.mac_channels / (s.M * T)
        return kw * s.L / (ceil(kw / self.piece_taps) * s.M * T)

    def mode_name(self, kw):
        """The mode ``CONV`` runs a kernel ``kw`` columns wide in: ``"MAC x2"`` (``kw == 1``,
        two output channels a unit with ``mac_pairs``), ``"MAC x1"``, or ``"FFA L=3, 2
        pieces"`` (``ceil(kw / N)`` pieces of ``N`` taps)."""
        if kw == 1:
            return f"MAC x{self.mac_channels}"
        pieces = -(-kw // self.piece_taps)
        return f"FFA L={self.L}, {pieces} piece{'s' if pieces > 1 else ''}"

    @property
    def piece_taps(self):
        """``N``: taps of the kernel-row piece one engine filters."""
        return self.L * self.subtaps

    @property
    def multipliers(self):
        return self.rows * self.ffa.M * self.subtaps

    @property
    def act_range(self):
        b = self.act_bits
        return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.act_signed else (0, (1 << b) - 1)

    @property
    def weight_range(self):
        b = self.weight_bits
        return -(1 << (b - 1)), (1 << (b - 1)) - 1

    @property
    def act_shape(self):
        return signed(self.act_bits) if self.act_signed else unsigned(self.act_bits)

    @property
    def preadd_range(self):
        """Range of a pre-added input (or a raw input in MAC mode)."""
        n = int(self.ffa.B.sum(axis=1).max())
        lo, hi = self.act_range
        return min(lo, n * lo), max(hi, n * hi)

    @property
    def gweight_range(self):
        """Range of a pre-added weight."""
        n = self.ffa.preadd_terms()
        lo, hi = self.weight_range
        return n * lo, n * hi

    @property
    def gweight_shape(self):
        return _bits_for(*self.gweight_range)

    @property
    def product_range(self):
        return _mul_range(self.preadd_range, self.gweight_range)

    @property
    def row_range(self):
        """Range of one engine output: an ``N``-tap correlation of raw activations."""
        lo, hi = _mul_range(self.act_range, self.weight_range)
        return self.piece_taps * lo, self.piece_taps * hi

    @property
    def out_range(self):
        lo, hi = self.row_range
        return self.rows * lo, self.rows * hi

    @property
    def out_shape(self):
        return _bits_for(*self.out_range)

    @property
    def tree_levels(self):
        return (self.rows - 1).bit_length()

    @property
    def latency(self):
        """Clocks from an input beat to its output beat (without back-pressure)."""
        return 1 + RowEngine.latency(self) + self.tree_levels

    @property
    def weight_words(self):
        """Pre-added weight registers: address ``(row * M + m) * T + t``."""
        return self.rows * self.ffa.M * self.subtaps


PRESETS = {
    "default": FCUConfig(),
    "tiny": FCUConfig(parallel=(3,), subtaps=1, rows=2),
    "p2": FCUConfig(parallel=(2,), subtaps=1, rows=4),
    "p3t2": FCUConfig(parallel=(3,), subtaps=2, rows=3),
}


def _lincomb(terms):
    """``sum(c * v)`` for small integer constants ``c``, with shifts for powers of two."""
    acc = None
    for c, v in terms:
        if c == 0:
            continue
        mag = abs(c)
        t = v if mag == 1 else (v << (mag.bit_length() - 1) if mag & (mag - 1) == 0 else v * mag)
        if acc is None:
            acc = -t if c < 0 else t
        else:
            acc = acc - t if c < 0 else acc + t
    return 0 if acc is None else acc


class RowEngine(wiring.Component):
    """One FFA row engine (see module docstring); a fixed :meth:`latency` of 4 enabled clocks,
    3 with one tap per sub-filter (``T = 1``: stage 3 would only copy the products, so the
    post-addition takes them straight from stage 2).

    Ports
    -----
    en : In(1)
        Pipeline advance; nothing changes while low.
    clear : In(1)
        Zero the filter state (sub-filter partial sums and the post-addition delay); used when
        weights change so no stale partial sum leaks into the next pass.
    mac : In(1)
        MAC mode.
    x, x_valid : In
        One block of ``L`` activations and its valid bit.
    g : In
        Pre-added weights ``G[m][t]`` (held by the parent).
    y, y_valid : Out
        ``L`` outputs and valid, :meth:`latency` enabled clocks after the input.
    y2 : Out (``mac_pairs`` only)
        In MAC mode, the second output channel's ``L`` outputs (products ``L..2L-1``), with
        ``y``; undefined otherwise.
    y_mac : Out(1)
        The beat at the output is a MAC-mode beat (``mac`` when it entered).
    y_next : Out(1)
        ``y_valid`` of the next enabled clock (a beat reaches the output then).
    """

    @staticmethod
    def latency(config):
        return 4 if config.subtaps > 1 else 3

    def __init__(self, config):
        self.config = cfg = config
        s = cfg.ffa
        super().__init__({
            "en": In(1), "clear": In(1), "mac": In(1),
            "x": In(data.ArrayLayout(cfg.act_shape, s.L)), "x_valid": In(1),
            "g": In(data.ArrayLayout(data.ArrayLayout(cfg.gweight_shape, cfg.subtaps), s.M)),
            "y": Out(data.ArrayLayout(_bits_for(*cfg.row_range), s.L)), "y_valid": Out(1),
            "y_mac": Out(1), "y_next": Out(1),
            **({"y2": Out(data.ArrayLayout(_bits_for(*cfg.row_range), s.L))}
               if cfg.mac_pairs else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        s = cfg.ffa
        L, M, T = s.L, s.M, cfg.subtaps
        pre_shape = _bits_for(*cfg.preadd_range)
        prod_shape = _bits_for(*cfg.product_range)
        plo, phi = cfg.product_range
        acc_shape = _bits_for(min(T * plo, cfg.row_range[0]), max(T * phi, cfg.row_range[1]))

        # stage 1: input pre-addition (or the raw input in MAC mode). The data registers of
        # stages 1-2 have no reset (only the valid bits qualify them): plain flip-flops, no
        # reset logic (on the iCE40 26 logic cells fewer; yosys still keeps them out of the
        # SB_MAC16)
        u = [Signal(pre_shape, name=f"u{i}", reset_less=True) for i in range(M)]
        v1 = Signal()
        mac1 = Signal()
        # stage 2: products
        p = [[Signal(prod_shape, name=f"prod{i}_{t}", reset_less=True) for t in range(T)]
             for i in range(M)]
        v2 = Signal()
        mac2 = Signal()
        # stage 3 (T > 1): sub-filter outputs; transposed-form state
        if T > 1:
            sub = [Signal(acc_shape, name=f"sub{i}", reset_less=True) for i in range(M)]
            state = [[Signal(acc_shape, name=f"state{i}_{t}", reset_less=True)
                      for t in range(1, T)]
                     for i in range(M)]
            v3, mac3 = Signal(), Signal()
        else:
            sub, state, v3, mac3 = [p[i][0] for i in range(M)], [], v2, mac2
        # stage 4: post-addition with the one-block delay
        prev = [Signal(acc_shape, name=f"prev{i}", reset_less=True) for i in range(M)]
        y = reset_less_copy(m, self.y, name="y_q")
        y2 = reset_less_copy(m, self.y2, name="y2_q") if cfg.mac_pairs else None

        with m.If(self.en):
            for i in range(M):
                pre = _lincomb([(int(s.B[i, j]), self.x[j]) for j in range(L)])
                raw = (self.x[i] if i < L else
                       self.x[i - L] if cfg.mac_pairs and i < 2 * L else 0)
                with m.If(self.mac):
                    m.d.sync += u[i].eq(raw)
                with m.Else():
                    m.d.sync += u[i].eq(pre)
            m.d.sync += [v1.eq(self.x_valid), mac1.eq(self.mac)]

            for i in range(M):
                for t in range(T):
                    m.d.sync += p[i][t].eq(u[i] * self.g[i][t])
            m.d.sync += [v2.eq(v1), mac2.eq(mac1)]

            if T > 1:
                with m.If(v2):
                    for i in range(M):
                        with m.If(mac2):
                            m.d.sync += sub[i].eq(p[i][0])
                        with m.Else():
                            m.d.sync += sub[i].eq(p[i][0] + state[i][0])
                        for t in range(1, T):
                            later = state[i][t] if t + 1 < T else 0
                            m.d.sync += state[i][t - 1].eq(p[i][t] + later)
                m.d.sync += [v3.eq(v2), mac3.eq(mac2)]

            with m.If(v3):
                for q in range(L):
                    post = _lincomb([(int(s.C[q, i, 0]), sub[i]) for i in range(M)]
                                    + [(int(s.C[q, i, 1]), prev[i]) for i in range(M)])
                    with m.If(mac3):
                        m.d.sync += y[q].eq(sub[q])
                    with m.Else():
                        m.d.sync += y[q].eq(post)
                    if y2 is not None:      # only a MAC beat reads it: no multiplexer
                        m.d.sync += y2[q].eq(sub[L + q])
                m.d.sync += [prev[i].eq(sub[i]) for i in range(M)]
            m.d.sync += [self.y_valid.eq(v3), self.y_mac.eq(mac3)]
        m.d.comb += self.y_next.eq(v3)

        with m.If(self.clear):
            m.d.sync += [r.eq(0) for r in prev]
            m.d.sync += [r.eq(0) for row in state for r in row]
        return m


class FastConvUnit(wiring.Component):
    """``rows`` FFA row engines summed by a registered adder tree.

    Ports
    -----
    i : In(stream)
        Payload ``[row][j]``: one block of ``L`` activations for every engine.
    o : Out(stream)
        Payload ``[j]``: ``L`` sums of the engines' outputs; with ``mac_pairs``
        ``{y: [j], y2: [j], mac: 1}``: the sums of ``y`` and of ``y2`` (the second output
        channel of a MAC beat) and whether the beat is a MAC beat.
    w_en, w_addr, w_data : In
        Write ``write_rows`` row engines' pre-added weights: engines ``w_addr * write_rows``
        onwards, ``w_data[e * M * T + m * T + t]`` the word ``G[m, t]`` of the ``e``-th (``M * T``
        words per engine; one engine a clock by default, every engine at once with
        ``write_rows=rows``). With one bank a write also clears the filter state; write
        weights only while no beat is in flight.
    w_bank : In(range(banks)), with ``banks`` 2 or 3
        The bank a write goes to. Each input beat names the bank its products use
        (``i.payload.bank``, beside the activations in ``i.payload.x``), so the weights of the
        next pass load into one bank while beats of the current pass, using another, are
        still in flight: passes run back to back. A beat's products read its bank's weights in
        the enabled clock after the one the beat is taken in (``input_reg=False``; a clock
        later with the input register); a write in that clock or after it is safe. With three
        banks the parent can write the next pass's bank while the last beats of the pass
        before the current one are still in flight (it was used two passes ago). Nothing
        clears the filter state: a beat depends only on the blocks of its own row that the
        parent streams before it (the parent discards each row's leading ``D`` output blocks,
        as with one bank).
    mac : In(1)
        MAC mode for 1×1 kernels and fully-connected layers.
    o_next : Out(1)
        ``o.valid`` of the next clock while ``o.ready`` stays high: a parent can address what
        the output will need (the accelerator reads the accumulator) a clock ahead.

    ``input_reg=False`` drops the input register, for a parent whose inputs come straight from
    registers (the accelerator's line-buffer pipeline): one clock less of latency.
    ``banks=2`` or ``3`` doubles or triples the weight registers (see ``w_bank``).
    """

    def __init__(self, config=None, input_reg=True, banks=1, write_rows=1):
        self.config = cfg = config or FCUConfig()
        self.input_reg = input_reg
        if banks not in (1, 2, 3):
            raise ConfigError(f"banks={banks}: the unit has 1, 2 or 3 weight banks")
        if write_rows < 1 or cfg.rows % write_rows:
            raise ConfigError(f"write_rows={write_rows}: not a divisor of the unit's "
                              f"{cfg.rows} rows")
        self.banks = banks
        self.write_rows = write_rows
        x = data.ArrayLayout(data.ArrayLayout(cfg.act_shape, cfg.L), cfg.rows)
        ports = {
            "i": In(stream.Signature(x if banks == 1 else data.StructLayout(
                {"x": x, "bank": range(banks)}))),
            "o": Out(stream.Signature(self.out_layout(cfg))),
            "w_en": In(1), "w_addr": In(range(max(2, cfg.rows // write_rows))),
            "w_data": In(data.ArrayLayout(cfg.gweight_shape,
                                          write_rows * cfg.ffa.M * cfg.subtaps)),
            "mac": In(1), "o_next": Out(1),
        }
        if banks > 1:
            ports["w_bank"] = In(range(banks))
        super().__init__(ports)

    @staticmethod
    def out_layout(cfg):
        sums = data.ArrayLayout(cfg.out_shape, cfg.L)
        return data.StructLayout({"y": sums, "y2": sums, "mac": 1}) if cfg.mac_pairs else sums

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        s = cfg.ffa
        L, M, T, R = s.L, s.M, cfg.subtaps, cfg.rows
        pairs = cfg.mac_pairs

        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]

        # weight register file, per bank: write_rows engines' M * T words per write
        MT = M * T
        WR = self.write_rows * MT
        nbank = self.banks
        gb = [[Signal(cfg.gweight_shape, name=f"g{a}" if nbank == 1 else f"g{b}_{a}",
                      reset_less=True)
               for a in range(cfg.weight_words)] for b in range(nbank)]
        with m.If(self.w_en):
            with m.Switch(self.w_addr if nbank == 1 else Cat(self.w_addr, self.w_bank)):
                for b in range(nbank):
                    for grp in range(R // self.write_rows):
                        with m.Case(grp + (b << len(self.w_addr))):
                            m.d.sync += [gb[b][grp * WR + a].eq(self.w_data[a])
                                         for a in range(WR)]

        # input register
        if self.input_reg:
            xin = Signal(self.i.payload.shape(), name="x", reset_less=True)
            xv = Signal()
            with m.If(adv):
                m.d.sync += [xin.eq(self.i.payload), xv.eq(self.i.valid)]
        else:
            xin, xv = self.i.payload, self.i.valid
        if nbank == 1:
            x, g = xin, gb[0]
        else:
            # the bank of the beat in the engines' stage 1, whose products stage 2 forms
            x, bank1 = xin.x, Signal(range(nbank))
            with m.If(adv):
                m.d.sync += bank1.eq(xin.bank)
            if nbank == 2:
                g = [Mux(bank1, b1, b0) for b0, b1 in zip(*gb)]
            else:
                g = [Mux(bank1[1], b2, Mux(bank1[0], b1, b0)) for b0, b1, b2 in zip(*gb)]

        outs = []
        valid = None
        for r in range(R):
            eng = m.submodules[f"row{r}"] = RowEngine(cfg)
            m.d.comb += [eng.en.eq(adv), eng.clear.eq(self.w_en if nbank == 1 else 0),
                         eng.mac.eq(self.mac),
                         eng.x.eq(x[r]), eng.x_valid.eq(xv)]
            for i in range(M):
                for t in range(T):
                    m.d.comb += eng.g[i][t].eq(g[(r * M + i) * T + t])
            # with mac_pairs the engine's 2 L outputs: y, then y2 (two adder trees in one)
            outs.append([eng.y[j] for j in range(L)] + ([eng.y2[j] for j in range(L)]
                                                        if pairs else []))
            valid, nxt_valid, mac = eng.y_valid, eng.y_next, eng.y_mac

        # registered adder tree; every level modulo the output width (exact, see module doc)
        level = 0
        width = len(outs[0])
        while len(outs) > 1:
            nxt = []
            for a in range(0, len(outs), 2):
                pair = outs[a:a + 2]
                regs = [Signal(cfg.out_shape, name=f"sum{level}_{a // 2}_{j}", reset_less=True)
                        for j in range(width)]
                with m.If(adv):
                    for j in range(width):
                        m.d.sync += regs[j].eq(sum(o[j] for o in pair))
                nxt.append(regs)
            vreg = Signal(name=f"sum{level}_valid")
            mreg = Signal(name=f"sum{level}_mac")
            with m.If(adv):
                m.d.sync += [vreg.eq(valid), mreg.eq(mac)]
            outs, valid, nxt_valid, mac, level = nxt, vreg, valid, mreg, level + 1

        m.d.comb += [self.o.valid.eq(valid), self.o_next.eq(nxt_valid)]
        if pairs:
            m.d.comb += self.o.payload.mac.eq(mac)
        for j in range(L):
            if pairs:
                m.d.comb += [self.o.payload.y[j].eq(outs[0][j]),
                             self.o.payload.y2[j].eq(outs[0][L + j])]
            else:
                m.d.comb += self.o.payload[j].eq(outs[0][j])
        return m


class FcuArray(wiring.Component):
    """``lanes`` fast convolution units (one per output channel), every one fed the same
    beats: a pass streams the same ``rows`` (channel, kernel-row) input rows to all lanes.

    Ports
    -----
    i : In(stream of {x, bank}), no back-pressure
        A beat: ``x[row][j]``, a block of ``L`` activations for every engine; ``bank``, the
        weight bank its products use (``banks`` > 1). The units take a beat every clock.
    w_en : In(1); w_bank : In(range(banks)); w_data : In(rows x lanes x M*T weights)
        Write a weight set into bank ``w_bank``: a weight-buffer word, every engine's
        pre-added words for every lane (``[engine][lane][m * T + t]``), all at once.
    mac : In(1)
        MAC mode (1x1 kernels, fully-connected layers).
    o : Out(out_lanes x L sums); o_valid, o_next : Out(1)
        Every lane's ``L`` sums, valid together; ``o_next`` is ``o_valid`` of the next clock.
        With ``mac_pairs`` there are ``2 * lanes`` output lanes: lane ``lanes + k`` is unit
        ``k``'s second output channel, defined for a MAC beat (``o_pair``).
    o_pair : Out(1)
        With ``mac_pairs``, the beat at ``o`` is a MAC beat: its lanes ``lanes..2 lanes - 1``
        hold sums. Without, 0.
    """

    def __init__(self, config, *, lanes, banks):
        self.config, self.lanes, self.banks = config, lanes, banks
        cfg = config
        x = data.ArrayLayout(data.ArrayLayout(cfg.act_shape, cfg.L), cfg.rows)
        words = cfg.ffa.M * cfg.subtaps
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": x, "bank": range(max(2, banks))}),
                                     always_ready=True)),
            "w_en": In(1), "w_bank": In(range(max(2, banks))),
            "w_data": In(data.ArrayLayout(data.ArrayLayout(
                data.ArrayLayout(cfg.gweight_shape, words), lanes), cfg.rows)),
            "mac": In(1),
            "o": Out(data.ArrayLayout(data.ArrayLayout(cfg.out_shape, cfg.L),
                                      lanes * cfg.mac_channels)),
            "o_valid": Out(1), "o_next": Out(1), "o_pair": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, R = self.config, self.config.rows
        for lane in range(self.lanes):
            f = m.submodules[f"fcu{lane}"] = FastConvUnit(cfg, input_reg=False,
                                                          banks=self.banks, write_rows=R)
            m.d.comb += [f.o.ready.eq(1), f.mac.eq(self.mac), f.i.valid.eq(self.i.valid),
                         f.w_en.eq(self.w_en), f.w_addr.eq(0),
                         f.w_data.eq(Cat(self.w_data[r][lane] for r in range(R)))]
            if cfg.mac_pairs:
                m.d.comb += [self.o[lane].eq(f.o.payload.y),
                             self.o[self.lanes + lane].eq(f.o.payload.y2)]
                if lane == 0:
                    m.d.comb += self.o_pair.eq(f.o.payload.mac)
            else:
                m.d.comb += self.o[lane].eq(f.o.payload)
            if self.banks > 1:
                m.d.comb += [f.i.payload.x.eq(self.i.payload.x),
                             f.i.payload.bank.eq(self.i.payload.bank), f.w_bank.eq(self.w_bank)]
            else:
                m.d.comb += f.i.payload.eq(self.i.payload.x)
            if lane == 0:
                m.d.comb += [self.o_valid.eq(f.o.valid), self.o_next.eq(f.o_next)]
        return m
