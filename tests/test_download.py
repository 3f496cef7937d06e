import io
import os
import stat
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from PIL import Image

from movietitles.config import load_config, with_overrides
from movietitles.data.download import download_posters
from movietitles.data.prepare import prepare
from movietitles.settings import DataSettings


def _jpeg(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (60, 90), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


FILES = {"/a.jpg": _jpeg((255, 0, 0)), "/b.jpg": _jpeg((0, 255, 0)), "/flaky.jpg": _jpeg((0, 0, 255))}


class Handler(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self):  # noqa: N802 - http.server API
        Handler.hits[self.path] += 1
        if self.path == "/halfway.jpg":  # promises 2000 bytes, sends 1000, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "2000")
            self.end_headers()
            self.wfile.write(b"\xff" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path == "/slow.jpg":
            time.sleep(1.0)
        if self.path == "/error-page.jpg":  # an error page sent with status 200
            body = b"<html><body>Service unavailable, try later</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/flaky.jpg" and Handler.hits[self.path] == 1:
            self.send_error(503)
            return
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_cases_and_resume(tmp_path, server):
    items = [("tt0000001", f"{server}/a.jpg"), ("tt0000002", f"{server}/missing.jpg"),
             ("tt0000003", f"{server}/halfway.jpg"), ("tt0000004", f"{server}/flaky.jpg"),
             ("tt0000005", f"{server}/slow.jpg"), ("tt0000006", "not a url"),
             ("tt0000007", f"{server}/b.jpg")]
    out = tmp_path / "posters"
    results = download_posters(items, out, workers=4, timeout_s=0.3, retries=1, backoff_s=0.01, progress=False)
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == [i for i, _ in items]

    assert by_id["tt0000001"].status == "downloaded"
    assert (out / "tt0000001.jpg").read_bytes() == FILES["/a.jpg"]
    assert by_id["tt0000002"].status == "failed" and by_id["tt0000002"].reason.startswith("http_404")
    assert Handler.hits["/missing.jpg"] == 1  # a 404 is not retried
    assert by_id["tt0000003"].status == "failed" and "incomplete" in by_id["tt0000003"].reason
    assert Handler.hits["/halfway.jpg"] == 2  # first try + 1 retry
    assert by_id["tt0000004"].status == "downloaded" and by_id["tt0000004"].attempts == 2
    assert by_id["tt0000005"].status == "failed" and "timeout" in by_id["tt0000005"].reason.lower()
    assert by_id["tt0000006"].reason.startswith("bad_url")

    # Only finished files under final names, no temp files left behind.
    assert sorted(p.name for p in out.iterdir()) == ["tt0000001.jpg", "tt0000004.jpg", "tt0000007.jpg"]

    # Re-run: finished files are skipped, failures retried.
    hits_before = Handler.hits.copy()
    again = download_posters(items, out, workers=2, timeout_s=0.3, retries=0, backoff_s=0.01, progress=False)
    assert {r.id: r.status for r in again}["tt0000001"] == "cached"
    assert Handler.hits["/a.jpg"] == hits_before["/a.jpg"]
    assert Handler.hits["/missing.jpg"] == hits_before["/missing.jpg"] + 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_an_error_page_is_not_a_poster_and_is_retried(tmp_path, server):
    out = tmp_path / "posters"
    out.mkdir()
    (out / "tt0000002.jpg").write_bytes(b"<html>an error page saved by an older run</html>")
    items = [("tt0000001", f"{server}/error-page.jpg"), ("tt0000002", f"{server}/b.jpg")]
    results = download_posters(items, out, workers=2, timeout_s=2, retries=2, backoff_s=0.01, progress=False)
    assert results[0].status == "failed" and results[0].reason.startswith("not_an_image")
    assert "b'<html><body>Se" in results[0].reason and results[0].attempts == 3
    assert Handler.hits["/error-page.jpg"] == 3
    assert not (out / "tt0000001.jpg").exists()
    assert results[1].status == "downloaded"  # the saved error page is replaced
    assert (out / "tt0000002.jpg").read_bytes() == FILES["/b.jpg"]
    assert stat.S_IMODE((out / "tt0000002.jpg").stat().st_mode) == 0o666 & ~_umask()


def test_prepare_kaggle_source(tmp_path, server):
    root = tmp_path / "kaggle"
    root.mkdir()
    text = ("imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
            f"114709,x,Toy Story (1995),8.3,Animation|Adventure|Comedy,{server}/a.jpg\n"
            f"113497,x,\"Misérables, Les (1995)\",7.1,Drama|Biography,{server}/missing.jpg\n"
            f"113228,x,Heat (1995),8.2,Action|Crime,{server}/b.jpg\n"
            f"114709,x,Toy Story again (1995),8.3,Comedy,{server}/b.jpg\n")
    (root / "MovieGenre.csv").write_bytes(text.encode("latin-1"))
    out = tmp_path / "prepared"
    config = with_overrides(load_config(), {
        "data.source": "kaggle", "data.root": str(root), "data.prepared_dir": str(out),
        "data.download.workers": 2, "data.download.retries": 0})
    prepare(DataSettings.from_config(config), progress=False)

    movies = pd.read_csv(out / "movies.csv", dtype=str, keep_default_na=False).set_index("id")
    assert list(movies.index) == ["tt0114709", "tt0113497", "tt0113228"]
    assert movies.loc["tt0114709", "poster"] == str((out / "posters" / "tt0114709.jpg").resolve())
    assert movies.loc["tt0113497", "poster"] == ""
    assert movies.loc["tt0113497", "title"] == "Les Misérables"
    report = pd.read_csv(out / "import_report.csv", dtype=str, keep_default_na=False)
    reasons = dict(zip(report["id"] + " " + report["field"], report["reason"]))
    assert reasons["tt0113497 poster"].startswith("download_failed: http_404")
    assert reasons["tt0113497 genres"] == "unknown_genre: Biography"
    assert reasons["tt0114709 id"].startswith("duplicate_id")
    assert Handler.hits["/b.jpg"] == 1  # the duplicate row was dropped before downloading


class EndlessHandler(BaseHTTPRequestHandler):
    """/endless.jpg: a JPEG start, then bytes for ever (no Content-Length); /big.jpg announces 50 MB."""

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if self.path == "/big.jpg":
            self.send_header("Content-Length", str(50_000_000))
        self.end_headers()
        try:
            self.wfile.write(b"\xff\xd8\xff\xe0")
            while True:
                self.wfile.write(b"\0" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_a_download_stops_at_max_bytes(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EndlessHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        out = tmp_path / "posters"
        started = time.perf_counter()
        results = download_posters([("tt0000001", f"{base}/endless.jpg"), ("tt0000002", f"{base}/big.jpg")], out,
                                   workers=2, timeout_s=5, retries=2, backoff_s=0.01, progress=False,
                                   max_bytes=1_000_000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert time.perf_counter() - started < 30
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].reason == "too_large: over max_bytes 1000000 (stopped reading there)"
    assert results[1].reason == "too_large: 50000000 bytes announced, over max_bytes 1000000"
    assert [r.attempts for r in results] == [1, 1]  # not retried: the same file would be as large
    assert list(out.iterdir()) == []  # nothing kept, no partial file


def test_distinct_ids_get_distinct_file_names():
    from movietitles.io import file_name_for

    ids = ["tt0114709", "a/b", "a_b", "a b", "../x", ".hidden", "a" * 300, "ß-1", ""]
    names = [file_name_for(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert names[0] == "tt0114709" and names[2] == "a_b"
    assert all("/" not in n and not n.startswith(".") and 0 < len(n) <= 100 for n in names)
