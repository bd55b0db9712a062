"""cocotb testbench: run a firmware image on the accelerator's generated Verilog.

Memory is a cocotbext-axi ``AxiRam`` on the AXI4 master, control an ``AxiLiteMaster`` on the
AXI4-Lite slave. The job comes through the environment: ``FFACC_IMAGE`` (a ``.ffw`` file),
``FFACC_INPUTS``/``FFACC_OUTPUTS`` (``.npz`` of quantized tensors, optional),
``FFACC_READBACK`` (JSON list of ``[address, length]`` to read after the run),
``FFACC_FAULT`` (JSON ``[kind, after]``: a bus fault of :data:`FAULTS` injected after that many
read beats or writes, :func:`inject_fault`),
``FFACC_RESULT`` (where to write the JSON result), ``FFACC_MAX_CYCLES``, ``FFACC_PROFILE``
(``1``: per-instruction cycles and stall cycles, sampled from the controller's ``pc`` and
counters whenever ``pc`` changes — Python runs per instruction, not per cycle). The bench loads the
image, sets ``MEM_SIZE``, runs every segment (accelerator segments: ``PROG_BASE``, start, wait
for ``irq``; host segments: :func:`ffacc.sim.runner.host_exec` on the same memory) and reports
status, error code and pc, the performance counters and the read-back bytes.
"""

import json
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from ffacc.firmware.csr import CSR, CTRL_START, Status
from ffacc.firmware.image import Image
from ffacc.sim.runner import host_exec, read_outputs, write_inputs

COUNTERS = ("CYCLES", "BUSY", "STALL", "MULT_SLOTS", "INSTRUCTIONS")


async def _watch_pc(dut, samples):
    """Append ``(pc, cycles, stall_cycles)`` each time the controller's ``pc`` changes."""
    while True:
        await dut.pc.value_change
        samples.append((int(dut.pc.value), int(dut.cycles.value), int(dut.stall_cycles.value)))


FAULTS = ("rresp", "bresp", "rstall", "wstall")


def inject_fault(ram, kind, after):
    """Make the memory fail from its ``after``-th read beat (``r…``) or write (``w…``/``b…``)
    on: an SLVERR response (``rresp``, ``bresp``) or no answer at all (``rstall``,
    ``wstall``), for the rest of the run."""
    if kind not in FAULTS:
        raise ValueError(f"fault kind {kind!r}: one of {', '.join(FAULTS)}")
    side = ram.read_if if kind[0] == "r" else ram.write_if
    name = "_read" if kind[0] == "r" else "_write"
    inner = getattr(side, name)
    count = [0]

    async def faulty(*args):
        count[0] += 1
        if count[0] > after:
            if kind.endswith("stall"):
                await Event().wait()            # never answered
            raise RuntimeError("injected bus fault")   # the slave answers SLVERR
        return await inner(*args)

    setattr(side, name, faulty)


def count_bus_bytes(ram):
    """``[bytes read, bytes written]`` over the bus from now on: a read beat is the whole bus
    word, a write only its strobed bytes (as cocotbext-axi's memory is called)."""
    moved = [0, 0]
    read, write = ram.read_if._read, ram.write_if._write

    async def counted_read(address, length):
        moved[0] += length
        return await read(address, length)

    async def counted_write(address, data):
        moved[1] += len(data)
        return await write(address, data)

    ram.read_if._read, ram.write_if._write = counted_read, counted_write
    return moved


async def run_segment(dut, ctl, entry, max_cycles, profile=False):
    await ctl.write_dword(CSR.PROG_BASE, entry)
    samples = [(entry, 0, 0)]
    watcher = cocotb.start_soon(_watch_pc(dut, samples)) if profile else None
    await ctl.write_dword(CSR.CTRL, CTRL_START)
    if not dut.irq.value:
        await First(RisingEdge(dut.irq), Timer(max_cycles * 10, unit="ns"))
    if not dut.irq.value:
        raise AssertionError(f"no done/error after {max_cycles} cycles (hang)")
    if watcher is not None:
        watcher.cancel()
    res = {"status": int(await ctl.read_dword(CSR.STATUS))}
    for name in ("ERROR", "ERROR_PC") + COUNTERS + ("MULT_SLOTS_HI",):
        res[name.lower()] = int(await ctl.read_dword(CSR[name]))
    res["mult_slots"] |= res.pop("mult_slots_hi") << 32
    if profile:
        # the start edge loads pc = entry and clears the counters: drop that sample
        samples = [samples[0]] + [s for s in samples[1:] if s[1] != 0]
        samples.append((None, res["cycles"], res["stall"]))
        res["per_instruction"] = [[pc, c1 - c0, s1 - s0] for (pc, c0, s0), (_, c1, s1)
                                  in zip(samples, samples[1:])]
    return res


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
    assert await ctl.read_dword(CSR.STATUS) & Status.BUSY == 0
    moved = count_bus_bytes(ram)
    if os.environ.get("FFACC_FAULT"):
        inject_fault(ram, *json.loads(os.environ["FFACC_FAULT"]))
    segments = img.meta.get("segments") or [{"kind": "accel", "entry": img.entry}]
    # FFACC_BATCH: the inputs carry a leading batch axis; run the image once per item
    batch = os.environ.get("FFACC_BATCH") == "1"
    profile = os.environ.get("FFACC_PROFILE") == "1"
    inputs = None
    if os.environ.get("FFACC_INPUTS"):
        with np.load(os.environ["FFACC_INPUTS"]) as f:
            inputs = {k: f[k] for k in f.files}
    n_items = len(next(iter(inputs.values()))) if batch else 1
    runs, outputs = [], []
    for item in range(n_items):
        if inputs is not None:
            write_inputs(img, ram, {k: (v[item] if batch else v) for k, v in inputs.items()})
        result = {"segments": [], "status": Status.DONE, "error": 0, "error_pc": 0}
        moved[:] = [0, 0]           # the accelerator's bytes of this item (the bench's own
                                    # input writes go around the AXI slave)
        for c in COUNTERS:
            result[c.lower()] = 0
        for seg in segments:
            if seg["kind"] == "host":
                host_exec(seg, ram)
                result["segments"].append({"kind": "host", "op": seg["op"]})
                continue
            res = await run_segment(dut, ctl, seg["entry"], max_cycles, profile)
            result["segments"].append({"kind": "accel", **res})
            for c in COUNTERS:
                result[c.lower()] += res[c.lower()]
            result.update(status=res["status"], error=res["error"], error_pc=res["error_pc"])
            if res["status"] & Status.ERROR:
                break
        result["bus_read_bytes"], result["bus_written_bytes"] = moved
        runs.append(result)
        outputs.append(read_outputs(img, ram))
        if batch:
            dut._log.info("item %d/%d: %d cycles", item + 1, n_items, result["cycles"])
        if result["status"] & Status.ERROR:
            break
    result = dict(runs[-1])
    if batch:
        result["items"] = runs
    result["id"] = int(await ctl.read_dword(CSR.ID))
    result["info"] = int(await ctl.read_dword(CSR.INFO))
    result["readback"] = [ram.read(a, n).hex() for a, n in readback]
    if os.environ.get("FFACC_OUTPUTS"):
        if batch:
            np.savez(os.environ["FFACC_OUTPUTS"],
                     **{k: np.stack([o[k] for o in outputs]) for k in outputs[0]})
        else:
            np.savez(os.environ["FFACC_OUTPUTS"], **outputs[0])
    with open(os.environ["FFACC_RESULT"], "w") as f:
        json.dump(result, f)
