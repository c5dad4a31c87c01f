"""K-means over frames: fit (Lloyd in torch, or faiss) and assign with chunked matmuls on any device.

Stored as safetensors (the [K, D] float32 centroids) + JSON (how they were made). The files other
tools wrote are imported: scikit-learn pickles (fairseq, textlesslib, SpeechBrain) through the
restricted unpickler of `speechtok.formats.sklearn_pickle`, and plain centroid `.npy` arrays.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..errors import FormatError, InputError, NotFoundError
from ..readers import reader
from ..runtime import rowwise

TYPE = "kmeans"

log = logging.getLogger(__name__)

DEFAULT_ITERS = 25
# Stop once an iteration lowers the inertia by less than this fraction (0 = run all iterations).
DEFAULT_TOL = 1e-4
# sklearn's MiniBatchKMeans seeds k-means++ from init_size = 3 * batch_size (fairseq: 3 * 10000) frames.
DEFAULT_INIT_FRAMES = 30_000
# Distances held at once while assigning: rows x K floats, 16 MiB (faster than larger blocks on CPU).
ASSIGN_BUDGET = 4 * 2**20


def _as_tensor(features) -> torch.Tensor:
    t = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    if t.ndim != 2:
        raise InputError(f"features must be [frames, dim], got shape {tuple(t.shape)}")
    return t


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (2 + log k candidates per step, the one lowering the potential most
    is kept), as scikit-learn does it; returns [k, D] rows of `x`."""
    n = len(x)
    x_sq = (x * x).sum(1)

    def sq_dist(rows: torch.Tensor) -> torch.Tensor:  # [n, len(rows)]
        # scale the few candidate rows, not x: `2 * x @ ...` would rewrite all of x every step
        return (x_sq[:, None] - x @ (2 * x[rows]).T + x_sq[rows][None, :]).clamp_min_(0)

    trials = 2 + int(math.log(k))
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    closest = sq_dist(torch.tensor(chosen))[:, 0]
    for _ in range(1, k):
        cumulative = torch.cumsum(closest.double(), 0)
        # drawn on the CPU generator so a seed gives the same centroids on any device
        targets = (torch.rand(trials, generator=generator, dtype=torch.float64) * float(cumulative[-1])).to(x.device)
        candidates = torch.searchsorted(cumulative, targets).clamp_(max=n - 1)
        candidate_closest = torch.minimum(closest[:, None], sq_dist(candidates))
        best = int(candidate_closest.double().sum(0).argmin())
        chosen.append(int(candidates[best]))
        closest = candidate_closest[:, best]
    return x[torch.tensor(chosen)].clone()


