"""The weight loader: a checked ``LOADW`` → one read of int8 taps → the on-chip pre-adder →
the weight buffer, an engine's words a clock, in the foreground or in the background.

With ``packed`` (the configuration's ``packed_weights`` and the instruction's ``PACK4``) the
read holds 4-bit taps, two a byte: a :class:`~ffacc.hw.codes.CodeUnpacker` sign-extends them,
half a beat a clock, in front of the pre-adder.

A command loads ``n`` weight sets from set ``dst`` on. Its read goes through a
:class:`~ffacc.hw.weights.WeightPreAdder` (the FFA's filter pre-addition, or MAC sets as they
are), which gives out one engine's pre-added words (every lane) at a time; they are written to
that engine's slice of the set's buffer word, engine after engine, set after set.

With ``background`` (the configuration's ``weight_prefetch`` and the instruction's ``ASYNC``)
the loader takes the command as soon as its read is asked for: the controller goes on while
the loader owns the read DMA (to the read's end, ``bg_reading``) and runs (to the pre-adder's
last engine, ``bg_busy``). A setup that reads a set being loaded waits (``probe``); a read
error is kept (``bg_err``) until the run stops with it or a new run starts (``clear``).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Err
from .axi import read_client_ports, read_ended
from .codes import CodeUnpacker, beats_or_unpacked
from .weights import WeightPreAdder

__all__ = ["WeightLoader", "loadw_command_layout"]


def loadw_command_layout(cfg):
    """A checked ``LOADW``."""
    aw = cfg.addr_bits + 1
    return data.StructLayout({
        "src": aw,                                  # the taps (on a bus word if wide)
        "nbytes": aw,                               # the read (whole beats if wide)
        "rows": range(cfg.wb_sets * cfg.rows + 1),  # engines to give out (n * rows)
        "dst": range(cfg.wb_sets),                  # the first set
        "n": range(cfg.wb_sets + 1),                # sets
        # the instruction's LoadWFlag bits: MAC sets (1x1 kernels, FC), ASYNC (with
        # weight_prefetch), PACK4 (with packed_weights)
        "flags": data.StructLayout({"mac": 1, "background": 1, "packed": 1}),
    })


class WeightLoader(wiring.Component):
    """``LOADW`` for an :class:`AcceleratorConfig` ``cfg``, one command at a time.

    Ports
    -----
    cmd : In(stream of :func:`loadw_command_layout`)
        A command: it starts while the loader is idle and no background load runs, and is
        taken in the clock it ends, or, in the background, in the clock its read is asked for
        (its producer holds the payload until then, as a stream's rule has it).
    err : Out(Err)
        With ``cmd.ready``: a foreground read's error (0: none).
    req : Out(stream of {addr, len})
        The read request (in whole beats with ``wide_loads``); the read DMA takes it when idle.
    beats : In(stream of [bus_bytes] bytes)
        The read's beats (``wide_loads``), or its bytes (payload byte 0).
    rd_done, rd_err : In
        The read's end, and its error.
    w : Out(stream of {set, engine, data}), always ready
        Write one engine's pre-added words (every lane) into its slice of a set's word.
    bg_reading, bg_busy : Out(1)
        A background load's read is on the bus; the background load runs (both 0, and
        ``bg_err`` and ``probe_busy`` too, without ``weight_prefetch``).
    bg_err : Out(Err)
        A background read's error, kept until ``clear``.
    probe : In(range(wb_sets + 2)), probe_busy : Out(1)
        Whether a background load is loading set ``probe``.
    clear : In(1)
        A run starts: no background load, no error.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.wide, self.bg = cfg.wide_loads, cfg.weight_prefetch
        nb = cfg.bus_bytes if self.wide else 1
        fc = cfg.fcu
        self.engine_bits = cfg.lanes * fc.ffa.M * fc.subtaps * fc.gweight_shape.width
        super().__init__({
            "cmd": In(stream.Signature(loadw_command_layout(cfg))),
            "err": Out(range(max(Err) + 1)),
            **read_client_ports(cfg.addr_bits, nb),
            "w": Out(stream.Signature(data.StructLayout({
                "set": range(cfg.wb_sets + 1), "engine": range(cfg.rows),
                "data": self.engine_bits}), always_ready=True)),
            "bg_reading": Out(1), "bg_busy": Out(1), "bg_err": Out(range(max(Err) + 1)),
            "probe": In(range(cfg.wb_sets + 2)), "probe_busy": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        R = cfg.rows
        nb = cfg.bus_bytes if self.wide else 1
        wpre = m.submodules.wpre = WeightPreAdder(cfg.fcu, cfg.lanes, nb,
                                                  max_count=cfg.wb_sets * R,
                                                  compact=not self.wide)
        wset = Signal(range(cfg.wb_sets + 1))       # the set being written
        eng = Signal(range(R))                      # its engine
        feed = Signal()                             # the read's beats go to the pre-adder
        m.d.comb += [self.req.payload.addr.eq(c.src), self.req.payload.len.eq(c.nbytes),
                     wpre.o.ready.eq(1), self.beats.ready.eq(1)]
        if cfg.packed_weights:
            # 4-bit taps (PACK4) through the unpacker, bytes past it; the unpacker gives out
            # what it holds after the read's end too (the pre-adder drops what it does not
            # need)
            unp = m.submodules.unpack = CodeUnpacker(nb, signed=True)
            packed = Signal()                       # the load's PACK4, kept for its run
            beats_or_unpacked(m, self.beats, unp, packed, wpre.i, feed)
        else:
            packed = unp = None
            m.d.comb += wpre.i.payload.eq(self.beats.payload)
            with m.If(feed):
                m.d.comb += [wpre.i.valid.eq(self.beats.valid),
                             self.beats.ready.eq(wpre.i.ready)]

        # the pre-adder's engines, one a clock, into their sets' words
        m.d.comb += [self.w.valid.eq(wpre.o.valid), self.w.payload.set.eq(wset),
                     self.w.payload.engine.eq(eng), self.w.payload.data.eq(wpre.o.payload)]
        with m.If(wpre.o.valid):
            with m.If(eng == R - 1):
                m.d.sync += [eng.eq(0), wset.eq(wset + 1)]
            with m.Else():
                m.d.sync += eng.eq(eng + 1)

        # the background load (weight_prefetch): its own MAC flag and the sets it loads
        rd_bg = self.bg_reading
        busy_bg = self.bg_busy
        if self.bg:
            mac = Signal()
            lo = Signal(range(cfg.wb_sets + 1))
            hi = Signal(range(cfg.wb_sets + 1))
            m.d.comb += self.probe_busy.eq(busy_bg & (self.probe >= lo) & (self.probe < hi))
            with m.If(rd_bg):
                m.d.comb += feed.eq(1)
                with m.If(self.rd_done):
                    m.d.sync += [rd_bg.eq(0), self.bg_err.eq(self.rd_err)]
                    with m.If(self.rd_err != 0):        # the pre-adder waits for no more beats
                        m.d.sync += busy_bg.eq(0)
            with m.Elif(busy_bg & wpre.idle):
                m.d.sync += busy_bg.eq(0)
            with m.If(self.clear):
                m.d.sync += [busy_bg.eq(0), self.bg_err.eq(0)]
        else:
            mac = c.flags.mac                       # held while the command runs
        m.d.comb += wpre.mac.eq(mac)

        def fail(err):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err)]
            m.next = "IDLE"

        def ended():
            """The read's end: a failed read ends the command, else the body runs."""
            return read_ended(m, self.rd_done, self.rd_err, fail)

        with m.FSM(name="loadw"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.d.comb += [wpre.clear.eq(1), wpre.count.eq(c.rows), self.req.valid.eq(1)]
                    if unp is not None:
                        m.d.comb += unp.clear.eq(1)
                    with m.If(self.req.ready):
                        m.d.sync += [wset.eq(c.dst), eng.eq(0)]
                        if packed is not None:
                            m.d.sync += packed.eq(c.flags.packed)
                        if self.bg:
                            m.d.sync += [mac.eq(c.flags.mac), lo.eq(c.dst), hi.eq(c.dst + c.n)]
                            with m.If(c.flags.background):
                                # the loader takes the read; the command is done for its
                                # producer
                                m.d.sync += [rd_bg.eq(1), busy_bg.eq(1)]
                                m.d.comb += self.cmd.ready.eq(1)
                            with m.Else():
                                m.next = "DATA"
                        else:
                            m.next = "DATA"
            # int8 taps, a bus beat (or a byte) a clock, through the pre-adder
            with m.State("DATA"):
                m.d.comb += feed.eq(1)
                with ended():
                    if self.wide:
                        m.next = "DRAIN"
                    else:       # the compact pre-adder wrote the last engine with its last byte
                        m.d.comb += self.cmd.ready.eq(1)
                        m.next = "IDLE"
            if self.wide:
                with m.State("DRAIN"):
                    with m.If(wpre.idle):
                        m.d.comb += self.cmd.ready.eq(1)
                        m.next = "IDLE"
        return m
