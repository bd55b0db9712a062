"""The instruction-set simulator: hand-assembled layer programs against the golden model."""

import numpy as np
import pytest

from ffacc.compiler.lower import ConvLayer, LoweringError, MemoryPlan, lower_conv
from ffacc.firmware.isa import ConvFlag, LoadWFlag, Op, PostFlag, Program, Reg, decode_program
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.fcu import FCUConfig
from ffacc.sim.programs import (FAULTS, add_case, async_loads, conv_case, fault_case, fc_case,
                                run_iss)

TINY = ACCEL_PRESETS["tiny"]
ULX3S = ACCEL_PRESETS["ulx3s"]


@pytest.mark.parametrize("k", range(1, 13))
def test_conv_every_kernel_tiny(k):
    case = conv_case(TINY, 3, 3, k + 4, k + 5, k, seed=k)
    blobs, res = run_iss(case, TINY)
    assert res.status == "done", res.detail
    assert case.check(blobs)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 11])
def test_conv_ulx3s_multi_tile(k):
    # 30 input channels -> several passes of 12 pairs; 5 output channels -> 3 lane groups
    case = conv_case(ULX3S, 30, 5, k + 3, 20, k, seed=k)
    blobs, res = run_iss(case, ULX3S)
    assert res.status == "done" and case.check(blobs)


@pytest.mark.parametrize("kw", [dict(stride=2), dict(stride=3, pads=(0, 0, 0, 0)),
                                dict(pool2=True), dict(relu=True), dict(extreme=True)])
def test_conv_variants(kw):
    case = conv_case(TINY, 4, 3, 12, 11, 3, seed=7, **kw)
    blobs, res = run_iss(case, TINY)
    assert res.status == "done" and case.check(blobs)


@pytest.mark.parametrize("stride", [2, 3])
def test_strided_conv_when_the_accumulator_holds_one_row(stride):
    """An accumulator of fewer output rows than the stride (one row of 4 blocks): each band
    is a conv row POST keeps (bands used to start on every row, so rows between overwrote the
    outputs)."""
    cfg = TINY.with_(acc_blocks=4)
    case = conv_case(cfg, 2, 2, 10, 12, 5, stride=stride, seed=41)
    blobs, res = run_iss(case, cfg)
    assert res.status == "done" and case.check(blobs)


def test_channel_groups_accumulate():
    """Input channels beyond the line buffer are split into groups summed in the accumulator."""
    small = TINY.with_(lb_rows=16)
    case = conv_case(small, 9, 2, 8, 10, 3, seed=3)
    code = decode_program(case.image.loaded()[0][1])
    assert any(ins.op == Op.CONV and ins.flags & ConvFlag.ACCUMULATE for ins in code)
    blobs, res = run_iss(case, small)
    assert res.status == "done" and case.check(blobs)


def test_signed_activations():
    cfg = TINY.with_(fcu=FCUConfig(parallel=(3,), rows=2, act_signed=True))
    case = conv_case(cfg, 2, 2, 7, 8, 4, seed=2)
    blobs, res = run_iss(case, cfg)
    assert res.status == "done" and case.check(blobs)


def test_add_and_fc():
    for case in (add_case(TINY, 53, seed=1), fc_case(TINY, 24, 5, seed=2)):
        blobs, res = run_iss(case, TINY)
        assert res.status == "done" and case.check(blobs), case.name


@pytest.mark.parametrize("addr_bits", [32, 16])
@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_faults_stop_with_error_code(kind, addr_bits):
    cfg = TINY.with_(addr_bits=addr_bits)
    case = fault_case(cfg, kind)
    _, res = run_iss(case, cfg)
    assert res.status == "error" and res.error == FAULTS[kind], (res.error, res.detail)
    if kind == "wide_set":           # at the SET itself
        assert res.error_pc == case.image.entry, res.detail
    if kind == "address_wrap":       # at the LOADA after 8 SETs
        assert res.error_pc == case.image.entry + 8 * 8, res.detail


def test_register_widths_follow_the_configuration():
    """Registers are as wide as the configuration's largest legal value needs; a SET of a
    value that fits runs, one bit more stops at the SET with PARAM."""
    from ffacc.firmware.isa import Reg, reg_bits
    from ffacc.sim.iss import ISS
    small = ACCEL_PRESETS["icebreaker"]
    bits = reg_bits(small)
    assert bits[Reg.A_SRC] == small.addr_bits == 16 and bits[Reg.D_M] == 32
    assert bits[Reg.C_KH] == small.max_kernel.bit_length()
    assert reg_bits(TINY)[Reg.A_SRC] == 32
    for reg in (Reg.A_SRC, Reg.A_W, Reg.C_NY):
        prog = Program().set(reg, (1 << bits[reg]) - 1).set(reg, 1 << bits[reg]).end()
        iss = ISS(small, mem_size=4096)
        iss.load(0, bytes(prog))
        res = iss.run(0)
        assert res.status == "error" and res.error == 3 and res.error_pc == 8, res.detail
        assert reg.name in res.detail and f"{bits[reg]} bits" in res.detail


