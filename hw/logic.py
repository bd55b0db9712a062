"""Small pieces of logic the gateware shares: comparisons of an unsigned value with a
constant, address sums that keep their overflow, and activation bytes as values.

Comparisons, as plain logic.

Yosys maps ``x < c`` to an adder's carry chain whatever ``c`` is: on the iCE40 that is one
logic cell per bit (the ``SB_CARRY`` takes the cell) where a few 4-input LUTs decide the same
thing. ``lt_const`` writes the comparison as the usual prefix form instead,
``x < c  <=>  OR over the one bits i of c of (x[i] == 0 and x[i+1:] == c[i+1:])``, which
ABC packs into about ``len(x) / 3`` LUTs, and folds the comparisons a width decides
(``x < 2**len(x)`` is true). On the iCEBreaker SoC that was 45 logic cells fewer (6,246 to
6,201, nextpnr's pack count).
"""

from amaranth.hdl import Cat, Const, Signal, Value

__all__ = ["lt_const", "le_const", "gt_const", "ge_const", "addr_clamp", "act_value",
           "reset_less_copy", "register_stage"]


def register_stage(m, en, valid, ready_out, name="stage"):
    """The bookkeeping of one registered stage of a stream pipeline.

    The stage takes a value (``valid`` from upstream) when it is empty or its value moves on
    (``ready_out`` from downstream), so a chain of them moves a value a clock; while ``en`` is
    low it takes nothing and forgets what it holds. Returns ``(full, ready, load)``: whether
    it holds a value (downstream's valid, with ``en``), the ready it gives upstream, and
    ``load``, high in the clock a value enters (the caller writes the stage's data under
    it)."""
    full = Signal(name=f"{name}_full")
    ready, load = Signal(name=f"{name}_ready"), Signal(name=f"{name}_load")
    m.d.comb += [ready.eq(en & (~full | ready_out)), load.eq(valid & ready)]
    with m.If(load):
        m.d.sync += full.eq(1)
    with m.Elif(ready_out):
        m.d.sync += full.eq(0)
    with m.If(~en):
        m.d.sync += full.eq(0)
    return full, ready, load


def reset_less_copy(m, port, name=None):
    """A flip-flop without reset that drives the output ``port`` (Amaranth 0.5 declares no
    port without a reset): write it in ``m.d.sync`` instead of the port. Data a valid bit
    qualifies needs no reset, and without one its flip-flops are off the reset net (on the
    ULX3S 2,626 flip-flops hung on it, a wide array's congestion)."""
    s = Signal(port.shape(), reset_less=True, name=name)
    m.d.comb += port.eq(s)
    return s


def addr_clamp(v, addr_bits):
    """An address sum ``v`` as ``addr_bits`` bits plus an overflow bit: the overflow bit is
    set when any bit of ``v`` at or above ``2**addr_bits`` is, so an address that overflows
    stays out of range (the bus engines refuse it, as the ISS does) instead of wrapping."""
    v = Value.cast(v)
    return Cat(v[:addr_bits], v[addr_bits:].any()) if len(v) > addr_bits else v


def act_value(v, signed):
    """An 8-bit field ``v`` as the activation type's value (9-bit signed): int8 when
    ``signed``, else uint8."""
    v = Value.cast(v)
    return v.as_signed() if signed else Cat(v, Const(0, 1)).as_signed()


def lt_const(x, c):
    """``x < c`` for an unsigned ``x`` and an integer ``c``."""
    x = Value.cast(x)
    if x.shape().signed:
        raise TypeError(f"lt_const: {x!r} is signed; the comparison is for unsigned values")
    n = len(x)
    if c <= 0:
        return Const(0, 1)
    if c >= 1 << n:
        return Const(1, 1)
    terms = []
    for i in range(n):
        if c >> i & 1:
            t = ~x[i]
            if i + 1 < n:
                t = t & (x[i + 1:] == c >> (i + 1))
            terms.append(t)
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def le_const(x, c):
    """``x <= c``."""
    return lt_const(x, c + 1)


def gt_const(x, c):
    """``x > c``."""
    return ~lt_const(x, c + 1)


def ge_const(x, c):
    """``x >= c``."""
    return ~lt_const(x, c)
