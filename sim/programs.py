"""Hand-assembled single-layer programs with golden expectations (tests and benchmarks).

Each builder returns a :class:`Case`: a firmware image plus the memory regions to read back and
the values they must hold according to :mod:`ffacc.sim.golden`. The same case runs on the ISS
(:func:`run_iss`) and on the RTL (:class:`ffacc.sim.cocotb_run.AccelBench`).
"""

from dataclasses import dataclass, field

import numpy as np

from ffacc.compiler.lower import (ConvLayer, MemoryPlan, build_image, lower_add, lower_conv)
from ffacc.firmware.image import Kind, TensorDesc
from ffacc.firmware.isa import (QPARAM_WORDS, LoadWFlag, Op, PostFlag, Program, Reg,
                                encode, pack_qparam, reg_bits)
from ffacc.hw.weights import set_bytes

from . import golden
from .iss import ISS

__all__ = ["Case", "conv_case", "add_case", "fc_case", "fault_case", "loop_case", "random_case",
           "records_case", "records_race_case",
           "run_iss", "FAULTS", "MUTATIONS"]

DATA_BASE = 0x100


@dataclass
class Case:
    name: str
    image: object
    outputs: list = field(default_factory=list)      # (addr, expected uint8/int8 ndarray)
    expect_error: int = 0

    @property
    def readback(self):
        return [(a, int(e.size)) for a, e in self.outputs]

    def check(self, blobs):
        """``True`` when every read-back region equals its expectation exactly. A case with
        no expected output, or a read-back of another length, is never ``True``."""
        blobs = list(blobs)
        if not self.outputs or len(blobs) != len(self.outputs):
            return False
        return all(len(b) == e.size and
                   np.array_equal(np.frombuffer(b, dtype=e.dtype).reshape(e.shape), e)
                   for b, (_, e) in zip(blobs, self.outputs))


def _acts(cfg, rng, shape):
    if cfg.fcu.act_signed:
        return rng.integers(-128, 128, shape), np.int8, -128, 127
    return rng.integers(0, 256, shape), np.uint8, 0, 255


