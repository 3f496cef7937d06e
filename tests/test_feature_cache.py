"""The feature cache resumes after a crash, never trusts a partial file, and merges shards."""

import numpy as np
import pytest

from movietitles.features.cache import FeatureCache, StaleCacheError
from movietitles.features.extract import fill_cache

IDS = [f"tt{i:07d}" for i in range(23)]


def fake_embed(calls):
    def embed(rows):
        calls.append(rows.start)
        return np.stack([np.full(4, i, dtype=np.float32) for i in range(rows.start, rows.stop)])
    return embed


def test_killed_run_resumes_without_recomputing(tmp_path):
    cache = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
    calls = []
    embed = fake_embed(calls)

    def dies_on_third_chunk(rows):
        if rows.start == 10:
            raise KeyboardInterrupt("killed")
        return embed(rows)

    with pytest.raises(KeyboardInterrupt):
        fill_cache(cache, dies_on_third_chunk, "test")
    assert calls == [0, 5]
    assert not cache.is_complete()
    assert cache.rows_done() == 10

    # A crash while writing leaves only a temporary file, never a chunk.
    (cache.directory / "chunks" / ".00002.npy.123.tmp").write_bytes(b"half")
    reopened = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
    assert reopened.missing_chunks() == [2, 3, 4]
    assert fill_cache(reopened, embed, "test")
    assert calls == [0, 5, 10, 15, 20]
    np.testing.assert_array_equal(reopened.load()[:, 0], np.arange(len(IDS)))


def test_shards_fill_disjoint_chunks_and_next_run_merges(tmp_path):
    calls = [[], [], []]
    for shard in range(3):
        cache = FeatureCache.open(tmp_path, "title", "enc", IDS, chunk_size=4)
        complete = fill_cache(cache, fake_embed(calls[shard]), "test", shard=shard, num_shards=3)
        assert complete == (shard == 2)
    assert calls == [[0, 12], [4, 16], [8, 20]]
    merged = FeatureCache.open(tmp_path, "title", "enc", IDS, chunk_size=4)
    assert merged.is_complete() and not any((merged.directory / "chunks").iterdir())
    np.testing.assert_array_equal(merged.load()[:, 0], np.arange(len(IDS)))


def test_different_ids_or_encoders_never_share_a_cache(tmp_path):
    a = FeatureCache.open(tmp_path, "poster", "enc-a", IDS, 5)
    b = FeatureCache.open(tmp_path, "poster", "enc-b", IDS, 5)
    c = FeatureCache.open(tmp_path, "poster", "enc-a", IDS[:-1], 5)
    assert len({a.directory, b.directory, c.directory}) == 3


def test_incomplete_cache_refuses_to_load_and_bad_chunks_are_rejected(tmp_path):
    cache = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
    with pytest.raises(FileNotFoundError, match="0/23 rows"):
        cache.load()
    with pytest.raises(ValueError, match="expected 5 rows"):
        cache.write_chunk(0, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        cache.write_chunk(0, np.full((5, 3), np.nan))


def _filled(tmp_path, chunk_size=5):
    cache = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=chunk_size)
    for i in range(cache.num_chunks):
        rows = cache.chunk_rows(i)
        cache.write_chunk(i, np.arange(rows.start, rows.stop, dtype=np.float32)[:, None].repeat(4, axis=1))
    return cache


@pytest.mark.parametrize("other_merges", ["after_this_one_read_the_chunks", "after_this_one_saw_the_chunks"])
def test_two_shards_merging_together_both_succeed(tmp_path, monkeypatch, other_merges):
    """Shard B merges while shard A is between its steps (the two interleavings that collide)."""
    from movietitles.features import cache as cache_module

    mine, other = _filled(tmp_path), FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
    # After reading the chunks, a shard writes runtime.json, then renames its merged file into place.
    real_save, real_load, done = cache_module.atomic_write_text, np.load, []

    def other_first(*args, **kwargs):
        if not done:
            done.append(None)  # the other shard's own calls go straight through
            done[0] = other.merge()
        return (real_save if other_merges.endswith("read_the_chunks") else real_load)(*args, **kwargs)

    if other_merges.endswith("read_the_chunks"):
        monkeypatch.setattr(cache_module, "atomic_write_text", other_first)
    else:
        monkeypatch.setattr(np, "load", other_first)
    assert mine.merge()
    monkeypatch.undo()
    assert done == [True]
    np.testing.assert_array_equal(mine.load()[:, 0], np.arange(len(IDS)))
    assert not any((mine.directory / "chunks").iterdir())


MERGE_AT = r"""
import sys, time
from movietitles.features.cache import FeatureCache, StaleCacheError
ids = [f"tt{i:07d}" for i in range(int(sys.argv[2]))]
cache = FeatureCache.open(sys.argv[1], "poster", "enc", ids, chunk_size=1)
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
print(cache.merge())
"""


