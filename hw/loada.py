"""The activation loader: a checked ``LOADA`` → reads of a band of rows of every channel → the
line buffer.

A command loads ``nch`` channels, each a band of ``nr`` rows of ``width`` activations, into
line-buffer rows ``lb0 + c * pitch + r`` (``lb0``: 0 without ``strided_loads``). A channel's
band is one read of ``nbytes`` when its rows are contiguous in memory (``contig``), else (a
column tile of a wider map, or a stride phase) one read of a row each, ``row_step`` bytes
apart; channels are ``chan_step`` bytes apart. The controller gives whole maps contiguous in
memory as one channel of ``nch * nr`` rows read at once: the rows still go to their channels'
line-buffer rows (with ``wide``, every ``nr`` rows the next channel's, at ``pitch``).

With ``wide`` the reads are in whole bus beats, and a :class:`~ffacc.hw.linebuf.RowPacker`
cuts them into line-buffer blocks, a block a clock. With a column step ``cshift = k > 0``
(strided_loads) a row's read keeps every ``2**k``-th byte, from its first, through a
:class:`~ffacc.hw.decimate.ColumnDecimator` before the packer: a stride phase of the map.
With ``decode`` (act_codes) the beats hold 4-bit codes: a
:class:`~ffacc.hw.codes.CodeUnpacker` gives the packer their levels, and a row of ``width``
takes ``ceil(width / 2)`` bytes. Without ``wide`` (the smallest parts), the reader's byte
stream is written a byte a clock.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import CODE_LEVELS, Err
from .axi import read_client_ports, read_ended
from .codes import CodeUnpacker, beats_or_unpacked
from .decimate import ColumnDecimator
from .linebuf import RowPacker
from .logic import addr_clamp

__all__ = ["ActivationLoader", "loada_command_layout"]


def loada_command_layout(cfg):
    """A checked ``LOADA``: its first read and the steps between reads."""
    aw = cfg.addr_bits + 1
    return data.StructLayout({
        "addr": aw,                             # the first channel's band
        "nbytes": aw,                           # bytes of a read: a band, or a row (a tile)
        "contig": 1,                            # a band is one read (rows contiguous)
        "nch": range(cfg.lb_rows + 1), "nr": range(cfg.lb_rows + 1),   # channels, rows
        "pitch": range(cfg.lb_rows + 1),        # LB_PITCH: a channel's line-buffer rows
        "width": range(cfg.lb_width + 1),       # A_W: a row's activations
        "row_step": 17,                         # bytes from a row to the next (a tile)
        "chan_step": aw,                        # bytes from a channel's band to the next
        **({"decode": 1,                        # (act_codes) 4-bit codes, two a byte
            "levels": data.ArrayLayout(8, CODE_LEVELS)} if cfg.act_codes else {}),
        **({"cshift": range(max_cshift(cfg) + 1),   # (strided_loads) the column step's log2
            "lb0": range(cfg.lb_rows)} if cfg.strided_loads else {}),   # first row written
    })


def max_cshift(cfg):
    """The largest column step's exponent (``A_CSHIFT``): the step is at most the bus width."""
    return (cfg.bus_bytes - 1).bit_length() if cfg.strided_loads else 0


