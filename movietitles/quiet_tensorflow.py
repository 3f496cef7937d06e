"""TensorFlow's C++ start-up chatter, kept off the terminal unless asked for.

On a CPU-only machine, importing TensorFlow prints lines such as `I0000 ... cudart_stub.cc:31] Could not find
cuda drivers` (twice) and `oneDNN custom operations are on`, and its first operation `E0000 ... failed call to
cuInit`. TF_CPP_MIN_LOG_LEVEL=3 silences the later ones, not the ones printed while TensorFlow is imported
(before absl's logging starts), so `install()` filters those out of stderr for the duration of that import
(the file descriptor itself: they come from C++), and prints every other line that came.

`--verbose` on any command, or TF_CPP_MIN_LOG_LEVEL set by the user, keeps them all.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# absl's info and warning lines (`I0000 00:00:1796551152.700093    9547 port.cc:153] ...`), the notice before
# them, and the second line of the CPU-features notice.
CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                     r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
                     r"|To enable the following instructions: .* rebuild TensorFlow)")


def wanted() -> bool:
    """Quiet unless the user asked for TensorFlow's own logging."""
    return "--verbose" not in sys.argv[1:] and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


@contextlib.contextmanager
def stderr_without_chatter():
    """While the block runs, fd 2 goes to a temporary file; afterwards its lines, less CHATTER, go to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not CHATTER.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, as the other finders would, and runs its import inside stderr_without_chatter."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and the lookup below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            with stderr_without_chatter():
                run_module(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Quiet TensorFlow's C++ logging (see the module docstring) if it is not imported yet and nobody asked for it."""
    if not wanted() or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.meta_path.insert(0, _QuietImport())
