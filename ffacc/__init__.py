"""ffacc: an FPGA CNN accelerator built on the fast FIR algorithm, and its toolchain.

The subpackages live in the repository's top-level folders: ``ffacc.hw`` (``hw/``),
``ffacc.firmware`` (``firmware/``), ``ffacc.compiler`` (``compiler/``), ``ffacc.sim`` (``sim/``)
and ``ffacc.boards`` (``boards/``). See ``DESIGN.md`` for the flow and the ownership rules.
"""

__version__ = "0.1.0"
