"""Genre models as TF Serving SavedModels: raw titles and poster bytes in, genres out.

Each export is `<out>/genre_<task>/<version>/` (TF Serving's layout; the version is one more than
the highest there), written to a hidden temporary folder beside it and renamed into place. The
graph holds the whole path: the BERT preprocessor and encoder (TF-Hub SavedModels), the image
decoding and preprocessing, the image network and the Keras classifier. It uses only TensorFlow
core and TensorFlow Text ops, which the stock TF Serving model server links in.

Signatures (batch-major, as TF Serving wants):
  serving_default: `title` string [B] and/or `poster` string [B] (encoded JPEG/PNG/GIF/BMP/WebP), and for a
                   model that reads the poster's words (`genre.models.<task>.poster_text`) `poster_text` string [B]:
                   TF Serving has no OCR, so the caller reads them first, as `predict` does
                   (`movietitles.features.poster_files.read_poster_words` with the settings the export keeps in
                   its `poster_text_reader` variable, JSON): the lines' text, largest lettering first; "" for none.
                   Titles in the form the models were trained on, which the graph does not change: cleaned as
                   `data prepare` cleans MovieLens titles ("Brave, The (1997)" -> "The Brave": the article in
                   front, no year, no alternative titles; `movietitles.data.titles.clean_title`, which `predict`
                   applies). The genres are the evaluation's own, movie by movie (tests/test_parity.py).
                   A title that is empty, only whitespace or not UTF-8, or a poster that is not an image
                   or is over the encoder's max_bytes / max_pixels, fails the request (InvalidArgument,
                   naming its index: "title 3 ...", "poster 2 ..."); the model serves the next one.
  embeddings:      `title_embedding` float32 [B, Dt] and/or `poster_embedding` float32 [B, Dp]
                   (and `title_text` string [B], the raw titles, for a classifier with a title n-gram channel;
                   `poster_text` string [B] for one that reads the poster's words);
                   not exported for a title model that holds its own encoder (`genre.models.title.finetune_layers`)
  both return      `probabilities` float32 [B, G], `predicted` int32 [B, G] (score >= the genre's
                   tuned threshold) and `genres` string [B] (the predicted genre names joined by "|").
The restored object also has `genre_names` and `thresholds` variables (G genres, in column order) and,
with a poster input, `max_poster_bytes` and `max_poster_pixels`; reading poster text, `poster_text_reader`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from movietitles.artefacts import finished_run
from movietitles.data.download import IMAGE_MAGIC, JPEG_MAGIC, PNG_MAGIC
from movietitles.features.extract import POSTER, POSTER_TEXT, TITLE
from movietitles.io import directory_in_progress
from movietitles.models.genre import TITLE_TEXT
from movietitles.models.genre_runs import GENRE_TASKS, genre_names, load_genre_run

log = logging.getLogger(__name__)

SIGNATURE_RAW, SIGNATURE_EMBEDDINGS = "serving_default", "embeddings"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
OUTPUTS = ("probabilities", "predicted", "genres")

PARALLEL_POSTERS = 4  # posters decoded at once in one request
POSTER_CHUNK = 32  # posters embedded at once: a request of any size is embedded chunk by chunk
TAIL_BYTES = 64  # where a JPEG's end-of-image marker or a PNG's IEND chunk must be


def serving_name(task: str) -> str:
    """The model name (and folder) of a task's export: genre_title, genre_poster, genre_fusion."""
    return f"genre_{task}"


def versions(model_dir: str | Path) -> list[int]:
    """The integer versions exported in `model_dir`, ascending (empty if none)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def latest_version(model_dir: str | Path) -> Path | None:
    found = versions(model_dir)
    return Path(model_dir) / str(found[-1]) if found else None


def _looks_like_image(data: tf.Tensor) -> tf.Tensor:
    """Scalar bool: `data` starts like a JPEG, PNG, GIF, BMP or WebP file."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 12), "\0" * 12]), 0, 12)
    checks = [tf.equal(tf.strings.substr(head, offset, len(magic)), magic) for offset, magic in IMAGE_MAGIC]
    return tf.reduce_any(tf.stack(checks))


