"""cocotb testbench: the iCE40 SPRAM wrapper (:class:`ffacc.boards.ram.SinglePortRAM`,
``kind="spram"``, on yosys's SB_SPRAM256KA simulation model) next to the behavioural model,
driven with the same random single-port operations (byte-masked writes, reads, idle cycles)
on addresses in every bank. In the cycle after each read both must present the same word,
equal to what a Python model of the memory holds. ``FFACC_OPS``: operations,
``FFACC_SEED``: random seed, ``FFACC_RESULT``: JSON with the counts.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


@cocotb.test()
async def spram_matches_the_model(dut):
    rng = random.Random(int(os.environ.get("FFACC_SEED", "0")))
    nops = int(os.environ.get("FFACC_OPS", "2000"))
    nb = len(dut.wen.value)
    depth = 1 << len(dut.addr.value)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    # a few addresses in every 16 K-word bank, each written whole first (the SPRAM model
    # starts undefined)
    addrs = sorted({b * 16384 + rng.randrange(16384) for b in range(max(1, depth // 16384))
                    for _ in range(8)} | {0, depth - 1})
    mem = {}
    full = (1 << nb) - 1
    ops = [("w", a, rng.getrandbits(8 * nb), full) for a in addrs]
    for _ in range(nops):
        kind = rng.choice("wrri")
        a = rng.choice(addrs)
        ops.append((kind, a, rng.getrandbits(8 * nb), rng.randrange(1, full + 1)))
    dut.rst.value = 1
    dut.wen.value = dut.ren.value = 0
    await RisingEdge(dut.clk)
    reads = writes = 0
    for kind, a, data, mask in ops:
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        dut.addr.value = a
        dut.wdata.value = data
        dut.wen.value = mask if kind == "w" else 0
        dut.ren.value = 1 if kind == "r" else 0
        await RisingEdge(dut.clk)
        await ReadOnly()
        if kind == "r":
            # the word read at this edge is presented until the next one
            got_s, got_m = int(dut.rdata_spram.value), int(dut.rdata_model.value)
            assert got_s == got_m == mem[a], \
                f"read of word {a}: SPRAM {got_s:#x}, model {got_m:#x}, want {mem[a]:#x}"
            reads += 1
        elif kind == "w":
            old = mem.get(a, 0)
            for b in range(nb):
                if mask >> b & 1:
                    old = old & ~(0xFF << 8 * b) | (data >> 8 * b & 0xFF) << 8 * b
            mem[a] = old
            writes += 1
    with open(os.environ["FFACC_RESULT"], "w") as f:
        json.dump({"reads": reads, "writes": writes}, f)
