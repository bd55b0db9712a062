"""System tests: firmware on the accelerator's generated Verilog, RTL ≡ ISS ≡ golden."""

import json
from dataclasses import replace

import numpy as np
import pytest

from ffacc.compiler.lower import MemoryPlan, build_image
from ffacc.firmware.isa import Err, Op, Program
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.sim.cocotb_run import AccelBench, available_simulators
from ffacc.sim.programs import (DATA_BASE, FAULTS, MUTATIONS, Case, add_case, async_loads,
                                conv_case,
                                fault_case, fc_case, loop_case, post_race_case,
                                prefetch_race_case, records_case, records_race_case, run_iss)

SIMS = available_simulators()
TINY = ACCEL_PRESETS["tiny"]
TINY8 = TINY.with_(bus_bytes=8)
_benches = {}


def bench(cfg, simulator):
    if simulator not in SIMS:
        pytest.skip(f"{simulator} is not installed")
    key = (cfg, simulator)
    if key not in _benches:
        _benches[key] = AccelBench(cfg, simulator).build()
    return _benches[key]


def run_both(case, cfg, simulator, tmp_path, record_property=None):
    """Run a case on ISS and RTL; assert both match golden and each other, bit for bit."""
    blobs, iss = run_iss(case, cfg)
    path = case.image.save(tmp_path / f"{case.name}.ffw")
    rtl = bench(cfg, simulator).run_image(path, case.readback, name=f"{case.name}")
    if case.expect_error:
        assert iss.status == "error" and iss.error == case.expect_error
        assert rtl["status"] & 4 and rtl["error"] == case.expect_error
        assert rtl["error_pc"] == iss.error_pc
        return rtl, iss
    assert iss.status == "done", iss.detail
    assert rtl["status"] == 2 and rtl["error"] == 0, rtl
    assert case.check(blobs), "ISS != golden"
    assert case.check(rtl["readback"]), "RTL != golden"
    assert all(a == b for a, b in zip(blobs, rtl["readback"]))
    assert rtl["instructions"] == (iss.instructions if cfg.perf_counters else 0)
    assert rtl["id"] == cfg.fingerprint()
    # the ISS cycle model (sim/cycles.py) is calibrated against this RTL
    dev = (iss.cycles - rtl["cycles"]) / rtl["cycles"]
    assert abs(dev) < 0.05, (iss.cycles, rtl["cycles"])
    if record_property:
        record_property("cycles", json.dumps({"rtl": rtl["cycles"], "iss": iss.cycles}))
    return rtl, iss


SIM_PARAMS = ["verilator", pytest.param("icarus", marks=pytest.mark.icarus)]


@pytest.mark.parametrize("simulator", SIM_PARAMS)
@pytest.mark.parametrize("k", range(1, 13))
def test_conv_every_kernel(simulator, k, tmp_path, record_property):
    case = conv_case(TINY, 3, 3, k + 3, k + 4, k, seed=k)
    run_both(case, TINY, simulator, tmp_path, record_property)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_mac_pairs_on_rtl(simulator, tmp_path):
    """A 1x1 conv of 7 output channels on tiny (2 units with mac_pairs): lane groups of 4 and 3
    channels, each unit's second channel in accumulator lanes 2..3, POST over all 4 in the
    background while the next group's CONV runs. RTL ≡ ISS ≡ golden, cycles within 5 %."""
    from ffacc.firmware.isa import Op, Reg, decode_program
    case = conv_case(TINY, 5, 7, 6, 9, 1, seed=71)
    code = decode_program(next(s for s in case.image.sections if s.kind == 1).data)
    lanes = [i.imm for i in code if i.op == Op.SET and i.reg == Reg.C_LANES]
    assert TINY.fcu.mac_pairs and max(lanes) == 2 * TINY.lanes and 3 in lanes, lanes
    run_both(case, TINY, simulator, tmp_path)