def test_cycle_estimate_grows_with_work():
    small = run_iss(conv_case(TINY, 2, 2, 8, 8, 3), TINY)[1].cycles
    big = run_iss(conv_case(TINY, 4, 4, 16, 16, 3), TINY)[1].cycles
    assert 2 * small < big


def test_lowering_refuses_what_does_not_fit():
    w = np.zeros((1, 1, 11, 11), dtype=np.int64)
    z = np.zeros(1, dtype=np.int64)
    narrow = TINY.with_(lb_width=10)
    wide_kernel = ConvLayer(w, z, z + (1 << 30), z + 31, 0, 0, 0, 255, (1, 16, 40))
    with pytest.raises(LoweringError, match="11-wide kernel does not fit the line buffer"):
        lower_conv(narrow, wide_kernel, Program(), MemoryPlan(), 0, 0)
    big = ConvLayer(np.zeros((1, 1, 13, 13), dtype=np.int64), z, z, z, 0, 0, 0, 255, (1, 20, 20))
    with pytest.raises(LoweringError, match="max_kernel"):
        lower_conv(TINY, big, Program(), MemoryPlan(), 0, 0)
    wide = ConvLayer(np.full((1, 1, 3, 3), 200), z, z, z, 0, 0, 0, 255, (1, 8, 8))
    with pytest.raises(LoweringError, match="conv: weights 200..200 are not int8"):
        lower_conv(TINY, wide, Program(), MemoryPlan(), 0, 0)


@pytest.mark.parametrize("kw", [dict(k=3), dict(k=5, stride=2), dict(k=3, pool2=True),
                                dict(k=7, pads=(3, 3, 3, 3))])
def test_column_tiles_for_wide_maps(kw):
    """A map wider than the line buffer runs in column tiles (A_PITCH row stride)."""
    k = kw.pop("k")
    W = TINY.lb_width * 2 + 5
    case = conv_case(TINY, 2, 3, 8, W, k, seed=k, **kw)
    code = decode_program(case.image.loaded()[0][1])
    assert sum(ins.op == Op.LOADA for ins in code) > 1
    blobs, res = run_iss(case, TINY)
    assert res.status == "done", res.detail
    assert case.check(blobs)


@pytest.mark.parametrize("C, wb_sets, lanes, bus", [(2, 32, 2, 4), (24, 16, 2, 4),
                                                   (2, 32, 3, 8)])
def test_more_output_channels_than_parameter_records(C, wb_sets, lanes, bus):
    """More output channels than the record buffer holds: the records load a run of lane
    groups at a time (before the run's CONVs, or with channel groups, before its POSTs, in
    runs within each group of lane groups that POST together), and POST finds each lane
    group's records relative to its run's first. Three lanes on an 8-byte bus: a run's
    records that are not on a bus word are read from a copy that is."""
    small = TINY.with_(qb_entries=4 if lanes == 2 else 3, wb_sets=wb_sets, lanes=lanes,
                       bus_bytes=bus)
    case = conv_case(small, C, 11, 5, 6, 3, seed=9)
    blobs, res = run_iss(case, small)
    assert res.status == "done" and case.check(blobs)
    ran = [op for _, op, _, _ in res.per_instruction]
    assert 1 < ran.count("LOADQ") <= ran.count("POST")
    assert ran.count("LOADA") > 1 if C > 2 else ran.count("LOADA") == 1    # channel groups


def _nops(n):
    """A program of ``n`` instructions: ``n - 1`` NOPs and END."""
    p = Program()
    for _ in range(n - 1):
        p.op(Op.NOP)
    return bytes(p.end())


def test_budgets_are_optional_and_name_themselves():
    """No instruction limit by default (the ISA has no branches: every program ends); a
    budget given to run() that the program needs more of raises BudgetExceeded naming it."""
    import inspect
    from ffacc.sim.iss import ISS, BudgetExceeded
    assert all(inspect.signature(ISS.run).parameters[k].default is None
               for k in ("max_instructions", "max_cycles"))
    iss = ISS(TINY, mem_size=4096)
    iss.load(0, _nops(10))
    full = iss.run(0)
    assert full.status == "done" and full.instructions == 10
    assert iss.run(0, max_instructions=10, max_cycles=full.cycles).cycles == full.cycles
    with pytest.raises(BudgetExceeded, match=r"instruction budget of 5 reached at pc "
                                             r"0x00000028") as e:
        iss.run(0, max_instructions=5)
    assert isinstance(e.value, RuntimeError) and e.value.result.instructions == 5
    with pytest.raises(BudgetExceeded, match=f"cycle budget of {full.cycles - 1:,} reached"):
        iss.run(0, max_cycles=full.cycles - 1)


