"""Control/status registers of the accelerator's AXI4-Lite slave: the one definition.

Each register's name, byte offset, access (``R``, ``W`` or ``RW``) and one-line description
is written once, in :class:`CSR`; the bits of ``STATUS`` in :class:`Status` and the fields of
``INFO`` in :data:`INFO_FIELDS`. The RTL (:mod:`ffacc.hw.accel`) decodes the offsets from
:class:`CSR` (its ``STATUS`` bit order, ``INFO`` packing and readable/writable offsets are
checked against these definitions in the generated Verilog by
``tests/test_integration_docs.py``); the host runtimes use them; the integration document
(``docs/INTEGRATION.md``) and the C header (``ffacc csr --header``) are generated from them:
:func:`csr_table`, :func:`markdown_table` and :func:`c_header` are pure functions of these
definitions (and of a configuration for the header's ``FFACC_CONFIG_*``).

Every register is 32 bits wide; offsets are bytes from the slave's base.
"""

from dataclasses import dataclass
from enum import IntEnum

from .isa import Err

__all__ = ["CSR", "Status", "CTRL_START", "INFO_VERSION", "InfoField", "INFO_FIELDS",
           "info_word", "config_values", "csr_table", "markdown_table", "c_header"]

CTRL_START = 1
INFO_VERSION = 1

_ACCESS = ("R", "W", "RW")


class CSR(IntEnum):
    """The registers: ``CSR.X`` is X's byte offset; ``.access`` and ``.description`` say how
    it is used."""

    def __new__(cls, offset, access, description):
        if access not in _ACCESS:
            raise ValueError(f"CSR access {access!r}: must be one of {', '.join(_ACCESS)}")
        obj = int.__new__(cls, offset)
        obj._value_ = offset
        obj.access = access
        obj.description = description
        return obj

    CTRL = (0x00, "W", "write with bit 0 set (CTRL_START): start a run at PROG_BASE; ignored "
                       "while busy; reads 0")
    STATUS = (0x04, "R", "run state: BUSY, DONE, ERROR bits (see the STATUS bits)")
    ERROR = (0x08, "R", "error code of the last run (ERR_*, 0: none)")
    ERROR_PC = (0x0C, "R", "byte address of the instruction that failed")
    PROG_BASE = (0x10, "RW", "byte address of the first instruction of the next run (a "
                             "multiple of 8)")
    MEM_SIZE = (0x14, "RW", "bytes of memory the accelerator may touch, from address 0 (reset: "
                            "2**addr_bits)")
    ID = (0x18, "R", "configuration fingerprint (an image runs only where it matches)")
    INFO = (0x1C, "R", "lanes, row engines, FFA parallelism L, INFO version (see the INFO "
                       "fields)")
    CYCLES = (0x20, "R", "clock cycles of the last run, from start to done or error")
    BUSY = (0x24, "R", "cycles the FCU array streamed data (0 without perf_counters)")
    STALL = (0x28, "R", "cycles waiting for memory (0 without perf_counters)")
    MULT_SLOTS = (0x2C, "R", "multiplier-cycles doing useful work, low 32 bits (0 without "
                             "perf_counters)")
    INSTRUCTIONS = (0x30, "R", "instructions executed (0 without perf_counters)")
    MULT_SLOTS_HI = (0x34, "R", "multiplier-cycles doing useful work, high 32 bits (0 without "
                                "perf_counters)")


class Status(IntEnum):
    """Bits of ``STATUS`` (``Status.X`` is the bit's mask); all three are cleared by a start."""

    def __new__(cls, mask, description):
        obj = int.__new__(cls, mask)
        obj._value_ = mask
        obj.description = description
        return obj

    BUSY = (1, "a run is in progress")
    DONE = (2, "the last run reached END")
    ERROR = (4, "the last run stopped with an error (ERROR, ERROR_PC)")


@dataclass(frozen=True)
class InfoField:
    """One field of the ``INFO`` word: ``(INFO >> shift) & mask``."""
    name: str
    shift: int
    width: int
    description: str

    @property
    def mask(self):
        return (1 << self.width) - 1


