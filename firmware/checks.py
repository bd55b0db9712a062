"""The command constraints: one table from which the RTL's parameter checks and the ISS's are
both generated.

A command (``LOADA``, ``CONV``, ...) is legal when every :class:`Check` of its entry in
:data:`CHECKS` holds; otherwise the run stops with ``Err.PARAM`` at the command's pc. A check
is an expression over the parameter registers (:class:`~ffacc.firmware.isa.Reg`), the
command's flags, the configuration's sizes and a few derived values (:data:`DERIVED`), written
with the operators of :class:`Term`::

    Check("rows within the pitch", (A_NR != 0) & (A_NR <= LB_PITCH))

Each check belongs to a *stage*: ``"regs"`` checks need the registers only (the controller
decides them all in one clock as the command is decoded); a derived value's name (``"band"``,
``"acc"``, ...) is the stage in which the controller has that value (a product through its
shared multiplier, a count); ``"src"`` checks a load's source, once read from the cold
registers. The ISS evaluates the same expressions on integers (:func:`enforce`), in table
order, and names the failing check, its expression and the values in its message. The
controller builds each stage's condition with :func:`rtl_ok`, which folds the configuration
into constants and writes comparisons with a constant as :func:`~ffacc.hw.logic.lt_const`.

A register's width (:func:`~ffacc.firmware.isa.reg_bits`) bounds its value already (``SET``
of a wider value stops with ``Err.PARAM``, ``INC`` wraps within it), so the table has no check
that a width decides in every configuration (``A_H < 2**16``). Where a configuration's widths
decide one (``C_WSET < wb_sets`` when ``wb_sets`` is a power of two), :func:`bounds` finds it
and the RTL has no logic for it (:func:`decided`; ``ffacc checks --config`` marks it).

A few constraints depend on what a command does as it runs (a ``CONV``'s weight sets past the
buffer's end, its rows outside the loaded band; a ``POST`` record's shift). Those are listed in
:data:`RUNTIME` with the unit that enforces them in the RTL (the ISS checks them where the
command's data is at hand); they are not generated.
"""

from dataclasses import dataclass
from functools import partial
from math import ceil

from ffacc.firmware.isa import Err, LoadAFlag, LoadWFlag, Op, PostFlag, Reg, reg_bits

__all__ = ["Term", "Check", "CHECKS", "DERIVED", "RUNTIME", "CheckError", "enforce",
           "evaluate", "bounds", "decided", "flag_bits", "rtl_ok", "rtl_value",
           "product_operands", "table", "stages"]


class CheckError(ValueError):
    """A command whose parameters break a check (``Err.PARAM``)."""

    def __init__(self, op, check, detail):
        self.op, self.check, self.code = op, check, Err.PARAM
        super().__init__(detail)


# ------------------------------------------------------------------------ expressions
class Term:
    """An expression node. Arithmetic (``+ - *``), comparisons and ``& | ~`` build trees;
    a tree is never a Python truth value (``a <= b <= c`` is refused: write two checks or
    ``&``)."""

    def __add__(self, o):
        return Bin("+", self, _t(o))

    def __radd__(self, o):
        return Bin("+", _t(o), self)

    def __sub__(self, o):
        return Bin("-", self, _t(o))

    def __rsub__(self, o):
        return Bin("-", _t(o), self)

    def __mul__(self, o):
        return Bin("*", self, _t(o))

    def __rmul__(self, o):
        return Bin("*", _t(o), self)

    def __le__(self, o):
        return Cmp("<=", self, _t(o))

    def __lt__(self, o):
        return Cmp("<", self, _t(o))

    def __ge__(self, o):
        return Cmp("<=", _t(o), self)

    def __gt__(self, o):
        return Cmp("<", _t(o), self)

    def __eq__(self, o):
        return Cmp("==", self, _t(o))

    def __ne__(self, o):
        return Cmp("!=", self, _t(o))

    def __and__(self, o):
        return Logic("&", self, _t(o))

    def __or__(self, o):
        return Logic("|", self, _t(o))

    def __invert__(self):
        return Not(self)

    def __bool__(self):
        raise TypeError(f"{self} is an expression, not a truth value (a chained comparison? "
                        "write it with &)")

    __hash__ = object.__hash__

    def mod(self, n):
        """``self`` modulo ``n`` (a power of two in the RTL: its low bits)."""
        return Mod(self, _t(n))

    def bits(self, lo, hi):
        """Bits ``lo .. hi - 1`` of ``self`` (a field of a packed register)."""
        return Field(self, lo, hi)

    def names(self):
        """The register, flag, size and derived-value names ``self`` uses, in order."""
        out = []
        for c in self.children():
            out += [n for n in c.names() if n not in out]
        return out

    def children(self):
        return ()


