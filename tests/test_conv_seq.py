"""The CONV sequencer in amaranth.sim, against the command's meaning: every beat's rows and
columns, every pass's weight set and bank, every output's accumulator block, and the errors.

The bench plays the line buffer (it records the beats), the weight buffer (it notes which set
each FCU bank holds), the FCUs (a beat comes out a fixed number of clocks after its issue) and
the accumulators (a clock each), and checks what the sequencer asks of them with a schedule
worked out here from the command alone."""

from math import ceil

import pytest
from amaranth.hdl import Elaboratable, Module, Shape
from amaranth.lib import wiring
from amaranth.sim import Simulator

from ffacc.hw.config import AcceleratorConfig
from ffacc.hw.conv import ConvSequencer, PassSetup, conv_bounds
from ffacc.hw.fcu import FCUConfig
from ffacc.hw.linebuf import LineBuffer

OUT_DELAY = 5       # clocks from a beat's issue to the FCUs' o_next for it


def make(b2b, rows=2, parallel=(3,), subtaps=1, chain_rows=True):
    cfg, lb = make_buffer(b2b, rows, parallel, subtaps, chain_rows)
    return cfg, ConvSequencer(cfg, lb.r.payload.shape()), lb


def make_buffer(b2b, rows=2, parallel=(3,), subtaps=1, chain_rows=True):
    """A small configuration and its line buffer (the beats' layout)."""
    cfg = AcceleratorConfig(fcu=FCUConfig(parallel=parallel, rows=rows, subtaps=subtaps),
                            lanes=1, lb_rows=32, lb_width=32, wb_sets=16, acc_blocks=64,
                            back_to_back=b2b, weight_prefetch=False, post_overlap=False,
                            chain_rows=chain_rows)
    cb = conv_bounds(cfg)
    lb = LineBuffer(L=cfg.L, engines=cfg.rows, banks=cfg.lb_banks, slots=cfg.lb_slots,
                    blocks=cfg.lb_blocks, act_shape=cfg.fcu.act_shape,
                    col_shape=Shape.cast(range(-cb["col_lo"], cb["n_col"] + 1)),
                    tags=3 if b2b else 1)
    return cfg, lb


class SequencerAndLineBuffer(Elaboratable):
    """The sequencer's beats into a line buffer, as in the accelerator (the bench watches the
    stream between them)."""

    def __init__(self, seq, lb):
        self.seq, self.lb = seq, lb

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq, m.submodules.lb = self.seq, self.lb
        wiring.connect(m, self.seq.lb, self.lb.r)
        return m


def command(cfg, nch, kh, kw, wout, ny, *, pt=1, pl=1, y0=0, h=8, hb0=0, pitch=None,
            acc=0, wset=0, overwrite=1, chain=0):
    """The payload a controller gives for these CONV registers; ``chain``: each row but a
    pass's last streams that many beats fewer (``pb = bk - chain``)."""
    L, N = cfg.L, cfg.fcu.piece_taps
    cb = conv_bounds(cfg)
    mac = kw == 1
    wob = ceil(wout / L)
    D = 0 if mac else cb["D"]
    return {"npairs": nch * kh, "pieces": 1 if mac else ceil(kw / N), "mac": int(mac),
            "D": D, "wob": wob, "bk": wob + D, "pb": wob + D - chain, "slots": cfg.fcu.ffa.M * cfg.fcu.subtaps,
            "overwrite": overwrite, "wset": wset, "kh": kh, "pt": pt, "pl": pl, "ny": ny,
            "acc": acc, "y0": y0, "h": h, "hb0": hb0, "pitch": pitch or kh, "_nch": nch}


def schedule(cfg, c, lb):
    """(beats, weight sets, accumulator writes) the command must give, in order: a beat is
    (rows of the engines that use theirs, use, act, column, pass); a pass's weight set is
    C_WSET plus its number; an output is (block, overwrite, the beat it comes from: its
    number in the command's beats)."""
    L, R, N = cfg.L, cfg.rows, cfg.fcu.piece_taps
    d = 0 if c["mac"] else conv_bounds(cfg)["d"]
    beats, sets, accs = [], [], []
    npass = ceil(c["npairs"] / R)
    k = 0
    for piece in range(c["pieces"]):
        for s in range(npass):
            sets.append(c["wset"] + k)
            g = 0                       # the pass's beat
            for y in range(c["ny"]):
                for b in range(c["bk"] if y == c["ny"] - 1 else c["pb"]):
                    use = act = 0
                    rows = {}
                    for e in range(R):
                        pair = s * R + e
                        if pair >= c["npairs"]:
                            continue
                        act |= 1 << e
                        ch, i = divmod(pair, c["kh"])
                        hh = c["y0"] + y + i - c["pt"]
                        if 0 <= hh < c["h"]:
                            use |= 1 << e
                            rows[e] = (ch * c["pitch"] + hh - c["hb0"]) % (1 << lb.row_bits)
                    beats.append((rows, use, act, piece * N - c["pl"] - d + b * L, k))
                    # the FFA's output for this beat: after the pass's D leading beats, row
                    # yo's block mo, kept for mo < wob (the rest are the next row's lead)
                    yo, mo = divmod(g - c["D"], c["pb"])
                    if g >= c["D"] and mo < c["wob"]:
                        accs.append((c["acc"] + yo * c["wob"] + mo,
                                     int(c["overwrite"] and k == 0), len(beats) - 1))
                    g += 1
            k += 1
    return beats, sets, accs


