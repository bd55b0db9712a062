"""Host runtime for the SoC: run a firmware image over the UART link.

The protocol logic is written once, as generators that yield requests
(``(cmd, addr, length, payload)``) and receive the response payload; two drivers run them:
:func:`run_serial` on a real board (pyserial) and :func:`run_async` inside the cocotb SoC test
(cocotbext-uart). Both see the same bytes.
"""

import time

import numpy as np

from ffacc.firmware.csr import CSR, Status as AccStatus
from ffacc.firmware.link import (INFO_WORDS, MAX_PAYLOAD, STATUS_WORDS, Cmd, LinkError,
                                 ResponseParser, Status, encode_request)

__all__ = ["run_firmware", "run_serial", "run_async", "SerialLink", "board_info", "LinkError"]


# ------------------------------------------------------------------------ primitives
def request(cmd, addr=0, length=0, payload=b""):
    """One exchange; returns the response payload (raises :class:`LinkError` on a bad status)."""
    status, data = yield (cmd, addr, length, bytes(payload))
    if status != Status.OK:
        name = Status(status).name if status in Status._value2member_map_ else status
        raise LinkError(f"board refused {Cmd(cmd).name} addr=0x{addr:x} len={length}: {name}")
    return data


def write_mem(addr, data, done=None):
    """Write ``data`` at ``addr`` a frame at a time; ``done(n)`` after each frame of ``n``."""
    data = bytes(data)
    for off in range(0, len(data), MAX_PAYLOAD):
        chunk = data[off:off + MAX_PAYLOAD]
        yield from request(Cmd.WRITE_MEM, addr + off, len(chunk), chunk)
        if done:
            done(len(chunk))


def read_mem(addr, n):
    out = bytearray()
    for off in range(0, n, MAX_PAYLOAD):
        k = min(MAX_PAYLOAD, n - off)
        out += yield from request(Cmd.READ_MEM, addr + off, k)
    return bytes(out)


def _words(data, names):
    return dict(zip(names, np.frombuffer(data, dtype="<u4").tolist()))


def board_info():
    return _words((yield from request(Cmd.INFO)), INFO_WORDS)


class _Shadow:
    """A memory the host segments read and write: prefetched ranges, recorded writes."""

    def __init__(self):
        self.ranges, self.writes = {}, []

    def read(self, addr, n):
        return self.ranges[(addr, n)]

    def write(self, addr, data):
        self.writes.append((addr, bytes(data)))


class _Written:
    """What the host wrote to the board's memory since the accelerator last ran: a host
    operator reads it from here, not back over the link (the input a host operator splits into
    stride phases, say). Overlapping writes replace what they cover."""

    def __init__(self):
        self.ranges = {}

    def add(self, addr, data):
        end = addr + len(data)
        self.ranges = {a: d for a, d in self.ranges.items() if a + len(d) <= addr or a >= end}
        self.ranges[addr] = bytes(data)

    def get(self, addr, n):
        for a, d in self.ranges.items():
            if a <= addr and addr + n <= a + len(d):
                return d[addr - a:addr - a + n]
        return None

    def clear(self):
        self.ranges = {}


