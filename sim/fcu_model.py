"""Schedules and a bit-exact functional model of the fast convolution unit.

:func:`plan_conv2d` maps a stride-1 2-D correlation of one output channel onto the unit: the
kernel is cut into *tasks* (input channel, kernel row, column piece of ``N`` taps; or 1-tap MAC
tasks for kernels one column wide), ``rows`` tasks per pass. A pass is a list of weight words
and a stream of input beats; :meth:`ConvPlan.accumulate` adds each pass's output beats into the
result. :func:`unit_model` is what the RTL must produce for a pass, computed from the FFA
algebra (block form), so the same plan runs on this model, on amaranth.sim and on cocotb.
"""

from dataclasses import dataclass
from math import ceil

import numpy as np

__all__ = ["Task", "Pass", "ConvPlan", "plan_conv2d", "unit_model", "conv2d_on_unit",
           "tasks_per_output_channel",
           "pack_beats", "unpack_outputs"]


@dataclass(frozen=True)
class Task:
    """One engine's work in a pass: input channel ``c``, kernel row ``i``, columns ``j0..j0+width``."""
    c: int
    i: int
    j0: int
    width: int


@dataclass
class Pass:
    tasks: list
    mac: bool
    weights: np.ndarray         # (weight_words,) pre-added weight words
    beats: np.ndarray           # (nbeats, rows, L) input activations


class ConvPlan:
    """All passes of one output channel's correlation and how their outputs combine."""

    def __init__(self, cfg, xp, w, passes, out_shape, offset, blocks):
        self.cfg, self.xp, self.w = cfg, xp, w
        self.passes = passes
        self.out_shape = out_shape           # (Hout, Wout)
        self.offset = offset                 # filter output index of correlation column 0
        self.blocks = blocks                 # beats per output row

    def accumulate(self, acc, out_beats):
        """Add one pass's output beats ``(nbeats, L)`` into ``acc`` ``(Hout, Wout)``."""
        Hout, Wout = self.out_shape
        rows = np.asarray(out_beats, dtype=np.int64).reshape(Hout, self.blocks * self.cfg.L)
        acc += rows[:, self.offset:self.offset + Wout]
        return acc

    @property
    def beats(self):
        return sum(len(p.beats) for p in self.passes)


def plan_conv2d(cfg, xp, w):
    """Plan the correlation ``sum_{c,i,j} w[c,i,j] xp[c, y+i, x+j]`` (already padded input).

    Parameters
    ----------
    cfg : FCUConfig
    xp : ndarray (C, Hp, Wp)
        Padded input activations (raw values: zero points are the caller's bias fold).
    w : ndarray (C, kh, kw)
        One output channel's weights.
    """
    xp = np.asarray(xp, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    C, Hp, Wp = xp.shape
    Cw, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"weights have {Cw} input channels, input has {C}")
    Hout, Wout = Hp - kh + 1, Wp - kw + 1
    if Hout <= 0 or Wout <= 0:
        raise ValueError(f"kernel {kh}x{kw} larger than the padded input {Hp}x{Wp}")
    s = cfg.ffa
    L, M, T, R, N = s.L, s.M, cfg.subtaps, cfg.rows, cfg.piece_taps
    mac = kw == 1
    if mac:
        tasks = [Task(c, i, 0, 1) for c in range(C) for i in range(kh)]
        offset = 0
    else:
        tasks = [Task(c, i, j0, min(N, kw - j0))
                 for c in range(C) for i in range(kh) for j0 in range(0, kw, N)]
        offset = N - 1
    blocks = ceil((offset + Wout) / L)
    span = blocks * L
    # input row padded with zeros on the right so every task can read `span` samples
    xz = np.zeros((C, Hp, max(Wp, kw + span)), dtype=np.int64)
    xz[:, :, :Wp] = xp
    passes = []
    for first in range(0, len(tasks), R):
        group = tasks[first:first + R]
        words = np.zeros((R, M, T), dtype=np.int64)
        beats = np.zeros((Hout, blocks, R, L), dtype=np.int64)
        for r, t in enumerate(group):
            piece = w[t.c, t.i, t.j0:t.j0 + t.width]
            if mac:
                words[r, :L, 0] = piece[0]
            else:
                wpad = np.zeros(N, dtype=np.int64)
                wpad[:t.width] = piece
                words[r] = s.preadd_weights(wpad[::-1], N)
            rows = xz[t.c, t.i:t.i + Hout, t.j0:t.j0 + span]          # (Hout, span)
            beats[:, :, r, :] = rows.reshape(Hout, blocks, L)
        passes.append(Pass(group, mac, words.reshape(-1), beats.reshape(Hout * blocks, R, L)))
    return ConvPlan(cfg, xp, w, passes, (Hout, Wout), offset, blocks)


def unit_model(cfg, weights, beats, mac):
    """Output beats ``(nbeats, L)`` of the unit for one pass (state cleared by the weight load)."""
    s = cfg.ffa
    L, M, T, R = s.L, s.M, cfg.subtaps, cfg.rows
    G = np.asarray(weights, dtype=np.int64).reshape(R, M, T)
    beats = np.asarray(beats, dtype=np.int64)
    out = np.zeros((len(beats), L), dtype=np.int64)
    for r in range(R):
        if mac:
            out += beats[:, r, :] * G[r, :L, 0]
        else:
            out += s.filter_blocks(G[r], beats[:, r, :])
    return out


def conv2d_on_unit(cfg, xp, w, run=None):
    """Correlation of ``xp`` with ``w`` through the unit's schedule; ``run(pass) -> beats``.

    ``run`` defaults to :func:`unit_model`. Returns ``(result, plan)``.
    """
    plan = plan_conv2d(cfg, xp, w)
    acc = np.zeros(plan.out_shape, dtype=np.int64)
    for p in plan.passes:
        out = run(p) if run is not None else unit_model(cfg, p.weights, p.beats, p.mac)
        plan.accumulate(acc, out)
    return acc, plan


def _twos(v, bits):
    return int(v) & ((1 << bits) - 1)


def pack_beats(cfg, beats):
    """Pack input beats ``(nbeats, rows, L)`` into the flat integers of ``i__payload``."""
    ab = cfg.act_bits
    flat = np.asarray(beats, dtype=np.int64).reshape(len(beats), -1)
    words = []
    for row in flat:
        word = 0
        for k, v in enumerate(row):
            word |= _twos(v, ab) << (k * ab)
        words.append(word)
    return words


def unpack_outputs(cfg, word):
    """Unpack one ``o__payload`` integer into ``L`` signed outputs."""
    ob = cfg.out_shape.width
    out = []
    for j in range(cfg.L):
        v = (int(word) >> (j * ob)) & ((1 << ob) - 1)
        out.append(v - (1 << ob) if v >> (ob - 1) else v)
    return out


def tasks_per_output_channel(cfg, kh, kw):
    """Engine tasks one input channel of a ``kh``×``kw`` kernel needs (see :func:`plan_conv2d`)."""
    return kh if kw == 1 else kh * ceil(kw / cfg.piece_taps)
