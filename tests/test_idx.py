"""IDX files: round trips, every kind of damage, and a fuzz target."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import TYPE_CODES, read_idx, write_idx
from cnnlab.errors import DataError


@pytest.mark.parametrize("code", sorted(TYPE_CODES))
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip_every_type(tmp_path, code, suffix):
    dtype = TYPE_CODES[code].newbyteorder("=")
    rng = np.random.default_rng(code)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    raw = path.read_bytes()
    if suffix:
        raw = gzip.decompress(raw)
    # independent check of the header: zero, zero, type code, ndim, big-endian dims
    assert raw[:4] == bytes([0, 0, code, 3])
    assert struct.unpack(">3I", raw[4:16]) == (3, 4, 5)
    back = read_idx(path)
    assert back.dtype == dtype and np.array_equal(back, a)


def _idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize(
    "content, fragment",
    [
        (gzip.compress(_idx(8, (2, 2), b"\x00" * 4))[:-6], "corrupt or truncated gzip"),
        (_idx(8, (2, 3), b"\x00" * 5), "truncated"),
        (_idx(8, (2, 3), b"\x00" * 7), "trailing bytes"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
        (_idx(0x0A, (1,), b"\x00"), "unknown IDX type code 0x0a"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    ],
)
def test_damaged_files_raise_data_error_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "damaged-file.idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(fragment)) as info:
        read_idx(path)
    assert "damaged-file.idx" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")


def test_write_refuses_unsupported_arrays(tmp_path):
    with pytest.raises(ValueError, match="IDX stores"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.uint64))


def _mutations():
    base = _idx(8, (3, 4), bytes(range(12)))
    return st.one_of(
        st.binary(max_size=64),
        st.integers(0, len(base)).map(lambda n: base[:n]),
        st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)).map(
            lambda t: base[: t[0]] + bytes([t[1]]) + base[t[0] + 1 :]
        ),
        st.binary(max_size=16).map(lambda extra: base + extra),
    )


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, derandomize=True)
@given(content=_mutations(), compress=st.booleans())
def test_fuzz_read_idx_only_raises_data_error(tmp_path_factory, content, compress):
    path = tmp_path_factory.mktemp("fuzz") / "f.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    try:
        a = read_idx(path)
    except DataError:
        return
    # accepted: the header must describe exactly what was returned
    assert content[0] == content[1] == 0
    ndim = content[3]
    assert a.shape == struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    assert a.dtype == TYPE_CODES[content[2]].newbyteorder("=")