def conv_case(cfg, C, O, H, W, k, pads=None, stride=1, pool2=False, seed=0, relu=False,
              extreme=False, name=None, pool=None):
    """A quantized conv (+ optional ReLU, max-pool or stride) with random parameters;
    ``pool2``: a 2x2 max-pool at stride 2, ``pool``: ``(k, s)``, a k x k one at stride s, or
    ``(k, s, pads)`` padded (top, left, bottom, right: ``pool_pads``)."""
    pool = (2, 2) if pool2 and pool is None else pool
    rng = np.random.default_rng(seed)
    pads = (k // 2, (k - 1) // 2, (k - 1) // 2, k // 2) if pads is None else pads
    x, dt, qlo, qhi = _acts(cfg, rng, (1, C, H, W))
    w = rng.integers(-128, 128, (O, C, k, k))
    if extreme:
        x = rng.choice([qlo, qhi], size=x.shape)
        w = rng.choice([-128, 127], size=w.shape)
    b = rng.integers(-5000, 5000, O)
    zx = int(rng.integers(qlo, qhi + 1)) if not extreme else qhi
    zy = int(rng.integers(qlo // 2, qhi // 2 + 1))
    M, s = golden.quantize_multiplier(rng.uniform(0.0002, 0.002, O) / k)
    qmin = zy if relu else qlo
    layer = ConvLayer(w, b - zx * w.sum(axis=(1, 2, 3)), M, s, zx, zy, qmin, qhi, (C, H, W),
                      tuple(pads), stride, pool=pool)
    mem = MemoryPlan(base=DATA_BASE)
    xa = mem.place("x", x.astype(dt).tobytes())
    _, Ho, Wo = layer.out_shape
    ya = mem.alloc("y", O * Ho * Wo)
    prog = Program()
    lower_conv(cfg, layer, prog, mem, xa, ya)
    prog.end()
    want = golden.requantize(golden.conv2d(x, w, b, x_zp=zx, pads=pads, stride=stride),
                             M, s, zy, qmin, qhi)
    if pool:
        want = golden.maxpool2d(want, pool[0], pool[1], pool[2] if len(pool) > 2 else 0)
    img = build_image(cfg, prog, mem, [TensorDesc("x", "input", xa, np.dtype(dt).name,
                                                  [1, C, H, W]),
                                       TensorDesc("y", "output", ya, np.dtype(dt).name,
                                                  [1, O, Ho, Wo])])
    name = name or f"conv{k}x{k}_c{C}o{O}_{H}x{W}" + (
        "" if not pool else "_pool" if pool == (2, 2) else f"_pool{pool[0]}s{pool[1]}" + (
            "p" + "".join(map(str, pool[2])) if len(pool) > 2 else "")) + \
        (f"_s{stride}" if stride > 1 else "")
    return Case(name, img, [(ya, want.astype(dt))])


def fc_case(cfg, K, O, seed=0):
    """Fully-connected ``K -> O``: a 1x1 conv over ``K`` channels of a 1x1 map (MAC mode)."""
    case = conv_case(cfg, K, O, 1, 1, 1, pads=(0, 0, 0, 0), seed=seed, name=f"fc{K}x{O}")
    return case


def _add_setup(cfg, n, seed, chunk=None, skew=0):
    """Random operands of an ``n``-element add in memory and the program that sets up an ADD
    of ``chunk`` (default ``n``) of them: ``(program without the ADD, memory, output address,
    golden output)``. ``skew``: the second operand starts that many bytes past a multiple of
    8 (inside a bus beat)."""
    rng = np.random.default_rng(seed)
    a, dt, qlo, qhi = _acts(cfg, rng, n)
    b, *_ = _acts(cfg, rng, n)
    za, zb, zy = (int(v) for v in rng.integers(qlo, qhi + 1, 3))
    ka, kb, M, s = golden.add_params(0.031, 0.017, 0.045, input_bits=14)
    mem = MemoryPlan(base=DATA_BASE)
    aa = mem.place("a", a.astype(dt).tobytes())
    ba = mem.place("b", bytes(skew) + b.astype(dt).tobytes()) + skew
    ya = mem.alloc("y", n)
    prog = Program()
    lower_add(prog, aa, ba, ya, chunk or n, ka=ka, kb=kb, multiplier=M, shift=s, a_zp=za,
              b_zp=zb, y_zp=zy, qmin=qlo, qmax=qhi)
    prog.words.pop()                            # the ADD: the caller places it
    want = golden.add(a, b, a_zp=za, b_zp=zb, ka=ka, kb=kb, multiplier=M, shift=s, y_zp=zy,
                      qmin=qlo, qmax=qhi)
    return prog, mem, ya, want.astype(dt)


def add_case(cfg, n, seed=0, skew=0):
    prog, mem, ya, want = _add_setup(cfg, n, seed, skew=skew)
    prog.op(Op.ADD).end()
    return Case(f"add{n}", build_image(cfg, prog, mem), [(ya, want)])


def loop_case(cfg, outer=3, inner=2, chunk=4, seed=0):
    """Hardware loops by hand: ``outer`` x ``inner`` ADDs of ``chunk`` elements, each
    iteration stepping its three addresses with ``INC``; the loops sit inside
    ``loop_depth - 2`` one-iteration loops (the stack full), the inner body is longer than a
    fetch block (the jump goes back across blocks), and ``A_SRC`` is stepped by 2**32 in
    three ``INC``s (modulo its width: unchanged)."""
    n = outer * inner * chunk
    p, mem, ya, want = _add_setup(cfg, n, seed, chunk)
    for _ in range(cfg.loop_depth - 2):
        p.op(Op.LOOP, imm=1)
    p.op(Op.LOOP, imm=outer).op(Op.LOOP, imm=inner).op(Op.ADD)
    for r in (Reg.A_SRC, Reg.D_SRC2, Reg.O_DST):
        p.inc(r, chunk)
    for _ in range(cfg.fetch_block):
        p.op(Op.NOP)
    p.inc(Reg.A_SRC, (1 << 31) - 1).inc(Reg.A_SRC, (1 << 31) - 1).inc(Reg.A_SRC, 2)
    p.op(Op.ENDLOOP).op(Op.ENDLOOP)
    for _ in range(cfg.loop_depth - 2):
        p.op(Op.ENDLOOP)
    p.end()
    return Case(f"loops{n}", build_image(cfg, p, mem), [(ya, want)])


MUTATIONS = ("none", "set_value", "opcode", "drop", "duplicate", "truncate", "loop_count")


def random_case(cfg, seed, mutation=None):
    """A random program for differential testing (RTL ≡ ISS): a random small layer (conv with
    random kernel, stride, pool and shape, a fully-connected layer, an add, or the hand-written
    loops), compiled, then with ``mutation`` (random by default, one of :data:`MUTATIONS`)
    applied to one instruction: a ``SET``'s value replaced by an edge or random value (legal
    or not), a random opcode byte, an instruction dropped or doubled, the program cut before
    its ``END`` (it runs into zeroed memory), a ``LOOP`` count changed. Unmutated cases keep
    their golden outputs; mutated ones expect nothing but agreement: status, error code and
    pc, and the read-back bytes."""
    rng = np.random.default_rng(seed)
    kinds = ["conv", "conv", "fc", "add" if cfg.add_unit else "conv"]
    if cfg.loop_depth >= 2 and cfg.add_unit:
        kinds.append("loops")
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "conv":
        k = int(rng.integers(1, min(cfg.max_kernel, 5) + 1))
        pool = bool(rng.integers(2)) and k > 1
        stride = 1 if pool else int(rng.integers(1, 3))
        H, W = (int(v) for v in rng.integers(k + 1, k + 9, 2))
        case = conv_case(cfg, int(rng.integers(1, 5)), int(rng.integers(1, 5)), H, W, k,
                         stride=stride, pool2=pool, relu=bool(rng.integers(2)),
                         seed=int(rng.integers(1 << 30)))
    elif kind == "fc":
        case = fc_case(cfg, int(rng.integers(2, 40)), int(rng.integers(1, 6)),
                       seed=int(rng.integers(1 << 30)))
    elif kind == "add":
        case = add_case(cfg, int(rng.integers(1, 40)), seed=int(rng.integers(1 << 30)))
    else:
        case = loop_case(cfg, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                         int(rng.integers(1, 6)), seed=int(rng.integers(1 << 30)))
    mutation = mutation or MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    case.name = f"random{seed}_{kind}_{mutation}"
    if mutation == "none":
        return case
    code_sec = next(s for s in case.image.sections if s.kind == Kind.CODE)
    words = [int.from_bytes(code_sec.data[i:i + 8], "little")
             for i in range(0, len(code_sec.data), 8)]
    ops = [w & 0xFF for w in words]

    def pick(pred):
        idx = [i for i, o in enumerate(ops) if pred(o)]
        return idx[int(rng.integers(len(idx)))] if idx else None

    i = None
    if mutation == "set_value":
        i = pick(lambda o: o == Op.SET)
        if i is not None:
            reg = (words[i] >> 16) & 0xFF
            bits = reg_bits(cfg)[Reg(reg)]
            v = words[i] >> 32
            new = [0, 1, v + 1, max(0, v - 1), 2 * v, (1 << bits) - 1, 1 << bits,
                   int(rng.integers(0, 1 << bits))][int(rng.integers(8))]
            words[i] = (words[i] & 0xFFFFFFFF) | (new & 0xFFFFFFFF) << 32
    elif mutation == "opcode":
        i = int(rng.integers(len(words) - 1))
        words[i] = (words[i] & ~0xFF) | int(rng.integers(256))
    elif mutation == "drop":
        i = int(rng.integers(len(words) - 1))
        del words[i]
    elif mutation == "duplicate":
        i = pick(lambda o: o not in (Op.SET, Op.END))
        if i is not None:
            words.insert(i, words[i])
    elif mutation == "truncate":
        i = int(rng.integers(len(words) - 1))
        words = words[:i + 1]
    elif mutation == "loop_count":
        i = pick(lambda o: o == Op.LOOP)
        if i is not None:
            new = [0, 1, (words[i] >> 32) + 1, int(rng.integers(1, 8))][int(rng.integers(4))]
            words[i] = (words[i] & 0xFFFFFFFF) | new << 32
    if i is None:                       # nothing to mutate in this program
        case.name = f"random{seed}_{kind}_none"
        return case
    code = b"".join(w.to_bytes(8, "little") for w in words)
    code += bytes(max(0, len(code_sec.data) - len(code)))   # shorter: zeros after it
    case.image.sections[case.image.sections.index(code_sec)] = type(code_sec)(
        code_sec.kind, code_sec.addr, code)
    case.expect_error = -1              # not known: compare RTL with ISS only
    return case


def async_loads(case):
    """``case`` with every ``LOADW`` made ``ASYNC`` (weight_prefetch): each CONV then reads
    the sets a background load is still writing, so each of its first passes waits for the
    load (the results must not change)."""
    code_sec = next(s for s in case.image.sections if s.kind == Kind.CODE)
    data = bytearray(code_sec.data)
    n = 0
    for i in range(0, len(data), 8):
        if data[i] == Op.LOADW:
            data[i + 1] |= LoadWFlag.ASYNC
            n += 1
    assert n, f"{case.name}: no LOADW"
    case.image.sections[case.image.sections.index(code_sec)] = type(code_sec)(
        code_sec.kind, code_sec.addr, bytes(data))
    case.name += "_async"
    return case


def _race_data(cfg, rng, W, weight_sets):
    """The data of a race case: one input row of ``W`` bytes per row engine, random MAC
    weight blocks of ``weight_sets`` sets each, and a quantization record per lane; returns
    ``(memory plan, x, weight addresses, activation dtype, records' address)``."""
    R, P = cfg.rows, cfg.lanes
    per = set_bytes(cfg.fcu, P, True)
    mem = MemoryPlan(base=DATA_BASE)
    x = mem.place("x", rng.integers(0, 256, R * W).astype(np.uint8).tobytes())   # bytes
    ws = [mem.place(f"w{k}", rng.integers(-128, 128, n * per).astype(np.int8).tobytes())
          for k, n in enumerate(weight_sets)]
    _, dt, qlo, qhi = _acts(cfg, rng, 1)
    q = []
    for _ in range(P):
        q += pack_qparam(int(rng.integers(-3000, 3000)), 1 << 20, 31, (qlo + qhi + 1) // 2,
                         qlo, qhi)
    qa = mem.place("q", np.array(q, dtype="<u4").tobytes())
    return mem, x, ws, dt, qa


def prefetch_race_case(cfg, seed=0, beside=False):
    """A background LOADW of new weights into every weight set, then at once a CONV from
    the last set, which it would read before the load gets there: its pass must wait for
    the load. ``beside``: the load leaves the last set alone, so the CONV runs beside it,
    and the LOADQ after the CONV must wait for the read DMA the load still has.

    The expected output is the ISS's (commands in order); ``case.stale`` is the output of
    the CONV on the set's previous weights (the same program without the background load).
    """
    rng = np.random.default_rng(seed)
    L, R, P, S = cfg.L, cfg.rows, cfg.lanes, cfg.wb_sets
    W = 2 * L
    mem, x, (old, new), dt, qa = _race_data(cfg, rng, W, (S, S))
    y = mem.alloc("y", P * W)

    def program(background):
        p = Program()
        p.set(Q_SRC=qa, Q_COUNT=P, Q_DST=0, A_SRC=x, A_CH=R, A_H=1, A_W=W, A_HB0=0, A_NR=1,
              LB_PITCH=1, W_SRC=old, W_COUNT=S, W_DST=0, C_KH=1, C_KW=1, C_PT=0, C_PL=0,
              C_WOUT=W, C_ZX=0, C_Y0=0, C_NY=1, C_WSET=S - 1, C_LANES=P, C_ACC=0, O_DST=y,
              O_W=W, O_CSTRIDE=W, O_Q=0, O_STRIDE=1, O_ROW0=0)
        p.op(Op.LOADA).op(Op.LOADW, flags=LoadWFlag.MAC)
        p.set(W_SRC=new, W_COUNT=S - 1 if beside else S)
        # the CONV follows the background LOADW in the same fetch block (which starts
        # there), so nothing between them waits for the load
        while len(p.words) % max(1, cfg.fetch_block):
            p.op(Op.NOP)
        if background:
            p.op(Op.LOADW, flags=LoadWFlag.MAC | LoadWFlag.ASYNC)
        p.op(Op.CONV).op(Op.LOADQ).op(Op.POST).end()
        return p

    def image(p):
        return build_image(cfg, p, mem, [TensorDesc("y", "output", y, np.dtype(dt).name,
                                                    [1, P, 1, W])])

    out = []
    for background in (True, False):
        case = Case(f"prefetch_{'beside' if beside else 'race'}", image(program(background)),
                    [(y, np.zeros(P * W, dt))])
        blobs, res = run_iss(case, cfg)
        assert res.status == "done", res.detail
        out.append(np.frombuffer(blobs[0], dt).copy())
    case.image = image(program(True))
    case.outputs = [(y, out[0])]
    case.stale = out[1]
    return case


def _two_bands(name, cfg, mem, program, ys, dt, shape):
    """A race case whose program (``program(post_flags)``) writes two bands ``ys`` of
    ``shape``: its image with the first POST ASYNC, the expected outputs the ISS's (commands in
    order), and ``case.sync``, the same program without ASYNC."""
    def image(p):
        return build_image(cfg, p, mem, [TensorDesc(f"y{k + 1}", "output", a,
                                                    np.dtype(dt).name, shape)
                                         for k, a in enumerate(ys)])

    n = int(np.prod(shape))
    case = Case(name, image(program(PostFlag.ASYNC)), [(a, np.zeros(n, dt)) for a in ys])
    blobs, res = run_iss(case, cfg)
    assert res.status == "done", res.detail
    case.outputs = [(a, np.frombuffer(b, dt).copy()) for a, b in zip(ys, blobs)]
    case.sync = image(program(0))
    return case


def post_race_case(cfg, seed=0, beside=False):
    """A background POST (flag ASYNC) of a long band, then at once a CONV from other weights
    into the same accumulator blocks, which it would overwrite before the POST read them:
    the CONV must wait for it. ``beside``: the CONV writes the other half of the
    accumulator, so it runs while the POST does. Both bands are then in memory (``y1``
    from the POST, ``y2`` from a POST after the CONV), the expected values the ISS's
    (commands in order); ``case.sync`` is the same program without ASYNC."""
    rng = np.random.default_rng(seed)
    L, R, P, S = cfg.L, cfg.rows, cfg.lanes, 2
    W = cfg.lb_width - cfg.lb_width % L
    mem, x, (w,), dt, qa = _race_data(cfg, rng, W, (S,))
    y1, y2 = mem.alloc("y1", P * W), mem.alloc("y2", P * W)

    def program(flags):
        p = Program()
        p.set(Q_SRC=qa, Q_COUNT=P, Q_DST=0, A_SRC=x, A_CH=R, A_H=1, A_W=W, A_HB0=0, A_NR=1,
              LB_PITCH=1, W_SRC=w, W_COUNT=S, W_DST=0, C_KH=1, C_KW=1, C_PT=0, C_PL=0,
              C_WOUT=W, C_ZX=0, C_Y0=0, C_NY=1, C_WSET=0, C_LANES=P, C_ACC=0, O_DST=y1,
              O_W=W, O_CSTRIDE=W, O_Q=0, O_STRIDE=1, O_ROW0=0)
        p.op(Op.LOADQ).op(Op.LOADA).op(Op.LOADW, flags=LoadWFlag.MAC).op(Op.CONV)
        p.op(Op.POST, flags=flags)
        p.set(C_WSET=1, C_ACC=cfg.acc_blocks // 2 if beside else 0, O_DST=y2)
        p.op(Op.CONV).op(Op.POST).end()
        return p

    return _two_bands(f"post_{'beside' if beside else 'race'}", cfg, mem, program, (y1, y2),
                      dt, [1, P, 1, W])


def records_race_case(cfg, seed=0, beside=False):
    """A background POST (flag ASYNC) of a long band with the records ``[0, P)``, then at once
    a LOADQ of other records over them, which a later lane of the POST would read: the LOADQ
    must wait for it. ``beside``: the LOADQ writes records ``[P, 2P)``, so it runs while the
    POST does. A second POST then reads the same band with the new records. Both bands are in
    memory (``y1``, ``y2``), the expected values the ISS's (commands in order); ``case.sync``
    is the same program without ASYNC."""
    rng = np.random.default_rng(seed)
    L, R, P = cfg.L, cfg.rows, cfg.lanes
    W = cfg.lb_width - cfg.lb_width % L
    mem, x, (w,), dt, _ = _race_data(cfg, rng, W, (1,))
    _, _, qlo, qhi = _acts(cfg, rng, 1)
    recs = []
    for k in range(2):                  # two sets of records, each lane's different
        q = []
        for _ in range(P):
            q += pack_qparam(int(rng.integers(-3000, 3000)), int(rng.integers(1 << 19, 1 << 21)),
                             31, (qlo + qhi + 1) // 2, qlo, qhi)
        recs.append(mem.place(f"q{k}", np.array(q, dtype="<u4").tobytes()))
    y1, y2 = mem.alloc("y1", P * W), mem.alloc("y2", P * W)
    q2 = P if beside else 0

    def program(flags):
        p = Program()
        p.set(Q_SRC=recs[0], Q_COUNT=P, Q_DST=0, A_SRC=x, A_CH=R, A_H=1, A_W=W, A_HB0=0,
              A_NR=1, LB_PITCH=1, W_SRC=w, W_COUNT=1, W_DST=0, C_KH=1, C_KW=1, C_PT=0, C_PL=0,
              C_WOUT=W, C_ZX=0, C_Y0=0, C_NY=1, C_WSET=0, C_LANES=P, C_ACC=0, O_DST=y1,
              O_W=W, O_CSTRIDE=W, O_Q=0, O_STRIDE=1, O_ROW0=0)
        p.op(Op.LOADQ).op(Op.LOADA).op(Op.LOADW, flags=LoadWFlag.MAC).op(Op.CONV)
        p.op(Op.POST, flags=flags)
        p.set(Q_SRC=recs[1], Q_DST=q2).op(Op.LOADQ)
        p.set(O_Q=q2, O_DST=y2).op(Op.POST).end()
        return p

    return _two_bands(f"records_{'beside' if beside else 'race'}", cfg, mem, program,
                      (y1, y2), dt, [1, P, 1, W])


def records_case(cfg, seed=0):
    """A LOADQ of one record over the first of the records a LOADQ before it loaded, then a
    POST of every lane: the second lane's record must be the first load's. With a bus word
    wider than 4 bytes the one record's read ends in a word past it (random bytes), which
    goes nowhere; ``case.stale`` is the output had it overwritten the next record's first
    word."""
    rng = np.random.default_rng(seed)
    L, R, P = cfg.L, cfg.rows, cfg.lanes
    if P < 2:
        raise ValueError("records_case needs two lanes or more")
    W = 2 * L
    mem, x, (w,), dt, qa = _race_data(cfg, rng, W, (1,))
    _, _, qlo, qhi = _acts(cfg, rng, 1)
    one = pack_qparam(int(rng.integers(-3000, 3000)), 1 << 20, 31, (qlo + qhi + 1) // 2,
                      qlo, qhi)
    past = [int(v) for v in rng.integers(0, 1 << 32, 4)]
    qb = mem.place("q1", np.array(one + past, dtype="<u4").tobytes())
    y = mem.alloc("y", P * W)

    def program(loads):
        p = Program()
        p.set(Q_SRC=qa, Q_COUNT=P, Q_DST=0, A_SRC=x, A_CH=R, A_H=1, A_W=W, A_HB0=0, A_NR=1,
              LB_PITCH=1, W_SRC=w, W_COUNT=1, W_DST=0, C_KH=1, C_KW=1, C_PT=0, C_PL=0,
              C_WOUT=W, C_ZX=0, C_Y0=0, C_NY=1, C_WSET=0, C_LANES=P, C_ACC=0, O_DST=y,
              O_W=W, O_CSTRIDE=W, O_Q=0, O_STRIDE=1, O_ROW0=0)
        p.op(Op.LOADQ).op(Op.LOADA).op(Op.LOADW, flags=LoadWFlag.MAC).op(Op.CONV)
        for src, dst in loads:
            p.set(Q_SRC=src, Q_COUNT=1, Q_DST=dst).op(Op.LOADQ)
        p.op(Op.POST).end()
        return p

    def image(p):
        return build_image(cfg, p, mem, [TensorDesc("y", "output", y, np.dtype(dt).name,
                                                    [1, P, 1, W])])

    # the stale variant: record 1 loaded again with its first word from past
    q = np.frombuffer(mem.blobs[[b.name for b in mem.blobs].index("q")].data, "<u4")
    stale = mem.place("q_stale", np.array([past[0]] + list(q[QPARAM_WORDS + 1:
                                                             2 * QPARAM_WORDS]),
                                          dtype="<u4").tobytes())
    out = []
    for loads in ([(qb, 0)], [(qb, 0), (stale, 1)]):
        case = Case("records", image(program(loads)), [(y, np.zeros(P * W, dt))])
        blobs, res = run_iss(case, cfg)
        assert res.status == "done", res.detail
        out.append(np.frombuffer(blobs[0], dt).copy())
    case.image = image(program([(qb, 0)]))
    case.outputs = [(y, out[0])]
    case.stale = out[1]
    return case


def _fault_program(kind, cfg):
    p = Program()
    mem = MemoryPlan(base=DATA_BASE)
    far = min(1 << 24, (1 << cfg.addr_bits) - 2)     # the data runs past the memory
    if kind == "opcode":
        p.set(C_KH=3).raw(encode(0x77)).end()
    elif kind == "reserved":
        p.raw(encode(Op.NOP) | 1 << 24).end()
    elif kind == "zero":
        p.set(C_KH=3)              # runs into zeroed memory: opcode 0x00 is illegal
    elif kind == "register":
        p.raw(encode(Op.SET, len(Reg), 5)).end()
    elif kind == "loadq_unaligned":
        # records not on a bus word (a configuration with wide loads reads whole words)
        src = mem.place("records", bytes(4 * 12)) + 2
        p.set(Q_SRC=src, Q_COUNT=2, Q_DST=0).op(Op.LOADQ).end()
    elif kind == "address":
        # LOADA from beyond the memory size
        p.set(A_SRC=far, A_CH=1, A_H=4, A_W=4, A_HB0=0, A_NR=4, LB_PITCH=4)
        p.op(Op.LOADA).end()
    elif kind == "write_address":
        p.set(A_SRC=DATA_BASE, D_SRC2=DATA_BASE, O_DST=far, D_N=4, D_KAB=1 | 1 << 16,
              D_M=1 << 30, D_SZ=31, D_CLAMP=255 << 8).op(Op.ADD).end()
        mem.place("zeros", bytes(16))
    elif kind == "add_read_address":
        # an ADD whose first operand lies past the memory: its read fails while the
        # post-processor waits for its elements, and must not keep the run from stopping
        p.set(A_SRC=far, D_SRC2=DATA_BASE, O_DST=DATA_BASE, D_N=4, D_KAB=1 | 1 << 16,
              D_M=1 << 30, D_SZ=31, D_CLAMP=255 << 8).op(Op.ADD).end()
        mem.place("zeros", bytes(16))
    elif kind == "wide_set":
        # C_KH is as wide as max_kernel needs: a wider value stops at the SET
        p.set(C_KH=1 << reg_bits(cfg)[Reg.C_KH]).end()
    elif kind == "address_wrap":
        # A_SRC + first row * row pitch is 2**addr_bits + DATA_BASE: out of range, even though
        # the sum wraps to a valid address in addr_bits bits
        a = cfg.addr_bits
        if a == 32:
            hb0, rp = 65534, 65538            # hb0 * rp = 2**32 - 4
        else:
            rp = 1 << min(16, a - 1)
            hb0 = (1 << a) // rp
        src = DATA_BASE + (1 << a) - hb0 * rp
        p.set(A_SRC=src, A_CH=1, A_H=hb0 + 1, A_W=4, A_HB0=hb0, A_NR=1, LB_PITCH=1,
              A_PITCH=rp).op(Op.LOADA).end()
        mem.place("zeros", bytes(16))
    elif kind == "kernel":
        p.set(C_KH=cfg.max_kernel + 1, C_KW=3, C_LANES=1, C_NY=1, C_WOUT=4, A_CH=1, A_H=4,
              A_W=4, LB_PITCH=4).op(Op.CONV).end()
    elif kind == "loop_depth":
        for _ in range(cfg.loop_depth + 1):       # one LOOP more than the stack holds
            p.op(Op.LOOP, imm=2)
        p.end()
    elif kind == "endloop":
        p.op(Op.LOOP, imm=2).op(Op.ENDLOOP).op(Op.ENDLOOP).end()
    elif kind == "loop_zero":
        p.op(Op.LOOP, imm=0).op(Op.ENDLOOP).end()
    elif kind == "inc_register":
        p.raw(encode(Op.INC, len(Reg), 1)).end()
    elif kind in ("conv_acc", "post_acc"):
        # a band of 2 blocks from the accumulator's last block on: beyond its end
        L = cfg.L
        p.set(C_ACC=cfg.acc_blocks - 1, C_LANES=1, C_NY=1, C_WOUT=2 * L)
        if kind == "conv_acc":
            p.set(C_KH=1, C_KW=1, C_PT=0, C_PL=0, A_CH=1, A_H=4, A_W=2 * L, A_HB0=0,
                  LB_PITCH=4, C_WSET=0).op(Op.CONV).end()
        else:
            p.set(O_Q=0, O_STRIDE=1, O_DST=DATA_BASE, O_W=8, O_CSTRIDE=64,
                  O_ROW0=0).op(Op.POST).end()
    elif kind in ("loadw_async_address", "loadw_async_param"):
        # a background LOADW past the memory (its error stops the run at it, after the SETs
        # behind it), or a long one in flight when a CONV's parameters stop the run
        sets = cfg.wb_sets
        src = far - far % cfg.bus_bytes if kind == "loadw_async_address" else DATA_BASE
        mem.place("weights", bytes(sets * set_bytes(cfg.fcu, cfg.lanes, False)))
        p.set(W_SRC=src, W_COUNT=sets, W_DST=0)
        # the load ends its fetch block: the controller waits for the next one while the
        # load runs, and must not fetch it once the load failed
        while (len(p.words) + 1) % max(1, cfg.fetch_block):
            p.op(Op.NOP)
        p.op(Op.LOADW, flags=LoadWFlag.ASYNC)
        p.set(C_KH=cfg.max_kernel + 1 if kind == "loadw_async_param" else 1, C_KW=3,
              C_LANES=1, C_NY=1, C_WOUT=4, A_CH=1, A_H=4, A_W=4, LB_PITCH=4, C_WSET=0)
        if kind == "loadw_async_param":
            p.op(Op.CONV)
        p.end()
    elif kind in ("post_async_address", "post_async_shift"):
        # a background POST whose writes fall past the memory, with a CONV beside it; or
        # whose second lane's record has shift 0 (PARAM), a long first lane before it and
        # a CONV whose kernel stops the run first: the POST's error is the run's (it came
        # first)
        L, W = cfg.L, cfg.lb_width - cfg.lb_width % cfg.L
        lanes = min(2, cfg.lanes)
        shift = kind == "post_async_shift"
        q = pack_qparam(0, 1 << 20, 31, 0, 0, 0) * lanes
        if shift:
            q[-1] &= ~0xFF
        qa = mem.place("q", np.array(q, dtype="<u4").tobytes())
        p.set(Q_SRC=qa, Q_COUNT=lanes, Q_DST=0).op(Op.LOADQ)
        p.set(C_ACC=0, C_LANES=lanes, C_NY=1, C_WOUT=W, O_Q=0, O_STRIDE=1,
              O_DST=mem.alloc("y", lanes * W) if shift else far, O_W=W, O_CSTRIDE=W,
              O_ROW0=0, C_KH=1, C_KW=1, C_PT=0, C_PL=0, A_CH=1, A_H=1, A_W=W, A_HB0=0,
              LB_PITCH=1, C_WSET=0)
        p.op(Op.POST, flags=PostFlag.ASYNC)
        if shift:
            p.set(C_KH=cfg.max_kernel + 1)
        else:
            p.set(C_ACC=cfg.acc_blocks // 2)
        p.op(Op.CONV).end()
    elif kind == "lb_overflow":
        p.set(A_SRC=DATA_BASE, A_CH=2, A_H=4, A_W=cfg.lb_width + 1, A_HB0=0, A_NR=1,
              LB_PITCH=1).op(Op.LOADA).end()
        mem.place("zeros", bytes(16))
    else:
        raise ValueError(kind)
    return p, mem


FAULTS = {"opcode": 1, "reserved": 1, "zero": 1, "register": 2, "address": 4,
          "write_address": 4, "kernel": 3, "lb_overflow": 3, "wide_set": 3, "address_wrap": 4,
          "loop_depth": 7, "endloop": 7, "loop_zero": 3, "inc_register": 2, "conv_acc": 3,
          "post_acc": 3, "loadw_async_address": 4, "loadw_async_param": 3,
          "post_async_address": 4, "post_async_shift": 3, "add_read_address": 4,
          "loadq_unaligned": 3}


def fault_case(cfg, kind):
    """A program that must stop with the error code :data:`FAULTS[kind]`."""
    p, mem = _fault_program(kind, cfg)
    img = build_image(cfg, p, mem, mem_size=1 << 16, code_addr=0x1000)
    return Case(f"fault_{kind}", img, [], FAULTS[kind])


def run_iss(case, cfg, max_cycles=None):
    """Run a case on the ISS; returns ``(read-back blobs, RunResult)``. ``max_cycles``: a
    budget (:class:`ffacc.sim.iss.BudgetExceeded` beyond it)."""
    iss = ISS(cfg, mem_size=case.image.mem_size)
    for addr, data in case.image.loaded():
        iss.load(addr, data)
    res = iss.run(case.image.entry, max_cycles=max_cycles)
    return [iss.read(a, n) for a, n in case.readback], res
