"""Read the k-means pickles users already have without running code from them.

fairseq (`hubert_base_ls960_L9_km500.bin`), textlesslib (`km.bin`) and SpeechBrain
(`kmeans/*_k1000_L7.pt`) ship scikit-learn KMeans / MiniBatchKMeans objects written with
`joblib.dump` (or plain pickle). Unpickling them normally imports and runs whatever the file names.
Here only an allow-list of globals is resolved: numpy's array/dtype/scalar reconstructors, and the
sklearn estimator classes, which are replaced by a plain attribute holder (sklearn is not needed).
joblib's format stores each array's bytes right after its `NumpyArrayWrapper` in the stream; those
are read back as plain data. Anything else is refused before it is called.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zlib
from pathlib import Path

import numpy as np

from ..errors import FormatError, UnsafeFileError
from ..readers import register

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray


UnsafePickleError = UnsafeFileError  # the name before speechtok.errors


class EstimatorState:
    """Stands in for a scikit-learn estimator: keeps its pickled attributes, runs nothing."""

    sklearn_class = "sklearn"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafeFileError(f"unexpected estimator state of type {type(state).__name__}")
        self.__dict__.update(state)


class _ArrayWrapper:
    """Stands in for joblib's NumpyArrayWrapper: metadata of an array whose bytes follow."""

    def __setstate__(self, state):
        self.__dict__.update(state)


_KMEANS_CLASSES = {"KMeans", "MiniBatchKMeans"}
_SKLEARN_MODULES = {"sklearn.cluster._kmeans", "sklearn.cluster.k_means_", "sklearn.cluster.kmeans_"}
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}
_JOBLIB_WRAPPERS = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper")}


def _allowed_global(module: str, name: str):
    if (module, name) in _NUMPY_GLOBALS:
        return _NUMPY_GLOBALS[(module, name)]
    if module in _SKLEARN_MODULES and name in _KMEANS_CLASSES:
        return type(name, (EstimatorState,), {"sklearn_class": f"{module}.{name}"})
    if (module, name) in _JOBLIB_WRAPPERS:
        return _ArrayWrapper
    if module == "copyreg" and name == "_reconstructor":
        import copyreg

        return copyreg._reconstructor  # calls cls.__new__ of an already allowed class only
    if module == "builtins" and name == "object":
        return object
    return None


class _RestrictedUnpickler(pickle._Unpickler):  # the Python implementation, so BUILD can be hooked
    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafeFileError(
                f"{self.source}: refused to load: the pickle names {module}.{name}, which is not "
                "a scikit-learn k-means or numpy type. Nothing from it was run."
            )
        return obj

    def load_build(self):
        super().load_build()
        if isinstance(self.stack[-1], _ArrayWrapper):
            self.stack[-1] = self._read_joblib_array(self.stack[-1])

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build

    def _read_joblib_array(self, wrapper: _ArrayWrapper) -> np.ndarray:
        dtype = np.dtype(wrapper.dtype)
        if dtype.hasobject:
            raise UnsafeFileError(f"{self.source}: refused to load an array of Python objects")
        if getattr(wrapper, "numpy_array_alignment_bytes", None) is not None:
            padding = self._file_read(1)[0]
            self._file_read(padding)
        shape = tuple(int(s) for s in wrapper.shape)
        count = int(np.prod(shape, dtype=np.int64))
        data = self._file_read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise pickle.UnpicklingError(f"{self.source}: truncated array data")
        array = np.frombuffer(data, dtype=dtype, count=count)
        if wrapper.order == "F":
            array = array.reshape(shape[::-1]).T
        return array.reshape(shape).copy()

    def _file_read(self, n: int) -> bytes:
        return self._unframer.read(n) if n else b""


_COMPRESSED = [  # joblib.dump(..., compress=...) writes the whole stream compressed
    (b"\x1f\x8b", gzip.decompress),
    (b"BZh", bz2.decompress),
    (b"\xfd7zXZ", lzma.decompress),
    (b"\x5d\x00\x00", lzma.decompress),
]


def load(path: str | Path):
    """Unpickle `path` (joblib or plain pickle, optionally compressed) with the allow-list."""
    path = Path(path)
    data = path.read_bytes()
    if data[:1] == b"\x78":  # joblib's zlib compressor writes a raw zlib stream
        data = zlib.decompress(data)
    else:
        for magic, decompress in _COMPRESSED:
            if data.startswith(magic):
                data = decompress(data)
                break
    return _RestrictedUnpickler(io.BytesIO(data), str(path)).load()


@register("sklearn-kmeans")
def kmeans_centroids(path: str | Path) -> tuple[np.ndarray, dict]:
    """Centroids [K, D] of a pickled scikit-learn KMeans / MiniBatchKMeans, and a description."""
    try:
        obj = load(path)
    except UnsafeFileError:
        raise
    except (pickle.UnpicklingError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, TypeError,
            AttributeError, IndexError, KeyError) as error:
        raise FormatError(f"{path}: not a readable k-means pickle ({type(error).__name__}: {error})") from None
    centers = getattr(obj, "cluster_centers_", None)
    if not isinstance(obj, EstimatorState) or centers is None:
        raise FormatError(f"{path}: not a fitted scikit-learn KMeans / MiniBatchKMeans")
    centers = np.asarray(centers)
    if centers.ndim != 2:
        raise FormatError(f"{path}: cluster_centers_ has shape {centers.shape}, expected [K, D]")
    info = {"imported_from": str(path), "sklearn_class": type(obj).sklearn_class,
            "sklearn_version": getattr(obj, "_sklearn_version", None)}
    return centers, info