def nearest(
    x: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor, x_sq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Id of and squared distance to the nearest of centroids `c` ([K, D], `c_sq` their squared
    norms) for each row of `x` (`x_sq` their squared norms, if known), in fp32 chunks of
    ASSIGN_BUDGET distances."""
    k = len(c)
    rows = max(1, ASSIGN_BUDGET // k)
    ids, dists = [], []
    for start in range(0, len(x), rows):
        chunk = x[start : start + rows].to(torch.float32)
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin (fairseq's ApplyKmeans form)
        d = rowwise.addmm(c_sq[None, :], chunk, c.T, alpha=-2.0)
        best, idx = d.min(dim=1)
        ids.append(idx)
        chunk_sq = (chunk * chunk).sum(1) if x_sq is None else x_sq[start : start + rows]
        dists.append((best + chunk_sq).clamp_min_(0))
    if not ids:
        return torch.zeros(0, dtype=torch.long, device=x.device), torch.zeros(0, device=x.device)
    return torch.cat(ids), torch.cat(dists)


def lloyd(
    x: torch.Tensor, centroids: torch.Tensor, iters: int, tol: float = 0.0, log_every: bool = False
) -> torch.Tensor:
    """Lloyd iterations over all rows of `x` (on x's device). An emptied cluster is moved to the
    frame farthest from its centroid, as scikit-learn's KMeans does. Stops early once no frame
    changes cluster, or once an iteration lowers the inertia by less than the fraction `tol`."""
    c = centroids.to(x.device, torch.float32).clone()
    k = len(c)
    x_sq = (x * x).sum(1)
    previous, previous_inertia = None, math.inf
    for it in range(iters):
        ids, dists = nearest(x, c, (c * c).sum(1), x_sq)
        inertia = float(dists.double().sum())
        if log_every:
            log.info("k-means iteration %d: inertia %.6g", it, inertia)
        if previous is not None and torch.equal(ids, previous):
            break
        if previous_inertia - inertia < tol * inertia:
            break
        counts = torch.bincount(ids, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, ids, x)
        c = sums / counts.clamp_min(1)[:, None].to(c.dtype)
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty):
            c[empty] = x[dists.topk(len(empty)).indices]
        previous, previous_inertia = ids, inertia
    return c


class KMeans:
    """K centroids in D dimensions; `assign` maps [T, D] features to [T] ids (nearest centroid)."""

    def __init__(self, centroids, info: dict | None = None):
        self.centroids = _as_tensor(centroids).to(torch.float32).contiguous()
        self.info = dict(info or {})
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def __repr__(self) -> str:
        return f"KMeans(k={self.k}, dim={self.dim})"

    @classmethod
    def fit(
        cls,
        features,
        k: int,
        *,
        iters: int = DEFAULT_ITERS,
        tol: float = DEFAULT_TOL,
        init: str = "k-means++",
        seed: int = 0,
        max_frames: int | None = None,
        init_frames: int = DEFAULT_INIT_FRAMES,
        device: str | torch.device = "cpu",
        backend: str = "torch",
        verbose: bool = False,
    ) -> KMeans:
        """Lloyd's k-means on all given frames (or a seeded sample of `max_frames`).

        Frames are never subsampled silently: the number used is the number given (or `max_frames`),
        and it is recorded in `info`. `init` is "k-means++" (seeded from `init_frames` frames, like
        scikit-learn's MiniBatchKMeans) or "random" (k distinct frames). Iterations stop early when
        one lowers the inertia by less than the fraction `tol` (torch backend). `backend` "torch" runs the
        iterations with torch matmuls on `device` (a GPU if given); "faiss" uses faiss-cpu, whose
        wheel's BLAS is ~4x slower than torch's on the CPUs we measured (docs/benchmarks.md).
        """
        x = _as_tensor(features).to("cpu", torch.float32)
        n, dim = x.shape
        if n < k:
            raise InputError(f"{n} frames cannot make {k} clusters; give at least k frames")
        if backend not in ("torch", "faiss"):
            raise InputError(f"unknown k-means backend {backend!r}: use 'torch' or 'faiss'")
        generator = torch.Generator().manual_seed(seed)
        if max_frames is not None and n > max_frames:
            x = x[torch.randperm(n, generator=generator)[:max_frames]]
            log.info("k-means: sampled %d of %d frames", max_frames, n)
            n = max_frames

        if init == "k-means++":
            sample = x if n <= init_frames else x[torch.randperm(n, generator=generator)[:init_frames]]
            start = kmeans_plusplus(sample.to(device), k, generator)
        elif init == "random":
            start = x[torch.randperm(n, generator=generator)[:k]]
        else:
            raise InputError(f"unknown init {init!r}: use 'k-means++' or 'random'")

        if backend == "torch":
            x = x.to(device)
            centroids = lloyd(x, start, iters, tol, log_every=verbose).cpu()
            fitted_with = f"torch {torch.__version__}"
        else:
            import faiss

            model = faiss.Kmeans(
                dim, k, niter=iters, seed=seed, verbose=verbose,
                max_points_per_centroid=n // k + 1,  # use every frame given: no silent subsampling
                min_points_per_centroid=1,
            )
            model.train(np.ascontiguousarray(x.numpy()), init_centroids=start.cpu().numpy())
            centroids = model.centroids.reshape(k, dim)
            fitted_with = f"faiss {faiss.__version__}"
        fitted = cls(centroids)
        fitted.info = {
            "k": k, "dim": dim, "frames": n, "iters": iters, "tol": tol, "init": init, "seed": seed,
            "inertia": fitted.inertia(x), "fitted_with": fitted_with,
        }
        return fitted

    def _device_centroids(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            c = self.centroids.to(device)
            self._on_device[device] = (c, (c * c).sum(1))
        return self._on_device[device]

    def _nearest(self, features) -> tuple[torch.Tensor, torch.Tensor]:
        x = _as_tensor(features)
        if x.shape[1] != self.dim:
            raise InputError(f"features have {x.shape[1]} dims, the k-means centroids {self.dim}")
        return nearest(x, *self._device_centroids(x.device))

    def assign(self, features) -> torch.Tensor:
        """[T] int64 id of the nearest centroid of each row, on the features' device, in fp32."""
        return self._nearest(features)[0]

    def inertia(self, features) -> float:
        """Sum over rows of the squared distance to the nearest centroid."""
        return float(self._nearest(features)[1].double().sum())

    def to_dict(self) -> dict:
        """How the centroids were made (the JSON beside them), with a `type` key."""
        return {"type": TYPE, **self.info, "k": self.k, "dim": self.dim}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write `<path>.safetensors` and `<path>.json`; returns the safetensors path."""
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"centroids": self.centroids.numpy()}, str(path))
        path.with_suffix(".json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> KMeans:
        """Our safetensors, a centroid `.npy` [K, D], or a scikit-learn KMeans pickle
        (joblib / pickle; read with an allow-list, so a pickle that would run code is refused).
        Centroids that are not finite, or disagree with the JSON beside them, are refused."""
        path = Path(path)
        if not path.exists():
            raise NotFoundError(f"{path}: no such k-means file")
        if path.suffix == ".safetensors":
            centroids, info = _read_safetensors(path)
        elif path.suffix == ".npy":
            try:
                centroids = np.load(path, allow_pickle=False)
            except ValueError as error:
                raise FormatError(f"{path}: not a plain centroid array ({error})") from None
            info = {"imported_from": str(path)}
        else:
            centroids, info = reader("sklearn-kmeans")(path)
        centroids = np.asarray(centroids)
        if centroids.ndim != 2 or 0 in centroids.shape:
            raise FormatError(f"{path}: expected [K, D] centroids, got shape {centroids.shape}")
        if not np.isfinite(centroids).all():
            raise FormatError(f"{path}: the centroids hold NaN or Inf values; the file is damaged")
        return cls(centroids, info)

    save = save_pretrained  # the names before save_pretrained / from_pretrained
    load = from_pretrained


def _read_safetensors(path: Path) -> tuple[np.ndarray, dict]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise FormatError(f"{path}: not a readable safetensors file ({error})") from None
    if "centroids" not in tensors:
        raise FormatError(f"{path}: no 'centroids' tensor (it holds {', '.join(sorted(tensors)) or 'nothing'}); "
                          "not a speechtok k-means file")
    centroids = tensors["centroids"]
    meta = path.with_suffix(".json")
    info: dict = {}
    if meta.exists():
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError as error:
            raise FormatError(f"{meta}: not valid JSON ({error})") from None
        info.pop("type", None)
        for key, size in (("k", centroids.shape[0]), ("dim", centroids.shape[-1])):
            if key in info and info[key] != size:
                raise FormatError(f"{path}: holds {key}={size} but {meta.name} says {key}={info[key]}; "
                                  "the files do not belong together")
    return centroids, info
