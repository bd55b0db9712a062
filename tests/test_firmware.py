"""The hardware/software contract: instruction encoding and the .ffw image format."""

import pytest

from ffacc.firmware.image import Image, ImageError, Kind, Section, TensorDesc
from ffacc.firmware.isa import (INSTR_BYTES, INSTR_LAYOUT, ConvFlag, ISAError, Op, Program, Reg,
                                decode, decode_program, disassemble, encode, pack_qparam,
                                unpack_qparam)
from ffacc.hw.config import ACCEL_PRESETS


def test_layout_is_the_encoding():
    assert INSTR_LAYOUT.size == 64 and INSTR_BYTES == 8
    offsets = {name: f.offset for name, f in INSTR_LAYOUT}
    assert offsets == {"opcode": 0, "flags": 8, "reg": 16, "reserved": 24, "imm": 32}
    w = encode(Op.SET, Reg.C_KH, 0xDEADBEEF)
    assert w == Op.SET | Reg.C_KH << 16 | 0xDEADBEEF << 32


def test_roundtrip_and_disassembly():
    p = Program().set(C_KH=3, C_KW=5).op(Op.CONV, flags=ConvFlag.ACCUMULATE).end()
    code = bytes(p)
    assert len(code) == 4 * INSTR_BYTES
    ins = decode_program(code)
    assert [i.op for i in ins] == [Op.SET, Op.SET, Op.CONV, Op.END]
    assert ins[1].reg == Reg.C_KW and ins[1].imm == 5
    text = disassemble(code, base=0x100)
    assert "00000100: SET C_KH, 3" in text and "CONV ACCUMULATE" in text and "END" in text
    assert ".word 0x77" in str(decode(encode(0x77)))


def test_negative_immediates_wrap_to_32_bits():
    assert decode(encode(Op.SET, Reg.C_PT, -1)).imm == 0xFFFFFFFF


@pytest.mark.parametrize("kwargs", [dict(op=256), dict(op=1, reg=300), dict(op=1, imm=1 << 32)])
def test_encode_range_errors(kwargs):
    with pytest.raises(ISAError):
        encode(**kwargs)


def test_code_size_must_be_whole_instructions():
    with pytest.raises(ISAError, match="multiple of 8"):
        decode_program(b"\x01" * 12)


def test_qparam_record_roundtrip():
    words = pack_qparam(-1234, 1 << 30 | 5, 37, -3, -128, 127)
    assert unpack_qparam(words, act_signed=True) == {
        "bias": -1234, "multiplier": 1 << 30 | 5, "shift": 37, "zp": -3, "qmin": -128,
        "qmax": 127}


def _image():
    fp = ACCEL_PRESETS["tiny"].fingerprint()
    return Image(fp, 0, 1 << 16, [Section(Kind.CODE, 0, bytes(Program().end())),
                                  Section(Kind.WEIGHTS, 0x1000, bytes(range(200)))],
                 [TensorDesc("x", "input", 0x2000, "uint8", [1, 1, 4, 4], 0.5, 3)],
                 {"model": "test"})


def test_image_roundtrip(tmp_path):
    img = _image()
    path = img.save(tmp_path / "a.ffw")
    back = Image.load(path, expect_fingerprint=ACCEL_PRESETS["tiny"].fingerprint())
    assert back.loaded() == img.loaded()
    assert back.tensor("input").shape == [1, 1, 4, 4] and back.meta == {"model": "test"}
    with pytest.raises(ImageError, match="output"):
        back.tensor("output")


def test_corrupt_truncated_foreign_images():
    raw = bytearray(_image().to_bytes())
    bad = bytearray(raw)
    bad[60] ^= 0xFF
    with pytest.raises(ImageError, match="CRC"):
        Image.from_bytes(bad)
    with pytest.raises(ImageError, match="truncated"):
        Image.from_bytes(raw[:-10])
    with pytest.raises(ImageError, match="magic"):
        Image.from_bytes(b"ELF" + raw[3:])
    with pytest.raises(ImageError, match="shorter than a header"):
        Image.from_bytes(raw[:10])
    with pytest.raises(ImageError, match="built for hardware configuration"):
        Image.from_bytes(raw, expect_fingerprint=ACCEL_PRESETS["ulx3s"].fingerprint())
    ver = bytearray(raw)
    ver[4] = 9
    with pytest.raises(ImageError, match="version 9"):
        Image.from_bytes(ver)


def test_section_beyond_memory_is_refused():
    img = _image()
    img.mem_size = 0x1000
    with pytest.raises(ImageError, match="exceeds memory size"):
        img.to_bytes()


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such firmware image"):
        Image.load(tmp_path / "nope.ffw")


def test_fingerprints_differ_between_presets():
    fps = {n: c.fingerprint() for n, c in ACCEL_PRESETS.items()}
    assert len(set(fps.values())) == len(fps)
