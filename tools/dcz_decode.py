#!/usr/bin/env python3
"""Reference decoder of dcx's `.dcz` files, written from docs/dcz-format.md alone.

    python3 tools/dcz_decode.py FILE.dcz [--json] [--eval MNIST_DIR [--limit N]]

Checks the magic and the checksum, inflates the metadata, builds the network's layers from
its stages (a built-in's, or the metadata's `network`) and checks them against the metadata,
decodes every layer section (both canonical Huffman tables, both streams, the relative
sparse index with its fillers), rebuilds the dense weights and prints per-layer figures in
the same terms as `dcx inspect`. With --eval it runs the stages on the MNIST test set (pure
Python: slow but independent of dcx) and prints the correct count.

Standard library only. A layer section kind (the metadata's `quantizer`) is decoded by one
function registered in SECTION_DECODERS; a new kind is one new function there.
"""

import argparse
import gzip
import hashlib
import json
import math
import os
import struct
import sys
import zlib
from operator import add, itemgetter, mul

MAGIC = b"DCZ\x01"
MAX_METADATA = 1 << 20
CHECKSUM_BYTES = 8

CLASSES = 10
MAX_STAGES = 64
MAX_UNITS = 1 << 16
MAX_WEIGHTS = 32 << 20


def conv(name, outputs, kernel, padding=0):
    stage = {"type": "conv", "name": name, "outputs": outputs, "kernel": kernel}
    if padding:
        stage["padding"] = padding
    return stage


def fc(name, outputs):
    return {"type": "fc", "name": name, "outputs": outputs}


RELU, MAX_POOL, FLATTEN = {"type": "relu"}, {"type": "max-pool"}, {"type": "flatten"}

# The three built-in networks ("Running the network" in the doc) as the stages their files'
# `network` key lists; files written before that key was name them in `model` alone.
BUILTIN_NETWORKS = {
    "lenet-300-100": [FLATTEN, fc("fc1", 300), RELU, fc("fc2", 100), RELU, fc("fc3", 10)],
    # Caffe's LeNet: no ReLU after the convolutions.
    "lenet-5": [conv("conv1", 20, 5), MAX_POOL, conv("conv2", 50, 5), MAX_POOL, FLATTEN,
                fc("fc1", 500), RELU, fc("fc2", 10)],
    "course-cnn": [conv("conv1", 64, 3, 1), RELU, MAX_POOL, conv("conv2", 256, 3, 1), RELU,
                   MAX_POOL, FLATTEN, fc("fc1", 512), RELU, fc("fc2", 10)],
}

# Per stage type: the keys it must have and the keys it may have (besides "type").
STAGE_KEYS = {
    "conv": ({"name", "outputs", "kernel"}, {"padding", "stride"}),
    "fc": ({"name", "outputs"}, set()),
    "relu": (set(), set()),
    "max-pool": (set(), {"size"}),
    "flatten": (set(), set()),
}


def with_defaults(stages):
    """The stages with every optional key at its value (what an absent key means), so two
    spellings of one network compare equal; anything else is left for network_layers."""
    defaults = {"conv": {"padding": 0, "stride": 1}, "max-pool": {"size": 2}}
    if not isinstance(stages, list):
        return stages
    return [{**defaults.get(s["type"], {}), **s}
            if isinstance(s, dict) and isinstance(s.get("type"), str) else s
            for s in stages]


def valid_name(text):
    return (isinstance(text, str) and 1 <= len(text) <= 64
            and all(c.isascii() and (c.isalnum() or c in "-_.") for c in text))


