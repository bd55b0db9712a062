"""The accumulators: a block RAM of int32 words per lane, ``L`` outputs to a word, which the
FCU array's output beats add into and the post-processor reads.

:class:`Accumulators` adds a beat by read-modify-write: the sequencer names the block of the
beat that arrives in the next clock (``nxt``, a clock ahead, with the FCUs' ``o_next``); the
word is read then, and written back plus the beat (or the beat alone, for a band's first
pass) in the clock the beat arrives. No copy of a beat is kept.

With ``own_port`` (``post_overlap``) the post-processor reads a copy of the block RAMs (a
second read port: the RAMs are doubled), so a ``POST`` reads one band while a ``CONV`` adds
into another; otherwise it shares the read port, taking it while it reads (``post.reading``).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Accumulators"]


class Accumulators(wiring.Component):
    """``lanes`` lanes of ``blocks`` words of ``L`` int32 accumulators.

    Ports
    -----
    nxt : In(stream of {addr, first}), always ready
        The block the beat of the next clock adds into, and whether it is the band's first
        pass (the beat replaces the word). Valid exactly a clock before each beat, and never
        the block of the beat of its own clock (that word is read as it is written: the
        sequencer's consecutive beats are consecutive blocks or rows, and a pass's leading
        blocks separate a one-block band's passes).
    beat : In(lanes x L x signed(beat_bits))
        The FCU array's output beat (each lane's ``L`` sums), in the clock after ``nxt``.
    beat_pair : In(1)
        With ``pair_from``, the beat is a MAC beat of units with two output channels: lanes
        ``pair_from`` and up are written only with it (FFA beats leave them as they are).
        Without ``pair_from`` it is not read.
    busy : Out(1)
        A beat is being added (the clock after ``nxt``): the sequencer's ``acc_busy``.
    post_addr, post_en : In; post_data : Out(lanes x L x 32)
        The post-processor's read port: the words of block ``post_addr`` (read when
        ``post_en``) the clock after. Without ``own_port`` ``post_en`` enables the shared
        port, so it is 1 whenever the post-processor does not hold a word (the adds read
        through it).
    post_reading : In(1)
        Without ``own_port``: the post-processor has the shared read port.
    """

    def __init__(self, *, lanes, L, blocks, beat_bits, own_port, pair_from=None):
        self.lanes, self.L, self.blocks, self.own_port = lanes, L, blocks, own_port
        if pair_from is not None and not 0 < pair_from < lanes:
            raise ValueError(f"pair_from={pair_from}: must be a lane in 1..{lanes - 1}")
        self.pair_from = pair_from
        A = range(max(2, blocks))
        super().__init__({
            "beat_pair": In(1),
            "nxt": In(stream.Signature(data.StructLayout({"addr": A, "first": 1}),
                                       always_ready=True)),
            "beat": In(data.ArrayLayout(data.ArrayLayout(signed(beat_bits), L), lanes)),
            "busy": Out(1),
            "post_addr": In(A), "post_en": In(1), "post_reading": In(1),
            "post_data": Out(unsigned(32 * L * lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        P, L = self.lanes, self.L
        rams = [Memory(shape=unsigned(32 * L), depth=self.blocks, init=[]) for _ in range(P)]
        wps, rps = [], []
        for lane, ram in enumerate(rams):
            m.submodules[f"acc{lane}"] = ram
            wps.append(ram.write_port())
            rps.append(ram.read_port(transparent_for=()))
        post = ([ram.read_port(transparent_for=()) for ram in rams] if self.own_port else rps)
        m.d.comb += self.post_data.eq(Cat(p.data for p in post))

        # the word the arriving beat adds into: read a clock before it (nxt), written as it
        # arrives
        w_valid = Signal()
        w_addr = Signal.like(self.nxt.payload.addr)
        w_first = Signal()
        m.d.sync += w_valid.eq(self.nxt.valid)
        with m.If(self.nxt.valid):
            m.d.sync += [w_addr.eq(self.nxt.payload.addr), w_first.eq(self.nxt.payload.first)]
        m.d.comb += self.busy.eq(w_valid)
        for lane in range(P):
            if self.own_port:
                m.d.comb += [rps[lane].addr.eq(self.nxt.payload.addr),
                             post[lane].addr.eq(self.post_addr), post[lane].en.eq(self.post_en)]
            else:
                m.d.comb += [rps[lane].addr.eq(Mux(self.post_reading, self.post_addr,
                                                   self.nxt.payload.addr)),
                             rps[lane].en.eq(self.post_en)]
            upper = self.pair_from is not None and lane >= self.pair_from
            m.d.comb += [wps[lane].addr.eq(w_addr),
                         wps[lane].en.eq(w_valid & self.beat_pair if upper else w_valid)]
            for q in range(L):
                old = rps[lane].data[32 * q:32 * q + 32].as_signed()
                new = Mux(w_first, 0, old) + self.beat[lane][q]
                m.d.comb += wps[lane].data[32 * q:32 * q + 32].eq(new[:32])
        return m
