"""numpy arrays <-> Arrow list columns without going through Python lists."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Arrow value types -> numpy (`to_pandas_dtype` would import pandas, 0.1 s, for this lookup)
_NUMPY = {pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64, pa.float32(): np.float32,
          pa.float64(): np.float64}


def _numpy_type(arrow: pa.DataType):
    return _NUMPY.get(arrow) or arrow.to_pandas_dtype()


def list_column(arrays: list[np.ndarray], type: pa.ListType) -> pa.Array:
    """One list per array: [T] arrays for list<int>, [T, D] arrays for list<fixed_size_list<D>>."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    item = type.value_type
    flat = np.concatenate([np.asarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    if pa.types.is_fixed_size_list(item):
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat.astype(_numpy_type(item.value_type), copy=False)),
                                                   item.list_size)
    else:
        values = pa.array(flat.astype(_numpy_type(item), copy=False))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def column_arrays(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """`list_column`'s inverse: one array per row ([T] for list<number>, [T, D] for
    list<fixed_size_list<D>>), views of the column's buffers."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = column.offsets.to_numpy()
    values = column.values
    if pa.types.is_fixed_size_list(values.type):
        flat = values.values.to_numpy(zero_copy_only=False).reshape(-1, values.type.list_size)
        flat = flat[values.offset : values.offset + len(values)]
    else:
        flat = values.to_numpy(zero_copy_only=False)
    return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