def network_layers(stages, what):
    """The layers the stages define on a 1x28x28 image, in order: each a dict of name, kind
    and shape (the weight tensor's). Checks every stage as the doc's reader does."""
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise DczError(f"{what}: network must be a list of 1 to {MAX_STAGES} stages")
    # What the next stage receives: ("image", channels, side) or ("flat", values).
    shape = ("image", 1, 28)
    layers, weights = [], 0
    for i, stage in enumerate(stages):
        at = f"{what}: network[{i}]"
        kind = stage.get("type") if isinstance(stage, dict) else None
        kind = kind if isinstance(kind, str) else None
        if kind in ("batch-norm", "dropout"):
            raise DczError(f"{at}: a {kind} stage; a file holds the network inference runs "
                           "(batch-norm folded into the layer before it, no dropout)")
        if kind not in STAGE_KEYS:
            raise DczError(f"{at}: {stage!r} is not a stage (type conv, fc, relu, max-pool "
                           "or flatten)")
        required, optional = STAGE_KEYS[kind]
        keys = set(stage) - {"type"}
        if not required <= keys <= required | optional:
            raise DczError(f"{at}: {kind} stages have the keys {sorted(required)} and "
                           f"optionally {sorted(optional)}; this one {sorted(keys)}")
        for key in keys - {"name"}:
            if type(stage[key]) is not int or stage[key] < 0:
                raise DczError(f"{at}: {key} {stage[key]!r} is not a whole number >= 0")
        if i == 0 and kind not in ("conv", "flatten"):
            raise DczError(f"{at}: a network starts with a conv layer or a flatten")
        if kind in ("conv", "fc"):
            name, outputs = stage["name"], stage["outputs"]
            if not valid_name(name) or any(layer["name"] == name for layer in layers):
                raise DczError(f"{at}: name {name!r} is not 1 to 64 letters, digits, '-', "
                               "'_' or '.', or is used twice")
            if not 1 <= outputs <= MAX_UNITS:
                raise DczError(f"{at}: outputs {outputs} not in 1..={MAX_UNITS}")
        if kind == "conv":
            kernel, padding = stage["kernel"], stage.get("padding", 0)
            stride = stage.get("stride", 1)
            if shape[0] != "image":
                raise DczError(f"{at}: a conv layer needs an image input")
            _, channels, side = shape
            if kernel == 0 or 2 * padding >= kernel or kernel > side + 2 * padding:
                raise DczError(f"{at}: kernel {kernel} with padding {padding} does not fit "
                               f"a {side}x{side} input")
            if not 1 <= stride <= side + 2 * padding:
                raise DczError(f"{at}: stride {stride} not in 1..={side + 2 * padding}")
            layers.append({"name": name, "kind": "conv",
                           "shape": [outputs, channels, kernel, kernel]})
            shape = ("image", outputs, (side + 2 * padding - kernel) // stride + 1)
        elif kind == "fc":
            if shape[0] != "flat":
                raise DczError(f"{at}: an fc layer needs a flatten before it")
            layers.append({"name": name, "kind": "fc", "shape": [outputs, shape[1]]})
            shape = ("flat", outputs)
        elif kind == "max-pool":
            if shape[0] != "image" or stage.get("size", 2) != 2 or shape[2] % 2:
                raise DczError(f"{at}: max-pooling is 2x2 (size 2) of an image of even side")
            shape = ("image", shape[1], shape[2] // 2)
        elif kind == "flatten":
            if shape[0] != "image":
                raise DczError(f"{at}: a second flatten")
            shape = ("flat", shape[1] * shape[2] * shape[2])
        if kind in ("conv", "fc"):
            weights += math.prod(layers[-1]["shape"])
            if weights > MAX_WEIGHTS:
                raise DczError(f"{at}: more than {MAX_WEIGHTS} weights")
    if stages[-1]["type"] != "fc" or layers[-1]["shape"][0] != CLASSES:
        raise DczError(f"{what}: network: the last stage must be an fc layer with {CLASSES} "
                       "outputs")
    return layers


class DczError(Exception):
    """A file that does not follow the format; the message names the place."""


# ---------------------------------------------------------------------------------------------
# Byte and bit readers


class Bytes:
    """Little-endian reader over a byte string; errors say where the bytes ran out."""

    def __init__(self, data, what):
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n, field):
        if n < 0 or self.pos + n > len(self.data):
            raise DczError(
                f"{self.what}: {field} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, field):
        return self.take(1, field)[0]

    def u16(self, field):
        return struct.unpack("<H", self.take(2, field))[0]

    def u32(self, field):
        return struct.unpack("<I", self.take(4, field))[0]

    def f32s(self, count, field):
        return list(struct.unpack(f"<{count}f", self.take(4 * count, field)))


class Bits:
    """MSB-first bit reader over a byte string."""

    def __init__(self, data, what):
        self.data = data
        self.pos = 0  # in bits
        self.what = what

    def bit(self):
        if self.pos >= 8 * len(self.data):
            raise DczError(f"{self.what}: ran out of bits after {self.pos}")
        b = (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return b

    def read(self, n):
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def expect_padding(self):
        """The rest must be zero bits of the last byte, and nothing beyond it."""
        used_bytes = (self.pos + 7) // 8
        if used_bytes != len(self.data):
            raise DczError(
                f"{self.what}: {len(self.data)} bytes but the symbols end in byte {used_bytes}"
            )
        while self.pos < 8 * len(self.data):
            if self.bit():
                raise DczError(f"{self.what}: padding bit {self.pos - 1} is not zero")


# ---------------------------------------------------------------------------------------------
# Canonical Huffman codes


def read_code_table(bits, what):
    """One table: 5-bit a, a-bit n, 1-bit mode, 3-bit w-1, n code lengths. Returns lengths."""
    a = bits.read(5)
    if a > 17:
        raise DczError(f"{what}: a = {a} > 17")
    n = bits.read(a)
    if a != n.bit_length():
        raise DczError(f"{what}: a = {a} is not the minimal bit length of n = {n}")
    if n > 65536:
        raise DczError(f"{what}: n = {n} > 65536")
    if n == 0:
        return []
    mode = bits.read(1)
    w = bits.read(3) + 1
    lengths = []
    prev = 0
    for s in range(n):
        if mode == 0:
            length = bits.read(w)
        elif bits.read(1) == 0:
            length = prev
        elif bits.read(1) == 0:
            length = prev + 1
        elif bits.read(1) == 0:
            length = prev - 1
        else:
            length = bits.read(w)
        if length < 0:
            raise DczError(f"{what}: symbol {s}: code length below 0")
        lengths.append(length)
        prev = length
    longest = max(lengths)
    if longest == 0 or lengths[-1] == 0:
        raise DczError(f"{what}: the last described symbol (n - 1 = {n - 1}) has no code")
    if longest > 24:
        raise DczError(f"{what}: code length {longest} > 24")
    if w != longest.bit_length():
        raise DczError(f"{what}: w = {w} is not the bit length of the longest code {longest}")
    # dcx writes the smaller mode (plain on a tie) but reads either, so this does too.
    return lengths


class CanonicalCode:
    """Decoder of a canonical code given each symbol's length (0 = no code)."""

    def __init__(self, lengths, what):
        self.what = what
        self.lengths = lengths
        self.max_len = max(lengths) if lengths else 0
        kraft = sum(2.0 ** -length for length in lengths if length)
        if kraft > 1.0:
            raise DczError(f"{what}: code lengths over-subscribe the code (Kraft sum {kraft})")
        # count[l]: codes of length l; first[l]: first code of length l; symbols in
        # (length, symbol) order.
        self.count = [0] * (self.max_len + 1)
        for length in lengths:
            if length:
                self.count[length] += 1
        self.symbols = sorted((s for s, length in enumerate(lengths) if length),
                              key=lambda s: (lengths[s], s))
        self.first = [0] * (self.max_len + 2)
        code = 0
        for length in range(1, self.max_len + 1):
            code = (code + self.count[length - 1]) << 1 if length > 1 else 0
            self.first[length] = code
        # offset[l]: index in self.symbols of the first symbol of length l
        self.offset = [0] * (self.max_len + 2)
        for length in range(1, self.max_len + 1):
            self.offset[length + 1] = self.offset[length] + self.count[length]

    def codes(self):
        """symbol -> (code, length), for writing tests and for printing."""
        out, code, prev_len = {}, 0, 0
        for i, s in enumerate(self.symbols):
            length = self.lengths[s]
            if i:
                code = (code + 1) << (length - prev_len)
            out[s] = (code, length)
            prev_len = length
        return out

    def decode(self, bits, count):
        if count and not self.symbols:
            raise DczError(f"{self.what}: {count} symbols but the code is empty")
        out = []
        data, total_bits = bits.data, 8 * len(bits.data)
        pos = bits.pos
        first, cnt, offset, symbols = self.first, self.count, self.offset, self.symbols
        max_len = self.max_len
        for _ in range(count):
            code = 0
            for length in range(1, max_len + 1):
                if pos >= total_bits:
                    raise DczError(f"{self.what}: stream ends inside symbol {len(out)}")
                code = (code << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1)
                pos += 1
                rel = code - first[length]
                if 0 <= rel < cnt[length]:
                    out.append(symbols[offset[length] + rel])
                    break
            else:
                raise DczError(f"{self.what}: bits at {pos} are no code word")
        bits.pos = pos
        return out


# ---------------------------------------------------------------------------------------------
# Layer sections: one function per kind (the metadata's "quantizer", "kmeans" when absent)


def entropy_bits(symbols):
    """Shannon entropy in bits per symbol of a symbol sequence."""
    if not symbols:
        return 0.0
    freq = {}
    for s in symbols:
        freq[s] = freq.get(s, 0) + 1
    n = len(symbols)
    # + 0.0: one certain symbol gives -0.0, which would print as "-0.00".
    return -sum(c / n * math.log2(c / n) for c in freq.values()) + 0.0


def decode_relative_index(gaps, index_bits, survivors, weights, what):
    """Positions from gap symbols: 0 = filler (advance 2^b - 1), d >= 1 = next survivor."""
    step = (1 << index_bits) - 1
    positions, cursor, pending_fillers = [], -1, 0
    for g in gaps:
        if g == 0:
            cursor += step
            pending_fillers += 1
        else:
            cursor += g
            positions.append(cursor)
            pending_fillers = 0
    if pending_fillers:
        raise DczError(f"{what}: gap stream ends with {pending_fillers} filler(s)")
    if len(positions) != survivors:
        raise DczError(f"{what}: {len(positions)} positions from the gaps, N = {survivors}")
    if positions and positions[-1] >= weights:
        raise DczError(f"{what}: position {positions[-1]} beyond the {weights} weights")
    return positions


def read_coded_streams(sec, index_bits, n, g, symbols, weights, what):
    """T, W and P: both code tables, the N Huffman-coded indices and the G gap symbols.

    Returns the indices (in increasing position order), their positions and the figures of
    the streams. Shared by every section kind that stores its survivors this way.
    """
    t = sec.u32("T")
    tables = Bits(sec.take(t, "code tables"), f"{what} code tables")
    index_lengths = read_code_table(tables, f"{what} cluster-index code table")
    gap_lengths = read_code_table(tables, f"{what} gap code table")
    tables.expect_padding()
    if len(index_lengths) > symbols:
        raise DczError(f"{what}: the cluster-index code describes {len(index_lengths)} "
                       f"symbols, there are {symbols}")
    if len(gap_lengths) > 1 << index_bits:
        raise DczError(f"{what}: the gap code describes {len(gap_lengths)} symbols > 2^b")
    if (n == 0) != (not index_lengths) or (g == 0) != (not gap_lengths):
        raise DczError(f"{what}: a code is empty exactly when the layer has no survivors "
                       f"(N = {n}, G = {g})")
    index_code = CanonicalCode(index_lengths, f"{what} cluster-index code")
    gap_code = CanonicalCode(gap_lengths, f"{what} gap code")
    w_len = sec.u32("W")
    index_stream = Bits(sec.take(w_len, "index stream"), f"{what} index stream")
    indices = index_code.decode(index_stream, n)
    index_bits_used = index_stream.pos
    index_stream.expect_padding()
    p_len = sec.u32("P")
    gap_stream = Bits(sec.take(p_len, "gap stream"), f"{what} gap stream")
    gaps = gap_code.decode(gap_stream, g)
    gap_bits_used = gap_stream.pos
    gap_stream.expect_padding()
    # G = 0 with N = weights: a dense layer, every position kept and no gaps stored.
    if g == 0 < n == weights:
        positions = list(range(weights))
    else:
        positions = decode_relative_index(gaps, index_bits, n, weights, what)
    figures = {
        "index_bits": index_bits,
        "survivors": n,
        "gap_symbols": g,
        "fillers": g - n if g else 0,  # a dense layer (G = 0) has no gaps
        "table_bytes": t,
        "index_stream_bytes": w_len,
        "gap_stream_bytes": p_len,
        "index_stream_bits": index_bits_used,
        "gap_stream_bits": gap_bits_used,
        "index_code_lengths": index_lengths,
        "gap_code_lengths": gap_lengths,
        "weight_bits_huffman": index_bits_used / n if n else 0.0,
        "weight_bits_entropy": entropy_bits(indices),
        "index_bits_huffman": gap_bits_used / n if n else 0.0,
        "index_bits_entropy": entropy_bits(gaps) * g / n if n else 0.0,
    }
    return indices, positions, figures


def sparse_sizes(n, g, bits, index_bits, table_bytes, outputs, bias_bytes):
    """The `pruned (P)` and `shared (P+Q)` sizes of a layer storing n survivors and g gap
    symbols: survivors as f32 or in `bits` bits, gap symbols in index_bits bits, plus
    `table_bytes` (the codebook, or whatever maps an index to a value) and the biases: f32
    after pruning, as stored (`bias_bytes`) after sharing."""
    gap_bits = g * index_bits
    return {
        "pruned_bytes": 4 * n + ceil_bytes(gap_bits) + 4 * outputs,
        "shared_bytes": ceil_bytes(n * bits + gap_bits) + table_bytes + bias_bytes,
    }


def read_biases(sec, layer, what):
    """`u32` B, then B f32 biases, or with `bias_bits` 8 in the metadata an f32 scale, a u8
    zero point and B u8 codes, each `scale * (code - zero point)` in f32. Returns the biases
    and the bytes they took after B."""
    outputs = layer["shape"][0]
    b = sec.u32("B")
    if b != outputs:
        raise DczError(f"{what}: B = {b} biases, the layer has {outputs} outputs")
    if layer.get("bias_bits") is None:
        return sec.f32s(b, "biases"), 4 * b
    scale = sec.f32s(1, "bias grid scale")[0]
    if not scale > 0:
        raise DczError(f"{what}: bias grid scale {scale} is not > 0")
    zero = sec.u8("bias grid zero point")
    codes = sec.take(b, "bias codes")
    return [to_f32(scale * (c - zero)) for c in codes], 5 + b


def decode_kmeans_section(sec, layer, what):
    """Weight sharing: codebook + Huffman-coded cluster indices + relative sparse index."""
    weights = math.prod(layer["shape"])
    outputs = layer["shape"][0]
    bits = sec.u8("bits")
    index_bits = sec.u8("index_bits")
    if not 1 <= bits <= 8:
        raise DczError(f"{what}: bits = {bits} not in 1..=8")
    if not 1 <= index_bits <= 16:
        raise DczError(f"{what}: index_bits = {index_bits} not in 1..=16")
    n = sec.u32("N")
    g = sec.u32("G")
    if not (n <= g <= weights or 0 == g < n == weights):
        raise DczError(f"{what}: N = {n}, G = {g}, weights = {weights}: need N <= G <= weights, "
                       "or G = 0 with every weight kept")
    k = sec.u16("K")
    if k > 1 << bits:
        raise DczError(f"{what}: K = {k} > 2^bits = {1 << bits}")
    codebook = sec.f32s(k, "codebook")
    biases, bias_bytes = read_biases(sec, layer, what)
    indices, positions, figures = read_coded_streams(sec, index_bits, n, g, k, weights, what)
    dense = [0.0] * weights
    for p, i in zip(positions, indices):
        dense[p] = codebook[i]
    figures.update({"bits": bits, "codebook_len": k})
    figures.update(sparse_sizes(n, g, bits, index_bits, 4 * k, outputs, bias_bytes))
    return dense, biases, figures


def to_f32(x):
    """x rounded to the nearest binary32, as an f32 operation of dcx rounds its result."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def decode_grid_section(sec, layer, what, affine):
    """A fixed grid (uniform / symmetric when `affine`, binary / ternary otherwise): per group
    a scale and zero point, or an alpha, instead of a codebook; the rest as for k-means."""
    weights = math.prod(layer["shape"])
    outputs = layer["shape"][0]
    bits = sec.u8("bits")
    index_bits = sec.u8("index_bits")
    allowed = range(2, 9) if affine else range(1, 2)
    if bits not in allowed:
        raise DczError(f"{what}: bits = {bits} not a width of this quantizer")
    if not 1 <= index_bits <= 16:
        raise DczError(f"{what}: index_bits = {index_bits} not in 1..=16")
    n = sec.u32("N")
    g = sec.u32("G")
    if not (n <= g <= weights or 0 == g < n == weights):
        raise DczError(f"{what}: N = {n}, G = {g}, weights = {weights}: need N <= G <= weights, "
                       "or G = 0 with every weight kept")
    groups = sec.u16("G (groups)")
    if groups not in (1, outputs):
        raise DczError(f"{what}: {groups} groups, expected 1 or {outputs}")
    params = sec.f32s(groups, "scales" if affine else "alphas")
    if affine:
        zero_points = list(sec.take(groups, "zero points"))
        if any(not (math.isfinite(x) and x > 0) for x in params):
            raise DczError(f"{what}: a scale is not a finite number > 0")
        if any(z > (1 << bits) - 1 for z in zero_points):
            raise DczError(f"{what}: a zero point is beyond the {bits}-bit codes")
        levels = 1 << bits
        value = lambda grp, c: to_f32(params[grp] * (c - zero_points[grp]))
        level_bytes = 5 * groups
    else:
        if any(not (math.isfinite(x) and x >= 0) for x in params):
            raise DczError(f"{what}: an alpha is not a finite number >= 0")
        levels = 2
        value = lambda grp, c: params[grp] if c == 1 else -params[grp]
        level_bytes = 4 * groups
    biases, bias_bytes = read_biases(sec, layer, what)
    indices, positions, figures = read_coded_streams(sec, index_bits, n, g, levels, weights, what)
    run = weights // groups
    dense = [0.0] * weights
    for p, i in zip(positions, indices):
        dense[p] = value(p // run, i)
    figures.update({"bits": bits, "codebook_len": levels, "groups": groups})
    figures.update(sparse_sizes(n, g, bits, index_bits, level_bytes, outputs, bias_bytes))
    return dense, biases, figures


# A section kind (the metadata's `quantizer`, "kmeans" when absent) is one function
# (section bytes after S, the metadata's layer entry, a name for errors) -> (dense weights as
# a flat list in the shape's order, biases, figures). The figures must hold what
# `layer_report` prints: bits, index_bits, survivors, fillers, pruned_bytes, shared_bytes,
# weight_bits_huffman / _entropy, index_bits_huffman / _entropy; the rest is printed when
# present.
SECTION_DECODERS = {
    "kmeans": decode_kmeans_section,
    "uniform": lambda sec, layer, what: decode_grid_section(sec, layer, what, True),
    "symmetric": lambda sec, layer, what: decode_grid_section(sec, layer, what, True),
    "binary": lambda sec, layer, what: decode_grid_section(sec, layer, what, False),
    "ternary": lambda sec, layer, what: decode_grid_section(sec, layer, what, False),
}


# ---------------------------------------------------------------------------------------------
# Whole file


def decode_file(data, name="file"):
    if len(data) < 4 + 4 + 2 + CHECKSUM_BYTES:
        raise DczError(f"{name}: {len(data)} bytes is too short for a .dcz file")
    if data[:4] != MAGIC:
        raise DczError(f"{name}: magic {data[:4].hex(' ')} is not 44 43 5a 01")
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    expected = hashlib.sha256(body).digest()[:CHECKSUM_BYTES]
    if checksum != expected:
        raise DczError(f"{name}: checksum {checksum.hex()} is not {expected.hex()}")
    r = Bytes(body, name)
    r.take(4, "magic")
    m = r.u32("metadata length")
    if m > MAX_METADATA:
        raise DczError(f"{name}: metadata length {m} > 1 MiB")
    raw = r.take(m, "metadata")
    try:
        inflater = zlib.decompressobj(-15)
        text = inflater.decompress(raw, MAX_METADATA + 1)
        if len(text) > MAX_METADATA or not inflater.eof or inflater.unused_data:
            raise DczError(f"{name}: metadata is not one raw DEFLATE stream of at most 1 MiB")
        meta = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as e:
        raise DczError(f"{name}: metadata: {e}") from None
    required = {"model", "layers", "experiment", "writer"}
    optional = {"activations", "network"}
    if not isinstance(meta, dict) or not required <= set(meta) <= required | optional:
        keys = sorted(meta) if isinstance(meta, dict) else meta
        raise DczError(f"{name}: metadata keys {keys} are not model, layers, experiment, "
                       "writer (and optionally activations, network)")
    acts = meta.get("activations")
    if acts is not None:
        if (not isinstance(acts, dict) or set(acts) != {"bits", "calibration", "images"}
                or type(acts["bits"]) is not int or not 2 <= acts["bits"] <= 8
                or type(acts["images"]) is not int or acts["images"] < 1
                or not isinstance(acts["calibration"], str)):
            raise DczError(f"{name}: metadata activations {acts!r} is not "
                           "{bits: 2..=8, calibration: text, images: >= 1}")
    if not all(isinstance(meta[key], str) for key in ("model", "experiment", "writer")):
        raise DczError(f"{name}: metadata model, experiment and writer must be strings")
    model = meta["model"]
    if "network" in meta:
        stages = meta["network"]
        if model in BUILTIN_NETWORKS:
            if with_defaults(stages) != with_defaults(BUILTIN_NETWORKS[model]):
                raise DczError(f"{name}: metadata model {model!r} is a built-in network: its "
                               "network must be the built-in's stages")
        elif not valid_name(model):
            raise DczError(f"{name}: metadata model {model!r} with a network: not 1 to 64 "
                           "letters, digits, '-', '_' or '.'")
    elif model in BUILTIN_NETWORKS:
        stages = BUILTIN_NETWORKS[model]
    else:
        raise DczError(f"{name}: unknown model {model!r} (and no network describes it)")
    arch = network_layers(stages, f"{name}: metadata")
    layers = meta.get("layers")
    if not isinstance(layers, list) or len(layers) != len(arch):
        raise DczError(f"{name}: metadata lists {layers!r}, {model} has {len(arch)} layers")
    for got, expected in zip(layers, arch):
        want = {key: expected[key] for key in ("name", "kind", "shape")}
        if not isinstance(got, dict) or not set(got) <= {*want, "quantizer", "outputs",
                                                          "bias_bits"}:
            raise DczError(f"{name}: metadata layer {got!r}: keys other than "
                           "name, kind, shape, quantizer, outputs, bias_bits")
        if "bias_bits" in got and (type(got["bias_bits"]) is not int or got["bias_bits"] != 8):
            raise DczError(f"{name}: metadata layer {got['name']}: bias_bits "
                           f"{got['bias_bits']!r}, only 8 is written (f32 biases have no key)")
        if {key: got.get(key) for key in want} != want:
            raise DczError(f"{name}: metadata layer {got!r} is not {model}'s {want!r}")
    count = r.u16("layer count")
    if count != len(arch):
        raise DczError(f"{name}: layer count {count}, {model} has {len(arch)} layers")
    grids = None
    if acts is not None:
        grids = []
        for layer in arch:
            what = f"{name}: activation grid of {layer['name']}'s input"
            bits = r.u8(what)
            scale = r.f32s(1, what)[0]
            zero = r.u8(what)
            if bits != acts["bits"]:
                raise DczError(f"{what}: {bits} bits, the metadata says {acts['bits']}")
            if not (math.isfinite(scale) and scale > 0):
                raise DczError(f"{what}: scale {scale} is not a finite number > 0")
            if zero > (1 << bits) - 1:
                raise DczError(f"{what}: zero point {zero} beyond the {bits}-bit codes")
            grids.append((bits, scale, zero))
    header_bytes = r.pos
    decoded = []
    kept_inputs = None  # the previous layer's kept outputs, when it lists them
    for index, layer in enumerate(layers):
        what = f"{name} layer {layer['name']}"
        quantizer = layer.get("quantizer", "kmeans")
        decoder = SECTION_DECODERS.get(quantizer)
        if decoder is None:
            raise DczError(f"{what}: unknown quantizer {quantizer!r}")
        shape = layer["shape"]
        kept_outputs = layer.get("outputs")
        if isinstance(kept_outputs, str):
            # One character per output unit, "1" kept: the list of the kept ones.
            if len(kept_outputs) != shape[0] or set(kept_outputs) - {"0", "1"}:
                raise DczError(f"{what}: outputs must be {shape[0]} characters 0 or 1")
            kept_outputs = [i for i, c in enumerate(kept_outputs) if c == "1"]
        if kept_outputs is not None:
            if index == len(layers) - 1:
                raise DczError(f"{what}: outputs listed for the last layer (the classes)")
            if (not isinstance(kept_outputs, list) or not kept_outputs
                    or any(not isinstance(o, int) or isinstance(o, bool) for o in kept_outputs)
                    or any(b <= a for a, b in zip(kept_outputs, kept_outputs[1:]))
                    or kept_outputs[0] < 0 or kept_outputs[-1] >= shape[0]):
                raise DczError(f"{what}: outputs must be increasing unit indices below {shape[0]}")
        # Structured pruning: the section holds the thinned layer, whose rows are the kept
        # outputs and whose input axis holds only the kept input units (the previous layer's
        # kept outputs, each `span` entries of a row wide).
        rows = kept_outputs if kept_outputs is not None else list(range(shape[0]))
        per_row = math.prod(shape[1:])
        units_in = layers[index - 1]["shape"][0] if index > 0 else shape[1]
        span = per_row // units_in
        ins = kept_inputs if kept_inputs is not None else list(range(units_in))
        thin_shape = [len(rows), shape[1] // units_in * len(ins)] + shape[2:]
        start = r.pos
        s = r.u32("section length S")
        sec = Bytes(r.take(s, "section"), what)
        dense, biases, figures = decoder(sec, {**layer, "shape": thin_shape}, what)
        if thin_shape != shape:
            thin_row = len(ins) * span
            full = [0.0] * math.prod(shape)
            for i, o in enumerate(rows):
                for j, u in enumerate(ins):
                    src = i * thin_row + j * span
                    dst = o * per_row + u * span
                    full[dst:dst + span] = dense[src:src + span]
            dense = full
            full_biases = [0.0] * shape[0]
            for i, o in enumerate(rows):
                full_biases[o] = biases[i]
            biases = full_biases
            figures["units_kept"] = len(rows)
        kept_inputs = kept_outputs
        if sec.pos != s:
            raise DczError(f"{what}: {s - sec.pos} bytes left over in the section")
        figures["section_bytes"] = r.pos - start
        figures["quantizer"] = quantizer
        decoded.append({"layer": layer, "weights": dense, "biases": biases, "figures": figures})
    if r.pos != len(body):
        raise DczError(f"{name}: {len(body) - r.pos} bytes between the last section and checksum")
    return {
        "meta": meta,
        "stages": stages,
        "layers": decoded,
        "file_bytes": len(data),
        "header_bytes": header_bytes,
        "activation_grids": grids,
    }


# ---------------------------------------------------------------------------------------------
# Figures in the terms of `dcx inspect`


def ceil_bytes(bits):
    return (bits + 7) // 8


def layer_report(d):
    """What `dcx inspect` prints for one layer (see "Sizes in reports" in the doc)."""
    f = d["figures"]
    shape = d["layer"]["shape"]
    weights, outputs = math.prod(shape), shape[0]
    return {
        "name": d["layer"]["name"],
        "weights": weights,
        "biases": outputs,
        "kept": f["survivors"],
        "fillers": f["fillers"],
        "bits": f["bits"],
        "index_bits": f["index_bits"],
        "dense_bytes": 4 * (weights + outputs),
        "pruned_bytes": f["pruned_bytes"],
        "shared_bytes": f["shared_bytes"],
        "file_bytes": f["section_bytes"],
        "weight_bits_huffman": f["weight_bits_huffman"],
        "weight_bits_entropy": f["weight_bits_entropy"],
        "index_bits_huffman": f["index_bits_huffman"],
        "index_bits_entropy": f["index_bits_entropy"],
    }


def sizes_report(decoded):
    layers = [layer_report(d) for d in decoded["layers"]]
    sections = sum(d["figures"]["section_bytes"] for d in decoded["layers"])
    totals = {k: sum(l[k] for l in layers)
              for k in ("weights", "kept", "fillers", "dense_bytes", "pruned_bytes",
                        "shared_bytes")}
    totals.update({
        "file_bytes": decoded["file_bytes"],
        "header_bytes": decoded["header_bytes"],
        "trailer_bytes": CHECKSUM_BYTES,
        "overhead_bytes": decoded["file_bytes"] - sections,
    })
    return layers, totals


def kb(v):
    return f"{v / 1000:.1f} KB"


def percent(part, whole):
    return f"{100 * part / whole:.2f}%" if whole else "-"


def times(whole, part):
    return f"{whole / part:.1f}x" if part else "-"


INSPECT_COLUMNS = ["layer", "weights", "kept", "bits", "index bits", "fillers", "dense",
                   "pruned (P)", "shared (P+Q)", "file (P+Q+H)", "ratio",
                   "weight bits H (entropy)", "index bits H (entropy)"]


def print_report(decoded, name, out=sys.stdout):
    """The `dcx inspect` table (without its threshold column: the file has no thresholds),
    then the raw fields of each section."""
    layers, tot = sizes_report(decoded)
    model = decoded["meta"]["model"]
    print(f"{name}: {model}, {tot['file_bytes']} bytes, "
          f"{times(tot['dense_bytes'], tot['file_bytes'])} smaller than dense f32 "
          f"({tot['dense_bytes']} bytes)", file=out)
    print(file=out)
    print("| " + " | ".join(INSPECT_COLUMNS) + " |", file=out)
    print("|---|" + "---:|" * (len(INSPECT_COLUMNS) - 1), file=out)
    for l in layers:
        cells = [l["name"], l["weights"], percent(l["kept"], l["weights"]), l["bits"],
                 l["index_bits"], l["fillers"], kb(l["dense_bytes"]), kb(l["pruned_bytes"]),
                 kb(l["shared_bytes"]), kb(l["file_bytes"]),
                 times(l["dense_bytes"], l["file_bytes"]),
                 f"{l['weight_bits_huffman']:.2f} ({l['weight_bits_entropy']:.2f})",
                 f"{l['index_bits_huffman']:.2f} ({l['index_bits_entropy']:.2f})"]
        print("| " + " | ".join(str(c) for c in cells) + " |", file=out)
    blank = [""] * (len(INSPECT_COLUMNS) - 1)
    cells = ["header + metadata + checksum"] + blank
    cells[INSPECT_COLUMNS.index("file (P+Q+H)")] = kb(tot["overhead_bytes"])
    print("| " + " | ".join(cells) + " |", file=out)
    cells = ["**total**"] + blank
    for col, val in [
        ("weights", tot["weights"]),
        ("kept", percent(tot["kept"], tot["weights"])),
        ("fillers", tot["fillers"]),
        ("dense", kb(tot["dense_bytes"])),
        ("pruned (P)", f"{kb(tot['pruned_bytes'])} "
                       f"({times(tot['dense_bytes'], tot['pruned_bytes'])})"),
        ("shared (P+Q)", f"{kb(tot['shared_bytes'])} "
                         f"({times(tot['dense_bytes'], tot['shared_bytes'])})"),
        ("file (P+Q+H)", f"**{kb(tot['file_bytes'])} ({tot['file_bytes']} bytes)**"),
        ("ratio", f"**{times(tot['dense_bytes'], tot['file_bytes'])}**"),
    ]:
        cells[INSPECT_COLUMNS.index(col)] = str(val)
    print("| " + " | ".join(cells) + " |", file=out)
    print(file=out)
    grids = decoded["activation_grids"]
    grid_bytes = 6 * len(grids) if grids else 0
    grid_note = f", {grid_bytes} bytes of activation grids" if grids else ""
    print(f"Sections ({tot['header_bytes']} header bytes: magic, metadata length, "
          f"{tot['header_bytes'] - 10 - grid_bytes} bytes of DEFLATE metadata, layer count"
          f"{grid_note}; {tot['trailer_bytes']} checksum bytes):", file=out)
    print(file=out)
    raw = ["layer", "quantizer", "section bytes", "N survivors", "G gap symbols",
           "K codebook", "T table bytes", "W index stream bytes (bits used)",
           "P gap stream bytes (bits used)", "index code lengths", "gap code lengths"]
    print("| " + " | ".join(raw) + " |", file=out)
    print("|---|---|" + "---:|" * (len(raw) - 2), file=out)
    for d in decoded["layers"]:
        f = d["figures"]
        cells = [d["layer"]["name"], f["quantizer"], f["section_bytes"], f["survivors"],
                 f["gap_symbols"], f.get("codebook_len", "-"), f["table_bytes"],
                 f"{f['index_stream_bytes']} ({f['index_stream_bits']})",
                 f"{f['gap_stream_bytes']} ({f['gap_stream_bits']})",
                 length_range(f["index_code_lengths"]), length_range(f["gap_code_lengths"])]
        print("| " + " | ".join(str(c) for c in cells) + " |", file=out)


    if grids:
        acts = decoded["meta"]["activations"]
        print(file=out)
        print(f"Activations: every layer's input on a {acts['bits']}-bit grid "
              f"(calibration {acts['calibration']} on {acts['images']} training images):",
              file=out)
        print(file=out)
        print("| layer | bits | scale | zero point | lowest | highest |", file=out)
        print("|---|---:|---:|---:|---:|---:|", file=out)
        for d, (bits, scale, zero) in zip(decoded["layers"], grids):
            lo, hi = grid_value(scale, zero, 0), grid_value(scale, zero, (1 << bits) - 1)
            print(f"| {d['layer']['name']} | {bits} | {scale:.6g} | {zero} | {lo:.4f} | "
                  f"{hi:.4f} |", file=out)


def length_range(lengths):
    used = [x for x in lengths if x]
    return f"{min(used)}..{max(used)} ({len(used)} codes)" if used else "empty"


def json_report(decoded):
    layers, totals = sizes_report(decoded)
    for l, d in zip(layers, decoded["layers"]):
        l.update({k: v for k, v in d["figures"].items() if not k.endswith("_code_lengths")})
    report = {"model": decoded["meta"]["model"], "sizes": totals, "layers": layers}
    if "network" in decoded["meta"]:
        report["network"] = decoded["meta"]["network"]
    if decoded["activation_grids"]:
        report["activations"] = dict(decoded["meta"]["activations"], grids=[
            {"bits": b, "scale": s, "zero_point": z} for b, s, z in decoded["activation_grids"]])
    return report


# ---------------------------------------------------------------------------------------------
# Running the network (pure Python)


def read_idx(path):
    """An IDX file (raw, or gzip when the name ends in .gz): (dims, bytes)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DczError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(dims):
        raise DczError(f"{path}: {len(body)} bytes of data, dims {dims} need {math.prod(dims)}")
    return dims, body


def find_idx(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise DczError(f"{directory}: neither {stem} nor {stem}.gz")


def grid_value(scale, zero, code):
    """An activation code's value, computed in f32 as dcx does."""
    return to_f32(scale * (code - zero))


def fake_quantize(x, grid):
    """Each value as its layer input's grid represents it: code = round(x / scale) (halves
    away from zero, the division in f32) + zero point, clamped to the codes; value =
    scale * (code - zero point)."""
    bits, scale, zero = grid
    top = (1 << bits) - 1
    levels = [grid_value(scale, zero, c) for c in range(top + 1)]
    out = []
    for v in x:
        t = to_f32(to_f32(v) / scale)
        r = math.floor(abs(t) + 0.5)
        code = min(max((r if t >= 0 else -r) + zero, 0), top)
        out.append(levels[code])
    return out


class Network:
    def __init__(self, decoded):
        # The stages say where ReLUs and pooling go (a built-in's from BUILTIN_NETWORKS).
        self.stages = decoded["stages"]
        grids = decoded["activation_grids"]
        self.grids = ({d["layer"]["name"]: g for d, g in zip(decoded["layers"], grids)}
                      if grids else {})
        self.layers = {}
        for d in decoded["layers"]:
            shape = d["layer"]["shape"]
            if d["layer"]["kind"] == "fc":
                self.layers[d["layer"]["name"]] = self._fc(d["weights"], d["biases"], shape)
            else:
                self.layers[d["layer"]["name"]] = self._conv(d["weights"], d["biases"], shape)

    @staticmethod
    def _fc(w, b, shape):
        out_n, in_n = shape
        rows = []
        for o in range(out_n):
            row = w[o * in_n:(o + 1) * in_n]
            cols = [i for i, v in enumerate(row) if v != 0.0]
            rows.append((tuple(row[i] for i in cols), itemgetter(*cols) if cols else None,
                         len(cols)))
        return ("fc", shape, rows, b)

    @staticmethod
    def _conv(w, b, shape):
        out_c, in_c, kh, kw = shape
        # per output channel: per input channel: [(ky, kx, weight)] of the non-zero taps
        taps = []
        for o in range(out_c):
            per_in = []
            for i in range(in_c):
                base = (o * in_c + i) * kh * kw
                per_in.append([(ky, kx, w[base + ky * kw + kx])
                               for ky in range(kh) for kx in range(kw)
                               if w[base + ky * kw + kx] != 0.0])
            taps.append(per_in)
        return ("conv", shape, taps, b)

    def forward(self, pixels):
        # activations: (channels, height, width, flat list [c][y][x] row-major)
        x = [(p / 255.0 - 0.1307) / 0.3081 for p in pixels]
        c, h, wd = 1, 28, 28
        for stage in self.stages:
            kind = stage["type"]
            if kind == "flatten":
                c, h, wd = c * h * wd, 1, 1
            elif kind == "relu":
                x = [v if v > 0.0 else 0.0 for v in x]
            elif kind == "max-pool":
                x, h, wd = max_pool(x, c, h, wd), h // 2, wd // 2
            else:
                layer = self.layers[stage["name"]]
                if stage["name"] in self.grids:
                    x = fake_quantize(x, self.grids[stage["name"]])
                if kind == "fc":
                    x = fc_forward(layer, x)
                    c = len(x)
                else:
                    x, c, h, wd = conv_forward(layer, x, c, h, wd, stage.get("padding", 0),
                                               stage.get("stride", 1))
        return x


def fc_forward(layer, x):
    _, _, rows, b = layer
    out = []
    for (vals, getter, count), bias in zip(rows, b):
        if count == 0:
            out.append(bias)
        elif count == 1:
            out.append(bias + vals[0] * getter(x))
        else:
            out.append(bias + sum(map(mul, vals, getter(x))))
    return out


def conv_forward(layer, x, c, h, wd, pad, stride):
    _, (out_c, in_c, kh, kw), taps, b = layer
    if pad:
        ph, pw = h + 2 * pad, wd + 2 * pad
        padded = [0.0] * (in_c * ph * pw)
        for ch in range(in_c):
            for y in range(h):
                dst = (ch * ph + y + pad) * pw + pad
                src = (ch * h + y) * wd
                padded[dst:dst + wd] = x[src:src + wd]
        x, h, wd = padded, ph, pw
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    # gathered[i][ky][kx]: what tap (ky, kx) reads of input plane i for each output pixel,
    # as an oh*ow list
    gathered = []
    for i in range(in_c):
        per_tap = []
        for ky in range(kh):
            row = []
            for kx in range(kw):
                idx = [(i * h + y * stride + ky) * wd + xx * stride + kx
                       for y in range(oh) for xx in range(ow)]
                # itemgetter of one index gives the value, not a 1-tuple
                row.append(itemgetter(*idx)(x) if len(idx) > 1 else (x[idx[0]],))
            per_tap.append(row)
        gathered.append(per_tap)
    out = []
    for o in range(out_c):
        acc = [b[o]] * (oh * ow)
        for i in range(in_c):
            plane = gathered[i]
            for ky, kx, wv in taps[o][i]:
                acc = list(map(add, acc, map(wv.__mul__, plane[ky][kx])))
        out.extend(acc)
    return out, out_c, oh, ow


def max_pool(x, c, h, wd):
    oh, ow = h // 2, wd // 2
    out = []
    for ch in range(c):
        base = ch * h * wd
        for y in range(oh):
            r0 = base + 2 * y * wd
            r1 = r0 + wd
            out.extend(max(x[r0 + 2 * i], x[r0 + 2 * i + 1], x[r1 + 2 * i], x[r1 + 2 * i + 1])
                       for i in range(ow))
    return out


def evaluate(decoded, directory, limit=None, progress=False):
    img_dims, images = read_idx(find_idx(directory, "t10k-images-idx3-ubyte"))
    lab_dims, labels = read_idx(find_idx(directory, "t10k-labels-idx1-ubyte"))
    if len(img_dims) != 3 or img_dims[1:] != (28, 28) or lab_dims[0] != img_dims[0]:
        raise DczError(f"{directory}: test images {img_dims} and labels {lab_dims} do not match")
    total = img_dims[0] if limit is None else min(limit, img_dims[0])
    net = Network(decoded)
    correct, loss = 0, 0.0
    for n in range(total):
        outputs = net.forward(images[n * 784:(n + 1) * 784])
        best = max(range(len(outputs)), key=outputs.__getitem__)  # first of equal maxima
        correct += best == labels[n]
        top = max(outputs)
        loss += top + math.log(sum(math.exp(v - top) for v in outputs)) - outputs[labels[n]]
        if progress and (n + 1) % 500 == 0:
            print(f"  {n + 1}/{total}: {correct} correct", file=sys.stderr)
    return correct, total, loss / total if total else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--json", action="store_true", help="figures as JSON instead of a table")
    ap.add_argument("--eval", metavar="DIR", help="MNIST folder with the t10k IDX files")
    ap.add_argument("--limit", type=int, help="evaluate only the first N test images")
    ap.add_argument("--progress", action="store_true", help="print progress while evaluating")
    args = ap.parse_args(argv)
    try:
        with open(args.file, "rb") as fh:
            data = fh.read()
        decoded = decode_file(data, args.file)
        if args.json:
            print(json.dumps(json_report(decoded), indent=1))
        else:
            print_report(decoded, args.file)
        if args.eval:
            correct, total, loss = evaluate(decoded, args.eval, args.limit, args.progress)
            print(f"accuracy: {correct}/{total} correct ({100 * correct / total:.2f}%), "
                  f"mean cross-entropy {loss:.4f}")
    except (DczError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
