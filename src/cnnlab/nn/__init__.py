"""Layers with parameters and state, built on :mod:`cnnlab.functional`."""

from cnnlab.nn.module import Module, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential"]