def run(cfg, dut, lb, c, *, set_busy=(), max_clocks=4000):
    """Run the command; returns its beats (and the clock of each), the weight set each beat's
    bank held, the accumulator writes, the slots of each beat, err and the clock it ended."""
    R, L = cfg.rows, cfg.L
    out = {"beats": [], "at": [], "sets": [], "accs": [], "slots": [], "err": None,
           "clocks": 0}
    payload = {k: v for k, v in c.items() if not k.startswith("_")}

    async def bench(ctx):
        ctx.set(dut.cmd.payload, payload)
        ctx.set(dut.cmd.valid, 1)
        banks = {}                  # FCU bank -> the weight set written into it
        word = None                 # the set the weight buffer read the clock before
        pipe = [0] * OUT_DELAY
        acc_busy = 0
        outs = 0                    # beats out of the FCUs so far
        for t in range(max_clocks):
            ctx.set(dut.w_set_busy, int(t in set_busy))
            ctx.set(dut.o_next, pipe[0])
            ctx.set(dut.acc_busy, acc_busy)
            await ctx.delay(1e-9)
            if ctx.get(dut.w_write):
                banks[ctx.get(dut.w_bank)] = word
            issue = ctx.get(dut.lb.valid)
            if issue:
                p = ctx.get(dut.lb.payload)
                use, act = p.use, p.act
                rows = {e: p.row[e] for e in range(R) if use >> e & 1}
                col = p.col
                # the column as block and rotation (the block modulo the buffer's addresses)
                assert (col - p.rot) % L == 0 and \
                    ((col - p.rot) // L - p.blk) % (1 << lb.blk_bits) == 0, (col, p.blk, p.rot)
                out["beats"].append((rows, use, act, col, p.tag))
                out["at"].append(t)
                out["slots"].append(ctx.get(dut.slots))
                assert ctx.get(dut.streaming)
                out["sets"].append(banks.get(p.tag))
            if ctx.get(dut.acc_valid):
                out["accs"].append((ctx.get(dut.acc_addr), ctx.get(dut.acc_first), outs))
            outs += pipe[0]
            acc_busy = ctx.get(dut.acc_valid)
            # the weight buffer's word: the set, or, while a load writes it, not yet
            word = "loading" if t in set_busy else ctx.get(dut.w_set)
            done = ctx.get(dut.cmd.ready)
            err = ctx.get(dut.err)
            pipe = pipe[1:] + [issue]
            await ctx.tick()
            if done:
                out["err"], out["clocks"] = err, t
                ctx.set(dut.cmd.valid, 0)
                break
        else:
            raise AssertionError("the command did not end")
        for _ in range(10):                 # idle after: no beat, no end
            await ctx.delay(1e-9)
            assert not ctx.get(dut.lb.valid) and not ctx.get(dut.cmd.ready)
            await ctx.tick()

    sim = Simulator(SequencerAndLineBuffer(dut, lb))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


CASES = [  # nch, kh, kw, wout, ny, registers (the band: rows hb0 .. hb0 + pitch - 1)
    (1, 3, 3, 6, 3, {"h": 4, "pitch": 4}),              # two passes, padding rows
    (3, 3, 3, 7, 2, {"y0": 2, "h": 9, "hb0": 1, "pitch": 5}),     # 5 passes, a band
    (2, 5, 5, 4, 2, {"pl": 2, "pt": 2, "h": 4, "pitch": 5}),      # two pieces
    (4, 1, 1, 5, 1, {"pt": 0, "pl": 0, "h": 1, "pitch": 1}),      # MAC mode, 1-beat passes
    (3, 2, 2, 3, 2, {"pt": 0, "pl": 0, "h": 3, "pitch": 4, "acc": 5, "wset": 3,
                     "overwrite": 0}),                  # accumulate, from set 3 and block 5
    (1, 3, 3, 4, 4, {"h": 4, "pitch": 4, "chain": 1}),  # a 4x4 map's rows as one chain
    (3, 3, 3, 7, 3, {"y0": 2, "h": 9, "hb0": 1, "pitch": 5, "chain": 1}),  # chained, a band
    (2, 5, 5, 4, 3, {"pl": 2, "pt": 2, "h": 4, "pitch": 5, "chain": 1, "acc": 3,
                     "overwrite": 0}),                  # chained, two pieces, accumulate
]


@pytest.mark.parametrize("b2b", [True, False])
@pytest.mark.parametrize("case, chain_rows", [(i, True) for i in range(len(CASES))] +
                         [(i, False) for i, case in enumerate(CASES)
                          if not case[-1].get("chain")])
def test_sequencer_gives_the_commands_schedule(b2b, case, chain_rows):
    """Every case with chain_rows (the chained cases stream fewer beats), and those without a
    chain also without it (every row streams bk beats: the sequencer's other counters)."""
    nch, kh, kw, wout, ny, regs = CASES[case]
    cfg, dut, lb = make(b2b, chain_rows=chain_rows)
    c = command(cfg, nch, kh, kw, wout, ny, **regs)
    beats, sets, accs = schedule(cfg, c, lb)
    got = run(cfg, dut, lb, c, set_busy=range(3, 9) if case == 1 else ())
    assert got["err"] == 0
    assert len(got["beats"]) == len(beats) > 0
    for n, ((rows, use, act, col, k), (grows, guse, gact, gcol, _tag)) in \
            enumerate(zip(beats, got["beats"])):
        assert (guse, gact, gcol) == (use, act, col), f"beat {n}"
        assert grows == rows, f"beat {n}"
    # each beat's bank holds its pass's weight set (written before its first beat)
    assert got["sets"] == [sets[b[4]] for b in beats]
    if b2b:     # consecutive passes use different banks (the next is written meanwhile)
        for i in range(1, len(beats)):
            if beats[i][4] != beats[i - 1][4]:
                assert got["beats"][i][4] != got["beats"][i - 1][4], i
    assert got["accs"] == accs
    assert got["slots"] == [bin(act).count("1") * c["slots"] for _, _, act, _, _ in beats]


@pytest.mark.parametrize("chain", [0, 1, 2])
def test_chains_of_a_two_block_lead(chain):
    """Sub-filters of 2 taps (N = 6, D = 2 leading blocks): a chain may drop one or both of
    a row's leading blocks; the beats and the blocks kept follow the schedule."""
    cfg, dut, lb = make(True, subtaps=2)
    assert conv_bounds(cfg)["D"] == 2
    c = command(cfg, 2, 3, 5, 7, 3, pl=2, pt=1, h=6, pitch=6, chain=chain)
    beats, sets, accs = schedule(cfg, c, lb)
    got = run(cfg, dut, lb, c)
    assert got["err"] == 0 and len(got["beats"]) == len(beats)
    assert [b[:4] for b in got["beats"]] == [b[:4] for b in beats]
    assert got["accs"] == accs and len(accs) == 3 * 3 * ceil(6 / cfg.rows)


@pytest.mark.parametrize("b2b", [True, False])
def test_back_to_back_passes_stream_without_a_gap(b2b):
    """With back_to_back a piece's passes follow each other at once (each is longer than its
    setup); without, each pass waits for the one before to come out of the FCUs."""
    cfg, dut, lb = make(b2b)
    c = command(cfg, 4, 3, 3, 9, 2, h=8, pitch=3)        # 6 passes of 2 rows x 4 beats
    got = run(cfg, dut, lb, c)
    at = got["at"]
    assert len(at) == 6 * 2 * 4
    gaps = [b - a - 1 for a, b in zip(at, at[1:])]
    between = gaps[7::8]                        # the last beat of a pass to the next one's first
    within = [g for i, g in enumerate(gaps) if i % 8 != 7]
    assert len(between) == 5 and within == [0] * len(within)
    if b2b:
        assert between == [0] * 5
    else:
        assert min(between) > OUT_DELAY


def first_bad_beat(cfg, c, lb):
    """The first beat that reads a row inside the map but outside the loaded band."""
    R = cfg.rows
    beats, _, _ = schedule(cfg, c, lb)
    # each beat's pass in the piece and output row
    where = [(s, y) for _ in range(c["pieces"]) for s in range(ceil(c["npairs"] / R))
             for y in range(c["ny"]) for _ in range(c["bk"] if y == c["ny"] - 1 else c["pb"])]
    for n, ((rows, use, act, col, k), (s, y)) in enumerate(zip(beats, where)):
        for e in range(R):
            pair = s * R + e
            if use >> e & 1:
                hh = c["y0"] + y + pair % c["kh"] - c["pt"]
                if not 0 <= hh - c["hb0"] < c["pitch"]:
                    return n
    return None


@pytest.mark.parametrize("b2b", [True, False])
def test_a_row_outside_the_band_stops_the_command(b2b):
    """A beat whose row is in the map but not in the loaded band (A_HB0 .. + LB_PITCH) ends
    the command with err a clock later, and no beat follows."""
    cfg, dut, lb = make(b2b)
    c = command(cfg, 1, 3, 3, 6, 4, h=8, hb0=0, pitch=3)     # output row 3 reads map row 3
    bad = first_bad_beat(cfg, c, lb)
    assert bad is not None
    got = run(cfg, dut, lb, c)
    assert got["err"] == 1
    assert bad + 1 <= len(got["beats"]) <= bad + 2
    assert got["clocks"] == got["at"][bad] + 1


@pytest.mark.parametrize("b2b", [True, False])
def test_a_weight_set_past_the_buffer_stops_the_command(b2b):
    """Passes with sets 14 and 15 of 16 stream; the third ends the command with err."""
    cfg, dut, lb = make(b2b)
    c = command(cfg, 3, 3, 3, 3, 1, h=8, pitch=3, wset=cfg.wb_sets - 2)   # 5 passes
    got = run(cfg, dut, lb, c)
    assert got["err"] == 1
    assert len(got["beats"]) == 2 * c["ny"] * c["bk"]     # one row: no chain


@pytest.mark.parametrize("b2b", [True, False])
def test_pass_setup_assigns_each_engine_its_pair(b2b):
    """The setup on its own: after ``start``, the engines' rows and offsets of pairs
    ``first .. first + R - 1`` (channel, kernel row), the slots of those that run, the set and
    its write a clock after its read, which waits while the set is being loaded; ``restart``
    begins again at pair 0."""
    cfg, lb = make_buffer(b2b, rows=3)
    R = cfg.rows
    dut = PassSetup(cfg, lb.row_bits)
    c = command(cfg, 3, 2, 3, 3, 1, pt=1, hb0=1, pitch=4)      # 6 pairs: 2 passes of 3
    fields = {k: v for k, v in c.items() if not k.startswith("_")}

    async def bench(ctx):
        ctx.set(dut.cmd, fields)
        for first, wset, busy in ((0, 3, 0), (3, 4, 2), (6, 16, 0)):
            if first == 0:
                ctx.set(dut.restart, 1)
                await ctx.tick()
                ctx.set(dut.restart, 0)
            ctx.set(dut.start, 1)
            ctx.set(dut.first, first)
            ctx.set(dut.set, wset)
            await ctx.tick()
            ctx.set(dut.start, 0)
            writes = []
            for t in range(20):
                ctx.set(dut.w_set_busy, int(t < busy))
                await ctx.delay(1e-9)
                if ctx.get(dut.w_write):
                    writes.append(t)
                last = ctx.get(dut.last)
                await ctx.tick()
                if last:
                    break
            else:
                raise AssertionError("the setup did not end")
            assert ctx.get(dut.p0) == first and ctx.get(dut.w_set) == wset
            assert ctx.get(dut.bad) == (wset >= cfg.wb_sets)
            assert len(writes) == 1 and writes[0] >= busy    # after the load is over
            act = 0
            for e in range(R):
                pair = first + e
                if pair >= c["npairs"]:
                    continue
                act |= 1 << e
                ch, i = divmod(pair, c["kh"])
                assert ctx.get(dut.h0[e]) == i - c["pt"], (first, e)
                assert ctx.get(dut.G[e]) == (ch * c["pitch"] + i - c["pt"] - c["hb0"]) \
                    % (1 << lb.row_bits), (first, e)
            assert ctx.get(dut.act) == act
            assert ctx.get(dut.slots) == bin(act).count("1") * c["slots"]

    sim = Simulator(SetupAndLineBuffer(dut, lb))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class SetupAndLineBuffer(Elaboratable):
    """The setup beside a line buffer (which only sizes its rows here)."""

    def __init__(self, setup, lb):
        self.setup, self.lb = setup, lb

    def elaborate(self, platform):
        m = Module()
        m.submodules.setup, m.submodules.lb = self.setup, self.lb
        return m
