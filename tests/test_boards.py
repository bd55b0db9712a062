"""The SoC (UART link, on-chip memory), the host runtime, board build plans and builds."""

import dataclasses
import json
import os
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ffacc.boards.build import BOARDS, BuildError, board_with_memory, build, ecp5_pll
from ffacc.boards.host import run_firmware, run_serial
from ffacc.boards.ram import SinglePortRAM
from ffacc.boards.soc import SoC
from ffacc.cli import main
from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.ir import quantize
from ffacc.compiler.zoo import quantize_model, single_conv
from ffacc.demo import load_split
from ffacc.firmware.csr import CSR, Status as AccStatus
from ffacc.firmware.link import (HEADER, Cmd, LinkError, ResponseParser, Status, crc16,
                                 encode_request, encode_response)
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.models import path
from ffacc.sim.cocotb_run import SoCBench, SPRAMBench, available_simulators
from ffacc.sim.iss import ISS
from ffacc.sim.runner import run_image

TINY = ACCEL_PRESETS["tiny"]


# ----------------------------------------------------------------------- protocol
def test_crc_is_ccitt_false_and_frames_round_trip():
    assert crc16(b"123456789") == 0x29B1                 # the catalogue check value
    frame = encode_request(Cmd.WRITE_MEM, 0x1234, 3, b"abc")
    assert frame[0] == 0xA5 and HEADER.unpack_from(frame, 1) == (1, 0x1234, 3)
    p = ResponseParser()
    resp = encode_response(Status.OK, b"xyz")
    assert p.feed(b"\x00\x11" + resp[:5]) is None       # noise skipped, frame incomplete
    assert p.feed(resp[5:]) == (Status.OK, b"xyz")
    bad = bytearray(encode_response(Status.OK, b"q"))
    bad[-1] ^= 1
    with pytest.raises(LinkError, match="CRC"):
        ResponseParser().feed(bytes(bad))