def _looks_complete(data: tf.Tensor) -> tf.Tensor:
    """Scalar bool: a JPEG holds its end-of-image marker, a PNG its IEND chunk, within its last TAIL_BYTES (every
    real poster ends with it exactly); other formats pass. Cut files fail here, named, not in the decoder."""
    length = tf.strings.length(data)
    start = tf.maximum(length - TAIL_BYTES, 0)
    tail = tf.strings.substr(data, start, length - start)

    def holds(marker: bytes):
        width = len(marker)
        positions = tf.range(tf.maximum(tf.strings.length(tail) - width + 1, 0))
        windows = tf.strings.substr(tail, positions, tf.fill(tf.shape(positions), width))
        return tf.reduce_any(tf.equal(windows, marker))

    is_jpeg = tf.equal(tf.strings.substr(data, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(data, 0, len(PNG_MAGIC)), PNG_MAGIC)
    return tf.case([(is_jpeg, lambda: holds(b"\xff\xd9")), (is_png, lambda: holds(b"IEND"))],
                   default=lambda: tf.constant(True))


def preprocess_posters(image_encoder, posters: tf.Tensor, first_index=0) -> tf.Tensor:
    """Encoded posters [B] -> the image network's inputs [B, S, S, 3], in-graph.

    A poster that is not an image, or a JPEG or PNG cut short, fails with "poster <index> could not be
    decoded: ..."; one over the
    encoder's byte or pixel limit with "poster <index>: ... over the limit ..." (checked from its header,
    before decoding); a damaged one with the decoder's own error, under the name scope `decode_poster`.
    Indices count from `first_index` (a chunk's place in the request). Any such error fails the whole
    request; the model keeps serving the next one.
    """
    size = image_encoder.image_size

    def preprocess(item):
        data, index = item
        readable = tf.debugging.Assert(_looks_like_image(data), [tf.strings.format(
            "poster {} could not be decoded: not a JPEG, PNG, GIF, BMP or WebP image ({} bytes)",
            (index, tf.strings.length(data)))])
        with tf.control_dependencies([readable]):
            whole = tf.debugging.Assert(_looks_complete(data), [tf.strings.format(
                "poster {} could not be decoded: the file is cut short (a JPEG or PNG without its end marker; {} "
                "bytes)", (index, tf.strings.length(data)))])
        with tf.control_dependencies([whole]), tf.name_scope("decode_poster"):
            return image_encoder.preprocess(data, label=tf.strings.format("poster {}", index))

    # A few posters at a time: each may decode up to max_pixels pixels.
    indices = tf.range(tf.shape(posters)[0]) + tf.cast(first_index, tf.int32)
    return tf.map_fn(preprocess, (posters, indices), parallel_iterations=PARALLEL_POSTERS,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def embed_posters(image_encoder, image_model, posters: tf.Tensor) -> tf.Tensor:
    """Encoded posters [B] -> embeddings [B, D] float32, in-graph, POSTER_CHUNK posters at a time (decoded, then
    through the network), one chunk after the other: memory does not grow with the size of the request."""
    count = tf.shape(posters)[0]

    def body(start, parts):
        chunk = posters[start:start + POSTER_CHUNK]
        images = preprocess_posters(image_encoder, chunk, first_index=start)
        vectors = tf.cast(image_model(images, training=False), tf.float32)
        return start + POSTER_CHUNK, parts.write(start // POSTER_CHUNK, vectors)

    parts = tf.TensorArray(tf.float32, size=(count + POSTER_CHUNK - 1) // POSTER_CHUNK, infer_shape=False,
                           element_shape=tf.TensorShape([None, image_encoder.dim]))
    _, parts = tf.while_loop(lambda start, _: start < count, body, (tf.constant(0), parts), parallel_iterations=1)
    return tf.reshape(parts.concat(), [count, image_encoder.dim])


def check_titles(titles: tf.Tensor) -> list[tf.Operation]:
    """Assertions that every title [B] is valid UTF-8 and not empty or only whitespace; their messages
    name the first bad title's index ("title <index> ...")."""
    valid = tf.equal(tf.strings.unicode_transcode(titles, "UTF-8", "UTF-8", errors="replace"), titles)
    blank = tf.strings.regex_full_match(titles, r"[\s\p{Z}\x{FEFF}]*")
    checks = []
    for bad, problem in ((~valid, "is not valid UTF-8"), (blank, "is empty or only whitespace")):
        first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
        checks.append(tf.debugging.Assert(~tf.reduce_any(bad), [tf.strings.format(
            "title {} " + problem + ": no genres are predicted for a request with such a title", first)]))
    return checks


class GenreServingModule(tf.Module):
    """A trained genre classifier with its encoders in front; see the module docstring."""

    def __init__(self, classifier, genres: list[str], thresholds: np.ndarray, text_encoder=None,
                 image_encoder=None, poster_text_reader: dict | None = None):
        """`poster_text_reader`: the `encoders.ocr` settings whose text a classifier reading `poster_text` was
        trained on (kept in the export for its callers)."""
        super().__init__(name="genre_serving")
        names = [t.name for t in classifier.inputs]
        unknown = set(names) - {TITLE, POSTER, TITLE_TEXT, POSTER_TEXT}
        if unknown:
            raise ValueError(f"the classifier has input(s) {sorted(unknown)}; expected {TITLE!r} and/or {POSTER!r} "
                             f"(and {TITLE_TEXT!r}, {POSTER_TEXT!r})")
        self.embedding_dims = {t.name: int(t.shape[-1]) for t in classifier.inputs
                               if t.name not in (TITLE_TEXT, POSTER_TEXT)}
        self.input_names = list(self.embedding_dims)
        # The classifier's n-gram channel reads the raw titles themselves; a title model that holds its own
        # encoder (movietitles.models.title_task) reads nothing else.
        self.reads_title_text = TITLE_TEXT in names
        self.reads_poster_text = POSTER_TEXT in names
        if self.reads_poster_text:
            if poster_text_reader is None:
                raise ValueError("the classifier reads the poster's text: give the poster_text_reader settings")
            self.poster_text_reader = tf.Variable(json.dumps(poster_text_reader, sort_keys=True), trainable=False,
                                                  dtype=tf.string, name="poster_text_reader")
        self.raw_names = self.input_names or [TITLE]
        if len(genres) != len(thresholds) or len(genres) != classifier.output_shape[-1]:
            raise ValueError(f"{len(genres)} genres, {len(thresholds)} thresholds and "
                             f"{classifier.output_shape[-1]} classifier outputs do not match")
        self.classifier = classifier
        self.genre_names = tf.Variable(list(genres), trainable=False, dtype=tf.string, name="genre_names")
        self.thresholds = tf.Variable(np.asarray(thresholds, np.float32), trainable=False, name="thresholds")
        encoders = {TITLE: text_encoder, POSTER: image_encoder}
        for name in self.input_names:
            if encoders[name] is None:
                raise ValueError(f"the classifier reads {name!r} embeddings: give its encoder")
            if encoders[name].dim != self.embedding_dims[name]:
                raise ValueError(f"the {name} encoder gives {encoders[name].dim}-d embeddings but the classifier "
                                 f"was trained on {self.embedding_dims[name]}-d ones (a different encoder config)")
        if TITLE in self.input_names:
            self._text_encoder = text_encoder
            # Tracked here so that their variables and assets are saved with this module.
            self.text_preprocessor, self.text_model = text_encoder.preprocessor, text_encoder.encoder
        if POSTER in self.input_names:
            self._image_encoder = image_encoder
            self.image_model = image_encoder.model
            self.max_poster_bytes = tf.Variable(image_encoder.max_bytes, trainable=False, dtype=tf.int64,
                                                name="max_poster_bytes")
            self.max_poster_pixels = tf.Variable(image_encoder.max_pixels, trainable=False, dtype=tf.int64,
                                                 name="max_poster_pixels")
        raw_spec = {name: tf.TensorSpec([None], tf.string, name=name)
                    for name in self.raw_names + ([POSTER_TEXT] if self.reads_poster_text else [])}
        embedding_spec = {f"{name}_embedding": tf.TensorSpec([None, self.embedding_dims[name]], tf.float32,
                                                             name=f"{name}_embedding")
                          for name in self.input_names}
        for name in (TITLE_TEXT, POSTER_TEXT):
            if name in names:
                embedding_spec[name] = tf.TensorSpec([None], tf.string, name=name)
        self.serve = tf.function(self._serve, input_signature=[raw_spec])
        self.serve_embeddings = tf.function(self._serve_embeddings, input_signature=[embedding_spec])

    def signatures(self) -> dict:
        """serving_default, and `embeddings` for a classifier that reads embeddings."""
        return {SIGNATURE_RAW: self.serve.get_concrete_function(),
                **({SIGNATURE_EMBEDDINGS: self.serve_embeddings.get_concrete_function()} if self.input_names else {})}

    def _serve(self, inputs):
        checks = []
        first, *others = given = [name for name in (TITLE, POSTER, POSTER_TEXT) if name in inputs]
        for name in others:
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[first])[0], tf.shape(inputs[name])[0],
                message=f"{' and '.join(given)} must hold the same number of movies"))
        with tf.control_dependencies(checks):
            features = {name: self._embed(name, values) for name, values in inputs.items()
                        if name in self.input_names}
            if self.reads_title_text:
                features[TITLE_TEXT] = inputs[TITLE]
            if self.reads_poster_text:
                features[POSTER_TEXT] = inputs[POSTER_TEXT]
            # Titles are checked where they are embedded; a model holding its encoder gets them checked here.
            return self._classify(features, check_title_text=self.reads_title_text and TITLE not in self.input_names)

    def _serve_embeddings(self, inputs):
        features = {name: inputs[f"{name}_embedding"] for name in self.input_names}
        for name in (TITLE_TEXT, POSTER_TEXT):
            if name in inputs:
                features[name] = inputs[name]
        # Raw titles arriving here are checked like those of serving_default (checked there when embedded).
        return self._classify(features, check_title_text=self.reads_title_text)

    def _embed(self, name, values):
        embed = self._embed_titles if name == TITLE else self._embed_posters
        # An empty batch skips the encoder (the CNN fails on zero images).
        return tf.cond(tf.size(values) > 0, lambda: embed(values),
                       lambda: tf.zeros([0, self.embedding_dims[name]], tf.float32))

    def _embed_titles(self, titles):
        with tf.control_dependencies(check_titles(titles)):
            return self._text_encoder.embed_tensor(tf.identity(titles))

    def _embed_posters(self, posters):
        return embed_posters(self._image_encoder, self.image_model, posters)

    def _classify(self, features, check_title_text: bool = False):
        def classify():
            with tf.control_dependencies(check_titles(features[TITLE_TEXT]) if check_title_text else []):
                return tf.cast(self.classifier(features, training=False), tf.float32)

        # An empty batch skips the classifier (its n-gram counting fails on zero titles).
        rows = tf.shape(next(iter(features.values())))[0]
        probabilities = tf.cond(rows > 0, classify, lambda: tf.zeros([0, self.thresholds.shape[0]], tf.float32))
        predicted = probabilities >= self.thresholds
        names = tf.ragged.boolean_mask(tf.broadcast_to(self.genre_names, tf.shape(predicted)), predicted)
        return {"probabilities": probabilities, "predicted": tf.cast(predicted, tf.int32),
                "genres": tf.strings.reduce_join(names, axis=1, separator="|")}


