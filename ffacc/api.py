"""The Python API: compile a quantized ONNX model, run it, verify it, report on it.

>>> import ffacc
>>> m = ffacc.compile("model_int8.onnx", config="ulx3s")      # or an onnx.ModelProto
>>> y = m.run(x)                    # {ONNX output name: array}; float inputs are quantized
>>> m.verify()["ok"]                # bit-exact vs the golden model, <= 1 LSB vs onnxruntime
>>> m.report()["totals"]["cycles"]
>>> m.save("model.ffw"); m2 = ffacc.load("model.ffw")

``ffacc.Accelerator(config)`` is the accelerator component, to embed in one's own Amaranth
design (``docs/INTEGRATION.md`` describes its ports and registers).
"""

from pathlib import Path

__all__ = ["compile", "load", "Model", "Accelerator", "load_config", "board_fit"]


def load_config(spec="ulx3s"):
    """An :class:`~ffacc.hw.config.AcceleratorConfig` from a preset name (``tiny``,
    ``ulx3s``, ``large``, ``icebreaker``), a TOML file, or a config object (returned as is)."""
    from ffacc.hw.config import AcceleratorConfig
    if isinstance(spec, AcceleratorConfig):
        return spec
    from ffacc.cli import CLIError, load_accel_config
    try:
        return load_accel_config(str(spec))
    except CLIError as e:
        raise ValueError(str(e).replace("--config ", "config ")) from None


def Accelerator(config="ulx3s"):  # noqa: N802 - a class-like factory
    """The accelerator as an Amaranth component (:class:`ffacc.hw.accel.Accelerator`) for a
    preset name, TOML file or :class:`~ffacc.hw.config.AcceleratorConfig`."""
    from ffacc.hw.accel import Accelerator as _Accelerator
    return _Accelerator(load_config(config))


def board_fit(image):
    """Rows ``{board, config, memory_bytes, fits}`` for each board SoC built with the
    configuration ``image`` was compiled for (``ffacc build --board``'s SoCs: with the board's
    own preset, or with another preset measured to build for it, ``config``)."""
    from ffacc.boards.build import BOARDS
    rows = []
    for b in BOARDS.values():
        for name in (b.config, *b.presets):
            if load_config(name).fingerprint() == image.fingerprint:
                rows.append({"board": b.name, "config": name, "memory_bytes": b.mem_bytes,
                             "fits": image.mem_size <= b.mem_bytes})
                break
    return rows


class Model:
    """A compiled model: its firmware image and, when compiled here, its ONNX source.

    Attributes
    ----------
    image : ffacc.firmware.image.Image
        The firmware (``save`` writes it as a ``.ffw`` file).
    config : ffacc.hw.config.AcceleratorConfig
    layers : list of dict
        Per-operator placement (``where``: ``accel`` or ``host`` with its ``reason``).
    notes : list of str
        What the compiler changed on the way (e.g. a dynamic batch pinned to 1).
    """

    def __init__(self, image, source=None, compiled=None):
        from ffacc.sim.runner import config_of
        self.image = image
        self.config = config_of(image)
        self.source = source
        self._compiled = compiled
        self.layers = image.meta.get("layers", [])
        self.notes = list(image.meta.get("notes", []))

    def _boundary(self, role):
        return {t.onnx_name: (tuple(t.shape), "float32" if t.model_float else t.model_type)
                for t in self.image.tensors if t.role == role}

    @property
    def inputs(self):
        """``{ONNX input name: (shape, what it takes)}``."""
        return self._boundary("input")

    @property
    def outputs(self):
        """``{ONNX output name: (shape, what it gives)}``."""
        return self._boundary("output")

    @property
    def memory_bytes(self):
        """Bytes of accelerator memory the image needs (data, weights, code)."""
        return self.image.mem_size

    def run(self, x, engine="iss", simulator="verilator", raw=False, stats=False):
        """Run on ``x`` (one array, or a dict keyed by the ONNX input names).

        Returns ``{ONNX output name: array}``: floats where the model's outputs are float
        (integers with ``raw``), or ``(outputs, stats)`` with ``stats=True``. ``engine`` is
        ``"iss"`` (instruction-set simulator) or ``"rtl"`` (the generated Verilog on
        ``simulator``). A wrong shape, layout or dtype raises
        :class:`~ffacc.sim.runner.InputError`.
        """
        from ffacc.sim.runner import model_inputs, model_outputs, run_image
        outs, st = run_image(self.image, model_inputs(self.image, x), engine=engine,
                             simulator=simulator)
        y = model_outputs(self.image, outs, raw=raw)
        return (y, st) if stats else y

    def verify(self, x=None, engine="iss", simulator="verilator"):
        """Compare ``engine`` with the integer golden model (must be equal) and onnxruntime
        (at most 1 LSB); see :func:`ffacc.compiler.driver.verify_compiled`."""
        from ffacc.compiler.driver import verify_compiled
        if self._compiled is None:
            raise ValueError("verify needs the ONNX model: use ffacc.compile(model).verify() "
                             "(a loaded image has only the firmware)")
        g, c = self._compiled
        return verify_compiled(self.source, g, c, engine=engine, x=x, simulator=simulator)

    def report(self):
        """Per-layer cycles (ISS cycle model), utilization, time at the configuration's clock
        and memory use: ``{"layers": [...], "totals": {...}}``."""
        from ffacc.compiler.driver import layer_report
        rows, tot = layer_report(self.image)
        return {"layers": rows, "totals": tot}

    def fits(self):
        """:func:`board_fit` of this image."""
        return board_fit(self.image)

    def save(self, path):
        """Write the firmware image (``.ffw``); returns the path."""
        return self.image.save(Path(path))

    def __repr__(self):
        acc = sum(li.get("where") == "accel" for li in self.layers)
        return (f"<ffacc.Model {self.image.meta.get('model', '?')}: {acc} of {len(self.layers)} "
                f"operators on the accelerator, {self.memory_bytes} bytes of memory>")


def compile(model, config="ulx3s", *, name=None, batch=1):  # noqa: A001 - the API's verb
    """Compile a quantized ONNX model (path or ``onnx.ModelProto``) for a configuration
    (preset name, TOML file or :class:`~ffacc.hw.config.AcceleratorConfig`).

    Raises :class:`~ffacc.compiler.driver.CompileError` or
    :class:`~ffacc.compiler.driver.ImportError_` naming the node, op and reason when the model
    cannot be compiled, including when nothing of it would run on the accelerator.
    """
    from ffacc.compiler.driver import compile_model
    cfg = load_config(config)
    g, c, _ = compile_model(model, cfg, name=name, batch=batch)
    return Model(c.image, source=model, compiled=(g, c))


def load(path):
    """A :class:`Model` from a ``.ffw`` image (checked: format, CRC, configuration)."""
    from ffacc.firmware.image import Image
    return Model(Image.load(path))
