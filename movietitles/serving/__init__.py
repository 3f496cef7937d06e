"""TF Serving exports: `genre` (genre models: raw title and poster in, genres out) and `generator`
(the title generator: poster in, titles out). Both are versioned SavedModels written atomically."""

from movietitles.serving.genre import (  # noqa: F401 (the genre API, as `movietitles.serving.<name>`)
    SIGNATURE_EMBEDDINGS, SIGNATURE_RAW, WARMUP_FILE, export_genre_models, latest_version, load_serving_model,
    serving_name, versions)
