"""The instruction fetch unit: instructions read in blocks into a queue, handed out one a clock.

The controller used to read each 8-byte instruction on its own (15 clocks, most of them the
read's latency). The fetch unit reads a block of up to ``block`` instructions in one burst of
whole bus beats and hands them out through a stream; it reads the next block only when the
queue is empty and the controller asks for an instruction, and hands them out once the
block's read is over, so it never competes with a command for the read DMA (the parent gives
it the DMA while it waits in its fetch state).

A block stops at ``mem_size``: a fetch at or beyond it reads one instruction and fails with
``Err.ADDRESS`` at that pc, as the ISS does. An error response or a silent memory part-way
through a block stops fetching: the instructions before the failing one are still handed out,
then the error with the failing instruction's pc. A ``base`` that is not a multiple of 8 is an
``Err.ADDRESS`` at ``base``.

The queue doubles as a loop buffer: a ``start`` with ``reuse`` (a loop's jump back) whose
``base`` lies in the block the queue holds hands out the queue from there, without reading
memory; a loop whose body fits in a block reads its code once. The program must not
overwrite its own code during a run: an instruction already in the queue is not read again.

``peek`` shows the instruction after the head while the queue holds it, so that the
controller can decode it in the clock after the head's without a fetch state between
(:class:`~ffacc.hw.control.Controller`'s chained decode).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import INSTR_BYTES, Err

__all__ = ["InstructionFetch", "ByteFetch", "block_length", "source_ports"]


def block_length(block, pc, mem_size):
    """Instructions the fetch unit reads at ``pc``: ``block``, fewer before ``mem_size``, and
    at least one (which then fails with ``Err.ADDRESS``)."""
    room = max(0, mem_size - pc) // INSTR_BYTES
    return max(1, min(block, room))


def source_ports(addr_bits):
    """The ports an instruction source (:class:`InstructionFetch`, :class:`ByteFetch`) has
    besides the DMA's data: the controller's side, the DMA's request and end (see
    :class:`InstructionFetch`)."""
    return {
        "start": In(1), "reuse": In(1), "want": In(1), "base": In(addr_bits),
        "mem_size": In(addr_bits),
        "o": Out(stream.Signature(data.StructLayout({
            "instr": 8 * INSTR_BYTES, "pc": addr_bits, "err": 3}))),
        "req_valid": Out(1), "req_addr": Out(addr_bits), "req_len": Out(addr_bits),
        "req_words": Out(1), "done": In(1), "rd_err": In(3),
        "busy": Out(1),
        "peek": Out(data.StructLayout({"valid": 1, "instr": 8 * INSTR_BYTES, "pc": addr_bits})),
    }


class InstructionFetch(wiring.Component):
    """Instruction queue in front of the controller. (``registered`` False: its ``o`` comes
    from a LUT RAM's read, which the controller copies before it decodes it.)

    Ports
    -----
    start : In(1)
        Drop the queue and fetch from ``base`` (a one-clock pulse while nothing is fetched).
    reuse : In(1)
        With ``start``: if ``base`` is an instruction of the block in the queue, go on from it
        in the queue instead (a loop's jump back; not at a run's start, whose code is new).
    want : In(1)
        The controller waits for an instruction (its FETCH, not held): while nothing is
        queued, the unit may ask the DMA for a block then. It comes from the controller's
        state alone, not from its decode (``o.ready``), so the DMA's request is not behind
        the decode; it never comes with ``start``.
    base, mem_size : In
        First instruction's address; memory size (as the DMA checks it).
    o : Out(stream of {instr, pc, err})
        The next instruction and its address. ``err`` non-zero: fetching at ``pc`` failed with
        that error code, and nothing follows until the next ``start``.
    req_valid, req_addr, req_len, req_words : Out
        A read request for the DMA (:class:`ffacc.hw.axi.AxiByteReader`, whole beats).
    beat_valid, beat_data, done, rd_err : In
        The DMA's beats and its end of transfer with its error code.
    busy : Out(1)
        A block is being read.
    peek : Out(struct of {valid, instr, pc})
        The instruction after ``o``'s, valid while ``o`` hands out an instruction (not an
        error) and the queue holds the next one too (both from the same finished block).
    """

    registered = False

    def __init__(self, *, block, bus_bytes, addr_bits):
        if not isinstance(block, int) or not 1 <= block <= 64:
            raise ValueError(f"block must be 1..64 instructions, not {block!r}")
        if bus_bytes not in (4, 8):
            raise ValueError(f"bus_bytes must be 4 or 8, not {bus_bytes!r}")
        self.block, self.nb, self.aw = block, bus_bytes, addr_bits
        super().__init__({**source_ports(addr_bits),
                          "beat_valid": In(1), "beat_data": In(8 * bus_bytes)})

    def elaborate(self, platform):
        m = Module()
        Q, nb = self.block, self.nb
        per = INSTR_BYTES // nb                     # beats per instruction
        qm = m.submodules.queue = Memory(shape=8 * INSTR_BYTES, depth=Q, init=[])
        qw = qm.write_port()
        qr = qm.read_port(domain="comb")
        qp = qm.read_port(domain="comb")            # the instruction after the head

        fetch_pc = Signal(self.aw)                  # address of the next block
        out_pc = Signal(self.aw)                    # address of the next instruction handed out
        rd_i = Signal(range(Q + 1))
        wr_i = Signal(range(Q + 1))
        beat = Signal(range(max(2, per)))
        part = Signal(8 * INSTR_BYTES)
        err = Signal(3)
        empty = Signal()
        m.d.comb += [empty.eq(rd_i == wr_i), self.req_words.eq(1), qr.addr.eq(rd_i)]

        # the block: Q instructions, fewer before mem_size, at least one
        n = Signal(range(Q + 1))
        if Q == 1:
            m.d.comb += n.eq(1)
        else:
            room = Signal(self.aw)
            m.d.comb += room.eq(Mux(self.mem_size > fetch_pc, self.mem_size - fetch_pc, 0))
            m.d.comb += n.eq(Mux(room[3:] >= Q, Q, Mux(room[3:] == 0, 1, room[3:])))
        # the length is registered a clock after fetch_pc changes (``stale`` meanwhile), so the
        # subtraction and clamp are not in front of the DMA's request checks; only the first
        # block of a run waits for it (a later block is asked for after its queue ran empty)
        n_reg = Signal(range(Q + 1))
        stale = Signal()
        m.d.sync += [n_reg.eq(n), stale.eq(0)]

        # instructions are handed out once the block's read is over: the DMA is then free for
        # the commands they start (the payload is driven whole, by plain assignments: see
        # tests/test_integration_docs.py on processes that nothing triggers)
        ready_instr = ~self.busy & ~empty
        m.d.comb += [self.o.payload.instr.eq(qr.data), self.o.payload.pc.eq(out_pc),
                     self.o.payload.err.eq(Mux(ready_instr, 0, err)),
                     self.o.valid.eq(ready_instr | (~self.busy & (err != 0)))]
        # the next one: in the queue when rd_i + 1 < wr_i (wr_i counts only good instructions)
        m.d.comb += [qp.addr.eq(rd_i + 1), self.peek.instr.eq(qp.data),
                     self.peek.pc.eq(out_pc + INSTR_BYTES),
                     self.peek.valid.eq(ready_instr & (rd_i + 1 < wr_i))]
        with m.If(self.o.valid & self.o.ready & ~empty):
            m.d.sync += [rd_i.eq(rd_i + 1), out_pc.eq(out_pc + INSTR_BYTES)]

        # the request's address and length come straight from registers (the DMA's range
        # checks and burst arithmetic on them are not behind the controller's decode, which
        # drives o.ready and start): only req_valid depends on the condition
        m.d.comb += [self.req_addr.eq(fetch_pc), self.req_len.eq(n_reg * INSTR_BYTES)]
        with m.If(~self.busy & empty & (err == 0) & self.want & ~stale):
            m.d.comb += self.req_valid.eq(1)
            m.d.sync += [self.busy.eq(1), rd_i.eq(0), wr_i.eq(0), beat.eq(0)]

        with m.If(self.busy & self.beat_valid):
            word = Cat(part[8 * nb:], self.beat_data) if per > 1 else self.beat_data
            m.d.sync += part.eq(word)
            if per > 1:
                m.d.sync += beat.eq(Mux(beat == per - 1, 0, beat + 1))
            with m.If(beat == per - 1):
                m.d.comb += [qw.en.eq(1), qw.addr.eq(wr_i), qw.data.eq(word)]
                m.d.sync += [wr_i.eq(wr_i + 1), fetch_pc.eq(fetch_pc + INSTR_BYTES),
                             stale.eq(1)]
        with m.If(self.busy & self.done):
            m.d.sync += [self.busy.eq(0), err.eq(self.rd_err)]

        # the block in the queue is [fetch_pc - 8 * wr_i, fetch_pc): base is its instruction
        # wr_i - back (back = 1 .. wr_i) when fetch_pc - base = 8 * back
        back = Signal(self.aw)
        m.d.comb += back.eq((fetch_pc - self.base) >> 3)
        hit = (self.reuse & (self.base[:3] == 0) & (err == 0) & (self.base < fetch_pc)
               & (back <= wr_i))
        with m.If(self.start & hit):
            m.d.sync += [out_pc.eq(self.base), rd_i.eq(wr_i - back)]
        with m.Elif(self.start):
            m.d.sync += [fetch_pc.eq(self.base), out_pc.eq(self.base), rd_i.eq(0), wr_i.eq(0),
                         stale.eq(1),
                         err.eq(Mux(self.base[:3] != 0, Err.ADDRESS, 0))]
        return m


class ByteFetch(wiring.Component):
    """The instruction source of the smallest parts (no fetch unit: ``fetch_block = 0``): an
    instruction's 8 bytes read a byte a clock when the controller asks for it, with the
    :class:`InstructionFetch`'s ports on the controller's side (``peek`` never valid, no
    loop buffer: ``reuse`` is ignored).

    The instruction is handed out in the clock its read ends, and from flip-flops, which hold
    it until it is taken (``registered``: the controller decodes ``o``'s payload in place).
    A read that fails hands out its error at the instruction's pc; a ``base`` that is not a
    multiple of 8 is an ``Err.ADDRESS`` at ``base``.

    Ports
    -----
    start, reuse, want, base, mem_size, o, peek, busy
        As :class:`InstructionFetch`'s, but ``mem_size`` and ``want`` are unused: the DMA
        checks the range, and the read is asked for while the controller waits for an
        instruction (``o.ready``, not during ``start``), which at the smallest parts' slow
        clock is no long path and takes fewer logic cells.
    req_valid, req_addr, req_len, req_words : Out
        A read request for the DMA (:class:`ffacc.hw.axi.AxiByteReader`, bytes).
    out_valid, out_data, done, rd_err : In
        The DMA's bytes and its end of transfer with its error code.
    """

    registered = True

    def __init__(self, *, addr_bits):
        self.aw = addr_bits
        super().__init__({**source_ports(addr_bits), "out_valid": In(1), "out_data": In(8)})

    def elaborate(self, platform):
        m = Module()
        instr = Signal(8 * INSTR_BYTES, reset_less=True)
        pc = Signal(self.aw)
        full, err = Signal(), Signal(3)
        ended = self.busy & self.done               # the read ends this clock
        m.d.comb += [self.o.payload.instr.eq(instr), self.o.payload.pc.eq(pc),
                     self.o.payload.err.eq(Mux(full | ended, 0, err)),
                     self.o.valid.eq(full | (ended & (self.rd_err == 0))
                                     | (~self.busy & (err != 0))),
                     self.req_addr.eq(pc), self.req_len.eq(INSTR_BYTES), self.req_words.eq(0)]
        with m.If(~self.busy & ~full & (err == 0) & self.o.ready & ~self.start):
            m.d.comb += self.req_valid.eq(1)
            m.d.sync += self.busy.eq(1)
        with m.If(self.busy & self.out_valid):
            m.d.sync += instr.eq(Cat(instr[8:], self.out_data))
        with m.If(ended):
            m.d.sync += [self.busy.eq(0), err.eq(self.rd_err), full.eq(self.rd_err == 0)]
        with m.If(self.o.valid & self.o.ready & (full | ended)):
            m.d.sync += [full.eq(0), pc.eq(pc + INSTR_BYTES)]
        with m.If(self.start):
            m.d.sync += [pc.eq(self.base), full.eq(0),
                         err.eq(Mux(self.base[:3] != 0, Err.ADDRESS, 0))]
        return m