def example_poster(height: int = 180, width: int = 120, seed: int = 0) -> bytes:
    """A small made-up JPEG (a colour gradient with a block), for warm-up requests and smoke tests."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([255 * y / height, 255 * x / width, np.full_like(y, rng.integers(0, 256))], axis=-1)
    image[height // 4: height // 2, width // 4: width // 2] = rng.integers(0, 256, 3)
    return tf.io.encode_jpeg(tf.constant(image.astype(np.uint8)), quality=90).numpy()


WARMUP_TITLES = ("The Silent Garden", "Midnight Express to Nowhere", "Ânge d'été")
WARMUP_POSTER_TEXT = ("THE SILENT GARDEN coming soon", "", "MIDNIGHT EXPRESS TO NOWHERE from the director of")


def warmup_inputs(module: GenreServingModule) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(signature, inputs) pairs: raw batches of 1 and 3 (an accented title among them) and one embeddings batch."""
    requests = []
    for batch in (1, len(WARMUP_TITLES)):
        raw = {TITLE: np.array(WARMUP_TITLES[:batch], dtype=object),
               POSTER: np.array([example_poster(seed=i) for i in range(batch)], dtype=object)}
        if module.reads_poster_text:
            raw[POSTER_TEXT] = np.array(WARMUP_POSTER_TEXT[:batch], dtype=object)
        requests.append((SIGNATURE_RAW, {name: raw[name] for name in module.raw_names
                                         + ([POSTER_TEXT] if module.reads_poster_text else [])}))
    if not module.input_names:
        return requests
    embeddings = {f"{name}_embedding": np.random.default_rng(0).normal(size=(2, dim)).astype(np.float32)
                  for name, dim in module.embedding_dims.items()}
    if module.reads_title_text:
        embeddings[TITLE_TEXT] = np.array(WARMUP_TITLES[:2], dtype=object)
    if module.reads_poster_text:
        embeddings[POSTER_TEXT] = np.array(WARMUP_POSTER_TEXT[:2], dtype=object)
    requests.append((SIGNATURE_EMBEDDINGS, embeddings))
    return requests


