"""docs/INTEGRATION.md, the C header and ``ffacc csr`` against the one definition of the
registers (``firmware/csr.py``) and the generated Verilog."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ffacc.cli import main
from ffacc.firmware import csr
from ffacc.firmware.csr import CSR, CTRL_START, INFO_FIELDS, INFO_VERSION, Status
from ffacc.firmware.isa import Err
from ffacc.hw.config import ACCEL_PRESETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "INTEGRATION.md"
TINY = ACCEL_PRESETS["tiny"]


def _between(text, name):
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, f"markers {name} missing or repeated"
    return text[text.index(begin) + len(begin):text.index(end)]


def _rows(block):
    """The cells of a Markdown table's body rows (header and rule dropped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in block.splitlines() if line.startswith("|")]
    return rows[2:]


@pytest.fixture(scope="module")
def doc():
    return DOC.read_text()


def _verilog(cfg):
    from amaranth.back import verilog
    from ffacc.hw.accel import Accelerator
    return verilog.convert(Accelerator(cfg), name="ffacc_accel")


@pytest.fixture(scope="module")
def verilog_text():
    return _verilog(TINY)


def _top_ports(text):
    """``{name: (direction, width)}`` of the top module ``ffacc_accel``."""
    start = text.index("module ffacc_accel(")
    body = text[start:text.index("endmodule", start)]
    ports = {}
    for d, hi, name in re.findall(r"^\s*(input|output|inout)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                  body, re.M):
        ports[name] = ("in" if d == "input" else "out", int(hi) + 1 if hi else 1)
    assert ports, "no port declarations found in the generated Verilog"
    return ports


def _decode_cases(text, addr):
    """``{word index: [statement, ...]}`` of every ``casez (<addr>[7:2])`` in the CSR bank's
    module: the register decode of the AXI4-Lite slave as the generated Verilog has it."""
    start = text.index("module \\ffacc_accel.csr (")
    body = text[start:text.index("endmodule", start)]
    cases = {}
    blocks = re.findall(r"casez \(" + re.escape(addr) + r"\[7:2\]\)(.*?)endcase", body, re.S)
    assert blocks, f"no decode of {addr} found in the generated Verilog"
    for block in blocks:
        for label, stmt in re.findall(r"6'h([0-9a-f]{2}):\s*(.*?;)", block, re.S):
            if stmt != "/* empty */;":
                cases.setdefault(int(label, 16), []).append(stmt)
    return cases


# ------------------------------------------------------------------------ the definition
def test_csr_table_covers_every_register_in_offset_order():
    table = csr.csr_table()
    assert [r["name"] for r in table] == [r.name for r in sorted(CSR, key=int)]
    assert [r["offset"] for r in table] == sorted(int(r) for r in CSR)
    assert len({r["offset"] for r in table}) == len(CSR)
    for r in table:
        assert r["offset"] % 4 == 0 and r["offset"] < 256       # 8-bit AXI4-Lite address
        assert r["access"] in ("R", "W", "RW") and r["description"]
        assert "|" not in r["description"] and "\n" not in r["description"]
    by = {r["name"]: r for r in table}
    assert [(f["name"], f["mask"]) for f in by["STATUS"]["fields"]] == \
        [(s.name, int(s)) for s in Status]
    assert [(f["name"], f["shift"], f["mask"]) for f in by["INFO"]["fields"]] == \
        [(f.name, f.shift, f.mask) for f in INFO_FIELDS]
    assert csr.info_word(TINY) == \
        TINY.lanes | TINY.rows << 8 | TINY.L << 16 | INFO_VERSION << 24


def test_register_map_matches_the_generated_verilog(verilog_text):
    """The slave's read and write decode in the Verilog: which offsets read, which write, and
    what STATUS, ID and INFO read."""
    reads = _decode_cases(verilog_text, "s_axil_araddr")
    writes = _decode_cases(verilog_text, "s_axil_awaddr")
    assert set(reads) == {int(r) >> 2 for r in CSR if "R" in r.access}
    assert set(writes) == {int(r) >> 2 for r in CSR if "W" in r.access}
    status = reads[CSR.STATUS >> 2][0]
    bits = re.search(r"\{\s*\d+'h0+,\s*([\w\s,]+)\}", status).group(1)
    lsb_first = [b.strip() for b in bits.split(",")][::-1]
    assert lsb_first == [s.name.lower() for s in sorted(Status, key=int)]
    assert [int(s) for s in sorted(Status, key=int)] == [1 << i for i in range(len(Status))]
    assert f"32'd{TINY.fingerprint()};" in reads[CSR.ID >> 2][0]
    assert f"32'd{csr.info_word(TINY)};" in reads[CSR.INFO >> 2][0]


@pytest.mark.parametrize("preset", ["tiny", "icebreaker"])
def test_the_verilog_has_no_process_that_nothing_triggers(verilog_text, preset):
    """A signal driven partly by a process (a field set in an FSM state) and partly by a plain
    assignment comes out of amaranth's Verilog backend with the plain part as a one-statement
    ``always @* x[k] = <expression>;``, without the backend's trigger: it runs only when its
    inputs change, so Icarus leaves those bits X until then (Verilator evaluates it at time 0),
    and a constant never. (A constant field once turned an activation load's whole-beat
    flag off on Verilator, and the load hung; a record loader's entry 0 was X on Icarus.)
    None may be left: drive a payload whole, by plain assignments."""
    text = verilog_text if preset == "tiny" else _verilog(ACCEL_PRESETS[preset])
    untriggered = re.findall(r"always @\*\s*\n\s*(?!begin\b)([^\n]*)", text)
    assert untriggered == []


# ------------------------------------------------------------------------ the document
def test_doc_register_tables_are_generated(doc):
    assert _between(doc, "csr-table") == csr.markdown_table(), \
        "docs/INTEGRATION.md is out of date: paste `ffacc csr --markdown` between the markers"


def test_doc_error_codes(doc):
    rows = _rows(_between(doc, "errors"))
    assert [(int(r[0]), r[1].strip("`")) for r in rows] == [(int(e), e.name) for e in Err]


@pytest.mark.parametrize("bus_bytes", [4, 8])
def test_doc_ports_are_the_verilog_ports(doc, verilog_text, bus_bytes):
    """Names, directions and widths; the widths also on a 64-bit bus (``8·bus_bytes``)."""
    cfg = TINY.with_(bus_bytes=bus_bytes)
    if cfg != TINY:
        verilog_text = _verilog(cfg)
    rows = _rows(_between(doc, "ports"))
    documented = {}
    for name, direction, width, *_ in rows:
        symbolic = {"bus_bytes": cfg.bus_bytes, "8·bus_bytes": 8 * cfg.bus_bytes}
        w = int(width) if width.isdigit() else symbolic[width]
        documented[name.strip("`")] = (direction, w)
    assert len(documented) == len(rows), "a port is listed twice"
    ports = _top_ports(verilog_text)
    assert set(documented) - set(ports) == set(), "documented ports missing from the Verilog"
    assert set(ports) - set(documented) == set(), "Verilog ports missing from the document"
    assert documented == ports


# ------------------------------------------------------------------------ the C header
def _cc():
    return shutil.which("gcc") or shutil.which("cc")


def _expected(cfg):
    """Every value the header must define, from the enums themselves."""
    want = {f"FFACC_CSR_{r.name}": int(r) for r in CSR}
    want["FFACC_CTRL_START"] = CTRL_START
    want.update({f"FFACC_STATUS_{s.name}": int(s) for s in Status})
    for f in INFO_FIELDS:
        want[f"FFACC_INFO_{f.name}_SHIFT"] = f.shift
        want[f"FFACC_INFO_{f.name}_MASK"] = (1 << f.width) - 1
    want["FFACC_INFO_VERSION"] = INFO_VERSION
    want.update({f"FFACC_ERR_{e.name}": int(e) for e in Err})
    if cfg is not None:
        want.update({"FFACC_CONFIG_ID": cfg.fingerprint(), "FFACC_CONFIG_LANES": cfg.lanes,
                     "FFACC_CONFIG_ROWS": cfg.rows, "FFACC_CONFIG_L": cfg.L,
                     "FFACC_CONFIG_ADDR_BITS": cfg.addr_bits,
                     "FFACC_CONFIG_MEM_LIMIT": 1 << cfg.addr_bits,
                     "FFACC_CONFIG_BUS_BYTES": cfg.bus_bytes,
                     "FFACC_CONFIG_INFO": cfg.lanes | cfg.rows << 8 | cfg.L << 16
                     | INFO_VERSION << 24})
    return want


def _compile_and_run(tmp_path, header, names):
    cc = _cc()
    (tmp_path / "ffacc_csr.h").write_text(header)
    prog = ['#include "ffacc_csr.h"', "#include <stdio.h>", "int main(void)", "{"]
    prog += [f'    printf("%s %llu\\n", "{n}", (unsigned long long)({n}));' for n in names]
    prog += ["    return 0;", "}", ""]
    (tmp_path / "t.c").write_text("\n".join(prog))
    exe = tmp_path / "t"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(exe),
                    str(tmp_path / "t.c")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.skipif(not shutil.which("gcc") and not shutil.which("cc"), reason="no C compiler")
@pytest.mark.parametrize("preset", [None, "tiny", "icebreaker"])
def test_c_header_values(tmp_path, preset):
    cfg = ACCEL_PRESETS[preset] if preset else None
    header = csr.c_header(cfg)
    assert header == csr.c_header(cfg)                      # reproducible
    assert header.startswith("/*") and "#include <stdint.h>" in header
    assert ("FFACC_CONFIG_ID" in header) == (cfg is not None)
    want = _expected(cfg)
    assert _compile_and_run(tmp_path, header, list(want)) == want


@pytest.mark.skipif(not shutil.which("gcc") and not shutil.which("cc"), reason="no C compiler")
def test_doc_c_example_compiles(tmp_path, doc):
    """The run loop shown in the document builds against the header."""
    example = next(b for b in re.findall(r"```c\n(.*?)```", doc, re.S) if "ffacc_csr.h" in b)
    (tmp_path / "ffacc_csr.h").write_text(csr.c_header(TINY))
    (tmp_path / "run.c").write_text(example + "\nint use(void) { uint32_t pc; "
                                    "return ffacc_run_segment(0x40000000u, 0, &pc); }\n")
    subprocess.run([_cc(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                    "-o", str(tmp_path / "run.o"), str(tmp_path / "run.c")],
                   check=True, capture_output=True, text=True)


# ------------------------------------------------------------------------ the command
def test_cli_header_to_file(tmp_path, capsys):
    out = tmp_path / "inc" / "ffacc_csr.h"
    assert main(["csr", "--header", "-o", str(out)]) == 0
    assert out.read_text() == csr.c_header()
    assert str(out) in capsys.readouterr().out
    assert main(["csr", "--header", "--config", "tiny", "-o", str(out)]) == 0
    assert out.read_text() == csr.c_header(TINY)
    assert f"#define FFACC_CONFIG_ID              0x{TINY.fingerprint():08X}u" in out.read_text()


def test_cli_json_and_tables(capsys):
    assert main(["csr", "--json", "--config", "tiny"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["registers"] == csr.csr_table()
    assert res["errors"] == [{"name": e.name, "code": int(e)} for e in Err]
    assert res["config"]["ID"] == TINY.fingerprint()
    assert res["config"]["INFO"] == csr.info_word(TINY)
    assert main(["csr", "--json"]) == 0
    assert "config" not in json.loads(capsys.readouterr().out)
    assert main(["csr", "--markdown"]) == 0
    assert capsys.readouterr().out == csr.markdown_table()
    assert main(["csr"]) == 0
    text = capsys.readouterr().out
    assert all(r.name in text for r in CSR) and "TIMEOUT" in text
    assert main(["csr", "--config", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
