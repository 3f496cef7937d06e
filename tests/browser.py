"""Headless Chromium for tests: render a local HTML page, return its DOM after load, and a screenshot.

The page is rendered from a copy with one observer script added before </body>: after the load
event it writes how many images the page has and how many of them failed to decode into
attributes of <body>, which `--dump-dom` then shows. The report itself has no JavaScript.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]
OBSERVER = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken-images",
                             images.filter(i => !(i.complete && i.naturalWidth > 0)).length);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout, check=True)


def render(html_path: Path, work_dir: Path, window: tuple[int, int] = (1366, 768)) -> tuple[str, Path]:
    """(the DOM after load, a screenshot PNG at a laptop's window size) of the page at `html_path`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    page = work_dir / "observed.html"
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", OBSERVER + "</body>"), encoding="utf-8")
    dom = _run(page, "--dump-dom").stdout
    screenshot = work_dir / "screenshot.png"
    _run(html_path, f"--screenshot={screenshot}", f"--window-size={window[0]},{window[1]}", "--hide-scrollbars")
    return dom, screenshot