def _t(v):
    if isinstance(v, Term):
        return v
    if isinstance(v, int):
        return Lit(v)
    raise TypeError(f"{v!r} is not an expression or an integer")


@dataclass(eq=False)
class Lit(Term):
    v: int

    def __str__(self):
        v = self.v
        if v >= 1 << 12 and v & (v - 1) == 0:
            return f"2**{v.bit_length() - 1}"
        return str(v)


@dataclass(eq=False)
class R(Term):
    """A parameter register."""
    reg: Reg

    def __str__(self):
        return self.reg.name

    def names(self):
        return [self.reg.name]


@dataclass(eq=False)
class Size(Term):
    """A size of the configuration (``cfg.<attr>``), a constant in the RTL."""
    attr: str

    def __str__(self):
        return self.attr

    def names(self):
        return [self.attr]


@dataclass(eq=False)
class Flag(Term):
    """An instruction flag (1 when set)."""
    flag: object

    def __str__(self):
        return self.flag.name

    def names(self):
        return [self.flag.name]


@dataclass(eq=False)
class Val(Term):
    """A derived value (:data:`DERIVED`): the controller has it in the stage of its name."""
    name: str

    def __str__(self):
        return self.name

    def names(self):
        return [self.name]


@dataclass(eq=False)
class Bin(Term):
    op: str
    a: Term
    b: Term

    def __str__(self):
        return f"({self.a} {self.op} {self.b})" if self.op != "*" else f"{self.a} * {self.b}"

    def children(self):
        return self.a, self.b


def _bare(t):
    """A sum or difference printed without its outer parentheses (a comparison's side)."""
    s = str(t)
    return s[1:-1] if isinstance(t, Bin) and t.op != "*" else s


@dataclass(eq=False)
class Cmp(Term):
    op: str
    a: Term
    b: Term

    def __str__(self):
        return f"{_bare(self.a)} {self.op} {_bare(self.b)}"

    def children(self):
        return self.a, self.b


@dataclass(eq=False)
class Logic(Term):
    op: str
    a: Term
    b: Term

    def __str__(self):
        return f"({self.a}) {'and' if self.op == '&' else 'or'} ({self.b})"

    def children(self):
        return self.a, self.b


@dataclass(eq=False)
class Not(Term):
    a: Term

    def __str__(self):
        return f"not {self.a}" if isinstance(self.a, (R, Flag, Val)) else f"not ({self.a})"

    def children(self):
        return (self.a,)


@dataclass(eq=False)
class Mod(Term):
    a: Term
    n: Term

    def __str__(self):
        return f"{self.a} mod {self.n}"

    def children(self):
        return self.a, self.n


@dataclass(eq=False)
class Field(Term):
    a: Term
    lo: int
    hi: int

    def __str__(self):
        return f"{self.a}[{self.lo}:{self.hi}]"

    def children(self):
        return (self.a,)


@dataclass(eq=False)
class CeilDiv(Term):
    """``ceil(a / n)``; the RTL counts it (a derived value, never generated)."""
    a: Term
    n: Term

    def __str__(self):
        return f"ceil({self.a} / {self.n})"

    def children(self):
        return self.a, self.n


