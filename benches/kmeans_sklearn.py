#!/usr/bin/env python3
"""Baseline for dcx's 1-D k-means (src/compress/kmeans/): scikit-learn's KMeans on the same data.

The data is `dcx::compress::kmeans::laplace_sample(n, scale, seed)` regenerated bit for bit:
splitmix64 from the seed, u = ((z >> 12) + 0.5) * 2**-52, then the Laplace inverse CDF in f64
with C `log` (math.log, which is what Rust's f64::ln calls too), rounded to float32.

For each n and k it fits KMeans(n_clusters=k, n_init=1, algorithm="lloyd") from
  * "linear": the Rust linear init (min + ((max - min) * i) / (k - 1), ends exact) as an array;
  * "k-means++": sklearn's own greedy k-means++ seeding,
and prints the best wall time of --repeats fits and the SSE (recomputed in float64 from the
labels and centres, since sklearn's float32 inertia_ loses digits at n = 400,000).

    pip install numpy scikit-learn
    python3 benches/kmeans_sklearn.py                 # full table (takes minutes)
    python3 benches/kmeans_sklearn.py --head 5        # print the first values, for checking
    python3 benches/kmeans_sklearn.py --compare f.bin # compare with a raw little-endian f32 dump
"""

import argparse
import math
import sys
import time

import numpy as np

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
DEFAULT_SCALE = 0.05
DEFAULT_SEED = 2016


def laplace_sample(n, scale, seed):
    """Same values as the Rust `laplace_sample(n, scale, seed)`."""
    # splitmix64's i-th state is seed + (i + 1) * GAMMA, so the integer part vectorises; numpy's
    # uint64 arithmetic wraps modulo 2**64 exactly like Rust's wrapping_* calls.
    with np.errstate(over="ignore"):
        state = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = ((z >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52
    b = float(np.float32(scale))
    # math.log rather than np.log: numpy may use its own SIMD log, which can differ in the last
    # bit from the C library's.
    log = math.log
    out = [b * log(2.0 * x) if x < 0.5 else -b * log(2.0 * (1.0 - x)) for x in u.tolist()]
    return np.asarray(out, dtype=np.float64).astype(np.float32)


def linear_init(x, k):
    """Same centroids as the Rust `Init::Linear`."""
    lo, hi = float(x.min()), float(x.max())
    if k == 1:
        return np.array([(lo + hi) * 0.5], dtype=np.float32)
    c = [lo + (hi - lo) * i / (k - 1) for i in range(k)]
    c[0], c[-1] = lo, hi
    return np.asarray(c, dtype=np.float64).astype(np.float32)


def sse64(x, centers, labels):
    d = x.astype(np.float64) - centers.reshape(-1).astype(np.float64)[labels]
    return float(np.dot(d, d))


def bench(x, k, init, repeats, max_seconds):
    from sklearn.cluster import KMeans

    X = x.reshape(-1, 1)
    best = math.inf
    spent = 0.0
    for _ in range(repeats):
        init_arg = linear_init(x, k).reshape(-1, 1) if init == "linear" else "k-means++"
        km = KMeans(n_clusters=k, init=init_arg, n_init=1, algorithm="lloyd", random_state=0)
        t0 = time.perf_counter()
        km.fit(X)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        if spent > max_seconds:
            break  # a slow configuration: fewer repeats rather than a very long run
    return best, sse64(x, km.cluster_centers_, km.labels_), km.n_iter_


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[30_000, 400_000])
    p.add_argument("--ks", type=int, nargs="+", default=[32, 256])
    p.add_argument("--inits", nargs="+", default=["linear", "k-means++"])
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="stop repeating a configuration once its fits took this long in total")
    p.add_argument("--head", type=int, help="print the first HEAD values of the n = 30,000 sample and exit")
    p.add_argument("--compare", metavar="FILE",
                   help="compare the largest sample with a raw f32 dump of the Rust one and exit")
    args = p.parse_args()

    if args.head is not None:
        for v in laplace_sample(args.head, args.scale, args.seed):
            print(f"{float(v)!r:>24}  0x{int(np.float32(v).view(np.uint32)):08x}")
        return 0
    if args.compare:
        theirs = np.fromfile(args.compare, dtype="<f4")
        ours = laplace_sample(len(theirs), args.scale, args.seed)
        diff = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))
        print(f"{len(theirs)} values, {len(diff)} differ" + (f" (first at {diff[0]})" if len(diff) else ""))
        return 1 if len(diff) else 0

    import sklearn
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; "
          f"Laplace(0, {args.scale}) seed {args.seed}; best of {args.repeats}")
    print(f"{'n':>8} {'k':>4} {'init':>10} {'time [s]':>10} {'SSE':>14} {'iters':>6}")
    for n in args.sizes:
        x = laplace_sample(n, args.scale, args.seed)
        for k in args.ks:
            for init in args.inits:
                t, sse, iters = bench(x, k, init, args.repeats, args.max_seconds)
                print(f"{n:>8} {k:>4} {init:>10} {t:>10.4f} {sse:>14.8g} {iters:>6}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
