"""The hardware/software contract: instruction formats and the firmware image format.

Defined once here and shared by the compiler's encoder, the RTL decoder, the instruction-set
simulator and the disassembler. May import only ``amaranth.lib.data`` and numpy.
"""
