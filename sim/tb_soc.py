"""cocotb testbench of the whole SoC through its UART, driven by the host runtime's protocol
code (:mod:`ffacc.boards.host`) over cocotbext-uart.

``FFACC_SOC_JOB`` selects the test: ``run`` loads ``FFACC_IMAGE``, writes ``FFACC_INPUTS``
(``.npz``), runs every segment and saves the outputs to ``FFACC_OUTPUTS``; ``errors`` sends
malformed and out-of-range requests and checks each answer. ``FFACC_RESULT`` receives JSON.
``FFACC_BAUD`` is the SoC's baud rate, ``FFACC_CLOCK_NS`` its clock period.
"""

import json
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer
from cocotbext.uart import UartSink, UartSource

from ffacc.boards.host import board_info, read_mem, run_async, run_firmware, write_mem
from ffacc.firmware.csr import CSR
from ffacc.firmware.image import Image
from ffacc.firmware.isa import Err, Op, Program
from ffacc.firmware.link import (Cmd, LinkError, ResponseParser, Status, encode_request)


async def _setup(dut):
    baud = int(os.environ["FFACC_BAUD"])
    period = int(os.environ.get("FFACC_CLOCK_NS", "10"))
    dut.uart_rx.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    src = UartSource(dut.uart_rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.uart_tx, baud=baud, bits=8, stop_bits=1)
    src.log.setLevel("WARNING")
    sink.log.setLevel("WARNING")
    frames = {"n": 0, "bytes": 0}
    timeout_ns = 200 * 10 * 1e9 / baud + 2e6      # generous: a frame, or a long run

    async def exchange(frame):
        frames["n"] += 1
        frames["bytes"] += len(frame)
        await src.write(frame)
        parser = ResponseParser()
        waited = 0
        while True:
            if not sink.empty():
                got = parser.feed(sink.read_nowait())
                if got is not None:
                    return got
            await Timer(int(20 * 1e9 / baud), unit="ns")
            waited += 20 * 1e9 / baud
            if waited > timeout_ns:
                raise AssertionError(f"no response to {frame.hex()} (hang)")
    async def send(frame):
        await src.write(frame)
        await src.wait()
    exchange.send, exchange.clk = send, dut.clk
    return exchange, frames


@cocotb.test()
async def soc(dut):
    job = os.environ.get("FFACC_SOC_JOB", "run")
    exchange, frames = await _setup(dut)
    result = {"job": job}
    if job == "run":
        img = Image.load(os.environ["FFACC_IMAGE"])
        with np.load(os.environ["FFACC_INPUTS"]) as f:
            inputs = {k: f[k] for k in f.files}
        t0 = cocotb.utils.get_sim_time("ns")
        outs, stats = await run_async(run_firmware(img, inputs), exchange)
        np.savez(os.environ["FFACC_OUTPUTS"], **outs)
        result.update(stats, frames=frames["n"], bytes_sent=frames["bytes"],
                      sim_ns=cocotb.utils.get_sim_time("ns") - t0)
    elif job == "memory":
        result["checks"] = await _memory(exchange)
    else:
        result["checks"] = await _errors(exchange)
    with open(os.environ["FFACC_RESULT"], "w") as f:
        json.dump(result, f)


