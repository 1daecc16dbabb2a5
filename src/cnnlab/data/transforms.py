"""Data augmentation: composable, seeded transforms of a whole batch at once (NumPy).

Every transform is a callable ``t(x, rng) -> ndarray``:

* ``x`` is a batch ``(N, C, H, W)`` of float32 or float64 images;
* ``rng`` is a :class:`numpy.random.Generator`, the transform's *only* source of
  randomness (no global state is read or changed);
* the result is a new array of the same dtype (and shape, except for a crop to another
  size); ``x`` is never modified.

Each sample of the batch gets its own random parameters, all drawn at once (one call
of the generator per parameter, for the whole batch), and the work is vectorised over
the batch: there is no Python loop over images. The same input and the same generator
state give a bit-identical output, so a training run that makes its generator from
``np.random.default_rng([seed, epoch, step])`` augments every batch identically
whether it runs straight through or is interrupted and resumed, even mid-epoch.

Generator consumption (the order is part of the contract, so recorded runs replay):

* :class:`Compose` calls its transforms in list order with the same generator;
* :class:`RandomAffine` draws the angles (``N``), then the translations (``N×2``, if
  ``translate``), the scales (``N``, if ``scale``), the x shears (``N``, if ``shear``)
  and the y shears (``N``, if ``shear`` has four values);
* :class:`RandomCrop` draws the top offsets (``N``), then the left offsets (``N``);
* :class:`RandomHorizontalFlip` and :class:`RandomApply` draw ``N`` uniforms;
  :class:`RandomApply` then runs its transforms on the chosen samples only;
* :class:`Normalize` draws nothing.

**Fill.** Geometric transforms must invent pixels where the image moved away. They
read those as ``fill``. Training images are usually normalised, ``(x - mean) / std``,
so an empty (black) background is ``-mean / std``, not 0: give that value as ``fill``
to a transform that runs *after* the normalisation (:meth:`Normalize.normalized_value`
computes it), or keep ``fill=0`` and normalise afterwards.

The functional core, :func:`affine_grid` and :func:`grid_sample`, equals PyTorch's
``torch.nn.functional.affine_grid`` / ``grid_sample`` with ``mode='bilinear'``,
``padding_mode='zeros'`` (for ``fill=0``) and ``align_corners=False`` (or ``True``);
:func:`affine_matrix` builds the matrices :class:`RandomAffine` uses, as torchvision's
``RandomAffine`` does, and :func:`warp_affine` is the fused, fast ``grid_sample(x,
affine_grid(theta))``.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from cnnlab._validate import float_array

__all__ = [
    "AffineParams",
    "Compose",
    "Normalize",
    "RandomAffine",
    "RandomApply",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Transform",
    "affine_grid",
    "affine_matrix",
    "from_config",
    "grid_sample",
    "warp_affine",
]

Fill = float | Sequence[float]
TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: object, name: str) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _numbers(value: object, name: str, lengths: tuple[int, ...]) -> tuple[float, ...]:
    """``value`` as a tuple of finite floats whose length is one of ``lengths``."""
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{name} must be a sequence of {expected} numbers, got {value!r}")
    return tuple(_number(v, name) for v in value)


def _ordered(pair: tuple[float, float], name: str) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(
            f"{name} must be a range (min, max) with min <= max, got {pair!r}; "
            f"write it as {(pair[1], pair[0])!r}"
        )
    return pair


def _symmetric_or_range(value: object, name: str) -> tuple[float, float]:
    """A number ``d >= 0`` as ``(-d, d)``, or an ordered ``(min, max)``."""
    if _is_number(value):
        d = _number(value, name)
        if d < 0:
            raise ValueError(
                f"{name} must be >= 0 when given as a single number (it means the range "
                f"(-{name}, +{name})), got {d}; give a range (min, max) instead"
            )
        return (-d, d)
    pair = _numbers(value, name, (2,))
    return _ordered((pair[0], pair[1]), name)


def _fill(value: object, name: str = "fill") -> float | tuple[float, ...]:
    """A finite number, or a non-empty sequence of them (one per channel)."""
    if _is_number(value):
        return _number(value, name)
    if isinstance(value, (tuple, list, np.ndarray)) and len(value) > 0:
        return tuple(_number(v, name) for v in value)
    raise ValueError(
        f"{name} must be a number or a sequence of numbers (one per channel), got {value!r}"
    )


def _fill_values(fill: object, channels: int, dtype: np.dtype, name: str = "fill") -> np.ndarray:
    """``fill`` as a ``(C, 1, 1)`` array of ``dtype`` (a single value serves every channel)."""
    values = np.asarray(_fill(fill, name), dtype=dtype).reshape(-1)
    if values.size not in (1, channels):
        raise ValueError(
            f"{name} has {values.size} values but the input has {channels} channels; "
            f"give one value, or one per channel"
        )
    return np.broadcast_to(values, (channels,)).reshape(channels, 1, 1)


def _images(x: object, name: str = "x") -> np.ndarray:
    """A 4-D float batch ``(N, C, H, W)`` with ``C, H, W >= 1``."""
    if isinstance(x, np.ndarray) and x.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of images of shape (N, C, H, W), got shape {x.shape} "
            f"({x.ndim}-D); add the missing axes, e.g. {name}[None] for a single image"
        )
    x = float_array(x, name, ndim=4)
    if min(x.shape[1:]) < 1:
        raise ValueError(f"{name} must have C, H, W >= 1, got shape {x.shape}")
    return x


def _generator(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng([seed, "
            f"epoch, step])), got {type(rng).__name__}"
        )
    return rng


def _count(n: object, name: str) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{name} must be an int >= 0, got {n!r}")
    return int(n)


def _size2(size: object, name: str) -> tuple[int, int]:
    """An image size ``(H, W)`` of positive ints."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
        or min(size) < 1
    ):
        raise ValueError(f"{name} must be (H, W), two ints >= 1, got {size!r}")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------------------