CHAINED = {  # convs whose rows stream as a chain (chain_rows): the map, padding and kernel
    # leave each row's right padding to the next row's left margin; and four whose rows
    # cannot (a row's data and leading sample need one more block; the right padding is
    # wider than the left margin; a 4-wide kernel's second piece reads 3 taps, 2 past it)
    "3x3_same_4x4": (True, lambda: conv_case(TINY, 5, 3, 4, 4, 3, seed=51)),
    "3x3_same_16x16": (True, lambda: conv_case(TINY, 2, 2, 3, 16, 3, seed=59)),
    "4x4_two_pieces": (False, lambda: conv_case(TINY, 2, 3, 5, 7, 4, pads=(1, 1, 2, 2),
                                                seed=52)),
    "2x2_valid": (True, lambda: conv_case(TINY, 3, 2, 4, 5, 2, pads=(0, 0, 0, 0), seed=53)),
    "3x3_stride2": (True, lambda: conv_case(TINY, 2, 2, 8, 7, 3, stride=2, seed=54)),
    "3x3_pool_zx": (True, lambda: conv_case(TINY, 3, 2, 6, 10, 3, pool2=True, extreme=True,
                                            seed=55)),
    "3x3_same_5x5": (False, lambda: conv_case(TINY, 3, 2, 5, 5, 3, seed=56)),
    "3x3_same_8x8": (False, lambda: conv_case(TINY, 2, 2, 4, 8, 3, extreme=True, seed=57)),
    "3x3_right_pad": (False, lambda: conv_case(TINY, 2, 2, 4, 4, 3, pads=(1, 1, 1, 3),
                                               seed=58)),
}


@pytest.mark.parametrize("simulator", SIM_PARAMS)
@pytest.mark.parametrize("name", CHAINED)
def test_chained_rows(simulator, name, tmp_path):
    """RTL ≡ ISS ≡ golden where a CONV's rows stream as a chain, and the chain saves beats
    (the ISS's cycles, which track the RTL's, are fewer than without chain_rows); where they
    cannot, the same cycles as without."""
    chains, make = CHAINED[name]
    case = make()
    rtl, iss = run_both(case, TINY, simulator, tmp_path)
    _, unchained = run_iss(case, replace(TINY, chain_rows=False))
    if chains:
        assert iss.cycles < unchained.cycles and rtl["cycles"] < unchained.cycles
    else:
        assert iss.cycles == unchained.cycles


@pytest.mark.parametrize("simulator", SIM_PARAMS)
@pytest.mark.parametrize("name", ["multitile", "pool", "stride2", "extreme", "add", "add_long",
                                  "fc", "coltiles", "loops", "prefetch_hazard",
                                  "pool3s2_coltiles", "pool3s1_bands", "pool3s2_padded",
                                  "pool3s1_padded", "pool3s2_pads_uneven"])