def write_warmup_requests(path: str | Path, model_name: str, requests) -> None:
    """A TFRecord of PredictionLog protos (TF Serving replays them when it loads the version)."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError:
        raise ImportError("writing TF Serving warm-up requests needs the tensorflow-serving-api package "
                          "(pip install 'tensorflow-serving-api==2.21.*')") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log_entry = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log_entry.SerializeToString())


def save_new_version(module: tf.Module, model_dir: str | Path, model_name: str, requests=None) -> Path:
    """Save `module` (with a `signatures()` method) and its warm-up requests as the next version in
    `model_dir`; returns the version folder. `requests`: (signature, inputs) pairs, by default
    `warmup_inputs(module)` (a genre module's)."""
    model_dir = Path(model_dir)
    # Hidden, non-numeric: TF Serving ignores it until the rename.
    with directory_in_progress(model_dir / "export") as tmp:
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        write_warmup_requests(tmp / WARMUP_FILE, model_name,
                              warmup_inputs(module) if requests is None else requests)
        while True:  # another exporter may take the same number meanwhile: then take the next one
            target = model_dir / str(max(versions(model_dir), default=0) + 1)
            try:
                os.rename(tmp, target)
                return target
            except OSError:
                if not target.exists():
                    raise


def build_serving_module(run_dir: Path, text_encoder=None, image_encoder=None) -> GenreServingModule:
    classifier, thresholds, _ = load_genre_run(Path(run_dir))
    reader = None
    if POSTER_TEXT in [t.name for t in classifier.inputs]:  # the OCR settings of the text it was trained on
        reader = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))["encoders"]["ocr"]
    return GenreServingModule(classifier, genre_names(run_dir), thresholds, text_encoder, image_encoder,
                              poster_text_reader=reader)