INFO_FIELDS = (
    InfoField("LANES", 0, 8, "output lanes (fast convolution units)"),
    InfoField("ROWS", 8, 8, "row engines per unit"),
    InfoField("L", 16, 8, "FFA parallelism: outputs per clock of a row engine"),
    InfoField("VERSION", 24, 8, f"layout of this word (INFO_VERSION = {INFO_VERSION})"),
)


def info_word(cfg):
    """The value ``INFO`` reads in an accelerator built for ``cfg``
    (an :class:`~ffacc.hw.config.AcceleratorConfig`)."""
    vals = {"LANES": cfg.lanes, "ROWS": cfg.rows, "L": cfg.L, "VERSION": INFO_VERSION}
    word = 0
    for f in INFO_FIELDS:
        if not 0 <= vals[f.name] <= f.mask:
            raise ValueError(f"INFO field {f.name} = {vals[f.name]} does not fit {f.width} bits")
        word |= vals[f.name] << f.shift
    return word


def config_values(cfg):
    """The facts about one configuration a host needs: ``{name: int}`` in a fixed order.

    ``ID`` and ``INFO`` are what those registers read; ``MEM_LIMIT`` (``2**addr_bits``) is the
    largest ``MEM_SIZE``.
    """
    return {
        "ID": cfg.fingerprint(),
        "INFO": info_word(cfg),
        "LANES": cfg.lanes,
        "ROWS": cfg.rows,
        "L": cfg.L,
        "MULTIPLIERS": cfg.multipliers,
        "ADDR_BITS": cfg.addr_bits,
        "MEM_LIMIT": 1 << cfg.addr_bits,
        "BUS_BYTES": cfg.bus_bytes,
        "BURST_BEATS": cfg.burst_beats,
        "TARGET_MHZ": cfg.target_mhz,
        "ADD_UNIT": int(cfg.add_unit),
        "PERF_COUNTERS": int(cfg.perf_counters),
    }


def csr_table():
    """Every register as a dict, in offset order.

    Returns
    -------
    list of dict
        ``name``, ``offset`` (int, bytes), ``access`` (``"R"``, ``"W"`` or ``"RW"``),
        ``description``, and ``fields``: for ``STATUS`` its bits, for ``INFO`` its fields
        (each ``name``, ``shift``, ``width``, ``mask``, ``description``), else empty.
    """
    fields = {
        "STATUS": [{"name": s.name, "shift": s.bit_length() - 1, "width": 1, "mask": int(s),
                    "description": s.description} for s in Status],
        "INFO": [{"name": f.name, "shift": f.shift, "width": f.width, "mask": f.mask,
                  "description": f.description} for f in INFO_FIELDS],
    }
    return [{"name": r.name, "offset": int(r), "access": r.access,
             "description": r.description, "fields": fields.get(r.name, [])}
            for r in sorted(CSR, key=int)]


def _md(text):
    return text.replace("|", "\\|")


def markdown_table():
    """The registers, the ``STATUS`` bits and the ``INFO`` fields as Markdown tables (the text
    between the ``csr-table`` markers of ``docs/INTEGRATION.md``)."""
    table = csr_table()
    lines = ["| offset | register | access | description |", "|---|---|---|---|"]
    lines += [f"| `0x{r['offset']:02X}` | `{r['name']}` | {r['access']} | "
              f"{_md(r['description'])} |" for r in table]
    by_name = {r["name"]: r for r in table}
    lines += ["", "`STATUS` bits:", "", "| bit | mask | name | meaning |", "|---|---|---|---|"]
    lines += [f"| {f['shift']} | `0x{f['mask']:X}` | `{f['name']}` | {_md(f['description'])} |"
              for f in by_name["STATUS"]["fields"]]
    lines += ["", "`INFO` fields (`(INFO >> shift) & mask`):", "",
              "| bits | shift | mask | name | meaning |", "|---|---|---|---|---|"]
    lines += [f"| {f['shift'] + f['width'] - 1}:{f['shift']} | {f['shift']} | "
              f"`0x{f['mask']:X}` | `{f['name']}` | {_md(f['description'])} |"
              for f in by_name["INFO"]["fields"]]
    return "\n".join(lines) + "\n"


