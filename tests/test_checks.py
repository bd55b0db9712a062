"""The table of command constraints (ffacc.firmware.checks): the RTL's conditions generated from
it equal the ISS's evaluation of it on the same values; the controller generates every stage
of it; every check can fail; the ISS's errors name the check."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from ffacc.firmware import checks
from ffacc.firmware.checks import CHECKS, DERIVED, decided, flag_bits, rtl_ok, stages
from ffacc.firmware.isa import Err, Op, Program, Reg, reg_bits
from ffacc.hw.config import ACCEL_PRESETS

PRESETS = ["tiny", "icebreaker", "ulx3s"]
DERIVED_BITS = 12          # the derived values' signals in the generator's test


def edge_values(cfg, bits):
    """Values around every size of ``cfg`` and the width's ends, within ``bits``."""
    sizes = [getattr(cfg, n) for n in ("lb_width", "lb_rows", "wb_sets", "qb_entries",
                                       "max_kernel", "max_pool", "lanes", "acc_blocks", "L",
                                       "bus_bytes")]
    sizes.append(cfg.acc_blocks * cfg.L)
    vals = {0, 1, 2, 3, 62, 63, 255, (1 << bits) - 1}
    for s in sizes:
        vals |= {s - 1, s, s + 1, 2 * s}
    return sorted(v for v in vals if 0 <= v < 1 << bits)


def random_env(cfg, rng, derived_names):
    rb = reg_bits(cfg)
    regs = [0] * len(Reg)
    for r in Reg:
        pool = edge_values(cfg, rb[r])
        regs[r] = (int(rng.choice(pool)) if rng.random() < 0.8
                   else int(rng.integers(0, 1 << rb[r])))
    flags = int(rng.integers(0, 16))
    derived = {n: int(rng.choice(edge_values(cfg, DERIVED_BITS))) for n in derived_names}
    return regs, flags, derived


def py_env(cfg, regs, flags, derived):
    """Names for ``checks.evaluate``: the given derived values, registers, flags, sizes."""
    fb = flag_bits()

    def env(name):
        if name in derived:
            return derived[name]
        if name in Reg.__members__:
            return regs[Reg[name]]
        if name in fb:
            return int(bool(flags & fb[name]))
        return getattr(cfg, name)
    return env


def python_ok(op, stage, cfg, regs, flags, derived):
    """The ISS's evaluation of one stage (derived values as given)."""
    env = py_env(cfg, regs, flags, derived)
    return all(checks.evaluate(c.expr, env) for c in CHECKS[op]
               if c.stage == stage and c.applies(cfg))


@pytest.mark.parametrize("preset", PRESETS)
def test_generated_rtl_equals_the_iss_evaluation(preset):
    """Every stage of every command: the generated condition in amaranth.sim equals the
    Python evaluation, on 300 assignments biased to the configuration's edges."""
    cfg = ACCEL_PRESETS[preset]
    rb = reg_bits(cfg)
    m = Module()
    regs = {r.name: Signal(rb[r], name=r.name) for r in Reg}
    flags = Signal(8)
    names = sorted({n for vals in DERIVED.values() for n in vals})
    dsig = {n: Signal(DERIVED_BITS, name=f"d_{n}") for n in names}
    fb = flag_bits()

    def env(name):
        if name in dsig:
            return dsig[name]
        if name in fb:
            return flags[fb[name].bit_length() - 1]
        return regs[name]
    outs = {}
    for op in CHECKS:
        for stage in stages(op):
            outs[op, stage] = o = Signal(name=f"ok_{Op(op).name}_{stage}")
            m.d.comb += o.eq(rtl_ok(op, stage, cfg, env))
    rng = np.random.default_rng(7)
    seen = {k: set() for k in outs}

    async def bench(ctx):
        for _ in range(300):
            rv, fv, dv = random_env(cfg, rng, names)
            for r in Reg:
                ctx.set(regs[r.name], rv[r])
            ctx.set(flags, fv)
            for n, v in dv.items():
                ctx.set(dsig[n], v)
            for (op, stage), o in outs.items():
                want = python_ok(op, stage, cfg, rv, fv, dv)
                assert bool(ctx.get(o)) == want, (Op(op).name, stage, rv, fv, dv)
                seen[op, stage].add(want)
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    # both outcomes were seen for every stage with a check that applies (not vacuous)
    for (op, stage), s in seen.items():
        if any(c.applies(cfg) and not decided(op, c, cfg) for c in CHECKS[op]
               if c.stage == stage):
            assert s == {False, True}, (Op(op).name, stage, s)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_check_can_fail(preset):
    """Every check that applies and that the registers' widths do not decide (``bounds``) can
    fail: some values within the widths break it. The decided ones hold for every value."""
    cfg = ACCEL_PRESETS[preset]
    rng = np.random.default_rng(3)
    names = sorted({n for vals in DERIVED.values() for n in vals})
    pending = {(op, i) for op, cs in CHECKS.items() for i, c in enumerate(cs)
               if c.applies(cfg) and not decided(op, c, cfg)}
    always = {(op, i) for op, cs in CHECKS.items() for i, c in enumerate(cs)
              if c.applies(cfg) and decided(op, c, cfg)}
    for _ in range(3000):
        if not pending:
            break
        env = py_env(cfg, *random_env(cfg, rng, names))
        pending = {(op, i) for op, i in pending if checks.evaluate(CHECKS[op][i].expr, env)}
        for op, i in always:
            assert checks.evaluate(CHECKS[op][i].expr, env), (Op(op).name, CHECKS[op][i].what)
    assert not pending, [(Op(op).name, CHECKS[op][i].what) for op, i in pending]


