"""The ``.ffw`` firmware image: everything the accelerator needs to run one model.

Layout (little-endian)::

    header   32 bytes   magic b"FFW\\x1a", version u16, header size u16, config fingerprint u32,
                        section count u32, total size u32, entry address u32,
                        memory size u32, reserved u32 (0)
    table    16 bytes per section: kind u32, load address u32, file offset u32, size u32
    data     the sections' bytes
    crc      u32: CRC-32 of everything before it

Section kinds: ``CODE``, ``WEIGHTS``, ``QPARAMS`` and ``DATA`` are loaded at their address;
``TENSORS`` (JSON: name, role, address, dtype, shape, scale, zero point of every input and
output) and ``META`` (JSON) describe the image. :meth:`Image.from_bytes` refuses a corrupt,
truncated or foreign image with an :class:`ImageError` that says what is wrong.
"""

import json
import struct
import zlib
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from pathlib import Path

__all__ = ["Image", "Section", "Kind", "ImageError", "MAGIC", "VERSION", "TensorDesc"]

MAGIC = b"FFW\x1a"
VERSION = 2     # 2: POST's POOL pools O_POOLK x O_POOLK windows at stride O_STRIDE (1: 2x2/2)
_HEADER = struct.Struct("<4sHHIIIIII")
_ENTRY = struct.Struct("<IIII")


class ImageError(ValueError):
    """A firmware image that cannot be used (the message says why)."""


class Kind(IntEnum):
    CODE = 1
    WEIGHTS = 2
    QPARAMS = 3
    TENSORS = 4
    DATA = 5
    META = 6


LOADED = (Kind.CODE, Kind.WEIGHTS, Kind.QPARAMS, Kind.DATA)


@dataclass
class Section:
    kind: Kind
    addr: int
    data: bytes


@dataclass
class TensorDesc:
    name: str
    role: str           # "input" or "output"
    addr: int
    dtype: str          # "uint8" or "int8"
    shape: list
    scale: float = 1.0
    zero_point: int = 0
    model_name: str = None  # the ONNX graph's name of this input or output (None: ``name``)
    model_dtype: str = None # the model's 8-bit type where it is stored as the other one
                            # (None: ``dtype``; the values differ by 128, see compiler/retype)
    model_float: bool = False   # the ONNX model takes or gives floats there (through its
                                # QuantizeLinear / DequantizeLinear), not the integers

    @property
    def onnx_name(self):
        """The ONNX graph's name of this input or output."""
        return self.model_name or self.name

    @property
    def model_type(self):
        """The model's 8-bit type of this tensor (``dtype`` unless it was retyped)."""
        return self.model_dtype or self.dtype

    @property
    def nbytes(self):
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16",
           "float32", "float64"}


def _jtype(v):
    return {dict: "a JSON object", list: "a JSON list", str: "a string", int: "an integer",
            float: "a number", bool: "a boolean", type(None): "null"}.get(type(v), repr(v))


def _json(data, section):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:      # JSONDecodeError, UnicodeDecodeError
        raise ImageError(f"{section} section is not valid JSON ({e})") from None


def _tensor_descs(data):
    """The TENSORS section's descriptions, each checked against :class:`TensorDesc`'s fields."""
    ts = _json(data, "TENSORS")
    if not isinstance(ts, list):
        raise ImageError(f"TENSORS section is {_jtype(ts)}, expected a list of tensors")
    known = {f.name: f for f in fields(TensorDesc)}
    out = []
    for n, t in enumerate(ts):
        what = f"TENSORS section, tensor {n}"
        if not isinstance(t, dict):
            raise ImageError(f"{what} is {_jtype(t)}, expected a JSON object")
        if isinstance(t.get("name"), str):
            what += f" ({t['name']!r:.60})"
        unknown = sorted(set(t) - set(known))
        missing = [k for k, f in known.items() if k not in t and f.default is MISSING]
        if unknown:
            raise ImageError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}")
        if missing:
            raise ImageError(f"{what}: missing key(s) {', '.join(map(repr, missing))}")
        for k, v in t.items():
            want = (int, float) if known[k].type is float else known[k].type
            if not (v is None and known[k].default is None or isinstance(v, want) and
                    (known[k].type is bool or not isinstance(v, bool))):
                raise ImageError(f"{what}: {k} is {_jtype(v)}, expected "
                                 f"{getattr(known[k].type, '__name__', known[k].type)}")
        if t["role"] not in ("input", "output"):
            raise ImageError(f"{what}: role {t['role']!r:.40}, expected 'input' or 'output'")
        for k in ("dtype", "model_dtype"):
            if t.get(k) is not None and t[k] not in _DTYPES:
                raise ImageError(f"{what}: {k} {t[k]!r:.40} is not a numeric type")
        if t["addr"] < 0 or not all(type(d) is int and d >= 0 for d in t["shape"]):
            raise ImageError(f"{what}: negative address or shape {t['shape']!r:.40}")
        out.append(TensorDesc(**t))
    return out


