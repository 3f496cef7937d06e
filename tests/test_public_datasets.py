"""`python -m movietitles.data download` against a server on 127.0.0.1: MovieLens zips checked against their
published MD5 (a corrupt archive refused), a transfer cut short resumed with a Range request, posters from a
Kaggle CSV's URLs, and the data then prepared."""

import hashlib
import io
import re
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from PIL import Image

MOVIES = ("movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
          "2,Jumanji (1995),Adventure|Children|Fantasy\n3,Heat (1995),Action|Crime|Thriller\n")
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,8844\n3,0113277,949\n"


def _zip(top: str, padding: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/movies.csv", MOVIES)
        zf.writestr(f"{top}/links.csv", LINKS)
        zf.writestr(f"{top}/README.txt", "x" * padding)  # big enough to be cut in the middle
    return buffer.getvalue()


def _jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 90), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


class Server(BaseHTTPRequestHandler):
    """/good/ml-latest-small.zip (and .md5); /corrupt/: the MD5 file names another archive; /cut/: the first
    response stops halfway, later ones honour Range; /posters/*.jpg and /MovieGenre.csv."""

    files: dict = {}
    requests: list = []
    cut_once: set = set()

    def do_GET(self):  # noqa: N802 - http.server API
        Server.requests.append((self.path, self.headers.get("Range")))
        body = Server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        found = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if found and int(found.group(1)) < len(body):
            start = int(found.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in Server.cut_once:  # promise the whole file, send half, hang up
            Server.cut_once.discard(self.path)
            self.wfile.write(body[start:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    good = _zip("ml-latest-small", padding=200_000)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF  # one byte flipped in transit
    Server.files = {
        "/good/ml-latest-small.zip": good,
        "/good/ml-latest-small.zip.md5": f"MD5 (ml-latest-small.zip) = {hashlib.md5(good).hexdigest()}\n".encode(),
        "/corrupt/ml-latest-small.zip": bytes(corrupt),
        "/corrupt/ml-latest-small.zip.md5": hashlib.md5(good).hexdigest().encode(),
        "/cut/ml-latest-small.zip": good,
        "/cut/ml-latest-small.zip.md5": hashlib.md5(good).hexdigest().encode(),
        "/posters/a.jpg": _jpeg((255, 0, 0)),
        "/posters/c.jpg": _jpeg((0, 0, 255)),
    }
    Server.requests, Server.cut_once = [], {"/cut/ml-latest-small.zip"}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    Server.files["/MovieGenre.csv"] = (
        "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"
        f"114709,x,Toy Story (1995),8.3,Animation|Adventure|Comedy,{base}/posters/a.jpg\n"
        f"113497,x,Jumanji (1995),6.9,Adventure|Family,{base}/posters/missing.jpg\n"
        f"113277,x,Heat (1995),8.2,Action|Crime,{base}/posters/c.jpg\n").encode()
    yield base
    httpd.shutdown()
    httpd.server_close()


def data_command(*args, root):
    return subprocess.run([sys.executable, "-m", "movietitles.data", *args, "--no-progress",
                           "--set", f"data.root={root}"], capture_output=True, text=True, timeout=300)


def test_help_documents_the_sources():
    result = subprocess.run([sys.executable, "-m", "movietitles.data", "download", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for source in ("ml-latest-small", "ml-latest", "GroupLens", "MD5", "Kaggle", "Movie Genre from its Poster",
                   "Range", "--kaggle-csv", "--base-url"):
        assert source in result.stdout, source


def test_movielens_and_posters_are_fetched_then_prepared(tmp_path, server):
    root = tmp_path / "raw"
    result = data_command("download", "movielens", "--variant", "ml-latest-small", "--base-url",
                          f"{server}/good", root=root)
    assert result.returncode == 0, result.stderr
    assert (root / "movielens" / "movies.csv").read_text() == MOVIES
    assert (root / "movielens" / "links.csv").read_text() == LINKS
    assert "python -m movietitles.data prepare" in result.stdout

    result = data_command("download", "posters", "--kaggle-csv", f"{server}/MovieGenre.csv", root=root)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (root / "posters").iterdir()) == ["tt0113277.jpg", "tt0114709.jpg"]
    assert (root / "posters" / "tt0114709.jpg").read_bytes() == Server.files["/posters/a.jpg"]
    assert "posters: 2 in" in result.stdout and "1 failed" in result.stdout and "http_404" in result.stdout

    prepared = tmp_path / "prepared"
    result = subprocess.run([sys.executable, "-m", "movietitles.data", "prepare", "--no-progress",
                             "--set", f"data.root={root}", "--set", f"data.prepared_dir={prepared}",
                             "--set", "data.split_fractions={train: 0.34, validation: 0.33, test: 0.33}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    movies = pd.read_csv(prepared / "movies.csv", dtype=str, keep_default_na=False).set_index("id")
    assert sorted(movies.index) == ["tt0113277", "tt0113497", "tt0114709"]
    assert movies.loc["tt0113497", "poster"] == "" and movies.loc["tt0114709", "poster"].endswith("tt0114709.jpg")

    # Run again: the archive is not fetched again, the posters there are kept.
    before = len(Server.requests)
    assert data_command("download", "movielens", "--variant", "ml-latest-small", "--base-url", f"{server}/good",
                        root=root).returncode == 0
    assert Server.requests[before:] == []


def test_a_corrupt_archive_is_refused_by_its_checksum(tmp_path, server):
    root = tmp_path / "raw"
    result = data_command("download", "movielens", "--variant", "ml-latest-small", "--base-url",
                          f"{server}/corrupt", root=root)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("error: ") and "checksum mismatch" in line and "\n" not in line
    assert hashlib.md5(Server.files["/good/ml-latest-small.zip"]).hexdigest() in line
    assert not (root / "movielens").exists()
    assert list((root / "downloads").iterdir()) == []  # the part file deleted, nothing kept under the final name


def test_an_interrupted_transfer_resumes_where_it_stopped(tmp_path, server):
    """In one run (a retry) and across runs (the part file kept, the command run again)."""
    from movietitles.data.public_datasets import DatasetDownloadError, download_movielens

    size = len(Server.files["/cut/ml-latest-small.zip"])
    root = tmp_path / "raw"
    with pytest.raises(DatasetDownloadError, match="interrupted .* run the same command again to resume"):
        download_movielens(root, "ml-latest-small", f"{server}/cut", retries=0, progress=False)
    part = root / "downloads" / "ml-latest-small.zip.part"
    assert part.stat().st_size == size // 2

    result = data_command("download", "movielens", "--variant", "ml-latest-small", "--base-url", f"{server}/cut",
                          root=root)
    assert result.returncode == 0, result.stderr
    zips = [r for r in Server.requests if r[0] == "/cut/ml-latest-small.zip"]
    assert zips == [("/cut/ml-latest-small.zip", None), ("/cut/ml-latest-small.zip", f"bytes={size // 2}-")]
    assert not part.exists() and (root / "movielens" / "movies.csv").read_text() == MOVIES

    # Within one run: the first response is cut, the retry asks for the rest.
    Server.requests, Server.cut_once = [], {"/cut/ml-latest-small.zip"}
    again = tmp_path / "again"
    download_movielens(again, "ml-latest-small", f"{server}/cut", retries=2, progress=False)
    assert [r[1] for r in Server.requests if r[0] == "/cut/ml-latest-small.zip"] == [None, f"bytes={size // 2}-"]
    assert (again / "movielens" / "links.csv").read_text() == LINKS


def test_a_missing_dataset_names_the_download_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "movietitles.data", "prepare", "--no-progress",
                             "--set", f"data.root={tmp_path / 'nothing'}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "python -m movietitles.data download movielens" in result.stderr