async def _memory(exchange):
    """The memory through the link: random bytes written at scattered addresses (unaligned
    starts and lengths, one at the top of the memory) read back equal."""
    rng = np.random.default_rng(int(os.environ.get("FFACC_SEED", "1")))
    info = await run_async(board_info(), exchange)
    mem = info["mem_bytes"]
    spots = [(0, 64), (101, 7), (4093, 300), (mem - 40, 40)]      # apart from each other
    slots = rng.choice(np.arange(8, mem // 1024 - 1), 4, replace=False)
    spots += [(int(s) * 1024 + int(rng.integers(0, 400)), int(rng.integers(1, 600)))
              for s in slots]
    data = [rng.integers(0, 256, n).astype(np.uint8).tobytes() for _, n in spots]
    for (a, _), d in zip(spots, data):
        await run_async(write_mem(a, d), exchange)
    checks = []
    for (a, n), d in zip(spots, data):
        got = await run_async(read_mem(a, n), exchange)
        assert got == d, f"{n} bytes at 0x{a:x}: read {got[:16].hex()}..., wrote {d[:16].hex()}"
        checks.append(f"{n} bytes at 0x{a:x}")
    return checks


async def _errors(exchange):
    """Every malformed request gets its status, and has no effect."""
    checks = []
    info = await run_async(board_info(), exchange)
    mem = info["mem_bytes"]
    clock_ns = int(os.environ.get("FFACC_CLOCK_NS", "10"))
    assert mem == int(os.environ["FFACC_MEM_BYTES"]), info
    assert info["clock_hz"] == round(1e9 / clock_ns), info
    checks.append("INFO: memory size and clock")
    await run_async(write_mem(0, bytes(range(16))), exchange)

    async def expect(frame, status, what):
        got = await exchange(frame)
        assert got[0] == status, f"{what}: status {got[0]}, expected {Status(status).name}"
        checks.append(what)
        return got
    # a corrupted CRC: BAD_CRC, and memory unchanged
    bad = bytearray(encode_request(Cmd.WRITE_MEM, 0, 4, b"\xff\xff\xff\xff"))
    bad[-1] ^= 0x55
    await expect(bytes(bad), Status.BAD_CRC, "bad CRC refused")
    assert await run_async(read_mem(0, 16), exchange) == bytes(range(16)), "bad frame wrote"
    checks.append("bad CRC wrote nothing")
    await expect(encode_request(0x7E), Status.BAD_CMD, "unknown command refused")
    await expect(encode_request(Cmd.READ_MEM, mem - 2, 4), Status.BAD_ADDR,
                 "read past memory refused")
    await expect(encode_request(Cmd.WRITE_MEM, mem, 1, b"\0"), Status.BAD_ADDR,
                 "write past memory refused")
    await expect(encode_request(Cmd.READ_MEM, 0, 300), Status.BAD_LEN, "oversized read refused")
    high = 0x0100_0004 if mem <= 1 << 24 else 0x8000_0004     # above the address register
    await expect(encode_request(Cmd.READ_MEM, high, 4), Status.BAD_ADDR,
                 "address with high bits set refused")
    await expect(encode_request(Cmd.READ_MEM, 0, 0x0204), Status.BAD_LEN,
                 "length with high bits set refused")
    await expect(encode_request(Cmd.WRITE_CSR, 0x400, 4, b"\0" * 4), Status.BAD_ADDR,
                 "CSR outside the map refused")
    await expect(encode_request(Cmd.WRITE_CSR, CSR.PROG_BASE, 3, b"\1\2\3"), Status.BAD_LEN,
                 "CSR write of 3 bytes refused")
    # a CSR written over the link reads back (PROG_BASE holds any in-range address)
    await exchange(encode_request(Cmd.WRITE_CSR, CSR.PROG_BASE, 4, (0x1234).to_bytes(4, "little")))
    got = await exchange(encode_request(Cmd.READ_CSR, CSR.PROG_BASE, 0))
    assert got == (Status.OK, (0x1234).to_bytes(4, "little")), got
    checks.append("WRITE_CSR then READ_CSR")
    # a request cut short is dropped once the line stays silent: the next one is answered
    gap = int(os.environ["FFACC_LINK_GAP"])
    await exchange.send(encode_request(Cmd.READ_MEM, 4, 4)[:5])
    await ClockCycles(exchange.clk, 2 * gap)
    got = await exchange(encode_request(Cmd.READ_MEM, 8, 4))
    assert got == (Status.OK, bytes(range(8, 12))), got
    checks.append("truncated request dropped after the timeout")
    # noise before a frame is skipped (re-synchronization on the sync byte)
    got = await exchange(b"\x00\x13" + encode_request(Cmd.READ_MEM, 4, 4))
    assert got == (Status.OK, bytes(range(4, 8))), got
    checks.append("noise before sync skipped")
    # the ID register through READ_CSR equals INFO's
    got = await exchange(encode_request(Cmd.READ_CSR, CSR.ID, 0))
    assert got[0] == Status.OK and int.from_bytes(got[1], "little") == info["id"]
    checks.append("READ_CSR ID")
    # an accelerator error is reported through STATUS (program of one illegal opcode)
    await run_async(write_mem(64, (0xEE).to_bytes(8, "little")), exchange)
    await exchange(encode_request(Cmd.WRITE_CSR, CSR.MEM_SIZE, 4, mem.to_bytes(4, "little")))
    got = await exchange(encode_request(Cmd.START, 64))
    assert got[0] == Status.OK
    st = await exchange(encode_request(Cmd.STATUS))
    words = np.frombuffer(st[1], dtype="<u4")
    assert words[0] & 4 and words[1] != 0 and words[2] == 64, words
    checks.append("illegal instruction -> error status and pc")
    # the memory's own range check: told (MEM_SIZE) the memory is twice its size, the
    # accelerator reads past its end; the AXI slave answers SLVERR -> BUS error at that pc
    prog = bytes(Program().set(Q_SRC=mem, Q_COUNT=1, Q_DST=0).op(Op.LOADQ).end())
    await run_async(write_mem(128, prog), exchange)
    await exchange(encode_request(Cmd.WRITE_CSR, CSR.MEM_SIZE, 4,
                                  (2 * mem).to_bytes(4, "little")))
    got = await exchange(encode_request(Cmd.START, 128))
    assert got[0] == Status.OK
    st = await exchange(encode_request(Cmd.STATUS))
    words = np.frombuffer(st[1], dtype="<u4")
    assert words[0] & 4 and words[1] == Err.BUS and words[2] == 128 + 24, words
    checks.append("read past the memory -> SLVERR -> bus error")
    try:
        await run_async(read_mem(mem, 1), exchange)
        raise AssertionError("LinkError expected")
    except LinkError as e:
        assert "BAD_ADDR" in str(e)
    checks.append("host runtime raises LinkError naming the status")
    return checks

