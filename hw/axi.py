"""AXI4 master DMA engines: a burst reader that delivers a byte stream, a byte writer.

Addresses, lengths and ``mem_size`` are ``addr_bits`` wide (the accelerator passes its
address width plus an overflow bit). Both check every access against ``mem_size``
(``Err.ADDRESS``), turn an error response into
``Err.BUS`` and a memory that stops answering into ``Err.TIMEOUT``: the accelerator never
hangs on its bus. ``stall`` is high in a cycle an engine waits for the bus; the parent counts
such cycles (:func:`bus_timer`, one counter for the engines it is given) and raises
``expired`` after ``TIMEOUT_CYCLES`` of them in a row: a waiting engine then stops with
``Err.TIMEOUT``.
"""

from contextlib import contextmanager

from amaranth.hdl import Module, Signal, Const, Cat, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Err
from .logic import le_const

__all__ = ["axi_master_ports", "axil_slave_ports", "connect_axi_master", "AxiByteReader",
           "AxiByteWriter", "bus_timer", "read_client_ports", "read_ended"]

TIMEOUT_CYCLES = 4096


def bus_timer(m, *engines):
    """The bus timeout shared by ``engines``: counts the cycles in a row in which any of them
    waits (``stall``) and drives their ``expired`` once the count reaches
    ``TIMEOUT_CYCLES``."""
    tmo = Signal(range(TIMEOUT_CYCLES + 1))
    stall = Const(0, 1)
    for e in engines:
        stall = stall | e.stall
    with m.If(stall):
        m.d.sync += tmo.eq(tmo + 1)
    with m.Else():
        m.d.sync += tmo.eq(0)
    m.d.comb += [e.expired.eq(tmo == TIMEOUT_CYCLES) for e in engines]


def axi_master_ports(prefix, data_bytes, addr_bits=32):
    """Flat AXI4 master ports named like cocotbext-axi expects (``<prefix>_araddr`` ...)."""
    dw = data_bytes * 8
    p = prefix
    return {
        f"{p}_awid": Out(1), f"{p}_bid": In(1), f"{p}_arid": Out(1), f"{p}_rid": In(1),
        f"{p}_awaddr": Out(addr_bits), f"{p}_awlen": Out(8), f"{p}_awsize": Out(3),
        f"{p}_awburst": Out(2), f"{p}_awvalid": Out(1), f"{p}_awready": In(1),
        f"{p}_wdata": Out(dw), f"{p}_wstrb": Out(data_bytes), f"{p}_wlast": Out(1),
        f"{p}_wvalid": Out(1), f"{p}_wready": In(1),
        f"{p}_bresp": In(2), f"{p}_bvalid": In(1), f"{p}_bready": Out(1),
        f"{p}_araddr": Out(addr_bits), f"{p}_arlen": Out(8), f"{p}_arsize": Out(3),
        f"{p}_arburst": Out(2), f"{p}_arvalid": Out(1), f"{p}_arready": In(1),
        f"{p}_rdata": In(dw), f"{p}_rresp": In(2), f"{p}_rlast": In(1),
        f"{p}_rvalid": In(1), f"{p}_rready": Out(1),
    }


def connect_axi_master(m, port, rd, wr, data_bytes):
    """The AXI4 master's channels (``port(name)``: the signal of channel field ``name``, e.g.
    ``"araddr"``) to the read engine ``rd`` (:class:`AxiByteReader`: INCR bursts) and the
    write engine ``wr`` (:class:`AxiByteWriter`: single beats with strobes)."""
    size = (data_bytes - 1).bit_length()
    m.d.comb += [
        port("araddr").eq(rd.ar_addr), port("arlen").eq(rd.ar_len), port("arsize").eq(size),
        port("arburst").eq(1), port("arvalid").eq(rd.ar_valid), rd.ar_ready.eq(port("arready")),
        rd.r_data.eq(port("rdata")), rd.r_resp.eq(port("rresp")), rd.r_last.eq(port("rlast")),
        rd.r_valid.eq(port("rvalid")), port("rready").eq(rd.r_ready),
        port("awaddr").eq(wr.aw_addr), port("awlen").eq(0), port("awsize").eq(size),
        port("awburst").eq(1), port("awvalid").eq(wr.aw_valid), wr.aw_ready.eq(port("awready")),
        port("wdata").eq(wr.w_data), port("wstrb").eq(wr.w_strb), port("wlast").eq(1),
        port("wvalid").eq(wr.w_valid), wr.w_ready.eq(port("wready")),
        wr.b_resp.eq(port("bresp")), wr.b_valid.eq(port("bvalid")), port("bready").eq(wr.b_ready),
    ]


