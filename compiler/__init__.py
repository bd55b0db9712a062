"""Quantized ONNX (QDQ and QOperator) to accelerator firmware.

Imports ``ffacc.firmware`` and the hardware configuration and FFA algebra from ``ffacc.hw``.
"""
