"""Read a `torch.save`d state dict into NumPy arrays without torch, and without running the pickle.

A torch checkpoint is a pickle, and unpickling runs whatever callables it names. This reader
uses an unpickler that resolves only the few names a state dict of tensors needs and refuses
everything else. Both the legacy format (pickles in sequence, then raw storages) and the zip
format (torch >= 1.6) are read.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


# Bounds on what a file may make this reader allocate.
MAX_PICKLE_BYTES = 64 << 20          # the pickle of a state dict (names and tensor headers)
DEFAULT_MAX_BYTES = 4 << 30          # all tensor data together


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global, or changes an object, that a plain state dict of tensors never needs."""


class TorchFileError(ValueError):
    """The file is not a readable torch state dict (named in the message)."""


class _BuildRefused(Exception):
    pass


class _NoBuild:
    """What the pickle's BUILD opcode may not change: BUILD calls __setstate__, which refuses."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _BuildRefused(type(self).__name__.lstrip("_"))


class _StorageType(_NoBuild):
    """torch.<X>Storage; a new one for every global the pickle names, so nothing is shared between loads."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    @property
    def dtype(self) -> np.dtype:
        if self.name == "BFloat16Storage":
            import ml_dtypes  # installed with TensorFlow

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_STORAGE_DTYPES[self.name])


class _Function(_NoBuild):
    """One of the allowed functions, wrapped so that the pickle cannot reach (and BUILD onto) the function."""

    __slots__ = ("_call",)

    def __init__(self, call):
        object.__setattr__(self, "_call", call)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


class _StateDict(collections.OrderedDict):
    """collections.OrderedDict as torch pickles a state dict: BUILD may only set its `_metadata` (ignored)."""

    def __setstate__(self, state):
        if not (isinstance(state, dict) and set(state) <= {"_metadata"}):
            raise _BuildRefused("OrderedDict (only a state dict's _metadata may be set)")


@dataclass
class _Storage(_NoBuild):
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled once the raw bytes are read


@dataclass(frozen=True)
class _StorageView(_NoBuild):
    """Legacy format: a storage that is a slice of another one."""

    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef(_NoBuild):
    storage: _Storage | _StorageView
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_FUNCTIONS = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
              ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}


def _allowed_global(module: str, name: str):
    """A fresh object for each allowed global (no state that one file could leave for the next), else None."""
    if (module, name) == ("collections", "OrderedDict"):
        return _Function(_StateDict)
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
    if (module, name) in _FUNCTIONS:
        return _Function(_FUNCTIONS[(module, name)])
    return None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path, storages: dict[str, _Storage]):
        super().__init__(file)
        self._path = path
        self._storages = storages

    def load(self):
        try:
            return super().load()
        except _BuildRefused as err:
            raise UnsafePickleError(f"{self._path}: refusing to change a {err} while loading (pickle BUILD): "
                                    "a plain state-dict file never does this (it may be malicious)") from None

    def find_class(self, module: str, name: str):
        found = _allowed_global(module, name)
        if found is None:
            raise UnsafePickleError(
                f"{self._path}: refusing to load the global '{module}.{name}': a state-dict file may only "
                "name OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage "
                "types of real dtypes (this file may be malicious, or not a plain state dict)"
            )
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], (str, int)) and _is_count(pid[4])):
            raise TorchFileError(f"{self._path}: unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise TorchFileError(f"{self._path}: storage {key} is used with two dtypes or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1]) and _is_count(view[2])
                and view[1] + view[2] <= numel):
            raise TorchFileError(f"{self._path}: storage view {view!r} lies outside storage {key}")
        return _StorageView(storage, view[1], view[2])