def axil_slave_ports(prefix, addr_bits=8):
    p = prefix
    return {
        f"{p}_awaddr": In(addr_bits), f"{p}_awvalid": In(1), f"{p}_awready": Out(1),
        f"{p}_wdata": In(32), f"{p}_wstrb": In(4), f"{p}_wvalid": In(1), f"{p}_wready": Out(1),
        f"{p}_bresp": Out(2), f"{p}_bvalid": Out(1), f"{p}_bready": In(1),
        f"{p}_araddr": In(addr_bits), f"{p}_arvalid": In(1), f"{p}_arready": Out(1),
        f"{p}_rdata": Out(32), f"{p}_rresp": Out(2), f"{p}_rvalid": Out(1), f"{p}_rready": In(1),
    }


def read_client_ports(addr_bits, beat_bytes):
    """The ports of a unit that reads through the :class:`AxiByteReader` (the loaders, ADD):

    * ``req``: Out(stream of {addr, len}): a read, taken (``ready``) while the reader is idle;
    * ``beats``: In(stream of [beat_bytes] bytes): its whole beats (``req_words``), or with
      ``beat_bytes = 1`` its bytes (a byte stream is never held: ``ready`` is ignored);
    * ``rd_done``, ``rd_err``: the read's end, and its error.

    ``addr_bits``: the accelerator's address width (addresses carry an overflow bit)."""
    aw = addr_bits + 1
    return {"req": Out(stream.Signature(data.StructLayout({"addr": aw, "len": aw}))),
            "beats": In(stream.Signature(data.ArrayLayout(8, beat_bytes))),
            "rd_done": In(1), "rd_err": In(range(max(Err) + 1))}


@contextmanager
def read_ended(m, done, err, fail):
    """In the clock a read ends (``done``, the :class:`AxiByteReader`'s or a client's
    ``rd_done``): ``fail(err)`` when it failed, else the body."""
    with m.If(done):
        with m.If(err != 0):
            fail(err)
        with m.Else():
            yield