# ------------------------------------------------------------------------ the table
@dataclass(eq=False)
class Check:
    """One constraint: ``expr`` must hold. ``stage``: ``"regs"``, ``"src"`` or a derived
    value's name (see the module's doc). ``when``: the configurations it applies to (a
    predicate of ``cfg``; ``None``: all)."""
    what: str
    expr: Term
    stage: str = "regs"
    when: object = None

    def applies(self, cfg):
        return self.when is None or bool(self.when(cfg))


g = {r.name: R(r) for r in Reg}
A_CH, A_H, A_W, A_HB0, A_NR, LB_PITCH, A_PITCH = (g[n] for n in (
    "A_CH", "A_H", "A_W", "A_HB0", "A_NR", "LB_PITCH", "A_PITCH"))
W_SRC, W_COUNT, W_DST, Q_SRC, Q_COUNT, Q_DST = (g[n] for n in (
    "W_SRC", "W_COUNT", "W_DST", "Q_SRC", "Q_COUNT", "Q_DST"))
C_KH, C_KW, C_PT, C_PL, C_WOUT, C_NY, C_WSET, C_LANES, C_ACC = (g[n] for n in (
    "C_KH", "C_KW", "C_PT", "C_PL", "C_WOUT", "C_NY", "C_WSET", "C_LANES", "C_ACC"))
O_Q, O_STRIDE, D_N, D_SZ, O_NLEV, O_POOLK, O_POOLPAD = (g[n] for n in (
    "O_Q", "O_STRIDE", "D_N", "D_SZ", "O_NLEV", "O_POOLK", "O_POOLPAD"))
A_CSHIFT, A_LB0 = g["A_CSHIFT"], g["A_LB0"]
del g
lb_width, lb_rows, lb_banks, wb_sets, qb_entries, max_kernel, lanes, acc_lanes, acc_blocks, \
    L, bus_bytes, max_pool = (Size(n) for n in ("lb_width", "lb_rows", "lb_banks", "wb_sets",
                                                "qb_entries", "max_kernel", "lanes",
                                                "acc_lanes", "acc_blocks", "L", "bus_bytes",
                                                "max_pool"))
POOL = Flag(PostFlag.POOL)
CODES = Flag(PostFlag.CODES)
AFFINE = Flag(PostFlag.AFFINE)
DECODE = Flag(LoadAFlag.DECODE)


def _in(x, lo, hi):
    """``lo <= x <= hi``, as the two comparisons."""
    return Between(_t(lo) <= x, x <= hi)


@dataclass(eq=False)
class Between(Term):
    """``lo <= x <= hi``: the two comparisons (printed as one)."""
    lo: Cmp
    hi: Cmp

    def __str__(self):
        return f"{self.lo.a} <= {self.lo.b} <= {self.hi.b}"

    def children(self):
        return self.lo, self.hi


def _wide(cfg):
    return cfg.wide_loads


def _pairs(cfg):
    return cfg.fcu.mac_pairs


def _no_pairs(cfg):
    return not cfg.fcu.mac_pairs


def _codes(cfg):
    return cfg.act_codes


def _no_codes(cfg):
    return not cfg.act_codes


def _affine(cfg):
    return cfg.post_affine


def _no_affine(cfg):
    return not cfg.post_affine


def _pads(cfg):
    return cfg.pool_pads


def _no_pads(cfg):
    # (without pool_pads O_POOLPAD is a bit wide and nothing reads it, as O_NLEV without
    # act_codes: the iCEBreaker's UP5K has no logic cell left for a check of it)
    return not cfg.pool_pads


# O_POOLPAD's fields: the padding above, left of, below and right of the band
PAD_T, PAD_L, PAD_B, PAD_R = (O_POOLPAD.bits(4 * i, 4 * i + 4) for i in range(4))


def _strided(cfg):
    return cfg.strided_loads


def _not_strided(cfg):
    return not cfg.strided_loads


def _strided_codes(cfg):
    return cfg.strided_loads and cfg.act_codes


