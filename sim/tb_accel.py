"""cocotb testbench: run a firmware image on the accelerator's generated Verilog.

Memory is a cocotbext-axi ``AxiRam`` on the AXI4 master, control an ``AxiLiteMaster`` on the
AXI4-Lite slave. The job comes through the environment: ``FFACC_IMAGE`` (a ``.ffw`` file),
``FFACC_READBACK`` (JSON list of ``[address, length]`` to read after the run),
``FFACC_RESULT`` (where to write the JSON result), ``FFACC_MAX_CYCLES``. The bench loads the
image's sections, sets ``MEM_SIZE`` and ``PROG_BASE``, starts, waits for ``irq`` (done or
error) and reports status, error code and pc, the performance counters and the read-back bytes.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from ffacc.firmware.csr import CSR, CTRL_START, Status
from ffacc.firmware.image import Image


@cocotb.test()
async def run_image(dut):
    img = Image.load(os.environ["FFACC_IMAGE"])
    readback = json.loads(os.environ.get("FFACC_READBACK", "[]"))
    max_cycles = int(os.environ.get("FFACC_MAX_CYCLES", "2000000"))
    # reset and bus inputs defined before the first clock edge (Icarus starts with X)
    dut.rst.value = 1
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=img.mem_size)
    ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await Timer(1, unit="ns")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    for addr, data in img.loaded():
        ram.write(addr, data)
    await ctl.write_dword(CSR.MEM_SIZE, img.mem_size)
    await ctl.write_dword(CSR.PROG_BASE, img.entry)
    assert await ctl.read_dword(CSR.STATUS) & Status.BUSY == 0
    await ctl.write_dword(CSR.CTRL, CTRL_START)
    if not dut.irq.value:
        done = await First(RisingEdge(dut.irq), Timer(max_cycles * 10, unit="ns"))
    if not dut.irq.value:
        raise AssertionError(f"no done/error after {max_cycles} cycles (hang)")
    result = {"status": int(await ctl.read_dword(CSR.STATUS))}
    for name in ("ERROR", "ERROR_PC", "CYCLES", "BUSY", "STALL", "MULT_SLOTS",
                 "MULT_SLOTS_HI", "INSTRUCTIONS", "ID", "INFO"):
        result[name.lower()] = int(await ctl.read_dword(CSR[name]))
    result["mult_slots"] |= result.pop("mult_slots_hi") << 32
    result["readback"] = [ram.read(a, n).hex() for a, n in readback]
    with open(os.environ["FFACC_RESULT"], "w") as f:
        json.dump(result, f)
