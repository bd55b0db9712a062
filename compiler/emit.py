"""Loop nests of accelerator commands, assembled with hardware loops.

The lowering describes a layer as commands with the register values each needs
(:meth:`Nest.cmd`) inside counted loops (:meth:`Nest.loop`, whose body is a function of the
iteration). :meth:`Nest.assemble` turns that into instructions:

* a register is written only when its value changes (``SET``);
* a loop whose register values are affine in the iteration becomes ``LOOP n`` … ``ENDLOOP``:
  the body is emitted once for iteration 0, a register that steps between iterations is
  moved with ``INC`` (by the difference from its last value) and put on its next
  iteration's value at the end of the body;
* on configurations without loops (``loop_depth = 0``), or for loops nested deeper than the
  hardware's stack, the loop is unrolled, with every iteration's own values.

A loop is checked to be affine on its first, second and last iteration (every register at
every position steps by one stride per iteration, the same at each position); when only the
last iteration differs (a double-buffered weight load whose next set comes from the next
loop), the loop runs one iteration fewer and the last follows it; a body that is otherwise
not affine is unrolled, so the program always does what the iterations describe. Tests run
both forms on the ISS and compare.

The weight-set registers ``W_DST`` and ``C_WSET`` count modulo the weight buffer (their
width is its ``log2``, when its size is a power of two): a layer that alternates two halves
of the buffer gives them ``half * k`` for its k-th load, which is affine in every loop, and
the instructions hold it modulo the buffer (``INC`` wraps as the hardware does). ``C_ACC``
counts modulo the accumulator in the same way (lane groups that alternate its halves, so
each ``POST`` runs beside the next ``CONV``).
"""

from ffacc.firmware.isa import LOOP_MAX, Op, Reg, reg_bits

__all__ = ["Nest", "affine_runs"]


class Cmd:
    """A command (or, with ``op`` None, only register values) and the registers it reads."""
    __slots__ = ("op", "flags", "regs")

    def __init__(self, op, flags, regs):
        self.op, self.flags, self.regs = op, flags, regs


class Loop:
    """``count`` iterations of ``body`` (iteration 0) whose registers step by ``strides``."""
    __slots__ = ("count", "body", "strides")

    def __init__(self, count, body, strides):
        self.count, self.body, self.strides = count, body, strides


class NotAffine(Exception):
    pass


def _shift(items, strides, j):
    """The items of iteration ``j`` of a loop whose iteration 0 is ``items``."""
    out = []
    for it in items:
        if isinstance(it, Cmd):
            out.append(Cmd(it.op, it.flags, {r: v + j * strides.get(r, 0)
                                             for r, v in it.regs.items()}))
        else:
            out.append(Loop(it.count, _shift(it.body, strides, j), it.strides))
    return out


def _strides(a, b, strides):
    """Collect the per-register step from body ``a`` to body ``b`` (same shape) into
    ``strides``; NotAffine when the shapes differ or a register steps differently at two
    positions."""
    if len(a) != len(b):
        raise NotAffine
    for x, y in zip(a, b):
        if type(x) is not type(y):
            raise NotAffine
        if isinstance(x, Cmd):
            if x.op != y.op or x.flags != y.flags or x.regs.keys() != y.regs.keys():
                raise NotAffine
            for r, v in x.regs.items():
                if strides.setdefault(r, y.regs[r] - v) != y.regs[r] - v:
                    raise NotAffine
        else:
            if x.count != y.count or x.strides != y.strides:
                raise NotAffine
            _strides(x.body, y.body, strides)


def _same(a, b):
    try:
        st = {}
        _strides(a, b, st)
    except NotAffine:
        return False
    return not any(st.values())


def _walk(items):
    """Every command and loop of ``items``, inner loops' bodies included (iteration 0), in
    program order."""
    for it in items:
        yield it
        if isinstance(it, Loop):
            yield from _walk(it.body)


def _values(items, r):
    """The values ``items`` give register ``r``, in program order (iteration 0 of inner
    loops)."""
    return [it.regs[r] for it in _walk(items) if isinstance(it, Cmd) and r in it.regs]


def affine_runs(items):
    """Cut a list of parameter dicts into runs ``(start, count)`` over which every numeric
    field steps by a constant and every other field is equal."""
    def step(a, b):
        if a.keys() != b.keys():
            return None
        d = {}
        for k, v in a.items():
            w = b[k]
            if type(v) is int:
                d[k] = w - v
            elif v != w:
                return None
        return d

    runs, i, n = [], 0, len(items)
    while i < n:
        j = i
        d = step(items[i], items[i + 1]) if i + 1 < n else None
        if d is not None:
            j = i + 1
            while j + 1 < n and step(items[j], items[j + 1]) == d:
                j += 1
            # a pair whose next step differs: the first stands alone (a peeled iteration)
            if j == i + 1 and j + 1 < n and step(items[j], items[j + 1]) is not None:
                j = i
        runs.append((i, j - i + 1))
        i = j + 1
    return runs


