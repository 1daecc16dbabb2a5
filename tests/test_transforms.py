"""Data augmentation against PyTorch's grid_sample/affine_grid and per-image loop oracles.

Tolerances: float64 results must agree with PyTorch to 1e-12 (absolute, on values of
order 1). Float32 to 3e-5: a float32 pixel coordinate of up to ~100 carries ~4e-6 px of
rounding (on either side), times image slopes of up to ~5 per pixel for N(0, 1) noise.
Crops, flips and normalisation are exact.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from PIL import Image

from cnnlab.data import transforms as T
from cnnlab.plots import save_augment_grid

TOL64 = 1e-12
TOL32 = 3e-5


def _torch_sample(x, grid, align_corners=False):
    return TF.grid_sample(
        torch.from_numpy(x),
        torch.from_numpy(grid),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align_corners,
    ).numpy()


def _torch_warp(x, theta):
    t = torch.from_numpy(x)
    grid = TF.affine_grid(torch.from_numpy(theta.astype(x.dtype)), list(t.shape), False)
    return TF.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _close(actual, expected, tol):
    err = np.abs(actual - expected).max() if actual.size else 0.0
    assert actual.shape == expected.shape
    assert err <= tol, f"max |cnnlab - reference| = {err:.3g} > {tol}"


# --------------------------------------------------------------------------------------
# functional core vs PyTorch
# --------------------------------------------------------------------------------------

SHAPES = [
    # (N, C, H, W, Ho, Wo)
    (3, 1, 28, 28, 28, 28),
    (2, 3, 7, 11, 5, 9),  # non-square, several channels, output smaller
    (1, 2, 5, 4, 9, 6),  # output larger than input
    (4, 1, 1, 6, 3, 3),  # a single row
]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_affine_grid_matches_torch(shape, align_corners):
    n, c, _, _, ho, wo = shape
    theta = np.random.default_rng(1).standard_normal((n, 2, 3))
    grid = T.affine_grid(theta, (n, c, ho, wo), align_corners=align_corners)
    ref = TF.affine_grid(torch.from_numpy(theta), [n, c, ho, wo], align_corners=align_corners)
    _close(grid, ref.numpy(), TOL64)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_grid_sample_matches_torch(shape, align_corners):
    n, c, h, w, ho, wo = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w))
    # points inside, on the edges and well outside the image
    grid = rng.uniform(-1.6, 1.6, size=(n, ho, wo, 2))
    grid[:, 0, :, :] = -1.0
    grid[:, -1, :, 0] = 1.0
    _close(
        T.grid_sample(x, grid, align_corners=align_corners),
        _torch_sample(x, grid, align_corners),
        TOL64,
    )


def test_grid_sample_at_pixel_centres_reads_the_pixels():
    # an exact oracle without PyTorch: the grid of the identity lands on pixel centres
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 5))
    identity = np.tile(np.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
    y = T.grid_sample(x, T.affine_grid(identity, x.shape))
    _close(y, x, TOL64)  # normalising and back rounds the coordinates by ~1e-16
    assert np.array_equal(T.warp_affine(x, identity), x)  # fused: the coordinates are exact


def test_grid_sample_float32_matches_torch_float32():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 2, 12, 10)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, size=(5, 8, 9, 2)).astype(np.float32)
    y = T.grid_sample(x, grid)
    assert y.dtype == np.float32
    _close(y, _torch_sample(x, grid), TOL32)


@pytest.mark.parametrize("fill", [0.7, (-0.4, 2.0, 0.25)])
def test_grid_sample_fill_is_sampling_x_minus_fill_then_adding_it(fill):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 7))
    grid = rng.uniform(-1.5, 1.5, size=(2, 4, 5, 2))
    f = np.broadcast_to(np.asarray(fill, dtype=np.float64).reshape(-1), (3,))[:, None, None]
    expected = _torch_sample(x - f, grid) + f
    _close(T.grid_sample(x, grid, fill=fill), expected, TOL64)


@pytest.mark.parametrize("dtype,tol", [(np.float64, TOL64), (np.float32, TOL32)])
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (3, 3, 9, 13), (2, 2, 8, 5)])
def test_warp_affine_matches_torch(shape, dtype, tol):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    theta = np.eye(2, 3) + 0.5 * rng.standard_normal((shape[0], 2, 3))
    y = T.warp_affine(x, theta)
    assert y.dtype == dtype
    _close(y, _torch_warp(x, theta).numpy(), tol)
    fill = 0.3 * np.arange(1, shape[1] + 1)
    f = fill[:, None, None].astype(dtype)
    _close(T.warp_affine(x, theta, fill=tuple(fill)), _torch_warp(x - f, theta).numpy() + f, tol)


@pytest.mark.parametrize("limit", ["_FLOAT32_EXACT_INTEGERS", "_INT32_LIMIT"])
def test_warp_affine_index_paths_for_huge_batches(monkeypatch, limit):
    # Gather indices are computed in float32 below 2**24 (else float64) and converted
    # via int32 below 2**31 (else directly to int64). Lower a limit so a small batch
    # takes the other path: the same result.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 11, 9)).astype(np.float32)
    theta = np.eye(2, 3) + 0.4 * rng.standard_normal((3, 2, 3))
    expected = T.warp_affine(x, theta, fill=0.5)
    monkeypatch.setattr(T, limit, 4)
    assert np.array_equal(T.warp_affine(x, theta, fill=0.5), expected)


# --------------------------------------------------------------------------------------
# the affine matrix
# --------------------------------------------------------------------------------------


def _hand_theta(angle, tx, ty, scale, sx, sy, h, w):
    """The forward motion composed matrix by matrix, inverted, then normalised."""
    a, sxr, syr = (math.radians(v) for v in (angle, sx, sy))
    rotate = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    zoom = np.diag([scale, scale, 1.0])
    shear_x = np.array([[1, -math.tan(sxr), 0], [0, 1, 0], [0, 0, 1]])
    shear_y = np.array([[1, 0, 0], [-math.tan(syr), 1, 0], [0, 0, 1]])
    move = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    forward = move @ rotate @ zoom @ shear_y @ shear_x  # centred pixel coordinates
    to_pixels = np.diag([w / 2, h / 2, 1.0])  # normalised -> centred pixels
    theta = np.linalg.inv(to_pixels) @ np.linalg.inv(forward) @ to_pixels
    return theta[:2]


def test_affine_matrix_matches_hand_composition():
    rng = np.random.default_rng(8)
    n, h, w = 20, 23, 31
    angle = rng.uniform(-180, 180, n)
    translate = rng.uniform(-6, 6, (n, 2))
    scale = rng.uniform(0.5, 2.0, n)
    shear = rng.uniform(-40, 40, (n, 2))
    theta = T.affine_matrix(angle, translate, scale, shear, (h, w))
    assert theta.shape == (n, 2, 3)
    for k in range(n):
        expected = _hand_theta(angle[k], *translate[k], scale[k], *shear[k], h, w)
        _close(theta[k], expected, 1e-12)


def test_affine_matrix_broadcasts_single_values():
    theta = T.affine_matrix([10.0, 20.0], (1.0, 2.0), 1.5, (0.0, 0.0), (8, 8))
    assert theta.shape == (2, 2, 3)
    _close(theta[1], _hand_theta(20.0, 1.0, 2.0, 1.5, 0.0, 0.0, 8, 8), 1e-12)
    assert T.affine_matrix(0.0, (0.0, 0.0), 1.0, (0.0, 0.0), (3, 4)).shape == (1, 2, 3)


def _dot(h, w, row, col):
    x = np.zeros((1, 1, h, w))
    x[0, 0, row, col] = 1.0
    return x


@pytest.mark.parametrize("tx,ty", [(3, 0), (0, -2), (-4, 5)])
def test_translation_moves_a_pixel_right_and_down(tx, ty):
    h, w = 13, 12
    theta = T.affine_matrix(0.0, (tx, ty), 1.0, (0.0, 0.0), (h, w))
    y = T.warp_affine(_dot(h, w, 4, 5), theta)
    _close(y, _dot(h, w, 4 + ty, 5 + tx), 1e-12)


@pytest.mark.parametrize("size", [6, 7])
def test_rotation_by_90_degrees_is_clockwise_rot90(size):
    x = np.random.default_rng(9).standard_normal((2, 3, size, size))
    theta = T.affine_matrix([90.0, -90.0], (0.0, 0.0), 1.0, (0.0, 0.0), (size, size))
    y = T.warp_affine(x, theta)
    # positive angles turn clockwise on screen (torchvision's RandomAffine)
    _close(y[:1], np.rot90(x[:1], k=-1, axes=(2, 3)), 1e-12)
    _close(y[1:], np.rot90(x[1:], k=1, axes=(2, 3)), 1e-12)


def test_rotation_of_a_non_square_image_moves_a_pixel_about_the_centre():
    # 9x11: the centre is pixel (4, 5); 90° clockwise takes offset (u, v) to (-v, u)
    h, w = 9, 11
    theta = T.affine_matrix(90.0, (0.0, 0.0), 1.0, (0.0, 0.0), (h, w))
    y = T.warp_affine(_dot(h, w, 4 + 1, 5 + 2), theta)  # (u, v) = (2, 1)
    _close(y, _dot(h, w, 4 + 2, 5 - 1), 1e-12)  # (u, v) = (-1, 2)


def test_shear_x_by_45_degrees_shifts_rows_by_their_offset():
    # Sh_x = [[1, -tan s], [0, 1]]: a pixel 2 rows below the centre moves 2 columns left
    h, w = 9, 13  # centre pixel (4, 6)
    theta = T.affine_matrix(0.0, (0.0, 0.0), 1.0, (45.0, 0.0), (h, w))
    y = T.warp_affine(_dot(h, w, 6, 6), theta)
    _close(y, _dot(h, w, 6, 4), 1e-12)
    theta = T.affine_matrix(0.0, (0.0, 0.0), 1.0, (0.0, 45.0), (h, w))
    y = T.warp_affine(_dot(h, w, 4, 8), theta)  # Sh_y: 2 columns right moves 2 rows up
    _close(y, _dot(h, w, 2, 8), 1e-12)


def test_scale_2_moves_a_pixel_twice_as_far_from_the_centre():
    h, w = 11, 11  # centre pixel (5, 5)
    theta = T.affine_matrix(0.0, (0.0, 0.0), 2.0, (0.0, 0.0), (h, w))
    y = T.warp_affine(_dot(h, w, 4, 7), theta)
    assert y[0, 0, 3, 9] == pytest.approx(1.0, abs=1e-12)
    assert y.argmax() == np.ravel_multi_index((0, 0, 3, 9), y.shape)


# --------------------------------------------------------------------------------------
# RandomAffine
# --------------------------------------------------------------------------------------

AFFINES = [
    T.RandomAffine(30),
    T.RandomAffine((-10, 25), translate=(0.2, 0.1)),
    T.RandomAffine(0, scale=(0.7, 1.3)),
    T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10),
    T.RandomAffine(5, shear=(-8, 4, -3, 12), fill=-0.42),
    T.RandomAffine(45, translate=(0.3, 0.3), fill=(0.5, -1.0)),  # a fill per channel
]


@pytest.mark.parametrize("dtype,tol", [(np.float64, TOL64), (np.float32, TOL32)])
@pytest.mark.parametrize("transform", AFFINES, ids=repr)
def test_random_affine_is_grid_sample_of_its_matrices(transform, dtype, tol):
    x = np.random.default_rng(10).standard_normal((7, 2, 13, 17)).astype(dtype)
    y = transform(x, np.random.default_rng(11))
    theta = transform.sample_matrices(7, 13, 17, np.random.default_rng(11))
    f = np.asarray(transform.fill, dtype=dtype).reshape(-1, 1, 1)
    assert y.dtype == dtype
    _close(y, _torch_warp(x - f, theta).numpy() + f, tol)


def test_random_affine_draws_parameters_in_the_documented_order():
    transform = T.RandomAffine(
        (-10, 20), translate=(0.2, 0.3), scale=(0.8, 1.5), shear=(1, 2, 3, 4)
    )
    n, h, w = 6, 10, 15
    params = transform.sample_params(n, h, w, np.random.default_rng(12))
    oracle = np.random.default_rng(12)
    angle = oracle.uniform(-10, 20, n)
    translate = oracle.uniform([-0.2 * w, -0.3 * h], [0.2 * w, 0.3 * h], (n, 2))
    scale = oracle.uniform(0.8, 1.5, n)
    shear_x = oracle.uniform(1, 2, n)
    shear_y = oracle.uniform(3, 4, n)
    assert np.array_equal(params.angle, angle)
    assert np.array_equal(params.translate, translate)
    assert np.array_equal(params.scale, scale)
    assert np.array_equal(params.shear, np.stack([shear_x, shear_y], axis=1))
    theta = transform.sample_matrices(n, h, w, np.random.default_rng(12))
    for k in range(n):
        expected = _hand_theta(angle[k], *translate[k], scale[k], shear_x[k], shear_y[k], h, w)
        _close(theta[k], expected, 1e-12)


def test_random_affine_ranges_are_respected():
    transform = T.RandomAffine(7, translate=(0.25, 0.5), scale=(0.9, 1.2), shear=3)
    p = transform.sample_params(2000, 20, 8, np.random.default_rng(13))
    assert -7 <= p.angle.min() < -6 and 6 < p.angle.max() <= 7
    assert np.abs(p.translate[:, 0]).max() <= 2.0 and np.abs(p.translate[:, 1]).max() <= 10.0
    assert np.abs(p.translate[:, 1]).max() > 9.0
    assert 0.9 <= p.scale.min() and p.scale.max() <= 1.2
    assert np.abs(p.shear[:, 0]).max() <= 3 and not p.shear[:, 1].any()


def test_pixels_equal_to_fill_stay_exactly_fill():
    # a blank (background-only) image must stay blank under any motion: fill is
    # read wherever the image moved away
    x = np.full((16, 3, 10, 12), -0.4242, dtype=np.float32)
    transform = T.RandomAffine(40, translate=(0.3, 0.3), scale=(0.5, 1.5), shear=20, fill=-0.4242)
    assert np.array_equal(transform(x, np.random.default_rng(14)), x)
    crop = T.RandomCrop((8, 14), padding=3, fill=-0.4242)
    assert np.all(crop(x, np.random.default_rng(14)) == np.float32(-0.4242))


# --------------------------------------------------------------------------------------
# RandomCrop, RandomHorizontalFlip, Normalize, RandomApply: loop oracles
# --------------------------------------------------------------------------------------

CROPS = [
    # (input shape, size, padding, pad_if_needed, fill, padding as (l, t, r, b))
    ((5, 1, 28, 28), 28, 4, False, 0.0, (4, 4, 4, 4)),
    ((4, 3, 7, 10), (5, 6), 0, False, (1.0, 2.0, 3.0), (0, 0, 0, 0)),
    ((3, 2, 6, 9), (8, 7), (1, 2), False, -0.5, (1, 2, 1, 2)),
    ((3, 1, 6, 5), (4, 7), (0, 1, 2, 0), False, 0.25, (0, 1, 2, 0)),
    ((2, 1, 4, 3), (6, 5), 0, True, 9.0, (2, 2, 2, 2)),  # shortfall 2 on both ends
]


@pytest.mark.parametrize("shape,size,padding,needed,fill,ltrb", CROPS)
def test_random_crop_matches_per_image_loop(shape, size, padding, needed, fill, ltrb):
    x = np.random.default_rng(15).standard_normal(shape)
    crop = T.RandomCrop(size, padding=padding, pad_if_needed=needed, fill=fill)
    y = crop(x, np.random.default_rng(16))

    n, c, h, w = shape
    th, tw = (size, size) if isinstance(size, int) else size
    left, top, right, bottom = ltrb
    oracle = np.random.default_rng(16)
    tops = oracle.integers(0, h + top + bottom - th + 1, size=n)
    lefts = oracle.integers(0, w + left + right - tw + 1, size=n)
    fills = np.broadcast_to(np.asarray(fill, dtype=float).reshape(-1), (c,))
    expected = np.empty((n, c, th, tw))
    for k in range(n):
        for ch in range(c):
            padded = np.pad(x[k, ch], ((top, bottom), (left, right)), constant_values=fills[ch])
            expected[k, ch] = padded[tops[k] : tops[k] + th, lefts[k] : lefts[k] + tw]
    assert np.array_equal(y, expected)


def test_random_crop_offsets_cover_every_position():
    crop = T.RandomCrop(3, padding=1)
    tops, lefts = crop.sample_params(4000, 4, 5, np.random.default_rng(17))
    assert set(tops.tolist()) == set(range(4)) and set(lefts.tolist()) == set(range(5))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_flip_matches_per_image_loop(p):
    x = np.random.default_rng(18).standard_normal((40, 2, 5, 6)).astype(np.float32)
    y = T.RandomHorizontalFlip(p)(x, np.random.default_rng(19))
    chosen = np.random.default_rng(19).random(40) < p
    expected = np.stack([x[k, :, :, ::-1] if chosen[k] else x[k] for k in range(40)])
    assert y.dtype == np.float32
    assert np.array_equal(y, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_torch(dtype):
    x = np.random.default_rng(20).random((4, 3, 5, 6)).astype(dtype)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    y = T.Normalize(mean, std)(x)
    t = torch.from_numpy(x)
    m = torch.tensor(mean, dtype=t.dtype)[:, None, None]
    s = torch.tensor(std, dtype=t.dtype)[:, None, None]
    assert y.dtype == dtype
    assert np.array_equal(y, ((t - m) / s).numpy())  # elementwise IEEE: bit-identical
    single = T.Normalize(0.1307, 0.3081)(x, np.random.default_rng(0))
    assert np.array_equal(single, ((t - 0.1307) / 0.3081).numpy())


def test_normalized_value_is_the_normalised_background():
    norm = T.Normalize(0.1307, 0.3081)
    assert norm.normalized_value() == pytest.approx(-0.1307 / 0.3081, rel=1e-15)
    assert norm.normalized_value(1.0) == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-15)
    rgb = T.Normalize((0.5, 0.4, 0.3), (0.5, 0.2, 0.1))
    assert rgb.normalized_value() == pytest.approx((-1.0, -2.0, -3.0))


def test_random_apply_matches_loop_oracle():
    x = np.random.default_rng(21).standard_normal((30, 1, 9, 9))
    inner = T.RandomAffine(20, translate=(0.1, 0.1))
    y = T.RandomApply([inner], p=0.4)(x, np.random.default_rng(22))
    oracle = np.random.default_rng(22)
    chosen = np.flatnonzero(oracle.random(30) < 0.4)
    expected = x.copy()
    expected[chosen] = _torch_warp(x[chosen], inner.sample_matrices(chosen.size, 9, 9, oracle))
    assert 0 < chosen.size < 30
    _close(y, expected, TOL64)
    assert np.array_equal(T.RandomApply([inner], p=0.0)(x, np.random.default_rng(0)), x)


# --------------------------------------------------------------------------------------
# determinism, generator order, recipes
# --------------------------------------------------------------------------------------


def _pipeline():
    bg = T.Normalize(0.1307, 0.3081).normalized_value()
    return T.Compose(
        [
            T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, fill=bg),
            T.RandomCrop(28, padding=2, fill=bg),
            T.RandomApply([T.RandomHorizontalFlip(1.0)], p=0.5),
            T.Normalize(0.0, 2.0),
        ]
    )


def test_same_generator_state_gives_bit_identical_output():
    x = np.random.default_rng(23).random((32, 1, 28, 28)).astype(np.float32)
    keep = x.copy()
    pipeline = _pipeline()
    a = pipeline(x, np.random.default_rng([7, 2, 11]))
    pipeline(np.ones((5, 1, 30, 29), np.float32), np.random.default_rng(0))  # other shapes
    b = pipeline(x, np.random.default_rng([7, 2, 11]))  # scratch buffers reused
    c = _pipeline()(x, np.random.default_rng([7, 2, 11]))  # a fresh pipeline
    d = pickle.loads(pickle.dumps(pipeline))(x, np.random.default_rng([7, 2, 11]))
    assert a.dtype == np.float32 and a.shape == x.shape
    for other in (b, c, d):
        assert np.array_equal(a, other)
    assert np.array_equal(x, keep)  # the input is untouched
    assert not np.shares_memory(a, x)
    assert not np.array_equal(a, pipeline(x, np.random.default_rng([7, 2, 12])))


def test_compose_calls_transforms_in_order_with_one_generator():
    x = np.random.default_rng(24).standard_normal((8, 2, 10, 10))
    first, second = T.RandomAffine(30), T.RandomCrop(6, padding=1)
    y = T.Compose([first, second])(x, np.random.default_rng(25))
    rng = np.random.default_rng(25)
    assert np.array_equal(y, second(first(x, rng), rng))
    swapped = T.Compose([second, first])(x, np.random.default_rng(25))
    assert swapped.shape == y.shape and not np.array_equal(swapped, y)
    empty = T.Compose([])(x, np.random.default_rng(0))
    assert np.array_equal(empty, x) and empty is not x


def test_transforms_use_no_global_random_state():
    np.random.seed(0)  # noqa: NPY002 (the legacy global state is what is checked)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    torch_before = torch.random.get_rng_state().clone()
    _pipeline()(np.zeros((4, 1, 28, 28), np.float32), np.random.default_rng(1))
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert torch.equal(torch.random.get_rng_state(), torch_before)


def test_config_round_trips_through_json():
    pipeline = _pipeline()
    config = pipeline.config()
    text = json.dumps(config)
    rebuilt = T.from_config(json.loads(text))
    assert rebuilt.config() == config
    assert repr(rebuilt) == repr(pipeline)
    x = np.random.default_rng(26).random((6, 1, 28, 28)).astype(np.float32)
    assert np.array_equal(
        rebuilt(x, np.random.default_rng(3)), pipeline(x, np.random.default_rng(3))
    )
    assert config["transforms"][0] == {
        "type": "RandomAffine",
        "degrees": [-15.0, 15.0],
        "translate": [0.1, 0.1],
        "scale": [0.9, 1.1],
        "shear": [-10.0, 10.0],
        "fill": pytest.approx(-0.1307 / 0.3081),
    }


def test_reprs_show_the_arguments():
    assert repr(T.RandomAffine(10, translate=(0.1, 0.2))) == (
        "RandomAffine(degrees=(-10.0, 10.0), translate=(0.1, 0.2), scale=None, shear=None, "
        "fill=0.0)"
    )
    assert repr(T.RandomCrop(28, padding=4)) == (
        "RandomCrop(size=(28, 28), padding=(4, 4, 4, 4), pad_if_needed=False, fill=0.0)"
    )
    assert repr(T.RandomHorizontalFlip()) == "RandomHorizontalFlip(p=0.5)"
    assert repr(T.Normalize((0.5, 0.4), 0.2)) == "Normalize(mean=(0.5, 0.4), std=0.2)"
    nested = repr(T.Compose([T.RandomApply([T.RandomHorizontalFlip()], p=0.3)]))
    assert nested == (
        "Compose(\n    RandomApply(\n        RandomHorizontalFlip(p=0.5)\n        p=0.3\n    )\n)"
    )


# --------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------

X = np.zeros((2, 1, 8, 8))
RNG = np.random.default_rng(0)

BAD_CONSTRUCTORS = [
    (lambda: T.RandomAffine(-5), "degrees must be >= 0"),
    (lambda: T.RandomAffine((10, -10)), r"degrees must be a range \(min, max\) with min <= max"),
    (lambda: T.RandomAffine((1, 2, 3)), "degrees must be a sequence of 2 numbers"),
    (lambda: T.RandomAffine(True), "degrees must be a sequence"),
    (lambda: T.RandomAffine(float("nan")), "degrees must be a finite number"),
    (lambda: T.RandomAffine(0, translate=(0.1, 1.5)), r"translate must be fractions"),
    (lambda: T.RandomAffine(0, translate=(-0.1, 0.1)), r"translate must be fractions"),
    (lambda: T.RandomAffine(0, translate=0.1), "translate must be a sequence of 2"),
    (lambda: T.RandomAffine(0, scale=(0.0, 1.0)), "scale must be a range .* > 0"),
    (lambda: T.RandomAffine(0, scale=(1.2, 0.8)), "scale must be a range .* min <= max"),
    (lambda: T.RandomAffine(0, shear=-3), "shear must be >= 0"),
    (lambda: T.RandomAffine(0, shear=(1, 2, 3)), "shear must be a sequence of 2 or 4"),
    (lambda: T.RandomAffine(0, shear=(0, 0, 5, 1)), r"shear \(y range\) must be a range"),
    (lambda: T.RandomAffine(0, shear=90), r"shear angles must lie in \(-90, 90\)"),
    (lambda: T.RandomAffine(0, fill="black"), "fill must be a number or a sequence"),
    (lambda: T.RandomCrop(0), r"size must be \(H, W\)"),
    (lambda: T.RandomCrop((3, 4, 5)), r"size must be \(H, W\)"),
    (lambda: T.RandomCrop(3, padding=-1), "padding must be >= 0"),
    (lambda: T.RandomCrop(3, padding=(1, 2, 3)), "padding must be an int"),
    (lambda: T.RandomCrop(3, pad_if_needed="yes"), "pad_if_needed must be True or False"),
    (lambda: T.RandomHorizontalFlip(1.5), r"p must be a probability in \[0, 1\]"),
    (lambda: T.RandomApply([T.RandomHorizontalFlip()], p=-0.1), "p must be a probability"),
    (lambda: T.RandomApply(T.RandomHorizontalFlip()), "transforms must be a list"),
    (lambda: T.Compose([T.RandomHorizontalFlip(), 3]), r"transforms must hold callables"),
    (lambda: T.Normalize(0.5, 0.0), "std must be > 0"),
    (lambda: T.Normalize(0.5, (0.2, -0.1)), "std must be > 0"),
    (lambda: T.from_config({"type": "RandomBlur"}), "unknown transform type 'RandomBlur'"),
    (lambda: T.from_config({"type": "RandomCrop", "sizes": 3}), "config for RandomCrop has bad"),
    (lambda: T.from_config([1]), "config must be a dict with a 'type' key"),
    (lambda: T.Compose([lambda x, rng: x]).config(), r"has no config\(\)"),
]


@pytest.mark.parametrize("make,message", BAD_CONSTRUCTORS)
def test_bad_constructor_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


BAD_CALLS = [
    (lambda: T.RandomAffine(10)(X[0], RNG), r"x must be a batch of images of shape \(N, C, H, W\)"),
    (lambda: T.RandomAffine(10)(X.astype(np.int64), RNG), "x must have dtype float32 or float64"),
    (lambda: T.RandomAffine(10)([[1.0]], RNG), "x must be a NumPy ndarray"),
    (lambda: T.RandomAffine(10)(X, 0), "rng must be a numpy.random.Generator"),
    (lambda: T.RandomAffine(10)(X, np.random.RandomState(0)), "rng must be a numpy.random.Gen"),
    (lambda: T.RandomAffine(10, fill=(1, 2))(X, RNG), "fill has 2 values but the input has 1"),
    (lambda: T.RandomCrop(9)(X, RNG), r"size \(9, 9\) is larger than the padded input"),
    (lambda: T.RandomCrop(11, padding=1)(X, RNG), "use a smaller size, more padding"),
    (lambda: T.Normalize((0.1, 0.2), 1.0)(X), "mean has 2 values but the input has 1"),
    (lambda: T.Compose([T.RandomAffine(3)])(X, None), "rng must be a numpy.random.Generator"),
    (
        lambda: T.RandomApply([T.RandomCrop(4)], p=1.0)(X, RNG),
        "RandomApply needs transforms that keep the image size",
    ),
    (lambda: T.RandomAffine(1).sample_params(-1, 8, 8, RNG), "n must be an int >= 0"),
    (
        lambda: T.affine_grid(np.zeros((2, 3, 3)), (2, 1, 4, 4)),
        r"theta must have shape \(N, 2, 3\)",
    ),
    (lambda: T.affine_grid(np.zeros((2, 2, 3)), (3, 1, 4, 4)), "size has batch size 3"),
    (lambda: T.affine_grid(np.zeros((2, 2, 3)), (2, 4, 4)), r"size must be \(N, C, H, W\)"),
    (lambda: T.grid_sample(X, np.zeros((2, 3, 3, 3))), r"grid must have shape \(N, Ho, Wo, 2\)"),
    (lambda: T.grid_sample(X, np.zeros((2, 3, 3, 2), np.float32)), "grid has dtype float32"),
    (lambda: T.grid_sample(X, np.full((2, 3, 3, 2), np.nan)), "grid holds NaN"),
    (
        lambda: T.warp_affine(X, np.zeros((3, 2, 3))),
        r"theta must have shape \(N, 2, 3\) with N = 2",
    ),
    (lambda: T.warp_affine(X, np.full((2, 2, 3), np.inf)), "theta holds NaN or infinite"),
    (lambda: T.affine_matrix(0, (0, 0), 0.0, (0, 0), (4, 4)), "scale must be > 0"),
    (lambda: T.affine_matrix(0, (0, 0), 1, (0, 95), (4, 4)), r"shear angles must lie in"),
    (lambda: T.affine_matrix(0, (0, 0, 0), 1, (0, 0), (4, 4)), r"translate must have shape"),
    (lambda: T.affine_matrix([0, 1], (0, 0), [1, 1, 1], (0, 0), (4, 4)), "different batch"),
    (lambda: T.affine_matrix(0, (0, 0), 1, (0, 0), (0, 4)), r"size must be \(H, W\)"),
]


@pytest.mark.parametrize("call,message", BAD_CALLS)
def test_bad_calls_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------
# the augmentation grid
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_save_augment_grid_writes_a_png(tmp_path, channels):
    x = np.random.default_rng(27).random((6, channels, 12, 10)).astype(np.float32)
    calls = []

    def transform(batch, rng):
        calls.append(batch.shape)
        return T.RandomCrop(8, padding=1)(batch, rng)

    path = save_augment_grid(
        x, tmp_path / "augment.png", transform, rng=3, rows=2, labels=list("abcdef")
    )
    assert path == tmp_path / "augment.png"
    assert calls == [x.shape, x.shape]  # one call per augmented row, the whole batch
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100


def test_save_augment_grid_refuses_bad_input(tmp_path):
    flip = T.RandomHorizontalFlip()
    with pytest.raises(ValueError, match=r"images must have 1 .* or 3 .* channels"):
        save_augment_grid(np.zeros((2, 2, 5, 5)), tmp_path / "a.png", flip)
    with pytest.raises(ValueError, match="images must hold 1 to 32 images"):
        save_augment_grid(np.zeros((33, 1, 5, 5)), tmp_path / "a.png", flip)
    with pytest.raises(ValueError, match="labels must have one entry per image"):
        save_augment_grid(np.zeros((2, 1, 5, 5)), tmp_path / "a.png", flip, labels=["x"])
    assert not (tmp_path / "a.png").exists()
