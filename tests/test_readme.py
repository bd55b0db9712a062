"""The README's commands: the bring-your-own-model section runs as written, and every other
``ffacc`` command it shows parses, with configurations that exist."""

import re
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest

from ffacc.cli import build_parser, load_accel_config, load_fcu_config, main
from ffacc.compiler.zoo import torch_export_cnn

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title):
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _commands(text):
    return [line.strip() for block in _blocks(text, "sh") for line in block.splitlines()
            if line.strip().startswith("ffacc ")]


def test_bring_your_own_model_section_runs_as_written(tmp_path, monkeypatch, capsys):
    sec = _section("Bring your own model")
    monkeypatch.chdir(tmp_path)
    # step 1 (PyTorch is not a dependency): the float model in the form torch.onnx.export
    # writes, and the arrays the section saves
    export = _blocks(sec, "python")[0]
    assert "torch.onnx.export" in export and '"model.onnx"' in export
    onnx.save(torch_export_cnn(size=32), "model.onnx")
    rng = np.random.default_rng(0)
    np.save("calib.npy", rng.normal(0, 1, (8, 3, 32, 32)).astype(np.float32))
    np.save("x.npy", rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32))
    ran = []
    for cmd in _commands(sec):
        argv = shlex.split(cmd)[1:]
        if "--port" in argv:            # a board: the user's step
            continue
        if "--engine" in argv and argv[argv.index("--engine") + 1] == "rtl":
            continue                    # the slow test below runs it
        assert main(argv) == 0, cmd
        ran.append(argv[0])
    assert ran == ["quantize", "compile", "compile", "verify", "report", "run"]
    assert Path("model_codes.ffw").is_file()        # the non-uniform levels' example
    out = capsys.readouterr().out
    assert "3 of 3 operators on the accelerator" in out and "bit-exact vs golden: True" in out
    with np.load("y.npz") as y:
        assert y.files == ["logits"] and y["logits"].shape == (1, 10)
    # the Python block, as written
    api = _blocks(sec, "python")[1]
    exec(compile(api, "README: Python API", "exec"), {})      # noqa: S102 - our own README
    assert Path("model.ffw").is_file()


@pytest.mark.slow
def test_bring_your_own_model_on_the_rtl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    onnx.save(torch_export_cnn(size=32), "model.onnx")
    rng = np.random.default_rng(0)
    np.save("calib.npy", rng.normal(0, 1, (8, 3, 32, 32)).astype(np.float32))
    np.save("x.npy", rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32))
    cmds = [shlex.split(c)[1:] for c in _commands(_section("Bring your own model"))]
    rtl = [a for a in cmds if "rtl" in a]
    assert len(rtl) == 1
    # the quantization and the compile into model.ffw (not the levels' example)
    for argv in [a for a in cmds if a[0] == "quantize" or (a[0] == "compile" and
                                                           "model.ffw" in a)]:
        assert main(argv) == 0
    assert main(rtl[0][:-2] + ["-o", "y_rtl.npz", "--engine", "rtl"]) == 0
    assert main(["run", "model.ffw", "--input", "x.npy", "-o", "y_iss.npz"]) == 0
    with np.load("y_rtl.npz") as a, np.load("y_iss.npz") as b:
        assert np.array_equal(a["logits"], b["logits"])


def _strip_optional(cmd):
    while True:
        new = re.sub(r"\s*\[[^\[\]]*\]", "", cmd)
        if new == cmd:
            return cmd
        cmd = new


def test_every_readme_command_parses_with_existing_configurations():
    cmds = _commands(README.read_text())
    assert len(cmds) >= 15
    parser = build_parser()
    checked = 0
    for cmd in cmds:
        base = shlex.split(_strip_optional(cmd), comments=True)[1:]
        # every configuration the command names, in its optional groups too
        alts = [a for m in re.findall(r"--config ([\w.|-]+)", cmd) for a in m.split("|")
                if not a.endswith(".toml") and a != "..."]
        for argv in [base] + [[a for a in base if a != "--config"] + ["--config", alt]
                              for alt in alts if "--config" not in base]:
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:
                pytest.fail(f"README command does not parse ({e}): {cmd}")
            spec = getattr(args, "config", None)
            if spec and not spec.endswith(".toml"):
                try:
                    (load_fcu_config if getattr(args, "fcu", False) else load_accel_config)(spec)
                except Exception as e:          # noqa: BLE001 - any refusal fails the test
                    pytest.fail(f"README command {cmd!r}: --config {spec}: {e}")
                checked += 1
    assert checked >= 8, checked