def test_layers(simulator, name, tmp_path):
    case = {
        "multitile": lambda: conv_case(TINY, 5, 5, 7, 9, 3, seed=11),   # 15 pairs, 3 lane groups
        "pool": lambda: conv_case(TINY, 3, 2, 8, 10, 3, pool2=True, relu=True, seed=12),
        "stride2": lambda: conv_case(TINY, 2, 3, 9, 9, 5, stride=2, seed=13),
        "extreme": lambda: conv_case(TINY, 2, 2, 6, 7, 4, extreme=True, seed=14),
        "add": lambda: add_case(TINY, 45, seed=15),
        # five chunks of whole-beat reads, the second operand from inside a beat
        "add_long": lambda: add_case(TINY, 300, seed=20, skew=3),
        "fc": lambda: fc_case(TINY, 20, 5, seed=16),
        "coltiles": lambda: conv_case(TINY, 2, 2, 5, 2 * TINY.lb_width + 3, 3, seed=17),
        "loops": lambda: loop_case(TINY, seed=18),
        # every CONV reads the sets a background LOADW is writing: its first pass waits
        "prefetch_hazard": lambda: async_loads(fc_case(TINY, 40, 10, seed=19)),
        # POST's k x k pools: 3x3 windows at stride 2 over three column tiles that overlap by
        # a window's column; 3x3 at stride 1 after a 1x1 conv (MAC pairs: lane groups of 4
        # and 1) in bands that overlap by two rows
        "pool3s2_coltiles": lambda: conv_case(TINY, 2, 3, 11, 2 * TINY.lb_width + 3, 3,
                                              pool=(3, 2), relu=True, seed=21),
        "pool3s1_bands": lambda: conv_case(TINY, 3, 5, 30, 20, 1, pool=(3, 1), seed=22),
        # padded pools (pool_pads): ResNet's 3x3/2 with a pad each side over column tiles,
        # whose first and last hold the left and right padding; 3x3/1 padded in bands, the
        # first and last with the top and bottom rows; uneven pads (2 above and below, 1 on
        # the right) after a 5x5 conv, the bands' first windows in the padding
        "pool3s2_padded": lambda: conv_case(TINY, 2, 3, 9, 45, 3, pool=(3, 2, (1, 1, 1, 1)),
                                            relu=True, seed=23),
        "pool3s1_padded": lambda: conv_case(TINY, 3, 5, 21, 10, 1, pool=(3, 1, (1, 1, 1, 1)),
                                            seed=24),
        "pool3s2_pads_uneven": lambda: conv_case(TINY, 3, 5, 40, 12, 5,
                                                 pool=(3, 2, (2, 0, 2, 1)), seed=25),
    }[name]()
    run_both(case, TINY, simulator, tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_an_add_reads_whole_beats_of_an_8_byte_bus(simulator, tmp_path):
    """Two chunks of 16 beats' worth (128 elements) and a third, the second operand 5 bytes
    into a beat: RTL = ISS = golden, the cycles within 5 %."""
    run_both(add_case(TINY8, 300, seed=21, skew=5), TINY8, simulator, tmp_path)


def test_an_add_whose_last_beat_passes_the_memory_stops_with_address(tmp_path):
    """A memory of 0x3002 bytes, not whole beats: an ADD whose operand ends at its last byte
    reads that beat whole, past the memory: ADDRESS at the ADD, on the RTL as on the ISS; two
    elements fewer stay inside and run."""
    for n, err in ((0x12, Err.ADDRESS), (0x10, 0)):
        mem = MemoryPlan(base=DATA_BASE)
        mem.place("b", bytes(range(16)))
        p = Program().set(A_SRC=0x2FF0, D_SRC2=DATA_BASE, O_DST=0x400, D_N=n,
                          D_KAB=1 | 1 << 16, D_M=1 << 30, D_SZ=31, D_CLAMP=255 << 8)
        p.op(Op.ADD).end()
        img = build_image(TINY, p, mem, mem_size=0x3002, code_addr=0x1000)
        blobs, iss = run_iss(Case(f"add_edge{n}", img, [(0x400, np.zeros(n, np.uint8))], err),
                             TINY)
        path = img.save(tmp_path / f"add_edge{n}.ffw")
        rtl = bench(TINY, "verilator").run_image(path, [(0x400, n)], name=f"add_edge{n}")
        if err:
            assert iss.status == "error" and iss.error == err
            assert rtl["status"] & 4 and rtl["error"] == err
            assert rtl["error_pc"] == iss.error_pc == img.entry + 8 * 8
        else:
            assert iss.status == "done" and rtl["status"] == 2 and rtl["error"] == 0
            assert rtl["readback"] == blobs


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_conv_waits_for_the_weights_a_background_load_writes(simulator, tmp_path):
    """The CONV reads the last of the sets an ASYNC LOADW is loading (it would get there
    first): RTL = ISS, and not the output of the set's previous weights."""
    case = prefetch_race_case(TINY, seed=5)
    want = case.outputs[0][1]
    assert len(np.unique(want)) > 3 and not np.array_equal(case.stale, want)
    run_both(case, TINY, simulator, tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_conv_runs_beside_a_background_load(simulator, tmp_path):
    """The CONV reads a set the ASYNC LOADW leaves alone (its previous weights), and the
    LOADQ after it waits for the read DMA: RTL = ISS."""
    case = prefetch_race_case(TINY, seed=6, beside=True)
    assert len(np.unique(case.outputs[0][1])) > 3
    assert np.array_equal(case.stale, case.outputs[0][1])
    run_both(case, TINY, simulator, tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_conv_waits_for_the_accumulators_a_background_post_reads(simulator, tmp_path):
    """A CONV from other weights into the blocks an ASYNC POST is reading (it would
    overwrite them first): RTL = ISS, both bands as in order."""
    case = post_race_case(TINY, seed=7)
    (_, y1), (_, y2) = case.outputs
    assert len(np.unique(y1)) > 3 and not np.array_equal(y1, y2)
    run_both(case, TINY, simulator, tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_conv_runs_beside_a_background_post(simulator, tmp_path):
    """A CONV into the accumulator's other half runs while the ASYNC POST does: RTL = ISS,
    and the run is shorter than the same program without ASYNC by most of the POST."""
    case = post_race_case(TINY, seed=8, beside=True)
    assert len(np.unique(case.outputs[0][1])) > 3
    rtl, _ = run_both(case, TINY, simulator, tmp_path)
    path = case.sync.save(tmp_path / "post_sync.ffw")
    sync = bench(TINY, simulator).run_image(path, case.readback, name="post_sync")
    assert all(a == b for a, b in zip(sync["readback"], rtl["readback"]))
    # the CONV (about 30 clocks here) hides under the POST (about 80)
    assert sync["cycles"] - rtl["cycles"] >= 20, (sync["cycles"], rtl["cycles"])


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_loadq_waits_for_the_records_a_background_post_reads(simulator, tmp_path):
    """A LOADQ over the records an ASYNC POST reads (its second lane's would change before
    the POST got to it): RTL = ISS, both bands as in order."""
    case = records_race_case(TINY, seed=9)
    (_, y1), (_, y2) = case.outputs
    half = len(y1) // 2
    assert len(np.unique(y1)) > 3 and not np.array_equal(y1[half:], y2[half:])
    run_both(case, TINY, simulator, tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
def test_a_loadq_runs_beside_a_background_post(simulator, tmp_path):
    """A LOADQ into records the ASYNC POST does not read runs while it does: RTL = ISS, and
    the run is shorter than the same program without ASYNC by the LOADQ's clocks."""
    case = records_race_case(TINY, seed=10, beside=True)
    rtl, _ = run_both(case, TINY, simulator, tmp_path)
    path = case.sync.save(tmp_path / "records_sync.ffw")
    sync = bench(TINY, simulator).run_image(path, case.readback, name="records_sync")
    assert all(a == b for a, b in zip(sync["readback"], rtl["readback"]))
    # the LOADQ (about 15 clocks here) hides under the POST (about 70)
    assert sync["cycles"] - rtl["cycles"] >= 10, (sync["cycles"], rtl["cycles"])


@pytest.mark.parametrize("bus_bytes", [4, 8])
def test_records_load_at_the_bus_width(bus_bytes, tmp_path):
    """LOADQ of one record over the first of two loaded before: on an 8-byte bus its read
    ends in a word past the record, which must not reach the next record: RTL = ISS, and
    not the output of the next record's first word replaced."""
    cfg = TINY.with_(bus_bytes=bus_bytes)
    case = records_case(cfg, seed=3)
    assert not np.array_equal(case.stale, case.outputs[0][1])
    run_both(case, cfg, "verilator", tmp_path)


@pytest.mark.parametrize("simulator", SIM_PARAMS)
@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_faults_give_error_status(simulator, kind, tmp_path):
    rtl, iss = run_both(fault_case(TINY, kind), TINY, simulator, tmp_path)
    if kind.startswith("loadw_async"):
        # the run stops with the bus left alone: it read what the ISS did (no instruction
        # block fetched behind the failed background load)
        assert rtl["bus_read_bytes"] == sum(sum(t[:3]) for t in iss.traffic.values())


@pytest.mark.parametrize("name", ["conv", "no_add", "address_wrap", "address", "wide_set",
                                  "add_slow_clock"])
def test_small_part_configuration(name, tmp_path):
    """A small part's controller: addr_bits=16 (16-bit address registers plus an overflow bit),
    no ADD unit, the address multiplier on a 16-bit DSP. Address arithmetic that overflows
    stops with ADDRESS (never wraps to a valid address), a SET wider than its register with
    PARAM at the SET, ADD is an illegal opcode: RTL ≡ ISS, outputs ≡ golden. Without the
    profiling counters, CYCLES still counts and the others read 0. At a 12 MHz target, as on
    the iCEBreaker, the requantizer reads its parameters in place (qparams_in_registers is
    false): POST here, and ADD (with an ADD unit) in "add_slow_clock". As on the iCEBreaker
    too, loads move a byte a clock (wide_loads false), the controller reads each
    instruction itself (fetch_block 0) and a CONV's passes run one after the other
    (back_to_back false)."""
    cfg = TINY.with_(addr_bits=16, add_unit=False, dsp_bits=16, perf_counters=False,
                     target_mhz=12, wide_loads=False, fetch_block=0,
                     loop_depth=0, back_to_back=False, weight_prefetch=False,
                     post_overlap=False, act_codes=False, packed_weights=False,
                     strided_loads=False)
    assert not cfg.qparams_in_registers and TINY.qparams_in_registers
    if name == "add_slow_clock":
        cfg = TINY.with_(target_mhz=12)
        case = add_case(cfg, 37, seed=33)
    elif name == "conv":
        case = conv_case(cfg, 3, 2, 7, 9, 3, seed=31)
    elif name == "no_add":
        case = add_case(TINY, 37, seed=32)
        case = replace(case, image=replace(case.image, fingerprint=cfg.fingerprint()),
                       outputs=[], expect_error=1)
    else:
        case = fault_case(cfg, name)
    rtl, _ = run_both(case, cfg, "verilator", tmp_path)
    if name == "conv":
        assert rtl["cycles"] > 0
        assert [rtl[k] for k in ("busy", "stall", "mult_slots", "instructions")] == [0, 0, 0, 0]


@pytest.mark.parametrize("name", ["full_row", "stride2", "pool"])
def test_loop_counters_at_their_bounds(name, tmp_path):
    """Commands at the limits the controller's loop counters are sized for (hw/accel.py):
    an output row of acc_blocks*L columns, ny*ceil(wout/L) = acc_blocks, the largest kernel,
    a line buffer filled to lb_rows; RTL ≡ ISS, outputs ≡ golden."""
    if name == "pool":
        cfg = TINY.with_(acc_blocks=8, lb_rows=12, max_kernel=5)      # 2 rows of 4 blocks
        case = conv_case(cfg, 2, 2, 8, 12, 5, pool2=True, seed=43)
    else:
        cfg = TINY.with_(acc_blocks=4, lb_rows=10, max_kernel=5)      # wout = 12 = 4 * L
        case = conv_case(cfg, 2, 3 if name == "full_row" else 2, 7 if name == "full_row" else 9,
                         12, 5, stride=1 if name == "full_row" else 2, seed=41)
    run_both(case, cfg, "verilator", tmp_path)


PHASED = {  # strided convs whose LOADAs take their input's stride phases (A_CSHIFT): a 1x1
    # (one phase), phases read from unaligned columns (a 10-wide map), channel groups that
    # span phases (A_LB0), stride 4 (the bus width), column tiles (planes wider than the
    # line buffer)
    "1x1_s2": lambda: conv_case(TINY, 3, 4, 12, 12, 1, pads=(0, 0, 0, 0), stride=2, seed=61),
    "5x5_s2_unaligned": lambda: conv_case(TINY, 2, 3, 6, 10, 5, stride=2, seed=62),
    "7x7_s2_groups": lambda: conv_case(TINY.with_(lb_rows=24), 3, 2, 10, 10, 7, stride=2,
                                       seed=63),
    "1x1_s4": lambda: conv_case(TINY, 3, 2, 16, 16, 1, pads=(0, 0, 0, 0), stride=4, seed=64),
    "1x1_s2_tiles": lambda: conv_case(TINY, 2, 2, 4, 2 * TINY.lb_width + 8, 1,
                                      pads=(0, 0, 0, 0), stride=2, seed=65),
    # an 8-byte bus: a step of 8 (one byte a beat) and unaligned phases of 5x5 stride 2
    "1x1_s8_bus8": lambda: conv_case(TINY8, 2, 2, 16, 16, 1, pads=(0, 0, 0, 0), stride=8,
                                     seed=66),
    "5x5_s2_bus8": lambda: conv_case(TINY8, 2, 3, 12, 20, 5, stride=2, seed=67),
}


@pytest.mark.parametrize("simulator,name", [("verilator", n) for n in PHASED] + [
    pytest.param("icarus", "5x5_s2_unaligned", marks=pytest.mark.icarus)])
def test_strided_layers_run_over_their_phases(simulator, name, tmp_path):
    """A stride-s conv computes only the outputs it keeps: its LOADAs take every s-th column
    of every s-th row (the column decimator), a phase's channels from line-buffer row A_LB0,
    and it runs at stride 1 over them. RTL ≡ ISS ≡ golden, and the program does use them."""
    from ffacc.firmware.isa import Reg, decode_program
    case = PHASED[name]()
    cfg = (TINY.with_(lb_rows=24) if name == "7x7_s2_groups" else
           TINY8 if name.endswith("bus8") else TINY)
    code = decode_program(next(s for s in case.image.sections if s.kind == 1).data)
    assert any(i.reg == Reg.A_CSHIFT and i.imm for i in code)
    if name == "7x7_s2_groups":
        assert any(i.reg == Reg.A_LB0 and i.imm for i in code)
    run_both(case, cfg, simulator, tmp_path)


def test_channel_groups_on_rtl(tmp_path):
    small = TINY.with_(lb_rows=16)
    run_both(conv_case(small, 9, 2, 8, 10, 3, seed=3), small, "verilator", tmp_path)


def test_lane_groups_share_the_accumulator_on_rtl(tmp_path):
    """Channel groups with three lane groups whose bands sit in the accumulator together
    (C_ACC): each channel group loads once for all of them. RTL ≡ ISS ≡ golden."""
    from ffacc.firmware.isa import Reg, decode_program
    small = TINY.with_(lb_rows=16)
    case = conv_case(small, 9, 6, 8, 10, 3, seed=3)
    code = next(s for s in case.image.sections if s.kind == 1).data
    assert any(i.reg == Reg.C_ACC and i.imm for i in decode_program(code))  # bands apart
    _, iss = run_both(case, small, "verilator", tmp_path)
    ran = [op for _, op, _, _ in iss.per_instruction]
    assert 0 < ran.count("LOADA") < ran.count("CONV")


def test_ulx3s_multi_tile(tmp_path, record_property):
    """A multi-pass layer on the ULX3S preset: 30 input channels x 3 kernel rows = 90 row tasks
    on 2 row engines, 5 output channels in 3 lane groups."""
    cfg = ACCEL_PRESETS["ulx3s"]
    case = conv_case(cfg, 30, 5, 8, 20, 3, seed=21)
    rtl, iss = run_both(case, cfg, "verilator", tmp_path, record_property)
    assert rtl["mult_slots"] > 0 and rtl["busy"] > 0


def run_random(seed, tmp_path, cfg=TINY, mutation=None):
    """A random (possibly mutated) program on the ISS and the RTL (Verilator): the same
    status, error code, error pc and read-back bytes; a finished run's cycles within 5 % of
    the ISS's model; an unmutated one ≡ golden. A program the ISS needs more than 300,000
    cycles for is replaced by the next seed's."""
    from ffacc.sim.iss import BudgetExceeded
    from ffacc.sim.programs import random_case
    for sub in range(seed, seed + 1000 * 50, 1000):
        case = random_case(cfg, sub, mutation)
        try:
            blobs, res = run_iss(case, cfg, max_cycles=300_000)
            break
        except BudgetExceeded:
            continue
    path = case.image.save(tmp_path / f"{case.name}.ffw")
    rtl = bench(cfg, "verilator").run_image(path, case.readback, name=case.name,
                                            max_cycles=2 * res.cycles + 10_000)
    got = ("error" if rtl["status"] & 4 else "done" if rtl["status"] & 2 else "running",
           rtl["error"], rtl["error_pc"] if rtl["status"] & 4 else 0)
    assert got == (res.status, res.error, res.error_pc), (case.name, res.detail)
    assert rtl["readback"] == blobs, case.name
    if res.status == "done":
        assert abs(res.cycles - rtl["cycles"]) <= 0.05 * rtl["cycles"], (res.cycles, rtl)
    if not case.expect_error:
        assert res.status == "done" and case.outputs and case.check(blobs), case.name
    return case.name, res.status


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("seed", range(3))
def test_random_programs_rtl_equals_iss(seed, mutation, tmp_path):
    run_random(seed, tmp_path, mutation=mutation)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12, 112))
def test_random_programs_rtl_equals_iss_many(seed, tmp_path):
    run_random(seed, tmp_path)


READS = {"LOADA", "LOADW", "LOADQ", "ADD"}


@pytest.mark.parametrize("kind,after", [("rresp", 0), ("rresp", 7), ("rresp", 60),
                                        ("rresp", 100), ("bresp", 0), ("bresp", 3),
                                        ("rstall", 0), ("rstall", 90), ("wstall", 1)])
def test_bus_faults_stop_with_their_error(kind, after, tmp_path):
    """A bus fault injected into the memory part-way through a conv layer and an add (an
    SLVERR on every read beat or write response from the ``after``-th on, or a memory that
    stops answering): the run stops with BUS or TIMEOUT (never hangs), at an instruction
    that uses that channel (any instruction for reads: the fetch unit reads the next one)."""
    from ffacc.firmware.image import Kind
    from ffacc.firmware.isa import Err, Op, decode_program
    case = conv_case(TINY, 2, 3, 6, 7, 3, seed=21)
    _, iss = run_iss(case, TINY)
    assert iss.status == "done"
    path = case.image.save(tmp_path / "fault.ffw")
    rtl = bench(TINY, "verilator").run_image(path, case.readback, name=f"fault_{kind}{after}",
                                             max_cycles=iss.cycles + 20_000,
                                             fault=(kind, after))
    assert rtl["status"] & 4, rtl
    assert rtl["error"] == (Err.BUS if kind.endswith("resp") else Err.TIMEOUT)
    code = next(s for s in case.image.sections if s.kind == Kind.CODE)
    k = (rtl["error_pc"] - code.addr) // 8
    assert 0 <= k < len(code.data) // 8 and (rtl["error_pc"] - code.addr) % 8 == 0
    op = Op(decode_program(code.data)[k].op).name
    if kind[0] == "b" or kind == "wstall":
        assert op == "POST", op
    elif after > 0:
        assert op in READS | {"SET", "CONV", "POST", "LOOP", "ENDLOOP", "INC"}, op
    else:
        assert rtl["error_pc"] == code.addr        # the first fetch
