"""The record loader: a checked ``LOADQ`` → one read of ``n`` post-processing records → the
parameter buffer.

A record is ``QPARAM_WORDS`` 32-bit words (bias, multiplier, shift/zero point/clamp); the buffer
is written a word (a slice of a record) at a time. With ``wide`` the read is in whole bus beats,
split into words by a :class:`~ffacc.hw.words.WordSerializer`, a word a clock; the last beat's
words past the last record (a bus wider than a word) are dropped. Without (the smallest parts),
the reader's byte stream is collected into words, a byte a clock.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import QPARAM_WORDS, Err
from .axi import read_client_ports, read_ended
from .words import WordSerializer

__all__ = ["RecordLoader", "loadq_command_layout"]


def loadq_command_layout(cfg):
    """A checked ``LOADQ``."""
    aw = cfg.addr_bits + 1
    return data.StructLayout({
        "src": aw,                              # the first record (on a bus word if wide)
        "nbytes": aw,                           # the read: the records, in whole beats if wide
        "dst": range(cfg.qb_entries),           # the first record's entry
        "end": range(cfg.qb_entries + 1),       # past the last record's entry
    })


class RecordLoader(wiring.Component):
    """``LOADQ`` for an :class:`AcceleratorConfig` ``cfg``, one command at a time.

    Ports
    -----
    cmd : In(stream of :func:`loadq_command_layout`)
        A command: it starts while the loader is idle and is taken in the clock it ends (its
        producer holds the payload meanwhile, as a stream's rule has it).
    err : Out(Err)
        With ``cmd.ready``: the read's error (0: none).
    req : Out(stream of {addr, len})
        The read request (in whole beats with ``wide``); the read DMA takes it (``ready``)
        when idle.
    beats : In(stream of [bus_bytes] bytes)
        The read's beats (``wide``), or its bytes, one a clock (payload byte 0; ``ready`` is
        then always high).
    rd_done, rd_err : In
        The read's end, and its error.
    w : Out(stream of {entry, slot, word}), always ready
        Write ``word`` as 32-bit slot ``slot`` of record ``entry``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.wide = cfg.wide_loads
        nb = cfg.bus_bytes if self.wide else 1
        super().__init__({
            "cmd": In(stream.Signature(loadq_command_layout(cfg))),
            "err": Out(range(max(Err) + 1)),
            **read_client_ports(cfg.addr_bits, nb),
            "w": Out(stream.Signature(data.StructLayout(
                {"entry": range(cfg.qb_entries), "slot": range(QPARAM_WORDS), "word": 32}),
                always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        w = self.w.payload
        entry = Signal(range(cfg.qb_entries + 1))     # the record written
        m.d.comb += [w.entry.eq(entry), self.req.payload.addr.eq(c.src),
                     self.req.payload.len.eq(c.nbytes), self.beats.ready.eq(1)]

        def fail(err):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err)]
            m.next = "IDLE"

        def ended():
            """The read's end: a failed read ends the command, else the body runs."""
            return read_ended(m, self.rd_done, self.rd_err, fail)

        if self.wide:
            qser = m.submodules.qser = WordSerializer(cfg.bus_bytes)
            slot = Signal(range(QPARAM_WORDS))
            # the payload whole by plain assignments, its valid by state (a field set in a
            # state makes a Verilog process that nothing triggers for the others)
            m.d.comb += [w.slot.eq(slot), w.word.eq(qser.o.payload)]

            def words():
                """A word a clock to its slot of its record (none past the last record)."""
                m.d.comb += qser.o.ready.eq(1)
                with m.If(qser.o.valid & (entry != c.end)):
                    m.d.comb += self.w.valid.eq(1)
                    with m.If(slot == QPARAM_WORDS - 1):
                        m.d.sync += [slot.eq(0), entry.eq(entry + 1)]
                    with m.Else():
                        m.d.sync += slot.eq(slot + 1)

            with m.FSM(name="loadq"):
                with m.State("IDLE"):
                    with m.If(self.cmd.valid):
                        m.d.comb += [qser.clear.eq(1), self.req.valid.eq(1)]
                        with m.If(self.req.ready):
                            m.d.sync += [entry.eq(c.dst), slot.eq(0)]
                            m.next = "DATA"
                with m.State("DATA"):
                    m.d.comb += [qser.i.valid.eq(self.beats.valid),
                                 qser.i.payload.eq(self.beats.payload),
                                 self.beats.ready.eq(qser.i.ready)]
                    words()
                    with ended():
                        m.next = "DRAIN"
                with m.State("DRAIN"):
                    words()                 # the last beat's words
                    with m.If(qser.idle):
                        m.d.comb += self.cmd.ready.eq(1)
                        m.next = "IDLE"
        else:
            nbytes = 4 * QPARAM_WORDS
            count = Signal(range(nbytes))     # the byte of the record
            shreg = Signal(32)
            word = Cat(shreg[8:], self.beats.payload[0])
            m.d.comb += [w.slot.eq(count[2:]), w.word.eq(word)]
            with m.FSM(name="loadq"):
                with m.State("IDLE"):
                    with m.If(self.cmd.valid):
                        m.d.comb += self.req.valid.eq(1)
                        with m.If(self.req.ready):
                            m.d.sync += [entry.eq(c.dst), count.eq(0)]
                            m.next = "DATA"
                # a byte a clock into a word, written as its last byte arrives
                with m.State("DATA"):
                    with m.If(self.beats.valid):
                        m.d.sync += shreg.eq(word)
                        with m.If(count == nbytes - 1):
                            m.d.sync += [count.eq(0), entry.eq(entry + 1)]
                        with m.Else():
                            m.d.sync += count.eq(count + 1)
                        with m.If(count[:2] == 3):
                            m.d.comb += self.w.valid.eq(1)
                    with ended():
                        m.d.comb += self.cmd.ready.eq(1)
                        m.next = "IDLE"
        return m