def _strided_bus4(cfg):
    return cfg.strided_loads and cfg.bus_bytes == 4


# the values a later stage checks: a product through the controller's shared multiplier (the
# RTL keeps its low bits and a sticky bit above them, so a product too large stays too large)
# or a count the controller works out; the ISS computes them exactly
DERIVED = {
    Op.LOADA: {"band": (A_CH - 1) * LB_PITCH},
    Op.CONV: {"band": (A_CH - 1) * LB_PITCH, "wob": CeilDiv(C_WOUT, L),
              "acc": C_NY * Val("wob")},
    Op.POST: {"wob": CeilDiv(C_WOUT, L), "acc": C_NY * Val("wob")},
}

CHECKS = {
    Op.LOADA: [
        Check("the width fits the line buffer", _in(A_W, 1, lb_width)),
        Check("the channels fit the line buffer", _in(A_CH, 1, lb_rows)),
        Check("the rows fit a channel's pitch", _in(A_NR, 1, LB_PITCH)),
        Check("the pitch fits the line buffer", LB_PITCH <= lb_rows),
        Check("the band lies in the map", A_HB0 + A_NR <= A_H),
        Check("the row pitch (when given) is at least the width",
              (A_PITCH == 0) | (A_PITCH >= A_W), when=_no_codes),
        Check("the row pitch (when given) is at least the width",
              DECODE | (A_PITCH == 0) | (A_PITCH >= A_W), when=_codes),
        Check("the row pitch (when given) is at least the width's bytes of codes",
              ~DECODE | (A_PITCH == 0) | (A_PITCH + A_PITCH >= A_W), when=_codes),
        Check("codes fill whole bytes of a line-buffer row", ~DECODE | (A_W + A_W.mod(2)
                                                                        <= lb_width),
              when=_codes),
        Check("a column step needs strided_loads", A_CSHIFT == 0, when=_not_strided),
        Check("a first line-buffer row needs strided_loads", A_LB0 == 0, when=_not_strided),
        Check("the column step is at most the bus width", A_CSHIFT <= 2, when=_strided_bus4),
        Check("a column step needs the row pitch", (A_CSHIFT == 0) | (A_PITCH != 0),
              when=_strided),
        Check("codes are loaded without a column step", ~DECODE | (A_CSHIFT == 0),
              when=_strided_codes),
        Check("the last channel's rows fit the line buffer",
              Val("band") + A_LB0 + A_NR <= lb_rows, stage="band", when=_strided),
        Check("the last channel's rows fit the line buffer", Val("band") + A_NR <= lb_rows,
              stage="band", when=_not_strided),
    ],
    Op.LOADW: [
        Check("at least one set", W_COUNT != 0),
        Check("the sets fit the weight buffer", W_COUNT <= wb_sets),
        Check("the sets end within the weight buffer", W_DST + W_COUNT <= wb_sets),
        Check("the weights start on a bus word (wide loads)", W_SRC.mod(bus_bytes) == 0,
              stage="src", when=_wide),
    ],
    Op.LOADQ: [
        Check("at least one record", Q_COUNT != 0),
        Check("the records fit the parameter buffer", Q_COUNT <= qb_entries),
        Check("the records end within the parameter buffer", Q_DST + Q_COUNT <= qb_entries),
        Check("the records start on a bus word (wide loads)", Q_SRC.mod(bus_bytes) == 0,
              stage="src", when=_wide),
    ],
    Op.CONV: [
        Check("the kernel height is 1..max_kernel", _in(C_KH, 1, max_kernel)),
        Check("the kernel width is 1..max_kernel", _in(C_KW, 1, max_kernel)),
        Check("the lanes are 1..lanes", _in(C_LANES, 1, lanes), when=_no_pairs),
        Check("the lanes are 1..lanes, or 1..acc_lanes in MAC mode (a 1-wide kernel)",
              _in(C_LANES, 1, lanes) | ((C_KW == 1) & _in(C_LANES, 1, acc_lanes)),
              when=_pairs),
        Check("the band's rows fit the accumulator", _in(C_NY, 1, acc_blocks)),
        Check("the band's width fits the accumulator", _in(C_WOUT, 1, acc_blocks * L)),
        Check("the channels fit the line buffer", _in(A_CH, 1, lb_rows)),
        Check("the top padding is below max_kernel", C_PT < max_kernel),
        Check("the left padding is below max_kernel", C_PL < max_kernel),
        Check("the input width fits the line buffer", _in(A_W, 1, lb_width)),
        Check("the map height is 1..2**15 - 1", _in(A_H, 1, (1 << 15) - 1)),
        Check("the pitch is 1..lb_rows", _in(LB_PITCH, 1, lb_rows)),
        Check("several channels: the pitch equals the kernel height modulo the banks",
              (A_CH == 1) | ((LB_PITCH - C_KH).mod(lb_banks) == 0)),
        Check("the first weight set is in the weight buffer", C_WSET < wb_sets),
        Check("the channels' rows fit the line buffer", Val("band") < lb_rows, stage="band"),
        Check("the band ends within the accumulator", C_ACC + Val("acc") <= acc_blocks,
              stage="acc"),
    ],
    Op.POST: [
        Check("the lanes are 1..acc_lanes", _in(C_LANES, 1, acc_lanes)),
        Check("the band's rows fit the accumulator", _in(C_NY, 1, acc_blocks)),
        Check("the band's width fits the accumulator", _in(C_WOUT, 1, acc_blocks * L)),
        Check("the lanes' records are in the parameter buffer", O_Q + C_LANES <= qb_entries),
        Check("AFFINE needs a configuration with post_affine", ~AFFINE,
              when=_no_affine),
        Check("with AFFINE, the lanes' two records each are in the parameter buffer",
              ~AFFINE | (O_Q + C_LANES + C_LANES <= qb_entries), when=_affine),
        Check("the stride is not 0", O_STRIDE != 0),
        Check("a pool's window is 2..max_pool", ~POOL | _in(O_POOLK, 2, max_pool)),
        Check("a pool's band holds a window's rows", ~POOL | (C_NY >= O_POOLK),
              when=_no_pads),
        Check("a pool's padding is below its window",
              ~POOL | ((PAD_T < O_POOLK) & (PAD_L < O_POOLK) & (PAD_B < O_POOLK)
                       & (PAD_R < O_POOLK)), when=_pads),
        Check("a pool's band and its padding hold a window's rows",
              ~POOL | (C_NY + PAD_T + PAD_B >= O_POOLK), when=_pads),
        Check("the output levels are 0 (none) or 2..64", (O_NLEV != 1) & (O_NLEV <= 64),
              when=_codes),
        Check("codes need output levels", ~CODES | (O_NLEV != 0), when=_codes),
        Check("codes (4 bits) name at most 16 levels", ~CODES | (O_NLEV <= 16), when=_codes),
        Check("the band ends within the accumulator", C_ACC + Val("acc") <= acc_blocks,
              stage="acc"),
    ],
    Op.ADD: [
        Check("at least one element", D_N != 0),
        Check("the shift is 1..62", _in(D_SZ.bits(0, 8), 1, 62)),
        Check("AFFINE needs a configuration with post_affine", ~AFFINE, when=_no_affine),
        Check("with AFFINE, its record is in the parameter buffer",
              ~AFFINE | (O_Q < qb_entries), when=_affine),
    ],
}