def _c_comment(text):
    return text.replace("*/", "* /")


def _define(name, value, comment=None, hex_=0, width=28):
    """``#define name value`` (unsigned; hexadecimal with at least ``hex_`` digits if set)."""
    suffix = "ull" if value > 0xFFFFFFFF else "u"
    lit = (f"0x{value:0{hex_}X}" if hex_ else f"{value}") + suffix
    line = f"#define {name.ljust(width)} {lit}"
    return f"{line.ljust(width + 22)} /* {_c_comment(comment)} */" if comment else line


_HEX_CONFIG = {"ID": 8, "INFO": 8, "MEM_LIMIT": 2}


def c_header(cfg=None):
    """The text of the C header ``ffacc_csr.h``.

    Parameters
    ----------
    cfg : AcceleratorConfig, optional
        When given, the header also defines ``FFACC_CONFIG_*``: ``FFACC_CONFIG_ID`` (what
        ``ID`` reads: ``cfg.fingerprint()``), ``FFACC_CONFIG_INFO``, lanes, rows, ``L``,
        ``ADDR_BITS``, ``MEM_LIMIT`` (``2**addr_bits``) and the other values of
        :func:`config_values`.

    Returns
    -------
    str
        Register offsets ``FFACC_CSR_<NAME>``, ``FFACC_CTRL_START``, status masks
        ``FFACC_STATUS_<BIT>``, ``FFACC_INFO_<FIELD>_SHIFT``/``_MASK`` and
        ``FFACC_INFO_VERSION``, error codes ``FFACC_ERR_<NAME>`` (:class:`~ffacc.firmware.isa.Err`)
        and an accessor ``FFACC_REG(base, offset)``. No date or path: the same definitions
        give the same text.
    """
    out = [
        "/* ffacc_csr.h: control registers of the ffacc accelerator (AXI4-Lite slave).",
        " * Generated by `ffacc csr --header` from ffacc/firmware/csr.py; do not edit.",
        " * Every register is 32 bits; offsets are bytes from the slave's base. */",
        "#ifndef FFACC_CSR_H",
        "#define FFACC_CSR_H",
        "",
        "#include <stdint.h>",
        "",
        "/* Register offsets (access: R read-only, W write-only, RW read/write) */",
    ]
    out += [_define(f"FFACC_CSR_{r.name}", int(r), f"{r.access}: {r.description}", hex_=2)
            for r in sorted(CSR, key=int)]
    out += ["", "/* CTRL */", _define("FFACC_CTRL_START", CTRL_START, "start a run at PROG_BASE")]
    out += ["", "/* STATUS bits (masks) */"]
    out += [_define(f"FFACC_STATUS_{s.name}", int(s), s.description, hex_=2) for s in Status]
    out += ["", "/* INFO fields: (INFO >> FFACC_INFO_<F>_SHIFT) & FFACC_INFO_<F>_MASK */"]
    for f in INFO_FIELDS:
        out += [_define(f"FFACC_INFO_{f.name}_SHIFT", f.shift, f.description),
                _define(f"FFACC_INFO_{f.name}_MASK", f.mask, hex_=2)]
    out += [_define("FFACC_INFO_VERSION", INFO_VERSION, "the VERSION field this header knows")]
    out += ["", "/* ERROR codes */"]
    out += [_define(f"FFACC_ERR_{e.name}", int(e)) for e in Err]
    if cfg is not None:
        out += ["", "/* This configuration (what ID and INFO read; MEM_LIMIT = 2**ADDR_BITS is the "
                "largest MEM_SIZE) */"]
        out += [_define(f"FFACC_CONFIG_{k}", v, hex_=_HEX_CONFIG.get(k, 0))
                for k, v in config_values(cfg).items()]
    out += ["", "/* 32-bit register access: FFACC_REG(base, FFACC_CSR_STATUS) */",
            "#define FFACC_REG(base, offset) \\",
            "    (*(volatile uint32_t *)((uintptr_t)(base) + (uintptr_t)(offset)))",
            "", "#endif /* FFACC_CSR_H */", ""]
    return "\n".join(out)