def _materialize(ref: _TensorRef, path: Path, name: str) -> np.ndarray:
    """The tensor's values; every element it reads must lie in its storage, and it may hold no more
    elements than its storage (so stride 0 cannot blow a small storage up into a huge array)."""
    storage, offset = ref.storage, ref.offset
    if not (_is_count(offset) and all(map(_is_count, ref.shape)) and all(map(_is_count, ref.stride))
            and len(ref.shape) == len(ref.stride)):
        raise TorchFileError(f"{path}: tensor '{name}' has an invalid offset, shape or stride "
                             f"({offset!r}, {ref.shape!r}, {ref.stride!r})")
    end = None
    if isinstance(storage, _StorageView):
        storage, offset, end = storage.root, storage.offset + offset, storage.offset + storage.numel
    if storage.data is None:
        raise TorchFileError(f"{path}: no data was stored for tensor '{name}' (storage {storage.key})")
    flat = storage.data[:end]
    count = math.prod(ref.shape)
    if count == 0:
        return np.zeros(ref.shape, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if last >= flat.size or count > flat.size - offset:
        raise TorchFileError(f"{path}: tensor '{name}' (shape {ref.shape}, stride {ref.stride}, offset {offset}) "
                             f"does not fit in its storage {storage.key} of {flat.size} elements")
    strides = tuple(s * flat.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=ref.shape, strides=strides, writeable=False)
    return np.array(view)  # a compact, writable copy that owns its memory


def _to_arrays(obj, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    arrays = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise TorchFileError(f"{path}: entry '{name}' is a {type(value).__name__}, not a tensor")
        arrays[str(name)] = _materialize(value, path, name)
    return arrays


def _load_legacy(f: BinaryIO, path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    file_size = os.fstat(f.fileno()).st_size

    def next_pickle():
        return _RestrictedUnpickler(f, path, storages).load()

    if next_pickle() != _LEGACY_MAGIC:
        raise TorchFileError(f"{path}: not a torch.save file (wrong magic number)")
    if next_pickle() != _LEGACY_PROTOCOL:
        raise TorchFileError(f"{path}: unsupported legacy torch.save protocol version")
    sys_info = next_pickle()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise TorchFileError(f"{path}: big-endian torch files are not supported")
    state = next_pickle()
    keys = next_pickle()
    if not isinstance(keys, list):
        raise TorchFileError(f"{path}: expected the list of storage keys, got {type(keys).__name__}")
    total = 0
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise TorchFileError(f"{path}: storage {key} has data but no tensor uses it")
        header = f.read(8)
        numel = int.from_bytes(header, "little", signed=True) if len(header) == 8 else -1
        nbytes = numel * storage.dtype.itemsize
        total += max(nbytes, 0)
        if numel < 0 or nbytes > file_size - f.tell():  # never ask for more than the file holds
            raise TorchFileError(f"{path}: file is truncated in the data of storage {key}")
        _check_total(total, max_bytes, path)
        storage.data = np.frombuffer(f.read(nbytes), storage.dtype)
    return _to_arrays(state, path)


def _check_total(total: int, max_bytes: int, path: Path) -> None:
    if total > max_bytes:
        raise TorchFileError(f"{path}: the tensors hold more than the limit of {max_bytes} bytes")


def _load_zip(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    """Every member is read only up to what it must hold (its declared size bounds the decompression)."""
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [n for n in infos if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{path}: zip file is not a torch.save archive (no single */data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in infos:
            with archive.open(f"{prefix}byteorder") as f:
                if f.read(16).strip() != b"little":
                    raise TorchFileError(f"{path}: big-endian torch files are not supported")
        if infos[pickles[0]].file_size > MAX_PICKLE_BYTES:
            raise TorchFileError(f"{path}: {pickles[0]} is over the limit of {MAX_PICKLE_BYTES} bytes")
        with archive.open(pickles[0]) as f:
            state = _RestrictedUnpickler(f, path, storages).load()
        members = {key: f"{prefix}data/{key}" for key in storages}
        needed = {key: storage.numel * storage.dtype.itemsize for key, storage in storages.items()}
        for key, member in members.items():
            if member not in infos:
                raise TorchFileError(f"{path}: storage {key} is missing from the archive")
            if infos[member].file_size < needed[key]:
                raise TorchFileError(f"{path}: storage {key} is truncated")
        _check_total(sum(needed.values()), max_bytes, path)
        for key, storage in storages.items():
            with archive.open(members[key]) as f:
                raw = f.read(needed[key])
            if len(raw) < needed[key]:
                raise TorchFileError(f"{path}: storage {key} is truncated")
            storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return _to_arrays(state, path)


def load_torch_state_dict(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Return the tensors of a `torch.save`d state dict as NumPy arrays, by name, in file order.

    Refused with a clear error: any global but the few a state dict needs, any BUILD but a state
    dict's `_metadata`, a tensor reaching outside its storage or holding more elements than it, and
    tensor data over `max_bytes` bytes in all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch state-dict file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, max_bytes)
        with open(path, "rb") as f:
            return _load_legacy(f, path, max_bytes)
    except (UnsafePickleError, TorchFileError):
        raise
    except Exception as err:  # whatever a damaged pickle or zip raises
        raise TorchFileError(f"{path}: not a readable torch.save file ({type(err).__name__}: {err})") from err