# what a command's run checks in the RTL, by the unit that does it (the ISS where it has the
# data): not generated from expressions
RUNTIME = {
    Op.CONV: [("the weight sets of every pass lie in the weight buffer", "ConvSequencer"),
              ("every input row a pass reads is in the loaded band", "ConvSequencer")],
    Op.POST: [("every lane's record has a shift of 1..62", "PostUnit")],
    Op.ADD: [("with AFFINE, its record has a shift of 1..62", "PostUnit")],
}


def stages(op):
    """The stages of ``op``'s checks, in order."""
    out = []
    for c in CHECKS.get(op, ()):
        if c.stage not in out:
            out.append(c.stage)
    return out


# ------------------------------------------------------------------------ on integers
def evaluate(t, env):
    """The integer value of ``t``; ``env(name)`` gives registers, flags, sizes and derived
    values."""
    if isinstance(t, Lit):
        return t.v
    if isinstance(t, (R, Size, Flag, Val)):
        return int(env(t.names()[0]))
    if isinstance(t, Bin):
        a, b = evaluate(t.a, env), evaluate(t.b, env)
        return a + b if t.op == "+" else a - b if t.op == "-" else a * b
    if isinstance(t, Cmp):
        a, b = evaluate(t.a, env), evaluate(t.b, env)
        return int({"<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[t.op])
    if isinstance(t, Between):
        return int(bool(evaluate(t.lo, env) and evaluate(t.hi, env)))
    if isinstance(t, Logic):
        a, b = evaluate(t.a, env), evaluate(t.b, env)
        return int(bool(a and b) if t.op == "&" else bool(a or b))
    if isinstance(t, Not):
        return int(not evaluate(t.a, env))
    if isinstance(t, Mod):
        return evaluate(t.a, env) % evaluate(t.n, env)
    if isinstance(t, Field):
        return evaluate(t.a, env) >> t.lo & ((1 << (t.hi - t.lo)) - 1)
    if isinstance(t, CeilDiv):
        return ceil(evaluate(t.a, env) / evaluate(t.n, env))
    raise TypeError(f"not an expression: {t!r}")


def flag_bits():
    """The instruction flags a check may name, by name."""
    return {f.name: f for f in (*PostFlag, *LoadWFlag, *LoadAFlag)}


def enforce(op, cfg, regs, flags=0, stage=None):
    """Check command ``op`` (every stage, or only ``stage``) for configuration ``cfg`` with
    register values ``regs`` (indexable by :class:`Reg`) and instruction ``flags``; raise
    :class:`CheckError` naming the first check that fails, its expression and the values."""
    fb = flag_bits()
    derived = DERIVED.get(op, {})
    memo = {}

    def env(name):
        if name in Reg.__members__:
            return regs[Reg[name]]
        if name in derived:
            if name not in memo:
                memo[name] = evaluate(derived[name], env)
            return memo[name]
        if name in fb:
            return int(bool(flags & fb[name]))
        return getattr(cfg, name)

    for c in CHECKS.get(op, ()):
        if (stage is None or c.stage == stage) and c.applies(cfg) and not evaluate(c.expr, env):
            vals = ", ".join(f"{n}={env(n)}" for n in c.expr.names())
            raise CheckError(op, c, f"{Op(op).name} breaks the check '{c.what}': {c.expr} "
                                    f"is false with {vals}")


# ------------------------------------------------------------------------ value ranges
def bounds(t, op, cfg):
    """The least and greatest value of ``t`` (a term of ``op``'s checks) over every value the
    registers' widths (:func:`~ffacc.firmware.isa.reg_bits`) allow in ``cfg``; a condition is
    decided when both are equal. The RTL folds decided conditions to constants."""
    rb, der = reg_bits(cfg), DERIVED.get(op, {})

    def b(t):
        if isinstance(t, Lit):
            return t.v, t.v
        if isinstance(t, R):
            return 0, (1 << rb[t.reg]) - 1
        if isinstance(t, Size):
            v = int(getattr(cfg, t.attr))
            return v, v
        if isinstance(t, Flag):
            return 0, 1
        if isinstance(t, Val):
            return b(der[t.name])
        if isinstance(t, CeilDiv):
            (a0, a1), (n0, n1) = b(t.a), b(t.n)
            assert n0 == n1 > 0, t
            return ceil(a0 / n0), ceil(a1 / n0)
        if isinstance(t, Bin):
            (a0, a1), (b0, b1) = b(t.a), b(t.b)
            if t.op == "+":
                return a0 + b0, a1 + b1
            if t.op == "-":
                return a0 - b1, a1 - b0
            corners = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
            return min(corners), max(corners)
        if isinstance(t, Cmp):
            (a0, a1), (b0, b1) = b(t.a), b(t.b)
            yes, no = {"<=": (a1 <= b0, a0 > b1), "<": (a1 < b0, a0 >= b1),
                       "==": (a0 == a1 == b0 == b1, a1 < b0 or b1 < a0),
                       "!=": (a1 < b0 or b1 < a0, a0 == a1 == b0 == b1)}[t.op]
            return (1, 1) if yes else (0, 0) if no else (0, 1)
        if isinstance(t, (Logic, Between)):
            x, y = (t.a, t.b) if isinstance(t, Logic) else (t.lo, t.hi)
            (a0, a1), (b0, b1) = b(x), b(y)
            if isinstance(t, Logic) and t.op == "|":
                return int(a0 or b0), int(a1 or b1)
            return int(a0 and b0), int(a1 and b1)
        if isinstance(t, Not):
            a0, a1 = b(t.a)
            return 1 - a1, 1 - a0
        if isinstance(t, Mod):
            (a0, a1), (n0, n1) = b(t.a), b(t.n)
            assert n0 == n1 > 0, t
            return (a0, a1) if 0 <= a0 and a1 < n0 else (0, n0 - 1)
        if isinstance(t, Field):
            lo, hi = b(t.a)
            top = (1 << (t.hi - t.lo)) - 1
            return (lo >> t.lo, hi >> t.lo) if lo >= 0 and hi >> t.lo <= top else (0, top)
        raise TypeError(f"not an expression: {t!r}")
    return b(t)


def decided(op, check, cfg):
    """``True`` when ``check`` of ``op`` holds for every value the registers' widths allow in
    ``cfg`` (the RTL has no logic for it there), else ``False``."""
    return bounds(check.expr, op, cfg) == (1, 1)


# ------------------------------------------------------------------------ in the RTL
def rtl_value(t, env, span=None):
    """The amaranth value (or Python integer, for constants) of ``t``. ``env(name)`` gives
    a register's, flag's or derived value's signal, or a size's integer; ``span(t)``, when
    given, the bounds of a term (:func:`bounds`): a condition they decide is a constant."""
    from amaranth.hdl import Value
    from ffacc.hw.logic import lt_const

    def const(v):
        return isinstance(v, int)

    if span is not None and isinstance(t, (Cmp, Logic, Between, Not)):
        lo, hi = span(t)
        if lo == hi:
            return lo
    if isinstance(t, Lit):
        return t.v
    if isinstance(t, (R, Size, Flag, Val)):
        return env(t.names()[0])
    if isinstance(t, Bin):
        a, b = rtl_value(t.a, env, span), rtl_value(t.b, env, span)
        if const(a) and const(b):
            return a + b if t.op == "+" else a - b if t.op == "-" else a * b
        if t.op == "*" and not (const(a) or const(b)):
            raise ValueError(f"{t}: a product of two signals is a derived value (DERIVED), "
                             "through the controller's shared multiplier")
        return a + b if t.op == "+" else a - b if t.op == "-" else a * b
    if isinstance(t, Cmp):
        a, b = rtl_value(t.a, env, span), rtl_value(t.b, env, span)
        if const(a) and const(b):
            return int({"<=": a <= b, "<": a < b, "==": a == b, "!=": a != b}[t.op])
        if t.op in ("==", "!="):
            v = Value.cast(a) == b if not const(a) else Value.cast(b) == a
            return v if t.op == "==" else ~v
        if const(b):                            # x <= c, x < c
            return lt_const(a, b + 1 if t.op == "<=" else b)
        if const(a):                            # c <= x, c < x
            return ~lt_const(b, a if t.op == "<=" else a + 1)
        return a <= b if t.op == "<=" else a < b
    if isinstance(t, Between):
        return rtl_value(Logic("&", t.lo, t.hi), env, span)
    if isinstance(t, Logic):
        a, b = rtl_value(t.a, env, span), rtl_value(t.b, env, span)
        if const(a) and const(b):
            return int(bool(a and b) if t.op == "&" else bool(a or b))
        if const(a) or const(b):
            k, v = (a, b) if const(a) else (b, a)
            if t.op == "&":
                return v if k else 0
            return 1 if k else v
        return a & b if t.op == "&" else a | b
    if isinstance(t, Not):
        a = rtl_value(t.a, env, span)
        return int(not a) if const(a) else ~Value.cast(a)
    if isinstance(t, Mod):
        a, n = rtl_value(t.a, env, span), rtl_value(t.n, env, span)
        if not const(n) or n < 1 or n & (n - 1):
            raise ValueError(f"{t}: the RTL takes a modulo of a power of two only")
        if const(a):
            return a % n
        return Value.cast(a)[:n.bit_length() - 1] if n > 1 else 0
    if isinstance(t, Field):
        a = rtl_value(t.a, env, span)
        return (a >> t.lo) & ((1 << (t.hi - t.lo)) - 1) if const(a) else Value.cast(a)[t.lo:t.hi]
    if isinstance(t, CeilDiv):
        raise ValueError(f"{t}: the controller counts it; give it as a derived value's signal")
    raise TypeError(f"not an expression: {t!r}")


def rtl_ok(op, stage, cfg, env):
    """The amaranth condition that every check of ``op`` in ``stage`` holds (a 1-bit value;
    constant 1 when none applies to ``cfg``), for configuration ``cfg``; ``env(name)`` gives
    the signals of registers, flags and derived values (sizes come from ``cfg``)."""
    from amaranth.hdl import Const, Value
    if stage not in stages(op):
        raise ValueError(f"{Op(op).name} has no checks in stage {stage!r}")
    checks = [c for c in CHECKS[op] if c.stage == stage and c.applies(cfg)]

    lookup = _rtl_lookup(op, cfg, env)
    ok = Const(1, 1)
    for c in checks:
        v = rtl_value(c.expr, lookup, partial(bounds, op=op, cfg=cfg))
        ok = ok & (Const(int(bool(v)), 1) if isinstance(v, int) else Value.cast(v))
    return ok


def product_operands(op, name, cfg, env):
    """The two operands of derived value ``name`` of ``op`` (a product) as RTL values, for
    the controller's shared multiplier."""
    t = DERIVED[op][name]
    if not (isinstance(t, Bin) and t.op == "*"):
        raise ValueError(f"{Op(op).name} {name} = {t} is not a product")

    lookup = _rtl_lookup(op, cfg, env)
    return rtl_value(t.a, lookup), rtl_value(t.b, lookup)


def _rtl_lookup(op, cfg, env):
    """Names for :func:`rtl_value`: registers, flags and derived values from ``env``, sizes
    from ``cfg`` (constants)."""
    signals = set(Reg.__members__) | set(DERIVED.get(op, {})) | set(flag_bits())

    def lookup(name):
        return env(name) if name in signals else int(getattr(cfg, name))
    return lookup


def table(cfg=None):
    """Every check as a row: command, stage, what, expression (and, with ``cfg``, whether it
    applies and whether the registers' widths decide it there); then the run-time checks with
    the unit that makes them, and the derived values."""
    rows = []
    for op, checks in CHECKS.items():
        for c in checks:
            row = {"command": Op(op).name, "stage": c.stage, "check": c.what,
                   "expression": str(c.expr)}
            if cfg is not None:
                row["applies"] = c.applies(cfg)
                row["always_holds"] = c.applies(cfg) and decided(op, c, cfg)
            rows.append(row)
        for what, unit in RUNTIME.get(op, ()):
            rows.append({"command": Op(op).name, "stage": f"run ({unit})", "check": what,
                         "expression": ""})
    for op, vals in DERIVED.items():
        for name, t in vals.items():
            rows.append({"command": Op(op).name, "stage": "derived", "check": name,
                         "expression": str(t)})
    return rows
