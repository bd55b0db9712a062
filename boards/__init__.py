"""Board targets (amaranth-boards) and the open YoWASP build flow.

Imports ``ffacc.hw`` and ``ffacc.firmware``.
"""