class Nest:
    """Commands and counted loops of one layer, for one accelerator configuration."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.items = []
        self._into = self.items
        bits = reg_bits(cfg)
        # registers whose values count modulo 2**width (see the module's docstring)
        self.mod = {r: 1 << bits[r] for r in (Reg.W_DST, Reg.C_WSET)
                    if 1 << bits[r] == cfg.wb_sets}
        if 1 << bits[Reg.C_ACC] == cfg.acc_blocks:
            self.mod[Reg.C_ACC] = cfg.acc_blocks

    def _eq(self, r, a, b):
        """Register ``r`` holds the same value for ``a`` and ``b``."""
        if a is None or b is None:
            return a is b
        m = self.mod.get(r)
        return (a - b) % m == 0 if m else a == b

    def _set(self, out, r, v):
        m = self.mod.get(r)
        out.set(r, v % m if m else v)

    def _inc(self, out, r, d):
        m = self.mod.get(r)
        if m:
            d %= m
            d -= m if d > m // 2 else 0
        if d:
            out.inc(r, d)

    def set(self, **regs):
        """Register values the following commands read."""
        self._into.append(Cmd(None, 0, {Reg[k]: int(v) for k, v in regs.items()}))
        return self

    def cmd(self, op, flags=0, **regs):
        """Run ``op`` with these register values (others as last given)."""
        self._into.append(Cmd(Op(op), int(flags), {Reg[k]: int(v) for k, v in regs.items()}))
        return self

    def _record(self, body, j):
        outer, self._into = self._into, []
        try:
            body(j)
            return self._into
        finally:
            self._into = outer

    def loop(self, count, body):
        """``body(j)`` for ``j`` in ``range(count)``: a hardware loop when the values are
        affine in ``j``, else unrolled."""
        if count <= 0:
            return
        if count == 1 or not self.cfg.loop_depth:
            for j in range(count):
                body(j)
            return
        if count > LOOP_MAX:            # consecutive loops of at most LOOP_MAX iterations
            for c in range(0, count, LOOP_MAX):
                self.loop(min(LOOP_MAX, count - c), lambda j, c=c: body(c + j))
            return
        b0, b1 = self._record(body, 0), self._record(body, 1)
        strides = {}
        last = []
        try:
            _strides(b0, b1, strides)
            if count > 2:
                last = self._record(body, count - 1)
                if _same(_shift(b0, strides, count - 1), last):
                    last = []
                elif count > 3 and _same(_shift(b0, strides, count - 2),
                                         self._record(body, count - 2)):
                    count -= 1          # the last iteration alone, after the loop
                else:
                    raise NotAffine
        except NotAffine:
            self._into += b0 + b1
            for j in range(2, count):
                body(j)
            return
        self._into.append(Loop(count, b0, {r: s for r, s in strides.items() if s}))
        self._into += last

    def each(self, items, body):
        """``body(item)`` for every item of a list of parameter dicts, as loops over its
        affine runs."""
        for start, count in affine_runs(items):
            self.loop(count, lambda j, s=start: body(items[s + j]))

    # ------------------------------------------------------------------ assembly
    def assemble(self, prog, known=None):
        """Append the instructions to a :class:`ffacc.firmware.isa.Program`. ``known``:
        register values the program holds where they start ({Reg: value})."""
        self._emit(self.items, dict(known or {}), frozenset(), 0, prog)
        return prog

    def _emit(self, items, state, rel, depth, out):
        for it in items:
            if isinstance(it, Cmd):
                for r, v in it.regs.items():
                    if r in rel:
                        if v != state[r]:
                            self._inc(out, r, v - state[r])
                            state[r] = v
                    elif not self._eq(r, state.get(r), v):
                        self._set(out, r, v)
                        state[r] = v
                if it.op is not None:
                    out.op(it.op, flags=it.flags)
            elif depth >= self.cfg.loop_depth:
                for j in range(it.count):
                    self._emit(_shift(it.body, it.strides, j), state, rel, depth, out)
            else:
                self._emit_loop(it, state, rel, depth, out)

    def _emit_loop(self, it, state, rel, depth, out):
        inner = rel | set(it.strides)
        for r in it.strides:            # a stepped register starts known
            if r not in state:
                v = _values(it.body, r)[0]
                self._set(out, r, v)
                state[r] = v
        walk = list(_walk(it.body))
        written = {r for c in walk if isinstance(c, Cmd) for r in c.regs} - inner
        stepped = {r for lp in walk if isinstance(lp, Loop) for r in lp.strides}
        # a register the body gives one value (and no inner loop steps) is set before the loop
        for r in written - stepped:
            vals = set(_values(it.body, r))
            if len(vals) == 1:
                v = vals.pop()
                if not self._eq(r, state.get(r), v):
                    self._set(out, r, v)
                    state[r] = v
        # another register the body writes keeps its value at entry only when the body leaves
        # it so (iteration 1 starts where iteration 0 ended): dry runs of the body tell, until
        # the registers assumed known all come back unchanged
        keep = {r for r in written if r in state}
        while True:
            entry = {r: v for r, v in state.items() if r not in written or r in keep}
            probe = dict(entry)
            self._emit(it.body, probe, inner, depth + 1, _Null())
            bad = {r for r in keep if not self._eq(r, probe.get(r), state[r])}
            if not bad:
                break
            keep -= bad
        out.op(Op.LOOP, imm=it.count)
        body_state = dict(entry)
        self._emit(it.body, body_state, inner, depth + 1, out)
        for r in sorted(inner):
            fix = entry[r] + it.strides.get(r, 0) - body_state[r]
            if fix:
                self._inc(out, r, fix)
        out.op(Op.ENDLOOP)
        state.clear()
        state.update(body_state)
        for r in inner:
            state[r] = entry[r] + it.count * it.strides.get(r, 0)


class _Null:
    """An instruction sink that drops everything (dry runs)."""

    def set(self, *a, **k):
        pass

    inc = op = set
