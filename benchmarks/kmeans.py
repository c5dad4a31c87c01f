"""K-means fitting: speechtok (torch Lloyd) vs scikit-learn MiniBatchKMeans with fairseq's parameters.

fairseq's `simple_kmeans/learn_kmeans.py` fits MiniBatchKMeans(init="k-means++", max_iter=100,
batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20, reassignment_ratio=0.0,
compute_labels=False, init_size=None). Both fit the same 200k x 768 frames with K=500 here; the
inertia of both results is computed the same way on all frames.

    python benchmarks/kmeans.py            # 200k x 768, K=500 (sklearn takes ~8 minutes on 2 cores)
    python benchmarks/kmeans.py --quick    # 20k x 128, K=100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine
from sklearn.cluster import MiniBatchKMeans

import speechtok


def feature_like(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Frames with the structure of SSL features: many clusters of uneven size in a low-rank
    subspace, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    rank, clusters = min(64, dim), 2000
    basis = rng.standard_normal((rank, dim)) / np.sqrt(rank)
    centers = rng.standard_normal((clusters, rank)) * 2.0
    weights = rng.dirichlet(np.full(clusters, 0.5))
    labels = rng.choice(clusters, n, p=weights)
    latent = centers[labels] + 0.7 * rng.standard_normal((n, rank))
    return (latent @ basis + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("-k", type=int, default=500)
    parser.add_argument("--iters", type=int, default=speechtok.quantizers.kmeans.DEFAULT_ITERS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.dim, args.k = 20_000, 128, 100
    x = feature_like(args.frames, args.dim)

    start = time.perf_counter()
    ours = speechtok.KMeans.fit(x, args.k, iters=args.iters, seed=0)
    ours_time = time.perf_counter() - start

    start = time.perf_counter()
    sk = MiniBatchKMeans(n_clusters=args.k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                         max_no_improvement=100, n_init=20, reassignment_ratio=0.0, compute_labels=False,
                         init_size=None, random_state=0).fit(x)
    sk_time = time.perf_counter() - start

    sk_inertia = speechtok.KMeans(sk.cluster_centers_).inertia(x)
    our_inertia = ours.inertia(x)
    print(f"machine: {machine()}")
    print(f"data: {args.frames} x {args.dim}, K={args.k}")
    print(f"sklearn MiniBatchKMeans (fairseq learn_kmeans.py parameters): {sk_time:.1f} s, inertia {sk_inertia:.6g}")
    tol = speechtok.quantizers.kmeans.DEFAULT_TOL
    print(f"speechtok KMeans.fit (torch Lloyd, k-means++, up to {args.iters} iterations, tol {tol:g}): "
          f"{ours_time:.1f} s, inertia {our_inertia:.6g}")
    print(f"speed ratio: {sk_time / ours_time:.1f}x; inertia vs sklearn: {(our_inertia / sk_inertia - 1) * 100:+.2f}%")


if __name__ == "__main__":
    main()