def run_firmware(image, inputs, progress=None, poll=None):
    """Generator: load ``image`` and ``inputs`` (quantized), run every segment, return
    ``(outputs, stats)``. ``poll()`` is called between status polls (a real board sleeps).
    ``stats["link_bytes"]``: the run's payload bytes over the link after the image's load
    (``written``: the inputs the accelerator reads (``META``'s ``host_only_inputs`` are
    kept on the host) and host operators' outputs; ``read``: the host operators' inputs and
    the outputs that the host did not write itself since the accelerator last ran)."""
    from ffacc.sim.runner import EngineError, _qt, host_exec, read_outputs, write_inputs

    info = yield from board_info()
    if info["id"] != image.fingerprint:
        raise LinkError(f"the board's accelerator has configuration ID 0x{info['id']:08x}, the "
                        f"image was built for 0x{image.fingerprint:08x}: rebuild one of them "
                        f"for the same --config")
    if image.mem_size > info["mem_bytes"]:
        raise LinkError(f"the image needs {image.mem_size} bytes of memory, the board has "
                        f"{info['mem_bytes']}")
    loaded = list(image.loaded())
    total = sum(len(d) for _, d in loaded)
    sent = 0

    def done(n):
        nonlocal sent
        sent += n
        if progress:
            progress(sent, total)
    for addr, data in loaded:
        yield from write_mem(addr, data, done)
    yield from request(Cmd.WRITE_CSR, CSR.MEM_SIZE, 4,
                       int(image.mem_size).to_bytes(4, "little"))
    rec = _Shadow()
    write_inputs(image, rec, inputs)
    written, kept = _Written(), _Written()
    link = {"written": 0, "read": 0}
    # an input only host operators read stays here: the accelerator never reads its buffer,
    # and never writes it either (the compiler gives no input's buffer to another tensor)
    host_only = {t.addr for t in image.tensors if t.role == "input"
                 and t.name in image.meta.get("host_only_inputs", ())}
    for addr, data in rec.writes:
        if addr in host_only:
            kept.add(addr, data)
            continue
        yield from write_mem(addr, data)
        written.add(addr, data)
        link["written"] += len(data)
    stats = {"cycles": 0, "segments": [], "link_bytes": link}
    for seg in image.meta.get("segments") or [{"kind": "accel", "entry": image.entry}]:
        if seg["kind"] == "host":
            sh = _Shadow()
            for d in seg["inputs"]:
                n = _qt(d).nbytes
                got = written.get(d["addr"], n)
                if got is None:
                    got = kept.get(d["addr"], n)
                if got is None:
                    got = yield from read_mem(d["addr"], n)
                    link["read"] += n
                sh.ranges[(d["addr"], n)] = got
            host_exec(seg, sh)
            for addr, data in sh.writes:
                yield from write_mem(addr, data)
                written.add(addr, data)
                link["written"] += len(data)
            stats["segments"].append({"kind": "host", "op": seg["op"]})
            continue
        written.clear()                 # the accelerator may write anywhere
        yield from request(Cmd.START, seg["entry"])
        while True:
            st = _words((yield from request(Cmd.STATUS)), STATUS_WORDS)
            if not st["status"] & AccStatus.BUSY:
                break
            if poll:
                poll()
        if st["status"] & AccStatus.ERROR:
            raise EngineError(f"accelerator error {st['error']} at pc 0x{st['error_pc']:x}")
        stats["cycles"] += st["cycles"]
        stats["segments"].append({"kind": "accel", "cycles": st["cycles"]})
    outs = {}
    for t in image.tensors:
        if t.role == "output":
            n = int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize
            got = written.get(t.addr, n)           # (a host operator's, at the end)
            if got is None:
                got = yield from read_mem(t.addr, n)
                link["read"] += n
            outs[t.name] = (t.addr, got)
    mem = _Shadow()
    mem.ranges = {(a, len(d)): d for a, d in outs.values()}
    return read_outputs(image, mem), stats


# ------------------------------------------------------------------------ drivers
class SerialLink:
    """A board on a serial port (pyserial)."""

    def __init__(self, port, baud=115_200, timeout=2.0):
        import serial
        try:
            self.ser = serial.Serial(port, baud, timeout=timeout)
        except serial.SerialException as e:
            raise LinkError(f"cannot open {port}: {e}") from None
        self.port, self.timeout = port, timeout
        self.ser.reset_input_buffer()

    def exchange(self, frame):
        self.ser.write(frame)
        parser = ResponseParser()
        deadline = time.monotonic() + self.timeout
        while True:
            got = parser.feed(self.ser.read(parser.need()))
            if got is not None:
                return got
            if time.monotonic() > deadline:
                raise LinkError(f"no response from the board on {self.port} (bitstream loaded? "
                                f"baud rate {self.ser.baudrate}?)")

    def close(self):
        self.ser.close()


def run_serial(gen, link):
    """Drive a protocol generator over ``link`` (anything with ``exchange(frame)``)."""
    try:
        req = next(gen)
        while True:
            req = gen.send(link.exchange(encode_request(*req)))
    except StopIteration as stop:
        return stop.value


async def run_async(gen, exchange):
    """Drive a protocol generator with ``await exchange(frame)`` (the cocotb bench)."""
    try:
        req = next(gen)
        while True:
            req = gen.send(await exchange(encode_request(*req)))
    except StopIteration as stop:
        return stop.value
