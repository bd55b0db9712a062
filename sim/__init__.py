"""Simulation: the integer golden model, FCU models and schedules, cocotb testbenches."""
