"""Put short loops where the fetch unit's queue holds them whole.

The fetch unit (:mod:`ffacc.hw.fetch`) reads ``fetch_block`` instructions at a time, from the
pc where its queue ran empty, and its queue is the loop buffer: a loop's jump back runs from
the queue when the body is in the block it holds. A body that straddles two blocks costs a
block read more each time its loop runs: the first iteration reads the block with the body's
end, its jump back misses the queue and reads the block again from the body's start. The
block reads are most of a small network's fetch clocks (a block of 16 instructions is 32
beats on a 32-bit bus, and the controller waits for it).

:func:`align_loops` follows where the blocks start, as the fetch unit reads them, and puts
``NOP`` instructions before a loop whose body would straddle two blocks and fits one, so that
its body starts a block, when the ``NOP``s cost fewer clocks than the block read they save
(a clock each, and their share of the block reads). Where the blocks start:

* at a segment's first instruction, and at the instruction where the queue ran empty;
* after a loop whose body fits a block, where they were: its iterations run from the queue;
* in a loop whose body does not fit a block, from the body's start: every jump back reads
  afresh there. Its inner loops are placed for those iterations, not for the first.

The blocks' starts are the fetch unit's as long as nothing else restarts it; a ``NOP`` changes
no register or memory, so the program computes what it did.
"""

from ffacc.firmware.isa import INSTR_BYTES, Op, decode, encode
from ffacc.sim.cycles import CycleModel

from .known_sets import Loop, loop_tree

__all__ = ["align_loops"]


def align_loops(words, cfg):
    """``(words, new)``: the program with ``NOP``s before the loops to align, and for each
    instruction ``i`` of ``words`` the index ``new[i]`` of the first instruction emitted for
    it (its ``NOP``s, else itself); ``new[len(words)]`` is the new length."""
    Q = cfg.fetch_block
    ident = list(range(len(words) + 1))
    if not Q or not cfg.loop_depth:
        return list(words), ident
    ins = [decode(w) for w in words]
    tree = loop_tree(ins)
    if tree is None:
        return list(words), ident
    # a NOP costs its chained decode and its beats of a block read; a block read, the cycle
    # model's clocks for it
    cost = CycleModel(cfg)
    max_pad = cost.fetch_block(Q, 0) // (cost.decode(True) + INSTR_BYTES // cfg.bus_bytes)
    nop = encode(Op.NOP)
    out, new = [], [0] * (len(words) + 1)
    block = [0]                     # where the block the next instruction is in starts

    def put(i):
        new[i] = len(out)
        if len(out) >= block[0] + Q:
            block[0] = len(out)     # the queue ran empty: the next block starts here
        out.append(words[i])

    def size(items):
        return sum(size(it.body) if isinstance(it, Loop) else 1 for it in items)

    def walk(items):
        k = 0
        while k < len(items):
            it = items[k]
            if ins[it].op != Op.LOOP:
                put(it)
                if ins[it].op == Op.END:
                    block[0] = len(out)
                k += 1
                continue
            body, end = items[k + 1], items[k + 2]
            n = size(body.body) + 1                 # the body and its ENDLOOP
            at = len(out)                           # the LOOP's place
            b = at + 1
            start = b if b >= block[0] + Q else block[0]
            pad = block[0] + Q - b
            if body.count > 1 and n <= Q and b + n > start + Q and 0 < pad <= max_pad:
                new[it] = at
                out.extend([nop] * pad)
                out.append(words[it])
                block[0] += Q                       # the body starts the next block
            else:
                put(it)
            b = len(out)
            if n > Q and body.count > 1:
                block[0] = b                        # its iterations read from its start on
            walk(body.body)
            put(end)
            if n <= Q and body.count > 1 and len(out) > b and block[0] > b:
                block[0] = b        # it straddled: its jump back read a block at its start
            k += 3

    walk(tree)
    new[len(words)] = len(out)
    return out, new