def test_the_controller_generates_every_stage(monkeypatch):
    """Elaborating the accelerator asks the table for every (command, stage) of it (the
    commands' setups, hw/setup.py, generate their checks from it): no check of the table is
    left out of the RTL."""
    from amaranth.hdl import Fragment
    import ffacc.hw.accel as accel
    import ffacc.hw.setup as setup
    asked = set()
    real = setup.rtl_ok

    def spy(op, stage, cfg, env):
        asked.add((op, stage))
        return real(op, stage, cfg, env)
    monkeypatch.setattr(setup, "rtl_ok", spy)
    cfg = ACCEL_PRESETS["tiny"]
    Fragment.get(accel.Accelerator(cfg), None)
    want = {(op, s) for op in CHECKS for s in stages(op)}
    if not cfg.add_unit:
        want = {k for k in want if k[0] != Op.ADD}
    assert asked == want, want ^ asked


def test_iss_errors_name_the_check():
    """A LOADA whose rows exceed its pitch stops with PARAM at its pc; the message names the
    check, its expression and the registers' values."""
    from ffacc.sim.iss import ISS, AccelError
    cfg = ACCEL_PRESETS["tiny"]
    iss = ISS(cfg, mem_size=1 << 16)
    p = Program().set(A_SRC=0x2000, A_CH=1, A_H=8, A_W=4, A_HB0=0, A_NR=5, LB_PITCH=4)
    p.op(Op.LOADA).end()
    iss.load(0, bytes(p))
    res = iss.run()
    assert (res.status, res.error, res.error_pc) == ("error", Err.PARAM, 7 * 8), res
    assert "the rows fit a channel's pitch" in res.detail
    assert "A_NR <= LB_PITCH" in res.detail and "A_NR=5" in res.detail, res.detail
    with pytest.raises(checks.CheckError, match="\\(band \\+ A_LB0\\) \\+ A_NR <= lb_rows"):
        regs = [0] * len(Reg)
        regs[Reg.A_W], regs[Reg.A_CH], regs[Reg.A_NR], regs[Reg.LB_PITCH] = 4, 30, 4, 4
        regs[Reg.A_H] = 8
        checks.enforce(Op.LOADA, cfg, regs)
    assert isinstance(AccelError, type)


def test_a_chained_comparison_is_refused():
    with pytest.raises(TypeError, match="chained comparison"):
        bool(checks.A_W <= checks.lb_width)


def test_a_product_of_two_registers_must_be_derived():
    m_cfg = ACCEL_PRESETS["tiny"]
    t = checks.Check("x", checks.A_W * checks.A_CH <= checks.lb_rows)
    with pytest.raises(ValueError, match="derived value"):
        checks.rtl_value(t.expr, lambda n: Signal(8) if n in Reg.__members__
                         else getattr(m_cfg, n))


def test_cli_prints_the_table(capsys):
    """``ffacc checks`` lists every check (JSON: one row per check, the run-time ones and the
    derived values), marks those the widths decide, and refuses an unknown command."""
    import json
    from ffacc.cli import main
    assert main(["checks", "--config", "icebreaker", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = [r for r in out["checks"] if r["stage"] not in ("derived",)
            and not r["stage"].startswith("run")]
    assert len(rows) == sum(len(v) for v in CHECKS.values())
    assert {r["check"] for r in rows if r["always_holds"]} >= {
        "the first weight set is in the weight buffer"}
    assert out["sizes"]["lb_banks"] == 1
    assert main(["checks", "conv"]) == 0
    text = capsys.readouterr().out
    assert "1 <= C_KH <= max_kernel" in text and "LOADA" not in text
    with pytest.raises(SystemExit, match="no command 'nope'"):
        main(["checks", "nope"])