class AxiByteReader(wiring.Component):
    """Read ``req_len`` bytes from ``req_addr`` in bursts; one byte per cycle on ``out``.

    ``req_valid`` is a one-cycle pulse while ``idle``; ``done`` pulses after the last byte, or
    with ``err`` set once the reader is idle again (after an error response it first drains the
    burst's other beats), so its user may ask for the next read at once. The consumer always
    accepts (no back-pressure on ``out``).

    ``registered`` (the configuration's ``read_registers``): the request is registered as it
    is taken and checked (against ``mem_size``, for an empty read) and split into bursts a
    clock later, so no client's request logic and this address arithmetic form one path; and
    the bus's beats enter through a two-beat FIFO, a clock later. Without, a request is
    checked in the clock it is taken, and ``r_ready`` is the consumer's.

    With ``req_words`` set (address and length multiples of the bus width) the reader instead
    presents each beat whole on ``beat_valid``/``beat_data``, one per cycle while
    ``beat_ready`` is high (otherwise the beats wait: in the FIFO, then on the bus). A beat is
    offered whether or not the consumer is ready (``beat_valid`` does not depend on
    ``beat_ready``).

    Bursts are aligned to their length (``burst_beats``, a power of two, bus words: at most
    2 KiB), so none crosses a 4 KiB boundary; the first one ends at the first aligned address.
    Only the last beat's byte count is kept (``tail``), not a count of the bytes left.
    """

    def __init__(self, data_bytes, burst_beats, addr_bits=32, registered=True):
        if burst_beats & (burst_beats - 1) or burst_beats * data_bytes > 4096:
            raise ValueError(f"burst of {burst_beats} beats of {data_bytes} bytes: must be a "
                             f"power of two of at most 4 KiB")
        self.nb = data_bytes
        self.burst = burst_beats
        self.registered = registered
        self.aw = aw = addr_bits
        super().__init__({
            "req_valid": In(1), "req_addr": In(aw), "req_len": In(aw), "mem_size": In(aw),
            "req_words": In(1), "beat_valid": Out(1), "beat_data": Out(8 * data_bytes),
            "beat_ready": In(1),
            "idle": Out(1), "done": Out(1), "err": Out(3),
            "out_valid": Out(1), "out_data": Out(8), "stall": Out(1), "expired": In(1),
            "ar_addr": Out(aw), "ar_len": Out(8), "ar_valid": Out(1), "ar_ready": In(1),
            "r_data": In(8 * data_bytes), "r_resp": In(2), "r_last": In(1),
            "r_valid": In(1), "r_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nb = self.nb
        sh = (nb - 1).bit_length()
        lb = (self.burst - 1).bit_length()
        wa = self.aw - sh
        addr = Signal(wa)               # word address of the next burst
        beats_left = Signal(wa + 1)     # beats still to request
        in_burst = Signal(range(self.burst + 1))
        skip = Signal(range(nb))        # bytes before the start in the first beat
        tail = Signal(range(nb))        # bytes of the last beat up to the end (0: all)
        buf = Signal(8 * nb, reset_less=True)
        cnt = Signal(range(nb + 1))     # bytes (skipped or not) still in buf
        end = Signal(self.aw + 1)
        words = Signal()
        r_addr, r_len, r_words = Signal(self.aw), Signal(self.aw), Signal()  # (registered)

        # (registered) the R channel enters through a two-beat FIFO (a beat a clock, a clock
        # later): the bus's ``rready`` is the FIFO's room, not the consumer's ``beat_ready``,
        # and the beats leave from registers, so neither the memory's handshake nor the
        # consumer's logic is part of a path through the other
        # (``rlast`` is not kept: the reader counts each burst's beats)
        if self.registered:
            rq = m.submodules.rq = SyncFIFO(width=8 * nb + 2, depth=2)
            r_data, r_resp = rq.r_data[:8 * nb], rq.r_data[8 * nb:]
            r_valid, r_ready = rq.r_rdy, rq.r_en
            m.d.comb += [rq.w_data.eq(Cat(self.r_data, self.r_resp)),
                         rq.w_en.eq(self.r_valid), self.r_ready.eq(rq.w_rdy)]
        else:
            r_data, r_resp, r_valid, r_ready = self.r_data, self.r_resp, self.r_valid, \
                self.r_ready

        # burst length: the beats left, up to the next burst-aligned address
        room = Signal(lb + 1)
        m.d.comb += room.eq(self.burst - (addr[:lb] if lb else 0))
        n = Signal(lb + 1)
        m.d.comb += n.eq(Mux((beats_left[lb + 1:] != 0) | (beats_left[:lb + 1] >= room),
                             room, beats_left[:lb + 1]))

        # byte output from the beat buffer
        with m.If(cnt != 0):
            with m.If(skip != 0):
                m.d.sync += skip.eq(skip - 1)
            with m.Else():
                m.d.comb += [self.out_valid.eq(1), self.out_data.eq(buf[:8])]
            m.d.sync += [buf.eq(buf >> 8), cnt.eq(cnt - 1)]

        m.d.sync += self.done.eq(0)

        def check(addr_, len_, words_):
            """The request's checks (``end`` is ``addr_ + len_``), then its first burst (or
            ``done``)."""
            m.d.sync += self.err.eq(0)
            with m.If(end > self.mem_size):
                m.d.sync += [self.err.eq(Err.ADDRESS), self.done.eq(1)]
                m.next = "IDLE"
            with m.Elif(len_ == 0):
                m.d.sync += self.done.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.sync += [
                    words.eq(words_),
                    addr.eq(addr_[sh:]),
                    skip.eq(addr_[:sh] if sh else 0),
                    tail.eq(end[:sh] if sh else 0),
                    beats_left.eq((addr_[:sh] + len_ + nb - 1) >> sh),
                ]
                m.next = "AR"

        # (driven whole, not in the states that use it: a multiplexer less)
        m.d.comb += end.eq(r_addr + r_len if self.registered else self.req_addr + self.req_len)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.req_valid):
                    if self.registered:
                        # the request is registered as it is taken and checked a clock
                        # later: the address arithmetic starts at flip-flops, not at the
                        # client's (or the controller's) combinational request
                        m.d.sync += [r_addr.eq(self.req_addr), r_len.eq(self.req_len),
                                     r_words.eq(self.req_words)]
                        m.next = "START"
                    else:
                        check(self.req_addr, self.req_len, self.req_words)
            if self.registered:
                with m.State("START"):
                    check(r_addr, r_len, r_words)
            with m.State("AR"):
                m.d.comb += [self.ar_valid.eq(1), self.ar_addr.eq(Cat(Const(0, sh), addr)),
                             self.ar_len.eq(n - 1), self.stall.eq(~self.ar_ready)]
                with m.If(self.ar_ready):
                    m.d.sync += [in_burst.eq(n), addr.eq(addr + n),
                                 beats_left.eq(beats_left - n)]
                    m.next = "R"
                with m.Elif(self.expired):
                    m.d.sync += [self.err.eq(Err.TIMEOUT), self.done.eq(1)]
                    m.next = "IDLE"
            with m.State("R"):
                ready = Signal()
                last = (in_burst == 1) & (beats_left == 0)      # the transfer's last beat
                m.d.comb += [ready.eq(Mux(words, self.beat_ready, le_const(cnt, 1))),
                             r_ready.eq(ready), self.stall.eq(ready & ~r_valid)]
                with m.If(words):       # (a beat is offered whether or not it is taken)
                    m.d.comb += [self.beat_valid.eq(r_valid & (r_resp == 0)),
                                 self.beat_data.eq(r_data)]
                with m.If(r_valid & ready):
                    m.d.sync += [in_burst.eq(in_burst - 1)]
                    with m.If(~words):
                        m.d.sync += [buf.eq(r_data),
                                     cnt.eq(Mux(last & (tail != 0), tail, nb))]
                    with m.If(r_resp != 0):
                        m.d.sync += [self.err.eq(Err.BUS), cnt.eq(0)]
                        m.next = "FLUSH_R"
                    with m.Elif(in_burst == 1):
                        with m.If(beats_left == 0):
                            m.next = "DRAIN"
                        with m.Else():
                            m.next = "AR"
                with m.Elif(self.expired):
                    m.d.sync += [self.err.eq(Err.TIMEOUT), self.done.eq(1), cnt.eq(0)]
                    m.next = "IDLE"
            with m.State("DRAIN"):
                # the last byte (never a skipped one: a read has at least one) goes out now
                with m.If(le_const(cnt, 1)):
                    m.d.sync += [self.done.eq(1), cnt.eq(0)]
                    m.next = "IDLE"
            with m.State("FLUSH_R"):
                # an error response: accept and drop the rest of the burst, then ``done``
                # (with BUS): the reader is idle again when its user sees the error, so a
                # request right after it is taken (the fetch unit hands out the instructions
                # before a failed one, and one may read)
                m.d.comb += [r_ready.eq(1), self.stall.eq(~r_valid & (in_burst != 0))]
                with m.If((r_valid & le_const(in_burst, 1)) | (in_burst == 0)):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
                with m.Elif(r_valid):
                    m.d.sync += in_burst.eq(in_burst - 1)
                with m.Elif(self.expired):             # and then went silent: BUS stays
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m


class AxiByteWriter(wiring.Component):
    """Collect bytes at arbitrary addresses into bus words and write them out without waiting.

    Ports
    -----
    i : In(stream of {addr, data})
        One byte and its address per transfer. A byte in the word being collected (or the
        first byte) joins it; a byte in another word hands the collected word to the send
        register and starts the next one, in the same clock, if that register is free.
    flush : In(1)
        A pulse: hand a partly collected word to the send register too; ``stall`` then stays
        high until ``idle``.
    idle : Out(1)
        Nothing collected, nothing to send, every write answered.
    mem_size : In
        A byte at or past it is ``Err.ADDRESS`` (and is not taken).
    err, err_valid : Out, clear : In(1)
        The first error since ``clear`` (a pulse at the start of a run): ``Err.ADDRESS``,
        ``Err.BUS`` (an error response) or ``Err.TIMEOUT``; ``err_valid`` stays high until the
        next ``clear``, so an answer that comes back while the user is busy elsewhere is not
        lost. The writer then drops the word it is collecting and takes no byte until the
        word being sent has gone out and every write sent is answered: a word presented on
        the bus is never withdrawn (AXI), and no answer is ever counted against a later run.
        A memory that never answers keeps it so; the next run's first byte then waits and
        times out.
    stall, expired : Out(1), In(1)
        ``stall``: the writer holds up its user (a byte or a flush waits) because of the bus;
        ``expired``: the parent's :func:`bus_timer` ran out while it did.
    aw_*, w_*, b_* : AXI4 write channels, single-beat writes with byte strobes.

    The send register issues its word's address and data (each channel handshaken on its
    own) while the next word is collected; write responses are counted, up to
    ``outstanding`` of them in flight (AXI keeps the responses of one ID in order, so a count
    is enough). At one byte a clock into consecutive addresses, no clock is lost to the bus
    as long as it takes a word every ``data_bytes`` clocks.
    """

    def __init__(self, data_bytes, addr_bits=32, outstanding=7):
        if not 1 <= outstanding <= 255:
            raise ValueError(f"outstanding writes must be 1..255, not {outstanding}")
        self.nb = data_bytes
        self.aw = aw = addr_bits
        self.outstanding = outstanding
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"addr": aw, "data": 8}))),
            "flush": In(1), "idle": Out(1), "mem_size": In(aw), "err": Out(3),
            "err_valid": Out(1), "clear": In(1), "stall": Out(1), "expired": In(1),
            "aw_addr": Out(aw), "aw_valid": Out(1), "aw_ready": In(1),
            "w_data": Out(8 * data_bytes), "w_strb": Out(data_bytes), "w_valid": Out(1),
            "w_ready": In(1), "b_resp": In(2), "b_valid": In(1), "b_ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nb = self.nb
        sh = (nb - 1).bit_length()
        # the word being collected
        waddr = Signal(self.aw - sh, reset_less=True)   # data: strb and s_valid qualify them
        data_ = Signal(8 * nb, reset_less=True)
        strb = Signal(nb)
        flush_req = Signal()
        # the send register
        s_addr = Signal(self.aw - sh, reset_less=True)
        s_data = Signal(8 * nb, reset_less=True)
        s_strb = Signal(nb)
        s_valid = Signal()
        aw_done = Signal()
        w_done = Signal()
        # write responses still to come; errors drain the writer
        pending = Signal(range(self.outstanding + 1))
        draining = Signal()

        word = self.i.payload.addr[sh:]
        lane = self.i.payload.addr[:sh] if sh else Const(0, 1)
        free = ~s_valid

        with m.If(self.clear):
            m.d.sync += self.err_valid.eq(0)
        with m.If(self.flush):
            m.d.sync += flush_req.eq(1)

        def fail(code):
            # the first error since ``clear`` is kept; the collected word is dropped, the
            # send register and the answers due run their course
            with m.If(~self.err_valid):
                m.d.sync += [self.err.eq(code), self.err_valid.eq(1)]
            m.d.sync += [draining.eq(1), strb.eq(0)]

        # collect
        same = (strb == 0) | (word == waddr)
        push = Signal()
        with m.If(self.i.valid & ~draining):
            with m.If(self.i.payload.addr >= self.mem_size):
                fail(Err.ADDRESS)
            with m.Elif(same | free):
                m.d.comb += [self.i.ready.eq(1), push.eq(~same)]
        with m.Elif(flush_req & ~draining & free & (strb != 0)):
            m.d.comb += push.eq(1)
        with m.If(push):
            m.d.sync += [s_addr.eq(waddr), s_data.eq(data_), s_strb.eq(strb), s_valid.eq(1),
                         aw_done.eq(0), w_done.eq(0)]
        with m.If(self.i.ready):
            for b in range(nb):
                with m.If(lane == b):
                    m.d.sync += [data_[8 * b:8 * b + 8].eq(self.i.payload.data), strb[b].eq(1)]
                with m.Elif(push):
                    m.d.sync += strb[b].eq(0)
            m.d.sync += waddr.eq(word)
        with m.Elif(push):
            m.d.sync += strb.eq(0)

        # send: address and data each on their own handshake, while fewer than
        # ``outstanding`` responses are due
        room = pending != self.outstanding
        m.d.comb += [self.aw_addr.eq(Cat(Const(0, sh), s_addr)), self.w_data.eq(s_data),
                     self.w_strb.eq(s_strb),
                     self.aw_valid.eq(s_valid & room & ~aw_done),
                     self.w_valid.eq(s_valid & room & ~w_done)]
        aw_ok = aw_done | (self.aw_valid & self.aw_ready)
        w_ok = w_done | (self.w_valid & self.w_ready)
        sent = s_valid & room & aw_ok & w_ok
        with m.If(self.aw_valid & self.aw_ready):
            m.d.sync += aw_done.eq(1)
        with m.If(self.w_valid & self.w_ready):
            m.d.sync += w_done.eq(1)
        with m.If(sent):
            m.d.sync += s_valid.eq(0)

        # responses
        m.d.comb += self.b_ready.eq(1)
        answered = self.b_valid & (pending != 0)
        with m.If(sent & ~answered):
            m.d.sync += pending.eq(pending + 1)
        with m.Elif(answered & ~sent):
            m.d.sync += pending.eq(pending - 1)
        with m.If(answered & (self.b_resp != 0)):
            fail(Err.BUS)

        busy = (strb != 0) | s_valid | (pending != 0)
        m.d.comb += self.idle.eq(~busy)
        with m.If(~busy & ~self.flush):
            m.d.sync += flush_req.eq(0)
        with m.If(~busy):
            m.d.sync += draining.eq(0)
        # the user waits on the bus: a byte not taken, or a flush not over
        waits = (self.i.valid & ~self.i.ready) | (flush_req & busy)
        m.d.comb += self.stall.eq(waits)
        with m.If(self.expired & waits):
            fail(Err.TIMEOUT)
        return m
