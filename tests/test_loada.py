"""The activation loader in amaranth.sim: a LOADA command's reads (served by a model of the read
DMA over a memory, with gaps and back-pressure) → the line-buffer rows it writes, against
numpy; and a read error ends the command with it."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import wiring

from ffacc.firmware.isa import Err
from ffacc.hw.config import AcceleratorConfig
from ffacc.hw.fcu import FCUConfig
from ffacc.hw.linebuf import LineBuffer
from ffacc.hw.loada import ActivationLoader
from readdma import ReadDma, run_command


def make(wide, bus_bytes=4, L=3):
    cfg = AcceleratorConfig(fcu=FCUConfig(parallel=(3,) if L == 3 else (2,), rows=2), lanes=1,
                            lb_rows=32, lb_width=16, wb_sets=8, acc_blocks=32,
                            bus_bytes=bus_bytes, wide_loads=wide, addr_bits=16,
                            weight_prefetch=False, post_overlap=False, fetch_block=16,
                            act_codes=wide, packed_weights=wide, strided_loads=wide)
    lb = LineBuffer(L=cfg.L, engines=cfg.rows, banks=cfg.lb_banks, slots=cfg.lb_slots,
                    blocks=cfg.lb_blocks, act_shape=cfg.fcu.act_shape,
                    col_shape=signed(8))
    return cfg, ActivationLoader(cfg, lb.w.payload.shape()), lb


class LoaderAndLineBuffer(Elaboratable):
    """The loader's blocks into a line buffer, as in the accelerator (the bench watches the
    stream between them)."""

    def __init__(self, loader, lb):
        self.loader, self.lb = loader, lb

    def elaborate(self, platform):
        m = Module()
        m.submodules.loader, m.submodules.lb = self.loader, self.lb
        wiring.connect(m, self.loader.lb, self.lb.w)
        return m


def run(cfg, dut, lb, mem, cmd, *, fail_read=None, seed=0):
    """Run ``cmd``; returns ({(line-buffer row, column): byte}, the reads asked as (addr,
    len), err). Beats are shown only while the loader asks for one, as the read DMA does."""
    L = cfg.L
    dma = ReadDma(dut, mem, cfg.bus_bytes if cfg.wide_loads else 1,
                  np.random.default_rng(seed), fail=() if fail_read is None else (fail_read,),
                  valid_after_ready=cfg.wide_loads)
    written = {}

    def watch(ctx):
        if ctx.get(dut.lb.valid):
            w = ctx.get(dut.lb.payload)
            for j in range(L):
                if w.en >> j & 1:
                    written[(w.row, L * w.blk + j)] = w.data[j]

    err = run_command(dut, cmd, dma, watch, top=LoaderAndLineBuffer(dut, lb))
    return written, dma.reads, err


def expected(mem, cmd):
    want, reads = {}, []
    step, lb0 = 1 << cmd.get("cshift", 0), cmd.get("lb0", 0)
    for c in range(cmd["nch"]):
        band = cmd["addr"] + c * cmd["chan_step"]
        if cmd["contig"]:
            reads.append(band)
        for r in range(cmd["nr"]):
            a = band + r * cmd["row_step"]
            if not cmd["contig"]:
                reads.append(a)
            for col in range(cmd["width"]):
                want[(lb0 + c * cmd["pitch"] + r, col)] = int(mem[a + col * step])
    return want, reads


CASES = [  # addr, nch, nr, width, pitch, map width in memory (a tile when wider), map rows
    (0x100, 1, 3, 7, 3, 7, 5),
    (0x203, 3, 2, 5, 4, 5, 6),              # unaligned, contiguous bands
    (0x341, 2, 3, 4, 3, 11, 7),             # a column tile: a read per row
    (0x40, 4, 1, 16, 2, 16, 1),             # whole-width rows, one per channel
]


@pytest.mark.parametrize("wide,bus_bytes", [(True, 4), (True, 8), (False, 4)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_loader_writes_every_channels_band(wide, bus_bytes, case):
    cfg, dut, lb = make(wide, bus_bytes)
    addr, nch, nr, width, pitch, mw, mh = CASES[case]
    mem = np.random.default_rng(case).integers(0, 256, 1 << 13, dtype=np.uint8)
    contig = int(mw == width)
    cmd = {"addr": addr, "nbytes": nr * width if contig else width, "contig": contig,
           "nch": nch, "nr": nr, "pitch": pitch, "width": width, "row_step": mw,
           "chan_step": mw * mh}
    written, reads, err = run(cfg, dut, lb, mem, cmd, seed=case)
    want, want_reads = expected(mem, cmd)
    assert err == 0
    assert reads == [(a, cmd["nbytes"]) for a in want_reads]
    assert written == want


@pytest.mark.parametrize("bus_bytes", [4, 8])
@pytest.mark.parametrize("nch,nr,width,pitch", [(3, 4, 4, 5), (4, 2, 7, 2), (2, 3, 16, 4)])
def test_whole_maps_in_one_read_go_to_their_channels_rows(bus_bytes, nch, nr, width, pitch):
    """Whole maps contiguous in memory, as the controller gives them with wide loads: one
    channel of ``nch * nr`` rows read at once, each channel's rows at its pitch."""
    cfg, dut, lb = make(True, bus_bytes)
    mem = np.random.default_rng(nch * nr).integers(0, 256, 1 << 13, dtype=np.uint8)
    maps = {"addr": 0x102, "contig": 1, "nch": nch, "nr": nr, "pitch": pitch, "width": width,
            "row_step": width, "chan_step": nr * width}
    cmd = dict(maps, nch=1, nbytes=nch * nr * width)
    written, reads, err = run(cfg, dut, lb, mem, cmd, seed=nch)
    want, _ = expected(mem, maps)
    assert err == 0 and reads == [(0x102, nch * nr * width)]
    assert written == want and len(want) == nch * nr * width