@dataclass
class Image:
    fingerprint: int
    entry: int
    mem_size: int
    sections: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def loaded(self):
        """``(address, bytes)`` of every section to copy into memory."""
        return [(s.addr, s.data) for s in self.sections if s.kind in LOADED]

    def tensor(self, role, index=0):
        ts = [t for t in self.tensors if t.role == role]
        if index >= len(ts):
            raise ImageError(f"image has {len(ts)} {role} tensor(s), asked for #{index}")
        return ts[index]

    def to_bytes(self):
        secs = list(self.sections)
        if self.tensors:
            secs.append(Section(Kind.TENSORS, 0, json.dumps(
                [t.__dict__ for t in self.tensors]).encode()))
        if self.meta:
            secs.append(Section(Kind.META, 0, json.dumps(self.meta).encode()))
        for s in secs:
            if s.kind in LOADED and s.addr + len(s.data) > self.mem_size:
                raise ImageError(f"{Kind(s.kind).name} section at 0x{s.addr:x} "
                                 f"({len(s.data)} bytes) exceeds memory size {self.mem_size}")
        offset = _HEADER.size + _ENTRY.size * len(secs)
        table, blobs, pos = [], [], offset
        for s in secs:
            table.append(_ENTRY.pack(int(s.kind), s.addr, pos, len(s.data)))
            blobs.append(bytes(s.data))
            pos += len(s.data)
        total = pos + 4
        head = _HEADER.pack(MAGIC, VERSION, _HEADER.size, self.fingerprint & 0xFFFFFFFF,
                            len(secs), total, self.entry, self.mem_size, 0)
        body = b"".join([head] + table + blobs)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, raw, expect_fingerprint=None):
        raw = bytes(raw)
        if len(raw) < _HEADER.size + 4:
            raise ImageError(f"not a firmware image: {len(raw)} bytes is shorter than a header")
        magic, ver, hsize, fp, nsec, total, entry, mem_size, _ = _HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise ImageError(f"not a firmware image: magic {magic!r}, expected {MAGIC!r}")
        if ver != VERSION:
            raise ImageError(f"image format version {ver} is not supported (this is {VERSION})")
        if total != len(raw):
            raise ImageError(f"image truncated or padded: header says {total} bytes, "
                             f"file has {len(raw)}")
        (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
        if zlib.crc32(raw[:-4]) != crc:
            raise ImageError("image corrupt: CRC mismatch")
        if expect_fingerprint is not None and fp != expect_fingerprint & 0xFFFFFFFF:
            raise ImageError(f"image was built for hardware configuration 0x{fp:08x}, this "
                             f"configuration is 0x{expect_fingerprint & 0xFFFFFFFF:08x}")
        img = cls(fp, entry, mem_size)
        for n in range(nsec):
            kind, addr, off, size = _ENTRY.unpack_from(raw, hsize + n * _ENTRY.size)
            if off + size > len(raw) - 4:
                raise ImageError(f"section {n} extends beyond the image")
            try:
                kind = Kind(kind)
            except ValueError:
                raise ImageError(f"section {n} has unknown kind {kind}") from None
            data = raw[off:off + size]
            if kind == Kind.TENSORS:
                img.tensors = _tensor_descs(data)
            elif kind == Kind.META:
                img.meta = _json(data, "META")
                if not isinstance(img.meta, dict):
                    raise ImageError(f"META section is {_jtype(img.meta)}, expected a JSON object")
            else:
                img.sections.append(Section(kind, addr, data))
        return img

    def save(self, path):
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path, expect_fingerprint=None):
        path = Path(path)
        if not path.is_file():
            raise ImageError(f"{path}: no such firmware image")
        return cls.from_bytes(path.read_bytes(), expect_fingerprint)
