"""Drop the ``SET`` instructions that write what their register already holds.

The lowering assembles each layer's commands on their own (:class:`ffacc.compiler.emit.Nest`
writes a register only when the layer's own values change it), so a layer's first commands
set every register they read, also those the layer before left with the same value
(the kernel's padding, the pool, the accumulator's first block ...). Each ``SET`` is an
instruction the fetch unit reads and the controller decodes: on a small network like the
bundled digits CNN they are a tenth of its clocks.

:func:`drop_known_sets` follows the registers' values through a finished accelerator program
and leaves out every ``SET`` whose register holds its value there on every run of that
instruction:

* ``SET r, v`` makes ``r`` known (unless ``v`` does not fit it: the instruction stops the
  program with ``Err.PARAM`` and is kept); ``INC r, d`` moves a known value, modulo the
  register's width, as the hardware does (:func:`ffacc.firmware.isa.reg_bits`);
* a loop body is read once, with the registers it writes (``SET`` or ``INC``, at any depth)
  unknown at its head: its other registers hold their value in every iteration, so what the
  body alone makes known holds in every iteration too;
* after a loop, a register the body writes is known if the body's end makes it known by a
  ``SET`` of its own, or if the body only steps it (``INC``) from a known value: then it ends
  ``count`` times the body's steps on (an inner loop's steps count its trips);
* ``END`` forgets everything: the next accelerator segment may start after host operators,
  in another run.

A dropped ``SET`` wrote a value the register already held, so every command reads the same
values as before; the program only has fewer instructions. Programs with an unmatched
``LOOP``/``ENDLOOP`` or an illegal loop count are returned whole (they stop with an error on
the accelerator, and the lowering never writes them).
"""

from ffacc.firmware.isa import LOOP_MAX, Op, Reg, decode, reg_bits, simm

__all__ = ["drop_known_sets", "kept_index", "loop_tree", "Loop"]

_REGS = frozenset(int(r) for r in Reg)


class Loop:
    """A loop of :func:`loop_tree`: its count and its body (instruction indices and loops)."""
    __slots__ = ("count", "body")

    def __init__(self, count, body):
        self.count, self.body = count, body


def loop_tree(ins):
    """A program's instruction indices (of decoded instructions ``ins``) as a nest: a loop is
    its ``LOOP``'s index, a :class:`Loop` of its body, its ``ENDLOOP``'s index. None if the
    loops do not match or a count is illegal."""
    stack = [[]]
    counts = []
    for i, x in enumerate(ins):
        if x.op == Op.LOOP:
            if not 1 <= x.imm <= LOOP_MAX:
                return None
            counts.append(x.imm)
            stack[-1].append(i)
            stack.append([])
        elif x.op == Op.ENDLOOP:
            if len(stack) == 1:
                return None
            body = stack.pop()
            stack[-1].append(Loop(counts.pop(), body))
            stack[-1].append(i)
        else:
            stack[-1].append(i)
    return stack[0] if len(stack) == 1 else None


def drop_known_sets(words, cfg):
    """Which of a program's instructions (64-bit words) to keep: a list of bools, False for
    each ``SET`` whose register holds its value wherever that instruction runs."""
    ins = [decode(w) for w in words]
    keep = [True] * len(ins)
    tree = loop_tree(ins)
    if tree is None:
        return keep
    bits = {int(r): b for r, b in reg_bits(cfg).items()}

    def written(items, acc):
        """Registers the items write: {reg: True if some SET writes it, else False}."""
        for it in items:
            if isinstance(it, Loop):
                written(it.body, acc)
            elif ins[it].op == Op.SET:
                acc[ins[it].reg] = True
            elif ins[it].op == Op.INC:
                acc.setdefault(ins[it].reg, False)
        return acc

    def steps(items, r):
        """What one run of the items adds to register ``r`` (it has INCs only)."""
        total = 0
        for it in items:
            if isinstance(it, Loop):
                total += it.count * steps(it.body, r)
            elif ins[it].op == Op.INC and ins[it].reg == r:
                total += simm(ins[it].imm)
        return total

    def walk(items, state):
        for it in items:
            if isinstance(it, Loop):
                wr = written(it.body, {})
                head = {r: v for r, v in state.items() if r not in wr}
                end = dict(head)
                walk(it.body, end)
                for r, by_set in wr.items():
                    if by_set or r not in state:
                        continue            # known after the loop only if the body's end says
                    end[r] = (state[r] + it.count * steps(it.body, r)) % (1 << bits[r])
                state.clear()
                state.update(end)
                continue
            x = ins[it]
            if x.op == Op.SET:
                if x.reg not in _REGS or x.imm >> bits[x.reg]:
                    state.pop(x.reg, None)  # an illegal SET: it stops the program, kept
                elif state.get(x.reg) == x.imm:
                    keep[it] = False
                else:
                    state[x.reg] = x.imm
            elif x.op == Op.INC:
                if x.reg in state:
                    state[x.reg] = (state[x.reg] + simm(x.imm)) % (1 << bits[x.reg])
            elif x.op == Op.END:
                state.clear()

    walk(tree, {})
    return keep


def kept_index(keep):
    """``new[i]``: the index instruction ``i`` of the whole program has among the kept ones
    (for ``i`` up to ``len(keep)``, where it is their count)."""
    new, n = [], 0
    for k in keep:
        new.append(n)
        n += k
    new.append(n)
    return new
