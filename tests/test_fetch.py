"""The instruction fetch unit in amaranth.sim against a model DMA: order, pcs, blocks, errors."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.firmware.isa import Err
from ffacc.hw.fetch import ByteFetch, InstructionFetch, block_length


def run_fetch(words, *, block, nb, base=0, mem_size=None, take=None, fault_beat=None,
              ready=0.6, seed=0, restart=None, reuse=False, take2=None, peeks=None):
    """Pop instructions from the unit until an error or ``take`` of them.

    The model DMA answers a request like :class:`ffacc.hw.axi.AxiByteReader` in beat mode:
    ``Err.ADDRESS`` at once for a request past ``mem_size``, else one beat per clock (with a
    random gap) then ``done``; ``fault_beat`` = (request number, beat) answers that beat with
    ``Err.BUS`` and ends the request. ``restart``: a second ``start`` there after ``take``
    instructions (with ``reuse``: a loop's jump back), then ``take2`` more. Returns (popped
    (pc, instr, err) tuples, requests).
    """
    mem = b"".join(int(w).to_bytes(8, "little") for w in words)
    mem_size = len(mem) if mem_size is None else mem_size
    dut = InstructionFetch(block=block, bus_bytes=nb, addr_bits=20)
    rng = np.random.default_rng(seed)
    got, reqs = [], []

    async def bench(ctx):
        ctx.set(dut.mem_size, mem_size)
        job = None
        for i, start in enumerate([base] + ([restart] if restart is not None else [])):
            limit = take if i == 0 else take2
            ctx.set(dut.base, start)
            ctx.set(dut.start, 1)
            ctx.set(dut.reuse, int(reuse and i > 0))
            ctx.set(dut.o.ready, 0)
            ctx.set(dut.want, 0)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.reuse, 0)
            n_popped = 0
            for _ in range(4000):
                if limit is not None and n_popped >= limit:
                    break
                want = rng.random() < ready
                ctx.set(dut.o.ready, int(want))
                ctx.set(dut.want, int(want))
                ctx.set(dut.beat_valid, 0)
                ctx.set(dut.done, 0)
                if job is not None:                          # the DMA's side
                    addr, left, k, err = job
                    if err is not None:
                        ctx.set(dut.done, 1)
                        ctx.set(dut.rd_err, err)
                        job = None
                    elif rng.random() < 0.8:
                        if fault_beat == (len(reqs) - 1, k):
                            job = (addr, 0, k, Err.BUS)
                        else:
                            ctx.set(dut.beat_valid, 1)
                            ctx.set(dut.beat_data, int.from_bytes(mem[addr:addr + nb], "little"))
                            job = (addr + nb, left - nb, k + 1, 0 if left == nb else None)
                await ctx.delay(1e-9)
                if ctx.get(dut.req_valid):
                    assert job is None and ctx.get(dut.req_words)
                    a, n = ctx.get(dut.req_addr), ctx.get(dut.req_len)
                    reqs.append((a, n))
                    job = (a, n, 0, Err.ADDRESS if a + n > mem_size else None)
                # nothing is handed out while a read is under way: the DMA stays the unit's
                assert not (ctx.get(dut.o.valid) and job is not None)
                if ctx.get(dut.o.valid) and want:
                    p = ctx.get(dut.o.payload)
                    got.append((p.pc, p.instr, p.err))
                    if peeks is not None:
                        q = ctx.get(dut.peek)
                        peeks.append((q.pc, q.instr) if q.valid else None)
                    n_popped += 1
                    if p.err:
                        await ctx.tick()
                        break
                await ctx.tick()
            else:
                raise AssertionError("no instruction or error in 4000 clocks")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, reqs


WORDS = [(0x1122334455667700 + i) | i << 40 for i in range(30)]


@pytest.mark.parametrize("nb", [4, 8])
@pytest.mark.parametrize("block", [1, 3, 8])
def test_instructions_come_in_order_with_their_pcs(nb, block):
    got, reqs = run_fetch(WORDS, block=block, nb=nb, base=16, take=20)
    assert [g[0] for g in got] == [16 + 8 * i for i in range(20)]
    assert [g[1] for g in got] == WORDS[2:22] and not any(g[2] for g in got)
    # whole blocks, each from where the last one ended
    assert all(n == 8 * block for _, n in reqs)
    assert [a for a, _ in reqs] == [16 + 8 * block * i for i in range(len(reqs))]


@pytest.mark.parametrize("nb", [4, 8])
def test_peek_shows_the_next_instruction_while_the_queue_holds_it(nb):
    """``peek`` is the instruction after the head, valid for every instruction of a block
    but its last (the next block is not read yet); after a loop's jump into the queue it
    goes on from the target; after a bus error only the good instructions are shown."""
    peeks = []
    got, reqs = run_fetch(WORDS, block=4, nb=nb, base=16, take=12, peeks=peeks)
    assert len(peeks) == 12 and reqs[:3] == [(16, 32), (48, 32), (80, 32)]
    for k, (pc, _, _) in enumerate(got):
        if k % 4 == 3:
            assert peeks[k] is None
        else:
            assert peeks[k] == (pc + 8, WORDS[pc // 8 + 1])
    peeks = []
    got, _ = run_fetch(WORDS, block=8, nb=nb, take=5, restart=16, reuse=True, take2=4,
                       peeks=peeks)
    assert [p and p[0] for p in peeks] == [8, 16, 24, 32, 40, 24, 32, 40, 48]
    assert all(p[1] == WORDS[p[0] // 8] for p in peeks)
    peeks = []
    got, _ = run_fetch(WORDS, block=4, nb=4, fault_beat=(1, 4), peeks=peeks)
    # block 1 delivers instructions 4 and 5, then the error at 6: 5 has no next to show
    assert [p and p[0] for p in peeks] == [8, 16, 24, None, 40, None, None]


def test_a_block_stops_at_the_memory_size_and_the_next_fetch_fails_there():
    got, reqs = run_fetch(WORDS[:10], block=4, nb=4)
    assert reqs == [(0, 32), (32, 32), (64, 16), (80, 8)]     # 80 = mem_size: one instruction
    assert [g[1] for g in got[:10]] == WORDS[:10]
    assert got[10] == (80, got[10][1], Err.ADDRESS) and len(got) == 11
    assert block_length(4, 64, 80) == 2 and block_length(4, 80, 80) == 1


def test_a_bus_error_mid_block_delivers_the_instructions_before_it():
    # request 1 covers instructions 4..7; its 5th beat is instruction 6's first half
    got, _ = run_fetch(WORDS, block=4, nb=4, fault_beat=(1, 4))
    assert [g[1] for g in got[:6]] == WORDS[:6] and not any(g[2] for g in got[:6])
    assert got[6][0] == 6 * 8 and got[6][2] == Err.BUS and len(got) == 7


def test_a_misaligned_base_is_an_address_error_at_the_base():
    got, reqs = run_fetch(WORDS, block=4, nb=4, base=12)
    assert got == [(12, got[0][1], Err.ADDRESS)] and reqs == []


def test_start_drops_the_queue():
    got, reqs = run_fetch(WORDS, block=8, nb=4, take=3, restart=80, take2=3)
    assert [g[0] for g in got] == [0, 8, 16, 80, 88, 96]
    assert [g[1] for g in got] == WORDS[:3] + WORDS[10:13]
    # a run's start (no reuse) reads its code afresh even where the queue holds it
    got, reqs = run_fetch(WORDS, block=8, nb=4, take=5, restart=16, take2=3)
    assert [g[0] for g in got] == [0, 8, 16, 24, 32, 16, 24, 32] and reqs == [(0, 64), (16, 64)]


@pytest.mark.parametrize("nb", [4, 8])
@pytest.mark.parametrize("target,hit", [
    (16, True),             # in the block: from the queue, then on after it
    (0, True),              # the block's first instruction
    (56, True),             # its last
    (64, False),            # just after it: read
    (80, False),
])
def test_a_loop_jump_into_the_queued_block_reads_nothing(nb, target, hit):
    """A ``start`` with ``reuse`` (a loop's jump back) whose base the queue holds hands the
    queue out from there: the same instructions and pcs as a fresh read, and no request until
    the block is used up."""
    got, reqs = run_fetch(WORDS, block=8, nb=nb, take=5, restart=target, reuse=True, take2=12)
    pcs = [0, 8, 16, 24, 32] + [target + 8 * i for i in range(12)]
    assert [g[0] for g in got] == pcs and not any(g[2] for g in got)
    assert [g[1] for g in got] == [WORDS[p // 8] for p in pcs]
    first = 64 if hit else target           # the next block read after the jump
    want = [(0, 64)] + [(a, 64) for a in range(first, pcs[-1] + 8, 64)]
    assert reqs == want


def test_a_loop_jump_after_a_failed_block_reads_again():
    """The queue after a read error is no loop buffer: the jump reads its target afresh."""
    got, reqs = run_fetch(WORDS, block=4, nb=4, fault_beat=(0, 6), restart=8, reuse=True,
                          take2=2)
    assert got[3][2] == Err.BUS and [g[0] for g in got[4:]] == [8, 16]
    assert reqs[-1][0] == 8


def run_bytes(words, *, base=0, take=None, fault=None, ready=0.7, seed=1):
    """Pop instructions from a :class:`ByteFetch` over a model byte reader (a byte a clock
    with random gaps, then ``done`` the clock after the last; ``fault``: the request number
    that ends with ``Err.BUS``). Returns (popped (pc, instr, err), requests, clocks from each
    read's end (``done``) to its instruction's valid)."""
    mem = b"".join(int(w).to_bytes(8, "little") for w in words)
    dut = ByteFetch(addr_bits=20)
    rng = np.random.default_rng(seed)
    got, reqs, lat = [], [], []

    async def bench(ctx):
        ctx.set(dut.base, base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        job, asked, done_at, seen = None, None, None, None
        for n in range(3000):
            if take is not None and len(got) >= take:
                return
            want = rng.random() < ready
            ctx.set(dut.o.ready, 0)
            ctx.set(dut.out_valid, 0)
            ctx.set(dut.done, 0)
            if job is not None:
                if not job["bytes"]:
                    ctx.set(dut.done, 1)
                    ctx.set(dut.rd_err, job["err"])
                    job, done_at = None, n
                elif rng.random() < 0.7:
                    ctx.set(dut.out_valid, 1)
                    ctx.set(dut.out_data, job["bytes"].pop(0))
            await ctx.delay(1e-9)
            valid = ctx.get(dut.o.valid)
            if valid and seen != asked and done_at is not None:
                lat.append(n - done_at)         # from the read's end to its instruction
                seen = asked
            # the controller asks for an instruction while none is there (FETCH)
            ctx.set(dut.o.ready, int(want or valid))
            ctx.set(dut.want, int(want or valid))
            await ctx.delay(1e-9)
            if ctx.get(dut.req_valid):
                assert job is None and not ctx.get(dut.req_words)
                a, ln = ctx.get(dut.req_addr), ctx.get(dut.req_len)
                reqs.append((a, ln))
                err = Err.BUS if fault == len(reqs) - 1 else 0
                job = {"bytes": [] if err else list(mem[a:a + ln]), "err": err}
                asked = n
            assert not ctx.get(dut.peek.valid)
            if valid and ctx.get(dut.o.ready):
                p = ctx.get(dut.o.payload)
                got.append((p.pc, p.instr, p.err))
                if p.err:
                    return
            await ctx.tick()
        raise AssertionError("no instruction or error in 3000 clocks")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, reqs, lat


def test_the_byte_reader_hands_out_instructions_in_order():
    """ByteFetch: each instruction read (8 bytes at its pc) when it is asked for, handed out
    in order with its pc from the clock its read ends, never before."""
    got, reqs, lat = run_bytes(WORDS, base=24, take=10)
    assert [g[0] for g in got] == [24 + 8 * i for i in range(10)]
    assert [g[1] for g in got] == WORDS[3:13] and not any(g[2] for g in got)
    assert reqs == [(24 + 8 * i, 8) for i in range(10)]
    assert lat == [0] * 10          # valid in the clock its read ends


def test_the_byte_reader_reports_its_errors_at_the_instructions_pc():
    got, reqs, _ = run_bytes(WORDS, base=8, fault=2)
    assert [g[0] for g in got] == [8, 16, 24] and got[2][2] == Err.BUS
    assert [g[1] for g in got[:2]] == WORDS[1:3]
    got, reqs, _ = run_bytes(WORDS, base=12)
    assert got == [(12, got[0][1], Err.ADDRESS)] and reqs == []