# scratch buffers
# --------------------------------------------------------------------------------------


class _Workspace(threading.local):
    """Scratch arrays kept between calls, one set per thread.

    Fresh multi-hundred-kB temporaries are mapped and unmapped by the C allocator on
    every call, and the page faults cost more than the arithmetic (3× here). The
    buffers hold intermediate values only: every element read is written first in the
    same call, so they never influence a result. Pickling and copying give an empty
    workspace.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self.buffers[name] = buf
        return buf

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_Workspace, ())


# --------------------------------------------------------------------------------------
# functional core
# --------------------------------------------------------------------------------------

_FLOAT32_EXACT_INTEGERS = 2**24  # float32 holds every integer below this exactly
_INT32_LIMIT = 2**31  # indices below this fit in int32


def _bilinear(
    x: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    fill: np.ndarray,
    ws: _Workspace,
) -> np.ndarray:
    """Bilinear samples of ``x`` at pixel coordinates ``(ix, iy)``; outside reads ``fill``.

    ``ix``, ``iy``: ``(N, Ho, Wo)`` arrays of x's dtype, in pixel units (column, row;
    pixel centres at integers). They are overwritten. ``fill``: ``(C, 1, 1)``.

    The image is framed by a border of ``fill`` (1 pixel before, 2 after) and the
    coordinates are clamped to ``[-1, W]``, ``[-1, H]``: a point beyond that range has
    all four neighbours outside the image, and the clamped point reads the same fill.
    So every neighbour is a valid index and one ``take`` per corner gathers it.
    """
    n, c, h, w = x.shape
    dt = x.dtype
    shape = ix.shape
    hp, wp = h + 3, w + 3
    # the framed image: fill on the border, x inside
    xp = ws.get("framed", (n, c, hp, wp), dt)
    xp[:, :, :1, :] = fill
    xp[:, :, h + 1 :, :] = fill
    xp[:, :, 1 : h + 1, :1] = fill
    xp[:, :, 1 : h + 1, w + 1 :] = fill
    xp[:, :, 1 : h + 1, 1 : w + 1] = x

    np.clip(ix, -1, w, out=ix)
    np.clip(iy, -1, h, out=iy)
    x0 = np.floor(ix, out=ws.get("x0", shape, dt))
    y0 = np.floor(iy, out=ws.get("y0", shape, dt))
    fx = np.subtract(ix, x0, out=ix)  # weight of the right-hand neighbour
    fy = np.subtract(iy, y0, out=iy)  # weight of the lower neighbour

    # flat index of each top-left neighbour in the framed batch: image k, channel 0,
    # row y0 + 1, column x0 + 1. Floating point is exact below 2**24 (float32) or 2**53,
    # and float -> int32 -> int64 converts 2x faster than float -> int64 directly.
    total = n * c * hp * wp
    exact = dt == np.float64 or total < _FLOAT32_EXACT_INTEGERS
    ft = dt if exact else np.dtype(np.float64)
    fidx = ws.get("fidx", shape, ft)
    np.multiply(y0, wp, out=fidx)
    fidx += x0
    fidx += (np.arange(n, dtype=ft) * (c * hp * wp) + (wp + 1))[:, None, None]
    idx = ws.get("idx", shape, np.intp)
    if total < _INT32_LIMIT:
        idx32 = ws.get("idx32", shape, np.int32)
        np.copyto(idx32, fidx, casting="unsafe")
        np.copyto(idx, idx32)
    else:
        np.copyto(idx, fidx, casting="unsafe")
    if c > 1:  # the same positions in every channel
        m = shape[1] * shape[2]
        channels = (np.arange(c, dtype=np.intp) * (hp * wp))[:, None]
        idx = np.add(idx.reshape(n, 1, m), channels, out=ws.get("idxc", (n, c, m), np.intp))
        fx = fx.reshape(n, 1, m)
        fy = fy.reshape(n, 1, m)
    flat = xp.reshape(-1)
    gshape = idx.shape
    top_left = ws.get("v00", gshape, dt)
    top_right = ws.get("v01", gshape, dt)
    bottom_left = ws.get("v10", gshape, dt)
    out = np.empty(gshape, dt)
    # indices are in range by construction; 'wrap' skips numpy's buffered bounds check
    flat.take(idx, out=top_left, mode="wrap")
    flat[1:].take(idx, out=top_right, mode="wrap")
    flat[wp:].take(idx, out=bottom_left, mode="wrap")
    flat[wp + 1 :].take(idx, out=out, mode="wrap")
    # top = tl + fx (tr - tl); bottom = bl + fx (br - bl); out = top + fy (bottom - top)
    top = top_right
    top -= top_left
    top *= fx
    top += top_left
    out -= bottom_left
    out *= fx
    out += bottom_left
    out -= top
    out *= fy
    out += top
    return out.reshape(n, c, shape[1], shape[2])


def affine_grid(theta: np.ndarray, size: Sequence[int], align_corners: bool = False) -> np.ndarray:
    """Sampling grid of an affine map, as ``torch.nn.functional.affine_grid``.

    Output pixel ``(i, j)`` has normalised coordinates ``(x_j, y_i)`` in ``[-1, 1]``
    (``x_j = (2j + 1)/W - 1`` with ``align_corners=False``, ``2j/(W - 1) - 1`` with
    ``True``); its grid entry is ``theta @ (x_j, y_i, 1)``: the normalised point of the
    *input* it reads. So ``theta`` maps output to input (the inverse of the motion
    seen on screen).

    Parameters
    ----------
    theta : ndarray
        Affine matrices, float32 or float64.
    size : sequence of int
        The output size ``(N, C, H, W)`` (``C`` is not used), as in PyTorch.
    align_corners : bool
        Whether -1 and 1 are the centres (True) or the outer edges (False) of the
        corner pixels.

    Returns
    -------
    ndarray
        The grid, dtype of ``theta``; ``grid[..., 0]`` is x (column), ``grid[..., 1]`` y.

    Shapes
    ------
    theta: ``(N, 2, 3)``; grid: ``(N, H, W, 2)``.
    """
    theta = float_array(theta, "theta", ndim=3)
    if theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must have shape (N, 2, 3), got {theta.shape}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 4
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    ):
        raise ValueError(f"size must be (N, C, H, W), four ints, got {size!r}")
    n, _, h, w = (int(v) for v in size)
    if n != theta.shape[0]:
        raise ValueError(
            f"size has batch size {n} but theta holds {theta.shape[0]} matrices; expected "
            f"size[0] == theta.shape[0]"
        )
    if min(size[1:]) < 1:
        raise ValueError(f"size must have C, H, W >= 1, got {tuple(size)!r}")
    dt = theta.dtype
    xs = _base_coords(w, align_corners, dt)
    ys = _base_coords(h, align_corners, dt)
    grid = np.empty((n, h, w, 2), dt)
    for k in range(2):
        a, b, t = (theta[:, k, col][:, None, None] for col in range(3))
        grid[..., k] = a * xs[None, None, :] + b * ys[None, :, None] + t
    return grid


def _base_coords(size: int, align_corners: bool, dtype: Any) -> np.ndarray:
    """Normalised coordinates of the pixel centres along one axis of ``size`` pixels."""
    j = np.arange(size, dtype=np.float64)
    if align_corners:
        coords = 2 * j / (size - 1) - 1 if size > 1 else np.zeros(1)
    else:
        coords = (2 * j + 1) / size - 1
    return coords.astype(dtype)


def grid_sample(
    x: np.ndarray,
    grid: np.ndarray,
    *,
    align_corners: bool = False,
    fill: Fill = 0.0,
) -> np.ndarray:
    """Bilinear samples of ``x`` at the points of ``grid``, as ``torch.nn.functional.grid_sample``.

    Equals PyTorch's ``grid_sample(x, grid, mode='bilinear', padding_mode='zeros',
    align_corners=align_corners)`` when ``fill=0``. With another ``fill``, points
    outside the image read ``fill`` instead of 0 — as sampling ``x - fill`` with zeros
    padding and adding ``fill`` back. Use it when ``x`` is normalised and its
    background is not 0.

    Parameters
    ----------
    x : ndarray
        Images, float32 or float64.
    grid : ndarray
        Normalised sampling points, same dtype as ``x``: ``grid[n, i, j] = (gx, gy)``,
        ``(-1, -1)`` the top-left and ``(1, 1)`` the bottom-right corner of the image
        (see ``align_corners``); must be finite.
    align_corners : bool
        As in :func:`affine_grid`.
    fill : float or sequence of float
        Value of the points outside the image; one, or one per channel.

    Returns
    -------
    ndarray
        The samples, dtype of ``x``.

    Shapes
    ------
    x: ``(N, C, H, W)``; grid: ``(N, Ho, Wo, 2)``; output: ``(N, C, Ho, Wo)``.
    """
    x = _images(x)
    grid = float_array(grid, "grid", ndim=4)
    if grid.shape[0] != x.shape[0] or grid.shape[3] != 2:
        raise ValueError(
            f"grid must have shape (N, Ho, Wo, 2) with N = {x.shape[0]} (the batch size "
            f"of x), got {grid.shape}"
        )
    if grid.dtype != x.dtype:
        raise ValueError(
            f"grid has dtype {grid.dtype} but x has dtype {x.dtype}; expected the same "
            f"(convert one with .astype(np.{x.dtype}))"
        )
    if not np.isfinite(grid).all():
        raise ValueError("grid holds NaN or infinite coordinates; expected finite values")
    fill_c = _fill_values(fill, x.shape[1], x.dtype)
    h, w = x.shape[2:]
    if align_corners:
        ix = (grid[..., 0] + 1) / 2 * (w - 1)
        iy = (grid[..., 1] + 1) / 2 * (h - 1)
    else:
        ix = ((grid[..., 0] + 1) * w - 1) / 2
        iy = ((grid[..., 1] + 1) * h - 1) / 2
    return _bilinear(x, ix, iy, fill_c, _Workspace())


def warp_affine(x: np.ndarray, theta: np.ndarray, *, fill: Fill = 0.0) -> np.ndarray:
    """``grid_sample(x, affine_grid(theta, x.shape), fill=fill)``, fused and faster.

    The output has the input's size; ``align_corners=False``. The pixel coordinates
    read are affine in the output's row and column, so they are computed directly
    (in float64 for the per-image coefficients) without building the normalised grid.

    Parameters
    ----------
    x : ndarray
        Images, float32 or float64.
    theta : ndarray
        Affine matrices (output → input, normalised coordinates), e.g. from
        :func:`affine_matrix`.
    fill : float or sequence of float
        Value of the points outside the image (one, or one per channel).

    Returns
    -------
    ndarray
        The warped images, dtype of ``x``.

    Shapes
    ------
    x: ``(N, C, H, W)``; theta: ``(N, 2, 3)``; output: ``(N, C, H, W)``.
    """
    x = _images(x)
    theta = float_array(theta, "theta", ndim=3)
    if theta.shape != (x.shape[0], 2, 3):
        raise ValueError(
            f"theta must have shape (N, 2, 3) with N = {x.shape[0]} (the batch size of x), "
            f"got {theta.shape}"
        )
    if not np.isfinite(theta).all():
        raise ValueError("theta holds NaN or infinite values; expected finite matrices")
    return _warp_affine(x, theta, _fill_values(fill, x.shape[1], x.dtype), _Workspace())


def _warp_affine(x: np.ndarray, theta: np.ndarray, fill: np.ndarray, ws: _Workspace) -> np.ndarray:
    n, _, h, w = x.shape
    dt = x.dtype
    t = np.asarray(theta, dtype=np.float64)
    # Output pixel (i, j) lies at u = j + 1/2 - W/2, v = i + 1/2 - H/2 from the image
    # centre; grid_sample(x, affine_grid(theta)) reads it from pixel coordinates
    #   ix = t00 u + t01 (W/H) v + t02 W/2 + (W - 1)/2
    #   iy = t10 (H/W) u + t11 v + t12 H/2 + (H - 1)/2
    # i.e. ix = a j + b i + c with per-image a, b, c (computed in float64).
    centre_u, centre_v = 0.5 - w / 2, 0.5 - h / 2
    a_x, b_x = t[:, 0, 0], t[:, 0, 1] * (w / h)
    c_x = a_x * centre_u + b_x * centre_v + t[:, 0, 2] * (w / 2) + (w - 1) / 2
    a_y, b_y = t[:, 1, 0] * (h / w), t[:, 1, 1]
    c_y = a_y * centre_u + b_y * centre_v + t[:, 1, 2] * (h / 2) + (h - 1) / 2
    position = np.arange(h * w)
    rows = (position // w).astype(dt)[None, :]
    cols = (position % w).astype(dt)[None, :]
    ix = ws.get("ix", (n, h * w), dt)
    iy = ws.get("iy", (n, h * w), dt)
    along = ws.get("along", (n, h * w), dt)
    for out, a, b, c in ((ix, a_x, b_x, c_x), (iy, a_y, b_y, c_y)):
        # (n, 1) times (1, h·w): a contiguous inner loop, elementwise and deterministic
        np.multiply(b.astype(dt)[:, None], rows, out=out)
        out += c.astype(dt)[:, None]
        np.multiply(a.astype(dt)[:, None], cols, out=along)
        out += along
    return _bilinear(x, ix.reshape(n, h, w), iy.reshape(n, h, w), fill, ws)
    return _bilinear(x, ix, iy, fill, ws)


def affine_matrix(
    angle: np.ndarray | float,
    translate: np.ndarray | Sequence[float],
    scale: np.ndarray | float,
    shear: np.ndarray | Sequence[float],
    size: tuple[int, int],
) -> np.ndarray:
    """Matrices for :func:`affine_grid` that rotate, scale, shear and move images.

    The motion is torchvision's ``transforms.functional.affine`` about the image
    centre: in pixel coordinates relative to the centre (x right, y down) a point ``p``
    moves to ``T · R · S · Sh_y · Sh_x · p`` with

    * ``R`` the rotation by ``angle`` degrees, **clockwise** on screen
      (``[[cos a, -sin a], [sin a, cos a]]`` with y pointing down);
    * ``S`` the scaling by ``scale``;
    * ``Sh_x = [[1, -tan s_x], [0, 1]]``, ``Sh_y = [[1, 0], [-tan s_y, 1]]`` the shears,
      ``(s_x, s_y) = shear`` in degrees;
    * ``T`` the translation by ``translate = (tx, ty)`` pixels (right, down).

    The result is the inverse of that motion (output → input, as sampling needs),
    expressed in the normalised coordinates of :func:`affine_grid`
    (``align_corners=False``).

    Parameters
    ----------
    angle : float or ndarray
        Rotation in degrees, clockwise.
    translate : sequence of 2 floats or ndarray
        ``(tx, ty)`` in pixels.
    scale : float or ndarray
        Scale factor, > 0.
    shear : sequence of 2 floats or ndarray
        ``(s_x, s_y)`` in degrees, each in (-90, 90).
    size : (int, int)
        Image size ``(H, W)``.

    Returns
    -------
    ndarray
        ``theta``, float64.

    Shapes
    ------
    angle, scale: ``(N,)`` or scalars; translate, shear: ``(N, 2)`` or ``(2,)``; they
    broadcast to one batch size ``N`` (1 if all are single values); theta: ``(N, 2, 3)``.
    """
    h, w = _size2(size, "size")
    arrays = {}
    for name, value, last in (
        ("angle", angle, ()),
        ("translate", translate, (2,)),
        ("scale", scale, ()),
        ("shear", shear, (2,)),
    ):
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers, got {value!r}") from None
        if a.ndim > 1 + len(last) or a.shape[a.ndim - len(last) :] != last:
            shape = "(N,) or a number" if not last else "(N, 2) or a pair"
            raise ValueError(f"{name} must have shape {shape}, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite, got {value!r}")
        arrays[name] = a.reshape((-1, *last)) if a.ndim > len(last) else a[None]
    try:
        n = np.broadcast_shapes(*(a.shape[:1] for a in arrays.values()))[0]
    except ValueError:
        sizes = {k: v.shape[0] for k, v in arrays.items()}
        raise ValueError(
            f"angle, translate, scale and shear have different batch sizes: {sizes}"
        ) from None
    if (arrays["scale"] <= 0).any():
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if (np.abs(arrays["shear"]) >= 90).any():
        raise ValueError(f"shear angles must lie in (-90, 90) degrees, got {shear!r}")
    return _affine_matrix(
        np.broadcast_to(arrays["angle"], (n,)),
        np.broadcast_to(arrays["translate"], (n, 2)),
        np.broadcast_to(arrays["scale"], (n,)),
        np.broadcast_to(arrays["shear"], (n, 2)),
        h,
        w,
    )


def _affine_matrix(
    angle: np.ndarray, translate: np.ndarray, s: np.ndarray, shear: np.ndarray, h: int, w: int
) -> np.ndarray:
    """:func:`affine_matrix` of checked float64 arrays ``(n,), (n, 2), (n,), (n, 2)``."""
    n = angle.shape[0]
    rot = np.radians(angle)
    tx, ty = translate.T
    sx, sy = np.radians(shear).T
    # R S Sh_y Sh_x = s [[a, b], [c, d]] (torchvision's closed form; det [[a, b], [c, d]] = 1)
    a = np.cos(rot - sy) / np.cos(sy)
    b = -np.cos(rot - sy) * np.tan(sx) / np.cos(sy) - np.sin(rot)
    c = np.sin(rot - sy) / np.cos(sy)
    d = -np.sin(rot - sy) * np.tan(sx) / np.cos(sy) + np.cos(rot)
    # inverse motion in centred pixel coordinates: p = (R S Sh)^-1 (q - t)
    m = np.empty((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1] = d / s, -b / s
    m[:, 1, 0], m[:, 1, 1] = -c / s, a / s
    m[:, 0, 2] = -(m[:, 0, 0] * tx + m[:, 0, 1] * ty)
    m[:, 1, 2] = -(m[:, 1, 0] * tx + m[:, 1, 1] * ty)
    # to normalised coordinates: x_norm = u / (W/2), y_norm = v / (H/2)
    m[:, 0, 1] *= h / w
    m[:, 1, 0] *= w / h
    m[:, 0, 2] *= 2 / w
    m[:, 1, 2] *= 2 / h
    return m


# --------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


class Transform:
    """Base class of the transforms: ``t(x, rng) -> ndarray`` plus a recorded recipe.

    Subclasses implement ``__call__`` and ``_arguments`` (their constructor arguments,
    normalised); ``config()`` and ``repr()`` come from the latter.
    """

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _arguments(self) -> dict[str, Any]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The recipe: ``{"type": class name, **constructor arguments}``, JSON-able.

        :func:`from_config` rebuilds the transform from it.
        """
        return {"type": type(self).__name__, **_jsonable(self._arguments())}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"


