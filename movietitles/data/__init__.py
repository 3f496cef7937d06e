"""Data preparation: sources -> cleaned titles, checked posters, genre labels and fixed splits.

Run `python -m movietitles.data prepare`; read the result with `load_prepared`.
"""

from movietitles.data.dataset import Prepared, PreparedDataMissing, label_matrix, load_prepared
from movietitles.data.titles import CleanTitle, clean_title

__all__ = ["CleanTitle", "Prepared", "PreparedDataMissing", "clean_title", "label_matrix", "load_prepared"]
