"""ffacc: an FPGA CNN accelerator built on the fast FIR algorithm, and its toolchain.

The subpackages live in the repository's top-level folders: ``ffacc.hw`` (``hw/``),
``ffacc.firmware`` (``firmware/``), ``ffacc.compiler`` (``compiler/``), ``ffacc.sim`` (``sim/``)
and ``ffacc.boards`` (``boards/``); the README has the flow and the commands.

The Python API (:mod:`ffacc.api`, loaded on first use)::

    import ffacc
    m = ffacc.compile("model_int8.onnx", config="ulx3s")
    y = m.run(x)            # {ONNX output name: array}
    m.verify(); m.report(); m.save("model.ffw"); ffacc.load("model.ffw")
    ffacc.Accelerator("ulx3s")      # the Amaranth component
"""

__version__ = "0.1.0"

_API = ("compile", "load", "Model", "Accelerator", "load_config", "board_fit")
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from ffacc import api
        return getattr(api, name)
    raise AttributeError(f"module 'ffacc' has no attribute {name!r}")