def _transform_config(t: object) -> dict[str, Any]:
    config = getattr(t, "config", None)
    if not callable(config):
        raise ValueError(f"{t!r} has no config(); only cnnlab transforms can be recorded")
    result = config()
    if not isinstance(result, dict):
        raise ValueError(f"{t!r}.config() must return a dict, got {type(result).__name__}")
    return result


def _check_transforms(transforms: object, name: str) -> list[TransformFn]:
    if not isinstance(transforms, (list, tuple)):
        raise ValueError(f"{name} must be a list of transforms, got {type(transforms).__name__}")
    for t in transforms:
        if not callable(t):
            raise ValueError(f"{name} must hold callables t(x, rng), got {t!r}")
    return list(transforms)


def _nested_repr(name: str, transforms: Sequence[object], extra: str = "") -> str:
    lines = [f"{name}("]
    for t in transforms:
        lines += ["    " + line for line in repr(t).splitlines()]
    if extra:
        lines.append(f"    {extra}")
    return "\n".join(lines) + "\n)"


class Compose(Transform):
    """Transforms applied one after the other, all with the same generator.

    ``Compose([])`` is the identity (it returns a copy).

    Parameters
    ----------
    transforms : list of callables
        Each ``t(x, rng) -> ndarray``; called in list order, so they draw from the
        generator in that order.

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, H', W')`` (``H' = H``, ``W' = W`` unless a
    crop changes the size).
    """

    def __init__(self, transforms: Sequence[TransformFn]) -> None:
        self.transforms = _check_transforms(transforms, "transforms")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _images(x)
        _generator(rng)
        if not self.transforms:
            return x.copy()
        for t in self.transforms:
            x = t(x, rng)
        return x

    def _arguments(self) -> dict[str, Any]:
        return {"transforms": list(self.transforms)}

    def config(self) -> dict[str, Any]:
        return {"type": "Compose", "transforms": [_transform_config(t) for t in self.transforms]}

    def __repr__(self) -> str:
        return _nested_repr("Compose", self.transforms)