def test_shard_processes_finishing_together_all_merge(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for attempt in range(3):
        ids = [f"tt{i:07d}" for i in range(200)]
        cache = FeatureCache.open(tmp_path / str(attempt), "poster", "enc", ids, chunk_size=1)
        for i in range(cache.num_chunks):
            cache.write_chunk(i, np.full((1, 4), i, np.float32))
        start = time.time() + 3.0
        workers = [subprocess.Popen([sys.executable, "-c", MERGE_AT, str(tmp_path / str(attempt)), str(len(ids)),
                                     str(start)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(4)]
        outputs = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0] * 4, [err[-1500:] for _, err in outputs]
        assert [out.strip() for out, _ in outputs] == ["True"] * 4
        np.testing.assert_array_equal(cache.load()[:, 0], np.arange(len(ids)))


def test_merged_cache_records_what_computed_each_chunk(tmp_path):
    fast, plain = {"onednn": True, "intra_op_threads": 0}, {"onednn": False, "intra_op_threads": 0}
    for shard, runtime in ((0, fast), (1, plain)):
        cache = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
        fill_cache(cache, fake_embed([]), "test", shard=shard, num_shards=2, runtime=runtime)
    assert not (cache.directory / "chunks" / "00000.json").exists()  # folded into runtime.json
    assert cache.runtime_records() == [{"runtime": fast, "chunks": [0, 2, 4]},
                                       {"runtime": plain, "chunks": [1, 3]}]


def test_chunks_written_without_a_runtime_are_recorded_as_unknown(tmp_path):
    cache = FeatureCache.open(tmp_path, "title", "enc", IDS, chunk_size=20)
    cache.write_chunk(0, np.zeros((20, 2), np.float32))
    cache.write_chunk(1, np.zeros((3, 2), np.float32), runtime={"onednn": True})
    assert cache.merge()
    assert cache.runtime_records() == [{"runtime": None, "chunks": [0]}, {"runtime": {"onednn": True}, "chunks": [1]}]


def test_a_row_whose_content_changed_is_recomputed_and_no_other(tmp_path):
    contents = [f"digest-{i}" for i in range(len(IDS))]
    computed = []

    def embed(rows):  # a row's value is its content's number, so a recomputed row shows its new content
        indices = np.arange(len(IDS))[rows]
        computed.append(indices.tolist())
        return np.stack([np.full(4, int(current[i].split("-")[1]), np.float32) for i in indices])

    current = contents
    cache = FeatureCache.open(tmp_path, "title", "enc", IDS, chunk_size=5, contents=contents)
    assert fill_cache(cache, embed, "test") and len(computed) == 5
    before = np.array(cache.load())
    assert (cache.directory / "contents.txt").read_text().splitlines() == contents

    current = contents[:7] + ["digest-700"] + contents[8:]  # row 7's title was corrected
    changed = FeatureCache.open(tmp_path, "title", "enc", IDS, chunk_size=5, contents=current)
    assert changed.directory == cache.directory  # same ids, same folder
    assert changed.stale_rows().tolist() == [7]
    with pytest.raises(StaleCacheError, match=r"1 row\(s\).*first: id 'tt0000007'.*--kinds title"):
        changed.load()
    computed.clear()
    assert fill_cache(changed, embed, "test")
    assert computed == [[7]]  # that row only
    after = np.array(changed.load())
    assert (after[7] == 700).all()
    np.testing.assert_array_equal(np.delete(after, 7, axis=0), np.delete(before, 7, axis=0))
    assert FeatureCache.open(tmp_path, "title", "enc", IDS, 5, contents=current).stale_rows().size == 0


def test_an_unmerged_chunk_with_a_changed_row_is_recomputed(tmp_path):
    contents = [f"digest-{i}" for i in range(len(IDS))]
    cache = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5, contents=contents)
    cache.write_chunk(0, np.zeros((5, 4), np.float32))
    cache.write_chunk(1, np.zeros((5, 4), np.float32))
    changed = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5,
                                contents=contents[:6] + ["new"] + contents[7:])
    assert changed.missing_chunks() == [1, 2, 3, 4]


def test_a_cache_from_before_contents_were_recorded_is_adopted(tmp_path, caplog):
    fresh = FeatureCache.open(tmp_path / "fresh", "poster", "enc", IDS, chunk_size=5, contents=list(IDS))
    assert fill_cache(fresh, fake_embed([]), "test") and "before row contents" not in caplog.text
    old = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5)
    assert fill_cache(old, fake_embed([]), "test") and not (old.directory / "contents.txt").exists()
    contents = [f"digest-{i}" for i in range(len(IDS))]
    adopted = FeatureCache.open(tmp_path, "poster", "enc", IDS, chunk_size=5, contents=contents)
    assert adopted.stale_rows().size == 0
    adopted.load()
    assert (adopted.directory / "contents.txt").read_text().splitlines() == contents
    assert "cached before row contents were recorded: kept as it is" in caplog.text
