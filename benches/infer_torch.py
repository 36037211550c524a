#!/usr/bin/env python3
"""PyTorch's f32 inference of a .dcz's network, timed alternately with `dcx bench infer`.

dcx decodes the file and writes its weights (`dcx bench infer FILE --weights-out W`); this
script builds the same network in PyTorch (the stages of docs/dcz-format.md, "Running the
network"), and then, `--repeats` times in turn, runs `dcx bench infer FILE --repeats 1 --json`
(dcx's f32 kernels and its int8 engine, themselves alternated) and one PyTorch pass over the
10k MNIST test images per batch size, so all three see the same machine load. It prints, per
batch size, the median latency of a full batch and images/s (median over passes) of each,
and the accuracy of each.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy
    cargo build --release
    /tmp/torch/bin/python benches/infer_torch.py out/paper-lenet-5/model.dcz --threads 2

MNIST comes from --data or $DCX_DATA (the four IDX files, raw or .gz).
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081


def read_idx(folder, name):
    for path in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                data = f.read()
            dims = data[3]
            shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit(f"{folder}: no {name} (raw or .gz)")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", t
        lo, hi = t["data_offsets"]
        arr = np.frombuffer(data[8 + n + lo : 8 + n + hi], dtype="<f4").reshape(t["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return meta, tensors


def build(model, w):
    """The forward pass of docs/dcz-format.md for each architecture."""
    conv = lambda x, l, pad: F.conv2d(x, w[l + ".weight"], w[l + ".bias"], padding=pad)
    fc = lambda x, l: F.linear(x, w[l + ".weight"], w[l + ".bias"])
    if model == "lenet-300-100":
        return lambda x: fc(F.relu(fc(F.relu(fc(x.flatten(1), "fc1")), "fc2")), "fc3")
    if model == "lenet-5":
        def lenet5(x):
            h = F.max_pool2d(conv(x, "conv1", 0), 2)
            h = F.max_pool2d(conv(h, "conv2", 0), 2).flatten(1)
            return fc(F.relu(fc(h, "fc1")), "fc2")
        return lenet5
    if model == "course-cnn":
        def course(x):
            h = F.max_pool2d(F.relu(conv(x, "conv1", 1)), 2)
            h = F.max_pool2d(F.relu(conv(h, "conv2", 1)), 2).flatten(1)
            return fc(F.relu(fc(h, "fc1")), "fc2")
        return course
    sys.exit(f"unknown model {model!r}")


def torch_pass(forward, images, labels, batch):
    """One pass: per-full-batch latencies, total seconds, correct count."""
    lat, correct = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(images), batch):
            x = torch.from_numpy(images[lo : lo + batch])
            t = time.perf_counter()
            pred = forward(x).argmax(1)
            if len(x) == batch or len(images) < batch:
                lat.append(time.perf_counter() - t)
            correct += int((pred == torch.from_numpy(labels[lo : lo + batch])).sum())
    return lat, time.perf_counter() - start, correct


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--dcx", default="target/release/dcx")
    ap.add_argument("--data", default=os.environ.get("DCX_DATA"))
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.data:
        sys.exit("set --data or DCX_DATA to the MNIST folder")
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)

    dcx = [args.dcx, "--data", args.data, "bench", "infer", args.file]
    dcx += ["--batches", args.batches, "--threads", str(args.threads), "--repeats", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        wpath = os.path.join(tmp, "weights.safetensors")
        first = subprocess.run(dcx + ["--json", "--weights-out", wpath], check=True,
                               capture_output=True, text=True).stdout
        meta, weights = read_safetensors(wpath)
    model = meta["model"]
    forward = build(model, weights)
    pixels = read_idx(args.data, "t10k-images-idx3-ubyte").astype(np.float32)
    images = ((pixels / 255.0 - MEAN) / STD).astype(np.float32).reshape(-1, 1, 28, 28)
    labels = read_idx(args.data, "t10k-labels-idx1-ubyte").astype(np.int64)

    dcx_runs = [[json.loads(l) for l in first.splitlines()]]
    torch_runs = {b: [] for b in batches}
    for b in batches:  # warm-up
        torch_pass(forward, images[:b], labels[:b], b)
    for rep in range(args.repeats):
        if rep > 0:
            out = subprocess.run(dcx + ["--json"], check=True, capture_output=True, text=True)
            dcx_runs.append([json.loads(l) for l in out.stdout.splitlines()])
        for b in batches:
            torch_runs[b].append(torch_pass(forward, images, labels, b))

    n = len(images)
    print(f"{model} from {args.file}: {n} test images, {args.threads} threads, "
          f"{args.repeats} alternating rounds (dcx f32 + int8, then PyTorch {torch.__version__})")
    print(f"{'batch':>6} {'path':<14} {'ms/batch':>10} {'img/s':>10} {'accuracy':>9}")
    for i, b in enumerate(batches):
        rows = [run[i] for run in dcx_runs]
        med = lambda k: statistics.median(r[k] for r in rows)
        lat = [l for run in torch_runs[b] for l in run[0]]
        passes = [run[1] for run in torch_runs[b]]
        correct = torch_runs[b][-1][2]
        for name, ms, ips, acc in [
            ("dcx f32", med("dense_ms"), med("dense_img_s"), rows[-1]["f32_accuracy"]),
            ("dcx int8", med("int8_ms"), med("int8_img_s"), rows[-1]["int8_accuracy"]),
            ("pytorch f32", statistics.median(lat) * 1e3, n / statistics.median(passes),
             correct / n),
        ]:
            print(f"{b:>6} {name:<14} {ms:>10.4f} {ips:>10.0f} {acc * 100:>8.2f}%")


if __name__ == "__main__":
    main()