class AffineParams(NamedTuple):
    """Per-sample parameters drawn by :class:`RandomAffine` (see :func:`affine_matrix`).

    Shapes
    ------
    angle: ``(N,)`` degrees; translate: ``(N, 2)`` pixels ``(tx, ty)``; scale: ``(N,)``;
    shear: ``(N, 2)`` degrees ``(s_x, s_y)``. All float64.
    """

    angle: np.ndarray
    translate: np.ndarray
    scale: np.ndarray
    shear: np.ndarray


class RandomAffine(Transform):
    """Random rotation, translation, scaling and shear of each image (bilinear sampling).

    The arguments mean what they mean in ``torchvision.transforms.RandomAffine``; the
    motion of each image is :func:`affine_matrix` of its own random parameters, about
    the image centre, and the image is resampled by :func:`warp_affine` (bilinear,
    out-of-image points read ``fill``). Differences from torchvision: each *sample*
    gets its own parameters (torchvision draws one set for a whole batched tensor);
    translations are not rounded to whole pixels; out-of-image points read exactly
    ``fill`` (torchvision blends the edge toward it). The transform keeps about a dozen
    scratch arrays of the last batch's size between calls (per thread), which makes it
    ~2× faster; they never influence a result.

    Parameters
    ----------
    degrees : float or (float, float)
        Rotation range in degrees, clockwise positive: ``d`` means ``(-d, d)``; 0 turns
        rotation off.
    translate : (float, float), optional
        Largest shift as fractions ``(fx, fy)`` of width and height, each in [0, 1]:
        ``tx`` is uniform in ``(-fx·W, fx·W)``, ``ty`` in ``(-fy·H, fy·H)``.
    scale : (float, float), optional
        Scale range ``(min, max)``, both > 0.
    shear : float or (float, float) or (float, float, float, float), optional
        Shear ranges in degrees: ``s`` means x shear in ``(-s, s)``; a pair is the x
        range; four values are the x range then the y range. Each within (-90, 90).
    fill : float or sequence of float
        Value of the pixels that come from outside the image (one, or one per channel).
        For normalised images give the normalised background, ``-mean/std``.

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, H, W)``.
    """

    def __init__(
        self,
        degrees: float | Sequence[float],
        translate: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        shear: float | Sequence[float] | None = None,
        fill: Fill = 0.0,
    ) -> None:
        self.degrees = _symmetric_or_range(degrees, "degrees")
        self.translate: tuple[float, float] | None = None
        if translate is not None:
            tr = _numbers(translate, "translate", (2,))
            if not all(0.0 <= v <= 1.0 for v in tr):
                raise ValueError(
                    f"translate must be fractions (fx, fy) of width and height, each in "
                    f"[0, 1], got {tuple(translate)!r}"
                )
            self.translate = (tr[0], tr[1])
        self.scale: tuple[float, float] | None = None
        if scale is not None:
            sc = _numbers(scale, "scale", (2,))
            if min(sc) <= 0:
                raise ValueError(f"scale must be a range (min, max) of values > 0, got {sc!r}")
            self.scale = _ordered((sc[0], sc[1]), "scale")
        self.shear: tuple[float, ...] | None = None
        if shear is not None:
            if _is_number(shear):
                sh: tuple[float, ...] = _symmetric_or_range(shear, "shear")
            else:
                sh = _numbers(shear, "shear", (2, 4))
                _ordered((sh[0], sh[1]), "shear")
                if len(sh) == 4:
                    _ordered((sh[2], sh[3]), "shear (y range)")
            if max(abs(v) for v in sh) >= 90:
                raise ValueError(f"shear angles must lie in (-90, 90) degrees, got {shear!r}")
            self.shear = sh
        self.fill = _fill(fill)
        self._workspace = _Workspace()

    def sample_params(self, n: int, h: int, w: int, rng: np.random.Generator) -> AffineParams:
        """Draw the parameters of ``n`` images of size ``h × w`` (the ``__call__`` order)."""
        n = _count(n, "n")
        h, w = _size2((h, w), "(h, w)")
        rng = _generator(rng)
        angle = rng.uniform(self.degrees[0], self.degrees[1], size=n)
        if self.translate is not None:
            most = np.array([self.translate[0] * w, self.translate[1] * h])
            translate = rng.uniform(-most, most, size=(n, 2))
        else:
            translate = np.zeros((n, 2))
        scale = rng.uniform(*self.scale, size=n) if self.scale is not None else np.ones(n)
        shear = np.zeros((n, 2))
        if self.shear is not None:
            shear[:, 0] = rng.uniform(self.shear[0], self.shear[1], size=n)
            if len(self.shear) == 4:
                shear[:, 1] = rng.uniform(self.shear[2], self.shear[3], size=n)
        return AffineParams(angle, translate, scale, shear)

    def sample_matrices(self, n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        """The matrices ``theta (n, 2, 3)`` that ``__call__`` would use with this ``rng``.

        ``t(x, rng)`` equals ``grid_sample(x, affine_grid(theta, x.shape), fill=t.fill)``
        for ``theta = t.sample_matrices(N, H, W, rng)`` drawn from a generator in the
        same state (up to rounding: ``__call__`` fuses the two steps).
        """
        p = self.sample_params(n, h, w, rng)
        return _affine_matrix(p.angle, p.translate, p.scale, p.shear, h, w)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _images(x)
        n, c, h, w = x.shape
        fill = _fill_values(self.fill, c, x.dtype)
        theta = self.sample_matrices(n, h, w, rng)
        return _warp_affine(x, theta, fill, self._workspace)

    def _arguments(self) -> dict[str, Any]:
        return {
            "degrees": self.degrees,
            "translate": self.translate,
            "scale": self.scale,
            "shear": self.shear,
            "fill": self.fill,
        }


def _padding4(padding: object) -> tuple[int, int, int, int]:
    """torchvision's padding: ``p``, ``(left/right, top/bottom)`` or ``(l, t, r, b)``."""
    if padding is None:
        return (0, 0, 0, 0)
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        values: tuple[int, ...] = (int(padding),) * 4
    elif (
        isinstance(padding, (tuple, list))
        and len(padding) in (2, 4)
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in padding)
    ):
        values = tuple(int(v) for v in padding)
        if len(values) == 2:
            values = values * 2
    else:
        raise ValueError(
            f"padding must be an int, (left/right, top/bottom) or (left, top, right, "
            f"bottom) ints, got {padding!r}"
        )
    if min(values) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return values[0], values[1], values[2], values[3]


