"""Layers with parameters and state, built on :mod:`cnnlab.functional`."""

from cnnlab.nn.conv import Conv2d
from cnnlab.nn.module import Module, Parameter, Sequential

__all__ = ["Conv2d", "Module", "Parameter", "Sequential"]
