"""KMeans: fitting, assignment, our file format, and importing the files other tools wrote."""

from __future__ import annotations

import os
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.cluster import MiniBatchKMeans

from speechtok import KMeans, UnsafePickleError
from speechtok.quantizers import kmeans as kmeans_module


def blobs(n=4000, d=16, k=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 5
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), centers


def test_fit_finds_planted_clusters_and_is_reproducible():
    x, centers = blobs()
    a = KMeans.fit(x, 10, seed=3)
    b = KMeans.fit(x, 10, seed=3)
    torch.testing.assert_close(a.centroids, b.centroids)
    # Every planted center has a fitted centroid within noise distance.
    d = torch.cdist(torch.tensor(centers, dtype=torch.float32), a.centroids)
    assert d.min(dim=1).values.max() < 0.5
    assert a.info["frames"] == len(x) and a.info["init"] == "k-means++"
    # inertia is the sum of squared distances to the nearest centroid, computed another way
    expected = torch.cdist(torch.from_numpy(x).double(), a.centroids.double()).min(dim=1).values.pow(2).sum()
    assert a.info["inertia"] == pytest.approx(float(expected), rel=1e-4)


def test_fit_uses_every_frame_given(monkeypatch):
    """faiss subsamples to 256 points per centroid unless told otherwise; we never do silently."""
    import faiss

    seen = {}
    real = faiss.Kmeans

    def spy(d, k, **kwargs):
        seen.update(kwargs)
        return real(d, k, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", spy)
    x, _ = blobs(n=6000, k=10)
    model = KMeans.fit(x, 10, backend="faiss")
    assert seen["max_points_per_centroid"] * 10 >= 6000
    assert model.info["frames"] == 6000 and model.info["fitted_with"].startswith("faiss")
    model = KMeans.fit(x, 10)
    assert model.info["frames"] == 6000
    sampled = KMeans.fit(x, 10, max_frames=2500)
    assert sampled.info["frames"] == 2500


def test_lloyd_iterations_match_sklearn_from_the_same_start():
    """Our Lloyd steps against scikit-learn's full-batch Lloyd started from the same centroids."""
    x, _ = blobs(n=5000, d=12, k=40, seed=5)
    start = x[np.random.default_rng(1).choice(len(x), 25, replace=False)]
    for iters in (1, 3, 10):
        ours = kmeans_module.lloyd(torch.from_numpy(x), torch.from_numpy(start), iters)
        sk = SklearnKMeans(25, init=start, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(x)
        torch.testing.assert_close(ours, torch.from_numpy(sk.cluster_centers_), atol=1e-4, rtol=1e-4)


def test_lloyd_moves_an_emptied_cluster_to_the_farthest_frame():
    x = torch.tensor([[0.0], [0.1], [10.0]])
    start = torch.tensor([[0.05], [100.0], [9.0]])  # the centroid at 100 attracts no frame
    c = kmeans_module.lloyd(x, start, 1)
    # after one step: 0.05 stays, 9 -> 10, and the empty cluster takes the frame farthest from its
    # centroid in that step (0.0 and 0.1 are 0.05 away, 10 is 1 away)
    torch.testing.assert_close(c, torch.tensor([[0.05], [10.0], [10.0]]))


def test_torch_and_faiss_backends_reach_the_same_inertia():
    x, _ = blobs(n=8000, d=16, k=30, seed=6)
    a = KMeans.fit(x, 30, iters=20)
    b = KMeans.fit(x, 30, iters=20, backend="faiss")
    assert a.info["inertia"] == pytest.approx(b.info["inertia"], rel=0.02)


def test_fit_needs_k_frames():
    with pytest.raises(ValueError, match="at least k frames"):
        KMeans.fit(np.zeros((5, 3), np.float32), 10)


def test_kmeans_plusplus_spreads_seeds():
    x, centers = blobs(k=8, seed=4)
    seeds = kmeans_module.kmeans_plusplus(torch.from_numpy(x), 8, torch.Generator().manual_seed(0))
    # k-means++ picks one seed in (nearly) every well-separated blob
    nearest_center = torch.cdist(seeds, torch.tensor(centers, dtype=torch.float32)).argmin(dim=1)
    assert len(set(nearest_center.tolist())) >= 7


def test_assign_is_nearest_centroid_in_bounded_chunks(monkeypatch):
    x, _ = blobs(n=3000)
    model = KMeans(torch.randn(37, 16))
    expected = torch.cdist(torch.from_numpy(x).double(), model.centroids.double()).argmin(dim=1)
    monkeypatch.setattr(kmeans_module, "ASSIGN_BUDGET", 37 * 100)  # 100 rows at a time
    np.testing.assert_array_equal(model.assign(torch.from_numpy(x)).numpy(), expected.numpy())
    with pytest.raises(ValueError, match="dims"):
        model.assign(torch.zeros(4, 15))


def test_save_load_roundtrip(tmp_path):
    x, _ = blobs()
    model = KMeans.fit(x, 10)
    path = model.save(tmp_path / "km")
    assert path.name == "km.safetensors" and (tmp_path / "km.json").exists()
    back = KMeans.load(path)
    torch.testing.assert_close(back.centroids, model.centroids)
    assert back.info["inertia"] == model.info["inertia"]


def test_import_npy(tmp_path):
    c = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "c.npy", c)
    torch.testing.assert_close(KMeans.load(tmp_path / "c.npy").centroids, torch.from_numpy(c))


@pytest.mark.parametrize("writer", ["joblib", "joblib-compressed", "pickle"])
@pytest.mark.parametrize("estimator", ["minibatch", "kmeans"])
def test_imported_sklearn_kmeans_predicts_like_sklearn(tmp_path, writer, estimator):
    """fairseq (`.bin`), textlesslib and SpeechBrain (`.pt`) files are sklearn k-means pickles."""
    x, _ = blobs(n=5000, d=24, k=12, seed=1)
    if estimator == "minibatch":  # fairseq learn_kmeans.py parameters, scaled down
        sk = MiniBatchKMeans(n_clusters=50, init="k-means++", max_iter=20, batch_size=1000, tol=0.0,
                             max_no_improvement=100, n_init=3, reassignment_ratio=0.0,
                             compute_labels=False, random_state=0).fit(x)
    else:
        sk = SklearnKMeans(n_clusters=50, n_init=1, random_state=0).fit(x)
    path = tmp_path / "LibriSpeech_wavlm_k50_L7.pt"
    if writer == "joblib":
        joblib.dump(sk, path)
    elif writer == "joblib-compressed":
        joblib.dump(sk, path, compress=3)
    else:
        with open(path, "wb") as f:
            pickle.dump(sk, f)
    model = KMeans.load(path)
    assert model.k == 50 and model.dim == 24
    assert model.info["sklearn_class"].endswith(type(sk).__name__)
    feats = np.random.default_rng(9).standard_normal((3000, 24)).astype(np.float32) * 3
    np.testing.assert_array_equal(model.assign(torch.from_numpy(feats)).numpy(), sk.predict(feats))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "joblib"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "km.bin"
    payload = {"cluster_centers_": np.zeros((2, 2)), "evil": _Exploit(marker)}
    if writer == "joblib":
        joblib.dump(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match="system"):
        KMeans.load(path)
    assert not marker.exists()


def test_pickle_of_other_class_is_refused(tmp_path):
    from collections import OrderedDict

    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        KMeans.load(path)


def test_not_a_kmeans_pickle(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(3)}))
    with pytest.raises(ValueError, match="not a fitted"):
        KMeans.load(path)