def test_gateware_crc_step_is_the_protocols_crc():
    """The SoC's one-byte CRC step (one XOR per bit) against the protocol's definition, on
    random registers and bytes in amaranth.sim, and its Verilog stays small (nested Muxes
    were 3**8 copies of the first XOR)."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator
    from ffacc.boards.soc import crc16_step

    m = Module()
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    m.d.comb += out.eq(crc16_step(crc, byte))
    rng = np.random.default_rng(5)
    cases = [(0xFFFF, 0), (0, 0xFF), (0x8000, 0x80)] + \
        [(int(c), int(b)) for c, b in zip(rng.integers(0, 1 << 16, 200), rng.integers(0, 256, 200))]
    got = []

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [crc16(bytes([b]), c) for c, b in cases]
    assert len(verilog.convert(m, ports=[crc, byte, out])) < 20_000


class FakeBoard:
    """The link protocol answered by a software board (the ISS as accelerator)."""

    def __init__(self, cfg, mem_bytes=32768):
        self.iss = ISS(cfg, mem_size=mem_bytes)
        self.cfg, self.mem_bytes, self.csr = cfg, mem_bytes, {CSR.MEM_SIZE: mem_bytes}
        self.last = {"status": 0, "error": 0, "error_pc": 0, "cycles": 0}

    def exchange(self, frame):
        assert frame[0] == 0xA5 and crc16(frame[1:-2]) == struct.unpack("<H", frame[-2:])[0]
        cmd, addr, n = HEADER.unpack_from(frame, 1)
        pay = frame[8:-2]
        words = lambda *v: struct.pack(f"<{len(v)}I", *v)      # noqa: E731
        if cmd == Cmd.INFO:
            return Status.OK, words(self.cfg.fingerprint(), 0, self.mem_bytes, 50_000_000)
        if cmd in (Cmd.WRITE_MEM, Cmd.READ_MEM) and addr + n > self.mem_bytes:
            return Status.BAD_ADDR, b""
        if cmd == Cmd.WRITE_MEM:
            self.iss.write(addr, pay)
            return Status.OK, b""
        if cmd == Cmd.READ_MEM:
            return Status.OK, bytes(self.iss.read(addr, n))
        if cmd == Cmd.WRITE_CSR:
            self.csr[addr] = int.from_bytes(pay, "little")
            return Status.OK, b""
        if cmd == Cmd.START:
            r = self.iss.run(addr)
            self.last = {"status": AccStatus.DONE if r.status == "done" else AccStatus.ERROR,
                         "error": r.error, "error_pc": r.error_pc, "cycles": r.cycles}
            return Status.OK, b""
        if cmd == Cmd.STATUS:
            return Status.OK, words(*self.last.values())
        return Status.BAD_CMD, b""


def _digits(cfg, index=0):
    g, c, _ = compile_model(path("digits/digits_int8.onnx"), cfg)
    _, xte, _, _ = load_split()
    qin = g.inputs[0]
    return c.image, {qin: quantize(xte[index][None], g.tensors[qin])}


def test_host_runtime_runs_firmware_through_the_protocol():
    image, x = _digits(TINY)
    outs, st = run_serial(run_firmware(image, x), FakeBoard(TINY))
    ref, ref_st = run_image(image, x)
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    assert st["cycles"] == ref_st["cycles"]


def test_host_operators_read_what_the_host_wrote_without_the_link(tmp_path):
    """An input only a host operator reads (an average pool with ceil_mode) is not sent to
    the board: the host keeps it; the host-computed output (Softmax) is not read back either.
    Only the Softmax's input, which the accelerator wrote, is read."""
    from ffacc.compiler.zoo import Builder
    b = Builder((1, 3, 8, 8), seed=3, name="hostprefix")
    y = b.pool("AveragePool", "x", 3, stride=1, pads=(1, 1, 1, 1), ceil_mode=1)
    y = b.fc(b.flatten(b.relu(b.conv(y, 4, 3))), 5)
    path = quantize_model(b.model(b.unary("Softmax", y, axis=1)), tmp_path / "m.onnx")
    g, c, _ = compile_model(path, TINY)
    segs = c.image.meta["segments"]
    assert [s["kind"] for s in segs] == ["host", "accel", "host"]

    class Counting(FakeBoard):
        reads, writes = [], []

        def exchange(self, frame):
            cmd, addr, n = HEADER.unpack_from(frame, 1)
            if cmd in (Cmd.READ_MEM, Cmd.WRITE_MEM):
                (self.reads if cmd == Cmd.READ_MEM else self.writes).append((addr, n))
            return super().exchange(frame)
    qin = g.inputs[0]                   # a float input: the pool runs before its quantizer
    assert g.tensors[qin].dtype == "float32"
    x = {qin: np.random.default_rng(0).uniform(0, 1, g.tensors[qin].shape).astype(np.float32)}
    board = Counting(TINY)
    outs, st = run_serial(run_firmware(c.image, x), board)
    ref, _ = run_image(c.image, x)
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    from ffacc.sim.runner import _qt
    soft_in = segs[2]["inputs"][0]
    assert board.reads == [(soft_in["addr"], _qt(soft_in).nbytes)]
    host_out = sum(_qt(d).nbytes for s in segs if s["kind"] == "host" for d in s["outputs"])
    assert c.image.meta["host_only_inputs"] == [qin]
    x_addr = [t.addr for t in c.image.tensors if t.name == qin][0]
    assert not [w for w in board.writes if w[0] == x_addr]
    assert st["link_bytes"] == {"read": _qt(soft_in).nbytes, "written": host_out}


def test_host_runtime_refuses_an_image_for_another_configuration():
    image, x = _digits(TINY)
    with pytest.raises(LinkError, match="configuration ID"):
        run_serial(run_firmware(image, x), FakeBoard(ACCEL_PRESETS["ulx3s"]))
    with pytest.raises(LinkError, match="needs .* bytes of memory"):
        run_serial(run_firmware(image, x), FakeBoard(TINY, mem_bytes=1024))