class RandomCrop(Transform):
    """A random ``size`` window of each (padded) image, as ``torchvision.transforms.RandomCrop``.

    The batch is padded with ``fill`` (``padding``), then each sample gets its own
    window: top offset uniform in ``0 … H_pad - h``, left offset in ``0 … W_pad - w``
    (integers, both ends included). ``RandomCrop(28, padding=4)`` on 28×28 digits shifts
    each by up to 4 pixels.

    Parameters
    ----------
    size : int or (int, int)
        Output size ``(h, w)``; an int means a square.
    padding : int or (int, int) or (int, int, int, int)
        Border added first: all sides, ``(left/right, top/bottom)``, or ``(left, top,
        right, bottom)`` (torchvision's order). ``None`` means 0.
    pad_if_needed : bool
        If the (padded) image is smaller than ``size``, pad each short side by the
        shortfall on both ends first (torchvision's rule) instead of refusing.
    fill : float or sequence of float
        Value of the padding (one, or one per channel); for normalised images the
        normalised background, ``-mean/std``.

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, h, w)``.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = 0,
        pad_if_needed: bool = False,
        fill: Fill = 0.0,
    ) -> None:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = (int(size), int(size))
        self.size = _size2(size, "size")
        self.padding = _padding4(padding)
        if not isinstance(pad_if_needed, (bool, np.bool_)):
            raise ValueError(f"pad_if_needed must be True or False, got {pad_if_needed!r}")
        self.pad_if_needed = bool(pad_if_needed)
        self.fill = _fill(fill)

    def padded_padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The padding ``(left, top, right, bottom)`` used for ``h × w`` images."""
        left, top, right, bottom = self.padding
        th, tw = self.size
        if self.pad_if_needed:
            if w + left + right < tw:
                short = tw - (w + left + right)
                left, right = left + short, right + short
            if h + top + bottom < th:
                short = th - (h + top + bottom)
                top, bottom = top + short, bottom + short
        if h + top + bottom < th or w + left + right < tw:
            raise ValueError(
                f"size {self.size} is larger than the padded input "
                f"({h + top + bottom}, {w + left + right}) (input ({h}, {w}), padding "
                f"{self.padding}); use a smaller size, more padding, or pad_if_needed=True"
            )
        return left, top, right, bottom

    def sample_params(
        self, n: int, h: int, w: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw the window offsets ``(top, left)``, each ``(n,)`` int64, in the padded image."""
        n = _count(n, "n")
        h, w = _size2((h, w), "(h, w)")
        rng = _generator(rng)
        left, top, right, bottom = self.padded_padding(h, w)
        th, tw = self.size
        tops = rng.integers(0, h + top + bottom - th + 1, size=n)
        lefts = rng.integers(0, w + left + right - tw + 1, size=n)
        return tops, lefts

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _images(x)
        n, c, h, w = x.shape
        fill = _fill_values(self.fill, c, x.dtype)
        tops, lefts = self.sample_params(n, h, w, rng)
        left, top, right, bottom = self.padded_padding(h, w)
        if left or top or right or bottom:
            padded = np.empty((n, c, h + top + bottom, w + left + right), x.dtype)
            padded[...] = fill
            padded[:, :, top : top + h, left : left + w] = x
        else:
            padded = x
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.size, axis=(2, 3))
        # windows[k, :, tops[k], lefts[k]] is sample k's (C, h, w) crop
        return np.ascontiguousarray(windows[np.arange(n), :, tops, lefts])

    def _arguments(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "padding": self.padding,
            "pad_if_needed": self.pad_if_needed,
            "fill": self.fill,
        }


def _probability(p: object) -> float:
    if not _is_number(p) or not 0.0 <= float(p) <= 1.0:  # type: ignore[arg-type]
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)  # type: ignore[arg-type]


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``.

    Leave it out for digits and letters: a mirrored 2, 3 or 7 is not a digit.

    Parameters
    ----------
    p : float
        Probability that a sample is flipped (each sample drawn on its own).

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, H, W)``.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = _probability(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _images(x)
        flip = np.less(_generator(rng).random(x.shape[0]), self.p)
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def _arguments(self) -> dict[str, Any]:
        return {"p": self.p}


class RandomApply(Transform):
    """Apply ``transforms`` (in order) to each sample with probability ``p``.

    The chosen samples are transformed together as one smaller batch; the others are
    copied unchanged. The transforms must keep the image size.

    Parameters
    ----------
    transforms : list of callables
        Each ``t(x, rng) -> ndarray``.
    p : float
        Probability that a sample is transformed.

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, H, W)``.
    """

    def __init__(self, transforms: Sequence[TransformFn], p: float = 0.5) -> None:
        self.transforms = _check_transforms(transforms, "transforms")
        self.p = _probability(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _images(x)
        chosen = np.flatnonzero(_generator(rng).random(x.shape[0]) < self.p)
        out = x.copy()
        if chosen.size == 0:
            return out
        part = x[chosen]
        for t in self.transforms:
            part = t(part, rng)
        if part.shape != (chosen.size, *x.shape[1:]):
            raise ValueError(
                f"RandomApply needs transforms that keep the image size; they turned "
                f"{(chosen.size, *x.shape[1:])} into {part.shape}"
            )
        out[chosen] = part
        return out

    def _arguments(self) -> dict[str, Any]:
        return {"transforms": list(self.transforms), "p": self.p}

    def config(self) -> dict[str, Any]:
        return {
            "type": "RandomApply",
            "transforms": [_transform_config(t) for t in self.transforms],
            "p": self.p,
        }

    def __repr__(self) -> str:
        return _nested_repr("RandomApply", self.transforms, extra=f"p={self.p!r}")


class Normalize(Transform):
    """``(x - mean) / std`` per channel, as ``torchvision.transforms.Normalize``.

    Draws nothing from the generator (``rng`` may be omitted).

    Parameters
    ----------
    mean : float or sequence of float
        One value, or one per channel.
    std : float or sequence of float
        One value > 0, or one per channel.

    Shapes
    ------
    x: ``(N, C, H, W)``; output: ``(N, C, H, W)``.
    """

    def __init__(self, mean: Fill, std: Fill) -> None:
        self.mean = _fill(mean, "mean")
        self.std = _fill(std, "std")
        if min(np.atleast_1d(self.std)) <= 0:
            raise ValueError(f"std must be > 0, got {std!r}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = _images(x)
        c = x.shape[1]
        mean = _fill_values(self.mean, c, x.dtype, "mean")
        std = _fill_values(self.std, c, x.dtype, "std")
        return (x - mean) / std

    def normalized_value(self, value: float = 0.0) -> float | tuple[float, ...]:
        """What a raw pixel ``value`` becomes: ``(value - mean) / std`` (per channel).

        Give ``normalized_value(0.0)`` as ``fill`` to a geometric transform that runs
        after this normalisation, so the uncovered background stays black.
        """
        value = _number(value, "value")
        mean, std = np.atleast_1d(self.mean), np.atleast_1d(self.std)
        out = (value - mean) / std
        if out.size == 1:
            return float(out[0])
        return tuple(float(v) for v in out)

    def _arguments(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}


_REGISTRY: dict[str, type[Transform]] = {
    cls.__name__: cls
    for cls in (Compose, RandomAffine, RandomCrop, RandomHorizontalFlip, RandomApply, Normalize)
}


def from_config(config: Mapping[str, Any]) -> Transform:
    """Rebuild a transform from its :meth:`Transform.config` (e.g. read back from JSON).

    ``from_config(t.config())`` behaves exactly as ``t``.
    """
    if not isinstance(config, Mapping) or "type" not in config:
        raise ValueError(f"config must be a dict with a 'type' key, got {config!r}")
    kind = config["type"]
    if kind not in _REGISTRY:
        raise ValueError(
            f"config has unknown transform type {kind!r}; expected one of {sorted(_REGISTRY)}"
        )
    args = {k: v for k, v in config.items() if k != "type"}
    if "transforms" in args:
        args["transforms"] = [from_config(c) for c in args["transforms"]]
    try:
        return _REGISTRY[kind](**args)
    except TypeError as error:
        raise ValueError(f"config for {kind} has bad arguments: {error}") from None
