"""The record loader in amaranth.sim: a LOADQ command's read (served by a model of the read DMA
over a memory, with gaps and back-pressure) → the parameter-buffer words it writes, against
numpy; the words past the last record are dropped; a read error ends the command with it."""

import numpy as np
import pytest

from ffacc.firmware.isa import QPARAM_WORDS, Err
from ffacc.hw.config import AcceleratorConfig
from ffacc.hw.loadq import RecordLoader
from readdma import ReadDma, run_command

RECORD = 4 * QPARAM_WORDS


def make(wide, bus_bytes=4):
    cfg = AcceleratorConfig(lanes=1, lb_rows=16, lb_width=16, wb_sets=8, acc_blocks=16,
                            qb_entries=16, bus_bytes=bus_bytes, wide_loads=wide, addr_bits=16,
                            act_codes=wide, packed_weights=wide, strided_loads=wide,
                            weight_prefetch=False, post_overlap=False)
    return cfg, RecordLoader(cfg)


def run(cfg, dut, mem, cmd, *, fail=False, seed=0):
    """Run ``cmd``; returns ({(entry, slot): word}, the reads asked, err)."""
    dma = ReadDma(dut, mem, cfg.bus_bytes if cfg.wide_loads else 1,
                  np.random.default_rng(seed), fail=(0,) if fail else ())
    written = {}

    def watch(ctx):
        if ctx.get(dut.w.valid):
            w = ctx.get(dut.w.payload)
            assert (w.entry, w.slot) not in written, (w.entry, w.slot)
            written[(w.entry, w.slot)] = w.word

    err = run_command(dut, cmd, dma, watch, clocks=5000)
    return written, dma.reads, err


@pytest.mark.parametrize("wide,bus_bytes", [(True, 4), (True, 8), (False, 4)])
@pytest.mark.parametrize("n,dst", [(1, 0), (3, 5), (4, 12), (16, 0)])
def test_records_land_in_their_entries(wide, bus_bytes, n, dst):
    """Every word of every record, in its slot of its entry; nothing else (an 8-byte bus
    reads a word past an odd number of records: it is dropped)."""
    cfg, dut = make(wide, bus_bytes)
    mem = np.random.default_rng(n * 16 + dst).integers(0, 256, 1 << 12, dtype=np.uint8)
    src = 0x208
    nbytes = -(-n * RECORD // bus_bytes) * bus_bytes if wide else n * RECORD
    written, reads, err = run(cfg, dut, mem, {"src": src, "nbytes": nbytes, "dst": dst,
                                              "end": dst + n}, seed=n)
    assert err == 0 and reads == [(src, nbytes)]
    words = mem[src:src + n * RECORD].view("<u4").reshape(n, QPARAM_WORDS)
    assert written == {(dst + e, k): int(words[e, k]) for e in range(n)
                       for k in range(QPARAM_WORDS)}


@pytest.mark.parametrize("wide", [True, False])
def test_a_failed_read_ends_the_command_with_its_error(wide):
    cfg, dut = make(wide)
    mem = np.zeros(1 << 12, np.uint8)
    written, reads, err = run(cfg, dut, mem, {"src": 0x100, "nbytes": 4 * RECORD, "dst": 0,
                                              "end": 4}, fail=True)
    assert err == Err.BUS and len(reads) == 1
    assert len(written) < 4 * QPARAM_WORDS
