"""Control/status registers of the accelerator's AXI4-Lite slave (byte offsets)."""

from enum import IntEnum

__all__ = ["CSR", "Status", "CTRL_START", "INFO_VERSION"]

CTRL_START = 1
INFO_VERSION = 1


class CSR(IntEnum):
    CTRL = 0x00           # write 1: start at PROG_BASE (ignored while busy)
    STATUS = 0x04         # Status bits
    ERROR = 0x08          # firmware.isa.Err code of the last run
    ERROR_PC = 0x0C       # address of the instruction that failed
    PROG_BASE = 0x10      # first instruction
    MEM_SIZE = 0x14       # bytes of memory the accelerator may touch
    ID = 0x18             # configuration fingerprint
    INFO = 0x1C           # lanes[7:0] | rows[15:8] | L[23:16] | version[31:24]
    CYCLES = 0x20         # cycles from start to stop
    # the next four read 0 in configurations without perf_counters
    BUSY = 0x24           # cycles the FCU array streamed data
    STALL = 0x28          # cycles waiting for memory
    MULT_SLOTS = 0x2C     # multiplier-cycles doing useful work (low 32 bits)
    INSTRUCTIONS = 0x30   # instructions executed
    MULT_SLOTS_HI = 0x34


class Status(IntEnum):
    BUSY = 1
    DONE = 2
    ERROR = 4
