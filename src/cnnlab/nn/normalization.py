"""Batch normalisation layers: parameters and running statistics around
:mod:`cnnlab.functional.batchnorm`."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab._validate import FLOAT_DTYPES, float_array, positive_int
from cnnlab.functional.batchnorm import BatchNormCache, batch_norm_backward, batch_norm_forward
from cnnlab.nn._base import check_cached
from cnnlab.nn.module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """What :class:`BatchNorm1d` and :class:`BatchNorm2d` share; they differ in the input's rank."""

    _ranks: tuple[int, ...] = ()
    _layout = ""
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    num_batches_tracked: np.ndarray | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.num_features = positive_int(num_features, "num_features")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        if momentum is not None and (
            not isinstance(momentum, (int, float))
            or isinstance(momentum, bool)
            or not 0 <= momentum <= 1
        ):
            raise ValueError(
                f"momentum must be a number in [0, 1], or None for a cumulative average; "
                f"got {momentum!r}"
            )
        for flag, name in ((affine, "affine"), (track_running_stats, "track_running_stats")):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        # registered in PyTorch's order: weight, bias, running_mean, running_var,
        # num_batches_tracked (PyTorch keeps absent ones as None, outside the state dict)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache: BatchNormCache | None = None

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters, else of the running statistics (else float32)."""
        if self.weight is not None:
            return self.weight.dtype
        if self.running_mean is not None:
            return self.running_mean.dtype
        return np.dtype(np.float32)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked (in place)."""
        if self.running_mean is not None and self.running_var is not None:
            self.running_mean[...] = 0
            self.running_var[...] = 1
        if self.num_batches_tracked is not None:
            self.num_batches_tracked[...] = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Normalise per channel; in training, with the batch's statistics (updating the
        running ones), in evaluation with the running ones (as ``torch.nn.BatchNorm*d``)."""
        name = type(self).__name__
        x = float_array(x, f"{name} input")
        if x.ndim not in self._ranks:
            raise ValueError(
                f"{name} expects input of shape {self._layout}, got shape {x.shape} ({x.ndim}-D)"
            )
        own = self.weight.data if self.weight is not None else self.running_mean
        if own is not None and x.dtype != own.dtype:
            raise ValueError(
                f"{name} input has dtype {x.dtype} but the layer's parameters are "
                f"{own.dtype}; convert one of them, e.g. model.astype(np.{x.dtype}) or "
                f"x.astype(np.{own.dtype})"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} expects {self.num_features} channels on axis 1 "
                f"{self._layout.replace('C', str(self.num_features))}, got shape {x.shape}"
            )
        # PyTorch's rule: without running statistics, the batch's are used in eval too
        use_batch_stats = self.training or self.running_mean is None
        running = self.training and self.track_running_stats
        y, self._cache = batch_norm_forward(
            x,
            None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data,
            self.running_mean if running or not use_batch_stats else None,
            self.running_var if running or not use_batch_stats else None,
            training=use_batch_stats,
            momentum=self.momentum,
            eps=self.eps,
            num_batches_tracked=self.num_batches_tracked if running else None,
        )
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Return ``dE/dx``; ADD ``dE/dγ`` into ``weight.grad`` and ``dE/dβ`` into ``bias.grad``."""
        name = type(self).__name__
        check_cached(self._cache, name)
        assert self._cache is not None
        dx, dgamma, dbeta = batch_norm_backward(dy, self._cache)
        if self.weight is not None and dgamma is not None:
            self.weight.grad += dgamma
        if self.bias is not None and dbeta is not None:
            self.bias.grad += dbeta
        return dx

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-able; no weights)."""
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "dtype": self.dtype.name,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features, as ``torch.nn.BatchNorm1d``.

    ``y = γ·(x - μ)/√(σ² + eps) + β`` per feature ``c``. In training ``μ`` and ``σ²``
    are the batch's mean and (biased) variance over the samples (and positions ``L``),
    and the running statistics move towards them (with the unbiased variance); in
    evaluation (``model.eval()``) the running statistics are used instead. The
    derivation of the backward pass is in :mod:`cnnlab.functional.batchnorm`.

    Parameters
    ----------
    num_features : int
        ``C``, the number of features (channels).
    eps : float
        Added to the variance before the square root.
    momentum : float in [0, 1] or None
        Weight of each batch in the running statistics:
        ``running ← (1 - momentum)·running + momentum·batch``. None: a cumulative
        average over all batches seen (``momentum = 1/num_batches_tracked``).
    affine : bool
        Learn ``γ`` (``weight``) and ``β`` (``bias``); False: ``γ = 1``, ``β = 0``.
    track_running_stats : bool
        Keep running statistics. False: none are kept, and the batch's statistics are
        used in evaluation too (as in PyTorch).
    dtype : float32 (default) or float64
        Dtype of the parameters and running statistics; inputs must have the same.

    Attributes
    ----------
    weight, bias : Parameter or None
        ``γ`` (ones) and ``β`` (zeros), ``(C,)``; None when ``affine`` is False.
    running_mean, running_var : ndarray or None
        Buffers ``(C,)``, zeros and ones at first; None without ``track_running_stats``.
    num_batches_tracked : ndarray or None
        int64 scalar buffer: training batches seen.

    Shapes
    ------
    Input ``(N, C)`` or ``(N, C, L)``; output the same. Training needs more than one
    value per feature (``N·L > 1``).
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of feature maps, as ``torch.nn.BatchNorm2d``.

    ``y = γ·(x - μ)/√(σ² + eps) + β`` per channel ``c``, with the statistics taken over
    the batch and every position (``m = N·H·W`` values per channel). Training and
    evaluation behave as in :class:`BatchNorm1d`; the derivation of the backward pass
    is in :mod:`cnnlab.functional.batchnorm`.

    Parameters
    ----------
    num_features : int
        ``C``, the number of channels.
    eps, momentum, affine, track_running_stats, dtype
        As :class:`BatchNorm1d`.

    Attributes
    ----------
    weight, bias : Parameter or None
        ``(C,)``: ones and zeros; None when ``affine`` is False.
    running_mean, running_var, num_batches_tracked : ndarray or None
        Buffers, as :class:`BatchNorm1d`.

    Shapes
    ------
    Input ``(N, C, H, W)``; output the same. Training needs ``N·H·W > 1``.
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"