def test_run_image_budget_covers_every_segment():
    """run_image's budgets are for the whole run: the second segment gets what the first
    left, and the error names the whole budget and the run's totals."""
    from ffacc.firmware.image import Image, Kind, Section
    from ffacc.sim.iss import BudgetExceeded
    from ffacc.sim.runner import run_image
    img = Image(TINY.fingerprint(), 0, 4096, [Section(Kind.CODE, 0, _nops(10) + _nops(5))],
                meta={"config": TINY.to_dict(), "segments": [{"kind": "accel", "entry": 0},
                                                               {"kind": "accel", "entry": 80}]})
    _, st = run_image(img, {})
    assert st["instructions"] == 15
    assert run_image(img, {}, max_instructions=15, max_cycles=st["cycles"])[1] == st
    with pytest.raises(BudgetExceeded, match=r"instruction budget of 12 reached at pc "
                                             r"0x00000060 \(12 instructions"):
        run_image(img, {}, max_instructions=12)
    with pytest.raises(BudgetExceeded, match=f"cycle budget of {st['cycles'] - 1:,} reached"):
        run_image(img, {}, max_cycles=st["cycles"] - 1)
    with pytest.raises(ValueError, match="budgets of the ISS"):
        run_image(img, {}, engine="rtl", max_cycles=10)


def test_async_weight_loads_change_the_time_only():
    """LOADW ASYNC: the same outputs as in order (each CONV here reads the sets the load
    writes, so it waits for it), and on a configuration without weight_prefetch the flag
    is ignored."""
    for cfg in (TINY, TINY.with_(weight_prefetch=False)):
        case = fc_case(cfg, 40, 10, seed=19)
        blobs, res = run_iss(case, cfg)
        ablobs, ares = run_iss(async_loads(case), cfg)
        assert case.check(blobs) and case.check(ablobs)
        assert ares.instructions == res.instructions
        if not cfg.weight_prefetch:
            assert ares.cycles == res.cycles


def _compiled_conv(cfg, *shape, seed):
    """A compiled conv case on the ISS, checked against golden: (case, blobs, result,
    decoded program)."""
    case = conv_case(cfg, *shape, seed=seed)
    blobs, res = run_iss(case, cfg)
    assert res.status == "done" and case.check(blobs)
    return case, blobs, res, decode_program(case.image.sections[0].data)


def test_the_compiler_prefetches_weights_beside_convs():
    """With weight_prefetch, a layer of several lane groups loads each CONV's weights in
    the background while the CONV before runs, in alternating halves of the buffer: golden
    outputs, fewer cycles than the same layer without prefetch."""
    cycles = {}
    for pf in (True, False):
        cfg = TINY.with_(weight_prefetch=pf)
        _, _, res, code = _compiled_conv(cfg, 8, 12, 8, 8, 3, seed=3)
        n_async = sum(1 for i in code if i.op == Op.LOADW and i.flags & LoadWFlag.ASYNC)
        assert (n_async > 0) == pf
        cycles[pf] = res.cycles
    assert cycles[True] < cycles[False], cycles


def test_the_compiler_overlaps_post_with_the_next_conv():
    """With post_overlap, a layer of several lane groups in one channel group alternates
    the accumulator's halves and runs each POST in the background beside the next lane
    group's CONV: golden outputs, fewer cycles than without; a configuration without it
    gets no ASYNC POST, and one that ignores the flag runs the program in order."""
    cycles = {}
    for ov in (True, False):
        cfg = TINY.with_(post_overlap=ov)
        case, blobs, res, code = _compiled_conv(cfg, 4, 8, 12, 12, 3, seed=1)
        posts = [i for i in code if i.op == Op.POST]
        # C_ACC's values and steps (an INC by half the accumulator alternates the halves)
        accs = {i.imm % cfg.acc_blocks for i in code if i.reg == Reg.C_ACC
                and i.op in (Op.SET, Op.INC)}
        assert posts and all(bool(i.flags & PostFlag.ASYNC) == ov for i in posts)
        assert (cfg.acc_blocks // 2 in accs) == ov, accs
        cycles[ov] = res.cycles
        if ov:                  # the same image where ASYNC is ignored: in order, slower
            blobs2, res2 = run_iss(case, cfg.with_(post_overlap=False))
            assert blobs2 == blobs and res2.cycles > res.cycles
    assert cycles[True] < cycles[False], cycles
