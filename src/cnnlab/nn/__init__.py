"""Layers with parameters and state, built on :mod:`cnnlab.functional`."""

from cnnlab.nn.activation import LeakyReLU, ReLU, Sigmoid, Tanh
from cnnlab.nn.conv import Conv2d
from cnnlab.nn.dropout import Dropout
from cnnlab.nn.linear import Flatten, Linear
from cnnlab.nn.losses import CrossEntropyLoss, MSELoss
from cnnlab.nn.module import Module, Parameter, Sequential
from cnnlab.nn.normalization import BatchNorm1d, BatchNorm2d
from cnnlab.nn.pooling import AvgPool2d, MaxPool2d

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
