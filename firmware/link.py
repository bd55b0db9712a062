"""The host link: framed, CRC-checked commands over a byte stream (the SoC's UART).

One definition for the SoC's hardware link controller (:mod:`ffacc.boards.soc`), the host
runtime over pyserial and the cocotb SoC test (:mod:`ffacc.boards.host`).

Request (host → board)::

    0xA5 | cmd u8 | addr u32 LE | len u16 LE | payload (len bytes, WRITE_* only) | crc16 LE

Response (board → host)::

    0x5A | status u8 | len u16 LE | payload (len bytes) | crc16 LE

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over
every byte after the sync byte. A request whose CRC does not match is answered with
``Status.BAD_CRC`` and has no effect: a ``WRITE_MEM`` payload is buffered and written only
after its CRC checked. Bytes before a sync byte are skipped; a request that stops arriving
for ``TIMEOUT`` bit times is dropped (the link re-synchronizes on the next sync byte).
"""

import enum
import struct

__all__ = ["Cmd", "Status", "LinkError", "SYNC_REQ", "SYNC_RESP", "MAX_PAYLOAD", "crc16",
           "encode_request", "ResponseParser", "INFO_WORDS", "STATUS_WORDS"]

SYNC_REQ = 0xA5
SYNC_RESP = 0x5A
MAX_PAYLOAD = 256
HEADER = struct.Struct("<BIH")          # cmd, addr, len (after the sync byte)


class Cmd(enum.IntEnum):
    WRITE_MEM = 0x01    # write ``len`` bytes at ``addr``
    READ_MEM = 0x02     # read ``len`` bytes at ``addr``
    WRITE_CSR = 0x03    # write the 4-byte payload to the accelerator CSR ``addr``
    READ_CSR = 0x04     # read the accelerator CSR ``addr`` (4 bytes)
    START = 0x05        # PROG_BASE := addr, then start the accelerator
    STATUS = 0x06       # STATUS, ERROR, ERROR_PC, CYCLES (4 x u32)
    INFO = 0x07         # accelerator ID, INFO, SoC memory bytes, clock Hz (4 x u32)


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1
    BAD_CMD = 2
    BAD_ADDR = 3        # memory range or CSR offset outside the map
    BAD_LEN = 4         # 0 or > MAX_PAYLOAD, or not 4 for CSR writes
    BUSY = 5            # START while the accelerator runs


STATUS_WORDS = ("status", "error", "error_pc", "cycles")
INFO_WORDS = ("id", "info", "mem_bytes", "clock_hz")


class LinkError(RuntimeError):
    """The board answered with an error status, or the link is broken."""


def crc16(data, crc=0xFFFF):
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_request(cmd, addr=0, length=0, payload=b""):
    body = HEADER.pack(int(cmd), addr & 0xFFFFFFFF, length) + bytes(payload)
    return bytes([SYNC_REQ]) + body + struct.pack("<H", crc16(body))


def encode_response(status, payload=b""):
    """What the board sends (used by tests and the reference model)."""
    body = struct.pack("<BH", int(status), len(payload)) + bytes(payload)
    return bytes([SYNC_RESP]) + body + struct.pack("<H", crc16(body))


class ResponseParser:
    """Feed bytes; :meth:`feed` returns ``(status, payload)`` once a whole frame arrived."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        while self.buf and self.buf[0] != SYNC_RESP:
            del self.buf[0]
        if len(self.buf) < 4:
            return None
        status, n = struct.unpack_from("<BH", self.buf, 1)
        if len(self.buf) < 6 + n:
            return None
        frame = bytes(self.buf[:6 + n])
        del self.buf[:6 + n]
        body, crc = frame[1:4 + n], struct.unpack("<H", frame[4 + n:])[0]
        if crc16(body) != crc:
            raise LinkError(f"response CRC mismatch (got 0x{crc:04x}, computed "
                            f"0x{crc16(body):04x}): noisy link or wrong baud rate")
        return status, frame[4:4 + n]

    def need(self):
        """Bytes still missing from the frame being received (at least 1)."""
        if len(self.buf) < 4:
            return 4 - len(self.buf) + 2
        n = struct.unpack_from("<H", self.buf, 2)[0]
        return max(1, 6 + n - len(self.buf))