def export_genre_models(config: dict, tasks=tuple(GENRE_TASKS), out_dir: str | Path = "saved_models",
                        text_encoder=None, image_encoder=None) -> dict[str, Path]:
    """Export each task's trained model as `<out_dir>/genre_<task>/<new version>/`; task -> version folder.

    The encoders are built from config["encoders"] unless given.
    """
    run_dirs = {task: finished_run(config, task) for task in tasks}  # every run checked before any work
    kinds = {kind for task in tasks for kind in GENRE_TASKS[task]}
    if TITLE in kinds and text_encoder is None:
        from movietitles.artefacts import text_encoder_settings
        from movietitles.encoders.bert_export import ensure_default_text_models
        from movietitles.encoders.text import build_text_encoder

        ensure_default_text_models(config["encoders"]["text"])
        text_encoder = build_text_encoder(text_encoder_settings(config))
    if POSTER in kinds and image_encoder is None:
        from movietitles.encoders.image import build_image_encoder

        image_encoder = build_image_encoder(config["encoders"]["image"])
    exported = {}
    for task, run_dir in run_dirs.items():
        module = build_serving_module(run_dir, text_encoder, image_encoder)
        exported[task] = save_new_version(module, Path(out_dir) / serving_name(task), serving_name(task))
        log.info("%s model (%s) exported to %s", task, run_dir, exported[task])
    return exported


def load_serving_model(version_dir: str | Path):
    """tf.saved_model.load of an export (after registering the TF Text ops its preprocessor uses)."""
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(str(version_dir))