def test_cli_run_on_a_board(tmp_path, monkeypatch, capsys):
    import ffacc.boards.host as host
    image, x = _digits(TINY)
    image.save(tmp_path / "d.ffw")
    np.save(tmp_path / "x.npy", next(iter(x.values())))
    board = FakeBoard(TINY)

    class Link:
        def __init__(self, port, baud):
            assert port == "/dev/ttyFAKE" and baud == BOARDS["ulx3s-85f"].baud == 3_000_000

        exchange = staticmethod(board.exchange)

        def close(self):
            pass
    monkeypatch.setattr(host, "SerialLink", Link)
    assert main(["run", str(tmp_path / "d.ffw"), "--board", "ulx3s-85f", "--port",
                 "/dev/ttyFAKE", "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--raw", "--json"]) == 0
    got = capsys.readouterr()
    res = json.loads(got.out)
    ref, _ = run_image(image, x)
    assert res["engine"] == "board:ulx3s-85f"
    # progress: the bytes loaded and the time per MB, the last frame's line among them
    total = sum(len(d) for _, d in image.loaded())
    assert f"loading firmware: {total:,}/{total:,} bytes at 3,000,000 baud" in got.err
    assert " s per MB" in got.err
    assert np.array_equal(np.load(tmp_path / "y.npy"), next(iter(ref.values())))
    assert main(["run", str(tmp_path / "d.ffw"), "--board", "ulx3s-85f", "--input",
                 str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 2
    assert "--port" in capsys.readouterr().err


# ----------------------------------------------------------------------- SoC RTL
def _sim(name):
    if name not in available_simulators():
        pytest.skip(f"{name} is not installed")
    return name


# the SoC memory as block RAM (ECP5) and as the single-port model of the iCE40's SPRAM
MEMORIES = ["dual", "single"]


@pytest.mark.icarus
@pytest.mark.parametrize("memory", MEMORIES)
def test_soc_link_answers_every_malformed_request_on_icarus(memory):
    # the shortest request timeout (64 bit times), so a truncated request is dropped soon
    # the single-port SoC with the iCEBreaker's preset (16-bit addresses: the link keeps the
    # request address in 16 bits and a sticky bit)
    cfg = ACCEL_PRESETS["icebreaker"] if memory == "single" else TINY
    checks = SoCBench(cfg, _sim("icarus"), quiet=True, mem_bytes=8192, divisor=4,
                      memory=memory, link_timeout_s=0).link_errors()
    assert len(checks) == 18, checks


@pytest.mark.icarus
@pytest.mark.parametrize("memory", MEMORIES)
def test_soc_runs_a_conv_model_through_the_uart_on_icarus(memory, tmp_path):
    quantize_model(single_conv(3, C=2, O=2, H=5, W=6), tmp_path / "c.onnx")
    g, c, _ = compile_model(tmp_path / "c.onnx", TINY)
    qin = g.inputs[0]
    x = {qin: np.random.default_rng(1).integers(0, 256, g.tensors[qin].shape).astype(np.uint8)}
    ref, ref_st = run_image(c.image, x)
    outs, st = SoCBench(TINY, _sim("icarus"), quiet=True, mem_bytes=8192,
                        divisor=4, memory=memory).run_model(c.image, x, name="conv")
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    assert abs(st["cycles"] - ref_st["cycles"]) <= 0.05 * ref_st["cycles"]


@pytest.mark.slow
def test_soc_runs_the_digits_model_through_the_uart_on_verilator():
    image, x = _digits(TINY, index=3)
    ref, _ = run_image(image, x)
    outs, st = SoCBench(TINY, _sim("verilator"), quiet=True, mem_bytes=16384).run_model(
        image, x, name="digits")
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    assert st["bytes_sent"] > len(image.to_bytes()) // 2


@pytest.mark.slow
def test_soc_at_the_ulx3s_link_rate_runs_the_digits_model(record_property):
    """The link at the ULX3S's default rate and clock (3 Mbaud from 60 MHz, simulated as the
    17 ns clock nearest it: 19.6 clocks a bit, bits of 19 or 20), the host's UART at exactly
    3 Mbaud: the digits model through the UART, outputs ≡ ISS. The simulated time per MB sent
    is recorded (the wire alone: 3.6 s per MB; no USB latency in simulation)."""
    image, x = _digits(TINY, index=3)
    ref, _ = run_image(image, x)
    clock_hz = ACCEL_PRESETS["ulx3s"].target_mhz * 1_000_000
    baud = BOARDS["ulx3s-85f"].baud
    bench = SoCBench(TINY, _sim("verilator"), quiet=True, mem_bytes=16384,
                     clock_ns=round(1e9 / clock_hz), baud=baud)
    outs, st = bench.run_model(image, x, name="digits_3m")
    assert bench.soc.bit_clocks == Fraction(round(1e9 / 17), 3_000_000) and baud == 3_000_000
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)
    per_mb = st["sim_ns"] / 1e9 / (st["bytes_sent"] / 1e6)
    record_property("seconds_per_mb", per_mb)
    print(f"3 Mbaud: {per_mb:.2f} s per MB sent")


# the SoC on the board's SDRAM: LiteDRAM's core with its SDRAM model (32 MB), 26-bit addresses
# so that a request past the memory can be made (the error checks)
SDRAM_CFG = dataclasses.replace(TINY, addr_bits=26)


def _sdram_bench(**kw):
    return SoCBench(SDRAM_CFG, _sim("verilator"), quiet=True, memory="sdram", **kw)


def test_the_sdram_soc_keeps_what_the_link_writes_and_answers_bad_requests():
    """Through the UART into LiteDRAM's controller and SDRAM model: bytes written at scattered
    addresses (to the top of the 32 MB) read back equal, and every malformed or out-of-range
    request gets its status; the accelerator's read past the memory ends in SLVERR."""
    bench = _sdram_bench(divisor=4, link_timeout_s=0)
    checks = bench.memory_check(seed=3)
    assert len(checks) == 8 and "40 bytes at 0x1ffffd8" in checks, checks
    assert bench.mem_bytes == 32 << 20
    assert len(bench.link_errors()) == 18


@pytest.mark.slow
def test_the_ulx3s_soc_on_sdram_runs_the_digits_model_and_one_over_64_kib(record_property,
                                                                           tmp_path):
    """The ULX3S's SoC (``ulx3s`` preset, 60 MHz, simulated at 16 ns) on LiteDRAM's
    controller and SDRAM model: the digits model, and a 3×3 conv of 64 → 128 channels
    (73,728 B of weights: more than the block-RAM SoC's 64 KiB), loaded through the UART
    (at 13.9 Mbaud, 4 clocks a bit, to keep the simulation short) into the SDRAM and run from
    it: outputs ≡ ISS. The cycles against the ISS's (whose memory answers at once) are
    recorded."""
    cfg = ACCEL_PRESETS["ulx3s"]
    quantize_model(single_conv(3, C=64, O=128, H=6, W=6), tmp_path / "big.onnx")
    g, c, _ = compile_model(tmp_path / "big.onnx", cfg)
    assert c.image.mem_size > 64 * 1024
    qin = g.inputs[0]
    big = (c.image, {qin: np.random.default_rng(2).integers(0, 256, g.tensors[qin].shape)
                     .astype(np.uint8)})
    bench = SoCBench(cfg, _sim("verilator"), quiet=True, memory="sdram",
                     clock_ns=1000 // cfg.target_mhz, divisor=4)
    for name, (image, x) in (("digits", _digits(cfg, index=5)), ("big", big)):
        ref, ref_st = run_image(image, x)
        outs, st = bench.run_model(image, x, name=f"sdram_{name}")
        assert all(np.array_equal(outs[k], ref[k]) for k in ref), name
        assert st["cycles"] >= ref_st["cycles"]
        record_property(f"{name}_cycles", st["cycles"])
        record_property(f"{name}_iss_cycles", ref_st["cycles"])
        print(f"{name}: {st['cycles']:,} cycles from SDRAM, {ref_st['cycles']:,} on the ISS; "
              f"{st['bytes_sent']:,} bytes sent")


@pytest.mark.icarus
def test_spram_wrapper_matches_the_model_on_icarus():
    """The iCE40 SoC memory: four SB_SPRAM256KA (yosys's simulation model) behind the
    single-port wrapper give what the behavioural model used in the SoC simulations gives:
    random byte-masked writes and reads in both 16 K-word banks."""
    st = SPRAMBench(_sim("icarus"), quiet=True).check(ops=1500, seed=1)
    assert st["reads"] > 500 and st["writes"] > 300, st


@pytest.mark.slow
def test_the_icebreaker_soc_runs_the_digits_model_through_the_uart_on_verilator():
    """The iCEBreaker's SoC as built for the board (icebreaker preset: 16-bit addresses, no
    ADD unit; 64 KiB single-port memory as on the SPRAM), simulated with the behavioural model
    of the SPRAM: the digits model through the UART, outputs ≡ ISS."""
    cfg = ACCEL_PRESETS["icebreaker"]
    image, x = _digits(cfg, index=4)
    ref, _ = run_image(image, x)
    outs, st = SoCBench(cfg, _sim("verilator"), quiet=True, mem_bytes=BOARDS["icebreaker"]
                        .mem_bytes, memory="single").run_model(image, x, name="digits_ib")
    assert all(np.array_equal(outs[k], ref[k]) for k in ref)


# ----------------------------------------------------------------------- builds
def test_the_ulx3s_builds_with_block_ram_on_request(tmp_path):
    rep = build("ulx3s-85f", out_dir=tmp_path, run=False, progress=lambda *a: 0, memory="bram")
    assert rep["memory"] == "dual" and rep["mem_bytes"] == 64 * 1024
    files = {p.name for p in tmp_path.iterdir()}
    assert "litedram_core.v" not in files
    assert "sdram" not in (tmp_path / "ffacc_soc.lpf").read_text()
    with pytest.raises(BuildError, match="icebreaker has no SDRAM"):
        build("icebreaker", out_dir=tmp_path, run=False, progress=lambda *a: 0,
              memory="sdram")
    with pytest.raises(BuildError, match="memory 'ddr': 'sdram' or 'bram'"):
        build("ulx3s-85f", out_dir=tmp_path, run=False, progress=lambda *a: 0, memory="ddr")


def test_ecp5_pll_settings_are_exact_and_legal():
    for fout in (25, 40, 50, 60, 75, 100):
        clki, clkfb, clkop, got = ecp5_pll(25, fout)
        assert abs(got - fout) < 1e-6 and 400 <= got * clkop <= 800
        assert got == 25 / clki * clkfb
    with pytest.raises(BuildError, match="no ECP5 PLL setting"):
        ecp5_pll(25, 12)            # would need a 1 MHz phase detector


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_the_bundled_model_fits_every_board_preset(board):
    """The digits model compiles for each board's default preset into the board's SoC memory
    and runs on the ISS bit-exact against the integer golden model."""
    cfg = ACCEL_PRESETS[BOARDS[board].config]
    _, c, _ = compile_model(path("digits/digits_int8.onnx"), cfg)
    assert c.image.mem_size <= BOARDS[board].mem_bytes <= 1 << cfg.addr_bits
    res = verify_model(path("digits/digits_int8.onnx"), cfg, engine="iss", seed=5)
    assert res["bit_exact"], res


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_build_plan_without_the_toolchain(board, tmp_path):
    rep = build(board, out_dir=tmp_path, run=False, progress=lambda *a: 0)
    assert rep["built"] is False and rep["target_mhz"] == ACCEL_PRESETS[BOARDS[board].config] \
        .target_mhz
    files = {p.name for p in tmp_path.iterdir()}
    assert "build_ffacc_soc.sh" in files
    if board == "ulx3s-85f":
        lpf = (tmp_path / "ffacc_soc.lpf").read_text()
        assert "FREQUENCY PORT" in lpf and "25000000" in lpf
        il = (tmp_path / "ffacc_soc.il").read_text()
        assert "EHXPLLL" in il and rep["clock_mhz"] == ACCEL_PRESETS["ulx3s"].target_mhz
        # the SoC's memory is the SDRAM: LiteDRAM's core for the ECP5 among the sources, the
        # chip's pins placed, its clock from the PLL's second output through an ODDRX1F
        assert rep["memory"] == "sdram" and rep["mem_bytes"] == 32 << 20
        assert "litedram_core.v" in files and "litedram_core.v" in (
            tmp_path / "ffacc_soc.ys").read_text()
        assert 'LOCATE COMP "sdram_0__clk__io" SITE "F19"' in lpf
        assert "CLKOS_FPHASE" in il and "ODDRX1F" in il
        assert "TRELLIS_IO" in (tmp_path / "litedram_core.v").read_text()
    elif board == "arty-a7-35":
        assert "create_clock" in (tmp_path / "ffacc_soc.xdc").read_text()
        assert "MMCME2_BASE" in (tmp_path / "ffacc_soc.v").read_text()
    else:
        assert "set_io" in (tmp_path / "ffacc_soc.pcf").read_text()
        # multipliers go to the SB_MAC16 DSPs, not to logic cells; the SoC memory is SPRAM
        assert "synth_ice40 -dsp" in (tmp_path / "ffacc_soc.ys").read_text()
        # (SB_SPRAM256KA of 32 KiB each)
        spram = (tmp_path / "ffacc_soc.il").read_text().count("SB_SPRAM256KA")
        assert spram == BOARDS["icebreaker"].mem_bytes // (32 * 1024), spram


@pytest.mark.parametrize("name", ["ulx3s-85f", "icebreaker", "arty-a7-35"])
def test_each_board_links_at_its_bridges_top_rate_with_room_for_the_receiver(name):
    """The board's default link rate: at least 8 of its preset's clocks a bit (the receiver's
    mid-bit sample has room, whole clocks or not), the bridge's 3 Mbaud where the clock
    allows, and faster than 115,200."""
    b = board_with_memory(BOARDS[name], "bram")       # (the link does not depend on it)
    clock_hz = ACCEL_PRESETS[b.config].target_mhz * 1_000_000
    soc = SoC(ACCEL_PRESETS[b.config], mem_bytes=b.mem_bytes, clock_hz=clock_hz, baud=b.baud,
              memory=b.memory)
    assert soc.bit_clocks * b.baud == clock_hz and soc.bit_clocks >= 8 and b.baud > 115_200
    assert b.baud == (3_000_000 if clock_hz >= 24_000_000 else clock_hz // 12)


def test_build_errors_are_clear(tmp_path, capsys):
    with pytest.raises(BuildError, match="unknown board"):
        build("de0-nano", out_dir=tmp_path, run=False)
    with pytest.raises(BuildError, match="12 MHz oscillator"):
        build("icebreaker", TINY, out_dir=tmp_path, run=False)
    with pytest.raises(ValueError, match="at least 4x the baud rate"):
        SoC(TINY, clock_hz=1_000_000, baud=500_000)
    with pytest.raises(ValueError, match=r"13000000 baud .* 3.85 clocks a bit; a fractional rate "
                                         r"needs at least 8"):
        SoC(TINY, clock_hz=50_000_000, baud=13_000_000)
    assert main(["build", "--board", "ulx3s-85f", "--baud", "13000000", "--no-run", "--out",
                 str(tmp_path)]) == 2
    assert "ulx3s-85f: UART at 13000000 baud" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-85f", "--baud", "0", "--no-run"]) == 2
    assert "--baud 0: must be positive" in capsys.readouterr().err
    with pytest.raises(ValueError, match="addresses 65536 .addr_bits=16."):
        SoC(ACCEL_PRESETS["icebreaker"], mem_bytes=128 * 1024, clock_hz=12_000_000)
    with pytest.raises(ValueError, match="needs 8 SB_SPRAM256KA; the iCE40UP5K has 4"):
        SinglePortRAM(64 * 1024, 4, "spram")
    assert main(["build", "--board", "nope"]) == 2
    assert "unknown board" in capsys.readouterr().err


def test_ice40_resources_count_the_top_module_and_the_logic_cells():
    """The iCE40 report's LUT and flip-flop figures come from the netlist's top module (the
    JSON also holds the cell library's modules, which once made them 0) and the logic cells
    from the placer's utilisation."""
    from ffacc.boards.build import _resources
    report = {"utilization": {"ICESTORM_DSP": {"used": 8, "available": 8},
                              "ICESTORM_LC": {"used": 5261, "available": 5280},
                              "ICESTORM_RAM": {"used": 16, "available": 30}}}
    netlist = {"modules": {
        "SB_LUT4": {"cells": {}},
        "ffacc_soc": {"cells": {"a": {"type": "SB_LUT4"}, "b": {"type": "SB_LUT4"},
                                "c": {"type": "SB_DFFESR"}, "d": {"type": "SB_CARRY"}}}}}
    res = _resources(BOARDS["icebreaker"], report, netlist)
    assert res["lut"]["used"] == 2 and res["ff"]["used"] == 1
    assert res["logic_cells"] == {"used": 5261, "available": 5280, "cell": "ICESTORM_LC"}
    assert res["dsp"]["used"] == 8 and res["bram"] == {"used": 16, "available": 30,
                                                       "cell": "ICESTORM_RAM"}


def test_a_toolchain_log_over_a_resource_names_it():
    """However nextpnr stops on a design that is too large, the verdict names the resource:
    its utilisation report above 100 % (here followed by the analytic placer's error, as the
    iCEBreaker build gave it), or the packer's own message; other failures show the log."""
    from ffacc.boards.build import check_toolchain_log
    util = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    6516/   5280   123%\n"
            "Info: \t        ICESTORM_RAM:      14/     30    46%\n")
    placer = util + "ERROR: Failed to expand region (0, 0) |_> (25, 31) of 6516 ICESTORM_LCs\n"
    with pytest.raises(BuildError, match="does not fit the iCE40UP5K: it needs 6516 "
                                         "ICESTORM_LC of 5280$"):
        check_toolchain_log("icebreaker", "iCE40UP5K", placer, 1, "build.log")
    with pytest.raises(BuildError, match="needs 30 MULT18X18Ds?, the LFE5U-85F has 28"):
        check_toolchain_log("ulx3s-85f", "LFE5U-85F", "ERROR: Design uses 30 MULT18X18Ds, while "
                            "device only has 28\n", 1, "build.log")
    with pytest.raises(BuildError, match="(?s)toolchain failed .exit 3.*segfault"):
        check_toolchain_log("icebreaker", "iCE40UP5K", util.replace("6516", "5000") +
                            "segfault\n", 3, "build.log")
    # yosys's own log stops on an assertion and more logs follow: the ERROR line is shown
    yosys = ("Executing ABC_OPS_REINTEGRATE pass.\nERROR: Assert `GetSize(conn.first) == "
             "GetSize(conn.second)' failed in kernel/rtlil.cc:3091.\n")
    with pytest.raises(BuildError, match=r"toolchain failed .exit 1.*\n.*ERROR: Assert `GetSize"):
        check_toolchain_log("ulx3s-85f", "LFE5U-85F", yosys + "Info: more\n" * 20, 1,
                            "build.log, ffacc_soc.rpt")
    check_toolchain_log("icebreaker", "iCE40UP5K", util.replace("6516", "5000"), 0, "build.log")


def _fake_timing(run):
    """nextpnr's timing log of place-and-route run ``run``: its critical path starts at cell
    ``q<run>`` and passes through ``hw/add.py:<run>``."""
    return f"""Info: Max frequency for clock '$glbnet$clk': 48.65 MHz (PASS at 50.00 MHz)
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  5.61  5.61 Source q{run}.DOA1
Info:    routing  0.95  6.56 Net n (98,46) -> (98,43)
Info:                          Sink lut.D
Info:                          Defined in:
Info:                               /share/lattice/cells_map_trellis.v:108.23-108.24
Info:      logic  0.24  6.79 Source lut.F
Info:    routing  1.46  8.25 Net m (98,43) -> (96,48)
Info:                          Sink carry.A
Info:                          Defined in:
Info:                               /src/ffacc/hw/add.py:{run}
Info:                               /src/ffacc/hw/axi.py:183
Info:      logic  0.45 {19 + run}.70 Source carry.FCO
Info:    routing  0.98 {20 + run}.56 Net k (103,51) -> (104,54)
Info:                          Sink rd.beats_left_TRELLIS_FF_Q.CE
Info:                          Defined in:
Info:                               /src/ffacc/hw/axi.py:183
Info:      setup  0.00 {20 + run}.56 Source rd.beats_left_TRELLIS_FF_Q.CE
Info: 10.01 ns logic, 10.54 ns routing

Info: Critical path report for cross-domain path '<async>' -> 'posedge $glbnet$clk':
Info:     source  0.00  0.00 Source pin_uart_0__rx.buf.buf.buf0.O
"""


def _fake_toolchain(monkeypatch, fmaxes):
    """Stand-ins for the toolchain runs of :func:`build`: each run writes nextpnr's report
    with the next Fmax of ``fmaxes``; returns the scripts run, with their text."""
    import ffacc.boards.build as bb
    runs = []

    def run(cmd, cwd, env, log, progress):
        runs.append((cmd[-1], (Path(cwd) / cmd[-1]).read_text()))
        util = {c: {"used": 1, "available": 10}
                for c in ("MULT18X18D", "TRELLIS_COMB", "TRELLIS_FF", "DP16KD")}
        (Path(cwd) / "ffacc_soc.report.json").write_text(json.dumps({
            "fmax": {"$glbnet$clk": {"achieved": fmaxes[len(runs) - 1], "constraint": 50}},
            "utilization": util}))
        (Path(cwd) / "ffacc_soc.bit").write_bytes(b"bit")
        (Path(cwd) / "ffacc_soc.tim").write_text(_fake_timing(len(runs)))
        Path(log).write_text("Info: Program finished normally.\n")
        return 0, 1.0

    monkeypatch.setattr(bb, "_tool_env", lambda family: dict(os.environ))
    monkeypatch.setattr(bb, "_run_with_progress", run)
    return runs


def test_a_build_that_misses_its_clock_is_placed_and_routed_again(tmp_path, monkeypatch):
    """nextpnr's Fmax moves with its seed: a build below its clock runs place-and-route (not
    synthesis) again with seeds 2, 3 and keeps the first that meets the clock; the report
    lists every attempt. When none does, the error names them all."""
    runs = _fake_toolchain(monkeypatch, [48.1, 49.9, 52.3])
    said = []
    cfg = ACCEL_PRESETS["ulx3s"].with_(target_mhz=50)       # (the figures are for 50 MHz)
    rep = build("ulx3s-85f", cfg, out_dir=tmp_path, progress=said.append)
    assert rep["fmax_mhz"] == 52.3 and rep["built"]
    # peak GOP/s beside the resources: 2 ops x 24 multipliers x FFA gain 1.5 x the clock
    assert rep["multipliers"] == 24 and rep["ffa_gain"] == 1.5 and rep["clock_mhz"] == 50
    assert rep["peak_gops_at_fmax"] == 3.766 and rep["peak_gops_at_clock"] == 3.6
    assert [a["seed"] for a in rep["pnr_attempts"]] == ["default", 2, 3]
    assert [a["fmax_mhz"] for a in rep["pnr_attempts"]] == [48.1, 49.9, 52.3]
    assert [r[0] for r in runs] == ["build_ffacc_soc.sh", "pnr_seed.sh", "pnr_seed.sh"]
    seed_script = runs[-1][1]
    assert "YOSYS\" -q" not in seed_script and "--seed 3" in seed_script
    assert "ECPPACK\" --compress" in seed_script
    assert any("--seed 2" in m for m in said)
    # each attempt's critical path, from its own timing log (kept per seed)
    for run, a in enumerate(rep["pnr_attempts"], 1):
        assert a["critical_paths"] == {"$glbnet$clk": {
            "ns": 20.56 + run, "from": f"q{run}.DOA1", "to": "rd.beats_left_TRELLIS_FF_Q.CE",
            "through": [f"hw/add.py:{run}", "hw/axi.py:183"]}}
        assert (tmp_path / f"ffacc_soc.seed-{a['seed']}.tim").read_text() == _fake_timing(run)

    _fake_toolchain(monkeypatch, [40.0, 41.0, 42.0])
    with pytest.raises(BuildError, match="timing not met.*3 place-and-route attempt.s.: "
                                         "40.0 MHz, 41.0 MHz, 42.0 MHz.; critical path "
                                         r"23.56 ns .* from q3.DOA1 to rd.beats_left\S* "
                                         "through hw/add.py:3, hw/axi.py:183; report"):
        build("ulx3s-85f", cfg, out_dir=tmp_path / "c", progress=said.append)


@pytest.mark.slow
def test_real_ecp5_build_of_the_default_preset_meets_its_clock(tmp_path):
    """`ffacc build --board ulx3s-85f` as a user runs it: the board's default preset to a
    bitstream, place-and-route reaching the preset's target clock (the CLI raises otherwise)."""
    assert main(["build", "--board", "ulx3s-85f", "--out", str(tmp_path), "--json"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    target = ACCEL_PRESETS["ulx3s"].target_mhz
    assert rep["built"] and rep["target_mhz"] == target and rep["fmax_mhz"] >= target
    assert (tmp_path / "ffacc_soc.bit").stat().st_size > 100_000
    for key in ("dsp", "lut", "ff", "bram"):
        r = rep["resources"][key]
        assert 0 < r["used"] <= r["available"]


def test_a_wide_array_is_placed_with_the_static_placer(tmp_path):
    """From STATIC_PLACER_FROM multipliers on, an ECP5 build asks nextpnr for its static
    placer (with the reason in the report); the default preset and the iCE40 do not."""
    import dataclasses
    from ffacc.boards.build import STATIC_PLACER_FROM, nextpnr_choices
    base = ACCEL_PRESETS["ulx3s"]
    wide = dataclasses.replace(base, lanes=STATIC_PLACER_FROM // (base.multipliers // base.lanes))
    assert wide.multipliers >= STATIC_PLACER_FROM > base.multipliers
    assert nextpnr_choices("ecp5", base) == [] and nextpnr_choices("ice40", wide) == []
    rep = build("ulx3s-85f", wide, out_dir=tmp_path, run=False, progress=lambda *a: 0)
    assert [c["option"] for c in rep["nextpnr_choices"]] == ["--placer static"]
    assert "--placer static" in (tmp_path / "build_ffacc_soc.sh").read_text()


def test_a_board_lists_the_images_of_every_preset_it_builds():
    """`ffacc report`'s memory line names the board SoCs an image runs on: those built with
    its configuration, the board's own preset or another one measured to build for it
    (the ULX3S's ulx3s-120); an image for a preset no board builds gets none."""
    from ffacc.api import board_fit
    for b in BOARDS.values():
        assert b.config not in b.presets and all(p in ACCEL_PRESETS for p in b.presets)
    digits = path("digits/digits_int8.onnx")
    fits = {}
    for name in ("ulx3s", "ulx3s-120", "tiny"):
        _, c, _ = compile_model(digits, ACCEL_PRESETS[name])
        fits[name] = [(r["board"], r["config"], r["fits"]) for r in board_fit(c.image)]
    assert fits["ulx3s"] == [("ulx3s-85f", "ulx3s", True), ("arty-a7-35", "ulx3s", True)]
    assert fits["ulx3s-120"] == [("ulx3s-85f", "ulx3s-120", True)]
    assert fits["tiny"] == []