class ActivationLoader(wiring.Component):
    """``LOADA`` for an :class:`AcceleratorConfig` ``cfg``, one command at a time.

    Ports
    -----
    cmd : In(stream of :func:`loada_command_layout`)
        A command: it starts while the loader is idle and is taken in the clock it ends (its
        producer holds the payload meanwhile, as a stream's rule has it).
    err : Out(Err)
        With ``cmd.ready``: the read's error (0: none); the rows before it are written.
    req : Out(stream of {addr, len})
        A read request (in whole beats with ``wide``); the read DMA takes it (``ready``) when
        idle.
    beats : In(stream of [bus_bytes] bytes)
        The read's beats (``wide``), or its bytes, one a clock (payload byte 0; ``ready`` is
        then always high).
    rd_done, rd_err : In
        The read's end, and its error.
    lb : Out(stream of the line buffer's write), always ready
        The blocks to write.
    """

    def __init__(self, cfg, write_shape):
        self.cfg = cfg
        self.wide = cfg.wide_loads
        nb = cfg.bus_bytes if self.wide else 1
        super().__init__({
            "cmd": In(stream.Signature(loada_command_layout(cfg))),
            "err": Out(range(max(Err) + 1)),
            **read_client_ports(cfg.addr_bits, nb),
            "lb": Out(stream.Signature(write_shape, always_ready=True)),
        })

    def _packer_source(self, m, pack, beats):
        """The row packer's input (and ``beats``' ready): the beats, or (``decode``) their
        codes' levels, twice the bytes, half a beat at a time, in rows of the width rounded up
        to even. Returns the unpacker (None without ``act_codes``)."""
        c, nb = self.cmd.payload, self.cfg.bus_bytes
        src = stream.Signature(data.ArrayLayout(8, nb)).create()
        m.d.comb += [pack.nbytes.eq(c.nbytes), pack.width.eq(c.width),
                     pack.i.payload.eq(src.payload), pack.i.valid.eq(src.valid),
                     src.ready.eq(pack.i.ready)]
        if self.cfg.strided_loads:
            with m.If(c.cshift != 0):           # a read a row: its kept bytes
                m.d.comb += pack.nbytes.eq(c.width)
        if not self.cfg.act_codes:
            m.d.comb += [src.payload.eq(beats.payload), src.valid.eq(beats.valid),
                         beats.ready.eq(src.ready)]
            return None
        unp = m.submodules.unpack = CodeUnpacker(nb)
        m.d.comb += unp.levels.eq(c.levels)
        beats_or_unpacked(m, beats, unp, c.decode, src)
        with m.If(c.decode):
            m.d.comb += [pack.nbytes.eq(c.nbytes << 1), pack.width.eq(c.width + c.width[0])]
        return unp

    def elaborate(self, platform):
        m = Module()
        cfg, c = self.cfg, self.cmd.payload
        L, A = cfg.L, cfg.addr_bits
        nb = cfg.bus_bytes
        aw = A + 1
        lbw = self.lb.payload

        ch = Signal(range(cfg.lb_rows + 1))       # the channel
        ch_addr = Signal(aw)                      # its band
        row = Signal(range(cfg.lb_rows + 1))      # the row (a tile's)
        row_addr = Signal(aw)
        gbase = Signal(range(cfg.lb_rows + 1))    # the channel's first line-buffer row
        r_in = Signal(range(cfg.lb_rows + 1))     # (wide) rows of the channel written
        wbase = Signal(range(2 * cfg.lb_rows + 1))    # (wide) that channel's first row
        g = Signal(range(cfg.lb_rows + 1))        # the line-buffer row written
        blk = Signal(range(cfg.lb_blocks + 1))    # its block
        # a payload is driven whole by plain assignments (a field set in a state and another
        # outside makes a process that nothing triggers in the Verilog)
        req_addr = Signal(aw)
        lb0 = c.lb0 if cfg.strided_loads else 0     # the first line-buffer row written
        m.d.comb += [lbw.row.eq(g), lbw.blk.eq(blk), self.req.payload.addr.eq(req_addr),
                     self.req.payload.len.eq(c.nbytes)]

        def request(addr):
            """Ask for a read at ``addr``; true: the DMA takes it."""
            m.d.comb += [self.req.valid.eq(1), req_addr.eq(addr)]
            return self.req.ready

        def fail(err):
            m.d.comb += [self.cmd.ready.eq(1), self.err.eq(err)]
            m.next = "IDLE"

        def ended():
            """The read's end: a failed read ends the command, else the body runs."""
            return read_ended(m, self.rd_done, self.rd_err, fail)

        def next_read():
            """The next row (a tile), the next channel, or the command's end."""
            with m.If(~c.contig & (row + 1 != c.nr)):
                m.d.sync += [row.eq(row + 1), row_addr.eq(addr_clamp(row_addr + c.row_step, A))]
                m.next = "ROW"
            with m.Elif(ch + 1 == c.nch):
                m.d.comb += self.cmd.ready.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [ch.eq(ch + 1), ch_addr.eq(addr_clamp(ch_addr + c.chan_step, A)),
                             gbase.eq(gbase + c.pitch)]
                m.next = "BAND"

        def begin(addr, first_of_band, first_of_command):
            """A read is taken: the command's first (channel 0, from line-buffer row lb0), a
            channel's first (its rows from line-buffer row ``gbase``) or a tile's next row."""
            if first_of_command:
                m.d.sync += [ch.eq(0), ch_addr.eq(addr), gbase.eq(lb0), g.eq(lb0), blk.eq(0),
                             row.eq(0), row_addr.eq(addr), r_in.eq(0), wbase.eq(lb0)]
            elif first_of_band:
                m.d.sync += [g.eq(gbase), blk.eq(0), row.eq(0), row_addr.eq(addr)]
            m.next = "DATA"

        if self.wide:
            pack = m.submodules.pack = RowPacker(L=L, bus_bytes=nb, max_width=cfg.lb_width,
                                                 max_bytes=cfg.lb_rows * cfg.lb_width)
            sh = (nb - 1).bit_length()
            m.d.comb += [pack.o.ready.eq(1),
                         self.lb.valid.eq(pack.o.valid), lbw.data.eq(pack.o.payload.data),
                         lbw.en.eq(pack.o.payload.en)]
            # beats (or their codes' levels) through the row packer into the line buffer, a
            # block a clock, in every state: the unpacker may still hold the read's last beat
            # when the read ends (DRAIN); with a column step, the decimator's beats
            beats = self.beats
            if cfg.strided_loads:
                dec = m.submodules.decimate = ColumnDecimator(
                    bus_bytes=nb, max_shift=max_cshift(cfg),
                    max_beats=((cfg.lb_width - 1 << max_cshift(cfg)) + 2 * nb) // nb)
                wiring.connect(m, wiring.flipped(self.beats), dec.i)
                beats = dec.o
            unp = self._packer_source(m, pack, beats)
            # the line-buffer row of each row out of the packer: the next, or after a channel's
            # nr rows the next channel's first (a read may hold several channels)
            with m.If(pack.o.valid):
                with m.If(pack.o.payload.row_end & (r_in + 1 == c.nr)):
                    m.d.sync += [blk.eq(0), r_in.eq(0), g.eq(wbase + c.pitch),
                                 wbase.eq(wbase + c.pitch)]
                with m.Elif(pack.o.payload.row_end):
                    m.d.sync += [blk.eq(0), r_in.eq(r_in + 1), g.eq(g + 1)]
                with m.Else():
                    m.d.sync += blk.eq(blk + 1)

            def start_read(addr, first_of_band, first_of_command=False):
                with m.If(request(addr)):
                    m.d.comb += [pack.clear.eq(1), pack.skip.eq(addr[:sh])]
                    if cfg.strided_loads:
                        # the row's kept bytes: its first is the decimated stream's byte
                        # skip >> k; the read's beats cover skip + nbytes bytes
                        m.d.comb += [dec.clear.eq(1), dec.shift.eq(c.cshift),
                                     dec.phase.eq(addr[:sh]),
                                     dec.beats.eq((addr[:sh] + c.nbytes + nb - 1) >> sh),
                                     pack.skip.eq(addr[:sh] >> c.cshift)]
                    if cfg.act_codes:
                        # codes from byte k: level 2k on, in the second half if 2k >= nb
                        skip2 = Cat(Const(0, 1), addr[:sh])
                        m.d.comb += [unp.clear.eq(1), unp.half0.eq(c.decode & skip2[sh])]
                        with m.If(c.decode):
                            m.d.comb += pack.skip.eq(skip2[:sh])
                    begin(addr, first_of_band, first_of_command)

            def data_state():
                with ended():
                    m.next = "DRAIN"
        else:
            col = Signal(range(cfg.lb_width))
            sub = Signal(range(L))
            m.d.comb += [self.beats.ready.eq(1), lbw.data.eq(self.beats.payload[0].replicate(L)),
                         lbw.en.eq(Const(1, L) << sub)]

            def start_read(addr, first_of_band, first_of_command=False):
                request(addr)                   # the reader is idle (the command waits)
                if first_of_band:
                    m.d.sync += [col.eq(0), sub.eq(0)]
                begin(addr, first_of_band, first_of_command)

            def data_state():
                # a byte a clock into its sub-bank
                with m.If(self.beats.valid):
                    m.d.comb += self.lb.valid.eq(1)
                    with m.If(col == c.width - 1):
                        m.d.sync += [col.eq(0), blk.eq(0), sub.eq(0), g.eq(g + 1)]
                    with m.Else():
                        m.d.sync += col.eq(col + 1)
                        with m.If(sub == L - 1):
                            m.d.sync += [sub.eq(0), blk.eq(blk + 1)]
                        with m.Else():
                            m.d.sync += sub.eq(sub + 1)
                with ended():
                    next_read()

        with m.FSM(name="loada"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    start_read(c.addr, True, first_of_command=True)
            with m.State("BAND"):
                start_read(ch_addr, True)
            with m.State("ROW"):
                start_read(row_addr, False)
            with m.State("DATA"):
                data_state()
            if self.wide:
                with m.State("DRAIN"):
                    with m.If(pack.idle):
                        next_read()
        return m
