"""Read a `torch.save`d state dict into NumPy arrays without torch, and without running the pickle.

A torch checkpoint is a pickle, and unpickling runs whatever callables it names. This reader
uses an unpickler that resolves only the few names a state dict of tensors needs and refuses
everything else. Both the legacy format (pickles in sequence, then raw storages) and the zip
format (torch >= 1.6) are read.
"""

from __future__ import annotations

import collections
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


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global that a plain state dict of tensors never needs."""


class TorchFileError(ValueError):
    """The file is not a readable torch state dict (named in the message)."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        if self.name == "BFloat16Storage":
            import ml_dtypes  # installed with TensorFlow

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # filled once the raw bytes are read


@dataclass(frozen=True)
class _StorageView:
    """Legacy format: a storage that is a slice of another one."""

    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage | _StorageView
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path, storages: dict[str, _Storage]):
        super().__init__(file)
        self._path = path
        self._storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refusing to load the global '{module}.{name}': a state-dict file may only "
                "name OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage "
                "types of real dtypes (this file may be malicious, or not a plain state dict)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise TorchFileError(f"{self._path}: unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        _view_key, offset, view_numel = view
        return _StorageView(storage, int(offset), int(view_numel))


def _materialize(ref: _TensorRef, path: Path, name: str) -> np.ndarray:
    storage, offset = ref.storage, ref.offset
    if isinstance(storage, _StorageView):
        storage, offset = storage.root, storage.offset + offset
    if storage.data is None:
        raise TorchFileError(f"{path}: no data was stored for tensor '{name}' (storage {storage.key})")
    flat = storage.data
    if any(n == 0 for n in ref.shape):
        return np.zeros(ref.shape, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if offset < 0 or any(s < 0 for s in ref.stride) or last >= flat.size:
        raise TorchFileError(f"{path}: tensor '{name}' lies outside its storage ({storage.key})")
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


def _load_legacy(f: BinaryIO, path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}

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
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise TorchFileError(f"{path}: storage {key} has data but no tensor uses it")
        header = f.read(8)
        numel = int.from_bytes(header, "little", signed=True) if len(header) == 8 else -1
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes) if numel >= 0 else b""
        if numel < 0 or len(raw) != nbytes:
            raise TorchFileError(f"{path}: file is truncated in the data of storage {key}")
        storage.data = np.frombuffer(raw, storage.dtype)
    return _to_arrays(state, path)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{path}: zip file is not a torch.save archive (no single */data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise TorchFileError(f"{path}: big-endian torch files are not supported")
        with archive.open(pickles[0]) as f:
            state = _RestrictedUnpickler(f, path, storages).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{path}: storage {key} is missing from the archive")
            raw = archive.read(member)
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise TorchFileError(f"{path}: storage {key} is truncated")
            storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return _to_arrays(state, path)


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the tensors of a `torch.save`d state dict as NumPy arrays, by name, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch state-dict file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(f, path)
    except (UnsafePickleError, TorchFileError):
        raise
    except Exception as err:  # whatever a damaged pickle or zip raises
        raise TorchFileError(f"{path}: not a readable torch.save file ({type(err).__name__}: {err})") from err
