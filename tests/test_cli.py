"""The ffacc command line: Verilog generation, reports and clear errors."""

import json
import subprocess
import sys

import pytest

from ffacc.cli import main


def test_verilog_default_and_json(tmp_path, capsys):
    out = tmp_path / "sub" / "fcu.v"
    assert main(["verilog", "--fcu", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    text = out.read_text()
    assert "module fcu" in text and "i__payload" in text and "o__payload" in text
    assert info["multipliers"] == 36 and info["outputs_per_cycle"] == 3


def test_verilog_from_toml(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[fcu]\nparallel = [2, 2]\nrows = 2\nact_bits = 6\n")
    out = tmp_path / "f.v"
    assert main(["verilog", "--fcu", "--config", str(cfg), "-o", str(out), "--name", "myfcu"]) == 0
    assert "module myfcu" in out.read_text()
    assert "18 multipliers" in capsys.readouterr().out


@pytest.mark.parametrize("toml, msg", [
    ("rows = 0\n", "rows=0"),
    ("parallel = [5]\n", "parallel"),
    ("act_bits = 12\n", "act_bits=12"),
    ("colour = 3\n", "unknown FCU config key"),
    ("rows = \n", "invalid TOML"),
])
def test_invalid_config_is_a_clear_error(tmp_path, capsys, toml, msg):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = tmp_path / "x.v"
    assert main(["verilog", "--fcu", "--config", str(cfg), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffacc: error:") and msg in err
    assert not out.exists()


def test_unknown_preset_and_missing_file(tmp_path, capsys):
    assert main(["verilog", "--config", "huge", "-o", str(tmp_path / "x.v")]) == 2
    assert "not a preset" in capsys.readouterr().err
    assert main(["verilog", "--config", str(tmp_path / "no.toml"), "-o", "x.v"]) == 2
    assert "not found" in capsys.readouterr().err


def test_ffa_table_json(capsys):
    assert main(["ffa", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["kernels"]
    assert [r["k"] for r in rows] == list(range(1, 13))
    assert rows[2]["best_ffa"] == 6 and rows[2]["unit"] == 6
    # k = 1 in MAC mode: one multiplication per MAC with two channels a unit (mac_pairs)
    assert main(["ffa", "--config", "ulx3s", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["kernels"]
    assert rows[0]["unit"] == 1.0 and rows[0]["mode"] == "MAC x2" and rows[2]["unit"] == 6


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "ffacc", "ffa"], capture_output=True, text=True)
    assert r.returncode == 0 and "best FFA" in r.stdout


def test_verilog_whole_accelerator(tmp_path, capsys):
    out = tmp_path / "a.v"
    assert main(["verilog", "--config", "tiny", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    text = out.read_text()
    assert "module ffacc_accel" in text and "m_axi_araddr" in text and "s_axil_rdata" in text
    assert info["lanes"] == 2 and info["multipliers"] == 24


def test_accelerator_toml_config(tmp_path, capsys):
    cfg = tmp_path / "acc.toml"
    cfg.write_text("lanes = 1\nlb_rows = 32\n[fcu]\nrows = 2\nparallel = [2]\n")
    out = tmp_path / "a.v"
    assert main(["verilog", "--config", str(cfg), "-o", str(out)]) == 0
    assert "1 lanes x 2 row engines" in capsys.readouterr().out
    cfg.write_text("lanes = 1\nlb_rows = 33\n[fcu]\nrows = 2\n")
    assert main(["verilog", "--config", str(cfg), "-o", str(tmp_path / "b.v")]) == 2
    assert "lb_rows=33" in capsys.readouterr().err


def test_a_toml_config_may_start_from_a_preset(tmp_path, capsys):
    """``base = "ulx3s"``: the preset's fields, then the file's (``[fcu]`` field by field);
    an unknown base is an error that names the presets."""
    from dataclasses import replace

    from ffacc.cli import load_accel_config
    from ffacc.hw.config import ACCEL_PRESETS
    cfg = tmp_path / "acc.toml"
    cfg.write_text('base = "ulx3s"\nact_codes = true\n[fcu]\nact_signed = true\n')
    ulx3s = ACCEL_PRESETS["ulx3s"]
    got = load_accel_config(str(cfg))
    assert got == ulx3s.with_(act_codes=True, fcu=replace(ulx3s.fcu, act_signed=True))
    assert got.lb_rows == 2048 and got.fcu.rows == 2
    cfg.write_text('base = "ulx3s"\n')
    assert load_accel_config(str(cfg)) == ulx3s
    cfg.write_text('base = "ulx4s"\n')
    assert main(["verilog", "--config", str(cfg), "-o", str(tmp_path / "b.v")]) == 2
    err = capsys.readouterr().err
    assert "base = 'ulx4s'" in err and "ulx3s" in err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    """An -o that cannot be written (its folder is a file) is an error naming it, not a
    traceback, and leaves nothing behind."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "sub" / "x.v"
    assert main(["verilog", "--fcu", "--config", "tiny", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffacc: error: -o") and "cannot write it" in err
    assert list(tmp_path.iterdir()) == [blocker]