STRIDED_CASES = [  # addr, nch, nr, width, pitch, column step's log2, first line-buffer row
    (0x100, 2, 3, 5, 3, 1, 0),
    (0x203, 3, 2, 4, 2, 1, 5),              # from an odd column: the phase's bytes are odd
    (0x341, 1, 2, 3, 2, 2, 9),              # every 4th byte, from the second of a beat
    (0x40, 2, 2, 16, 2, 1, 1),              # whole line-buffer rows
]


@pytest.mark.parametrize("bus_bytes", [4, 8])
@pytest.mark.parametrize("case", range(len(STRIDED_CASES)))
def test_a_column_step_loads_every_step_th_byte_from_the_first_row_given(bus_bytes, case):
    """strided_loads: each row is a read of (width - 1) * 2**k + 1 bytes of which every
    2**k-th is written, the rows from line-buffer row lb0 on (a stride phase of a map)."""
    cfg, dut, lb = make(True, bus_bytes)
    addr, nch, nr, width, pitch, k, lb0 = STRIDED_CASES[case]
    mem = np.random.default_rng(case).integers(0, 256, 1 << 13, dtype=np.uint8)
    rb = (width - 1 << k) + 1
    cmd = {"addr": addr, "nbytes": rb, "contig": 0, "nch": nch, "nr": nr, "pitch": pitch,
           "width": width, "row_step": 2 * rb + 3, "chan_step": 8 * rb, "cshift": k,
           "lb0": lb0}
    written, reads, err = run(cfg, dut, lb, mem, cmd, seed=case)
    want, want_reads = expected(mem, cmd)
    assert err == 0
    assert reads == [(a, rb) for a in want_reads]
    assert written == want and len(want) == nch * nr * width


@pytest.mark.parametrize("wide", [True, False])
def test_a_failed_read_ends_the_command_with_its_error(wide):
    cfg, dut, lb = make(wide)
    mem = np.arange(1 << 13, dtype=np.uint32).astype(np.uint8)
    cmd = {"addr": 0x80, "nbytes": 6, "contig": 1, "nch": 3, "nr": 2, "pitch": 2,
           "width": 3, "row_step": 3, "chan_step": 6}
    written, reads, err = run(cfg, dut, lb, mem, cmd, fail_read=1)
    assert err == Err.BUS
    assert len(reads) == 2                          # no read after the failed one
    assert all(row < 4 for row, _ in written)       # channel 2 is not written


def expected_codes(mem, cmd, levels):
    """Line-buffer bytes of a ``decode`` command: each row's ``ceil(width / 2)`` bytes of
    codes (the even column low) as their levels, an odd row's pad column too."""
    want = {}
    wb = -(-cmd["width"] // 2)
    for c in range(cmd["nch"]):
        band = cmd["addr"] + c * cmd["chan_step"]
        for r in range(cmd["nr"]):
            a = band + r * cmd["row_step"]
            for col in range(2 * wb):
                code = int(mem[a + col // 2]) >> 4 * (col % 2) & 15
                want[(c * cmd["pitch"] + r, col)] = levels[code]
    return want


DECODE_CASES = [  # addr, nch, nr, width, pitch, row bytes in memory, map rows
    (0x100, 1, 3, 7, 3, 4, 5),              # odd width: a pad code per row
    (0x203, 3, 2, 6, 4, 3, 6),              # from the second half of the first beat
    (0x341, 2, 3, 5, 3, 6, 7),              # a column tile of a wider map: a read a row
    (0x42, 4, 1, 16, 2, 8, 1),
]


@pytest.mark.parametrize("bus_bytes", [4, 8])
@pytest.mark.parametrize("case", range(len(DECODE_CASES)))
def test_codes_load_as_their_levels(bus_bytes, case):
    """LOADA with DECODE: two 4-bit codes a byte, each written as its level; every read's
    byte count is of codes (ceil(width / 2) a row)."""
    cfg, dut, lb = make(True, bus_bytes)
    addr, nch, nr, width, pitch, rb, mh = DECODE_CASES[case]
    rng = np.random.default_rng(case)
    mem = rng.integers(0, 256, 1 << 13, dtype=np.uint8)
    levels = [int(v) for v in rng.integers(0, 256, 16)]
    wb = -(-width // 2)
    contig = int(rb == wb)
    cmd = {"addr": addr, "nbytes": nr * wb if contig else wb, "contig": contig, "nch": nch,
           "nr": nr, "pitch": pitch, "width": width, "row_step": rb, "chan_step": rb * mh,
           "decode": 1, "levels": levels}
    written, reads, err = run(cfg, dut, lb, mem, cmd, seed=case)
    assert err == 0
    assert all(n == cmd["nbytes"] for _, n in reads)
    assert len(reads) == (nch if contig else nch * nr)
    assert written == expected_codes(mem, cmd, levels)
