"""A batched reader of poster text with the PP-OCRv4 models that `rapidocr-onnxruntime` ships.

The stock `RapidOCR()` call reads one poster at a time: detection on one image, then its 3-4 text lines
padded to at least 320 pixels wide. Our posters are thumbnails of one size, so this reader

- detects text on a batch of posters in one onnxruntime call (posters of one size share the detector's input
  size: 160 x 236 thumbnails are all seen at 320 x 480 for `det_limit_side_len: 320`);
- recognises the lines of the whole batch together, sorted by aspect ratio so that each recognition batch pads
  little: a batch is as wide as its widest line, and at least `rec_min_width` (320, as the stock call pads);
- runs graphs with the scalar `Mul`/`Add` after each convolution folded into it and the decomposed hard-swish
  `x * clip(x + 3, 0, 6) / 6` as one `HardSwish` op (`fuse_graph`; the same function to within 5e-6), which
  onnxruntime then fuses into the convolution.

What it keeps of the stock call: posters larger than 2000 pixels on a side scaled down first, the detector's
post-processing (`DBPostProcess` with the same thresholds), the boxes' order (top to bottom, then left to right),
the crops, CTC decoding and the 0.5 confidence floor.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

DET_MODEL, REC_MODEL = "ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx"
REC_HEIGHT = 48
MAX_SIDE = 2000  # the stock call scales larger images down before it detects text
TEXT_SCORE = 0.5  # the stock call's floor: lines recognised with less confidence are dropped
OPSET = 17  # HardSwish needs 14


def model_path(name: str) -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / name


def fuse_graph(model):
    """The ONNX `model` with Conv -> Mul(scalar) -> Add(scalar) folded into the Conv, and
    Add(3) -> Clip(0, 6) -> Mul(x) -> Div(6) replaced by HardSwish."""
    import onnx
    from onnx import helper, numpy_helper, version_converter

    model = version_converter.convert_version(model, OPSET)
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})

    def consumers(nodes):
        found = {}
        for node in nodes:
            for name in node.input:
                found.setdefault(name, []).append(node)
        return found

    def sole_consumer(users, output, op_type):
        nodes = users.get(output, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type else None

    def scalar_operand(node):
        """(the scalar constant, the other input) of a binary node, or (None, None)."""
        for name in node.input:
            value = constants.get(name)
            if value is not None and value.size == 1:
                return float(value.reshape(())), next(x for x in node.input if x != name)
        return None, None

    nodes, users, dropped, new_constants = list(graph.node), consumers(graph.node), set(), []
    for conv in nodes:
        if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in constants:
            continue
        mul = sole_consumer(users, conv.output[0], "Mul")
        add = mul and sole_consumer(users, mul.output[0], "Add")
        scale, bias = (scalar_operand(mul)[0], scalar_operand(add)[0]) if add else (None, None)
        if scale is None or bias is None:
            continue
        weight = constants[conv.input[1]].astype(np.float32)
        conv_bias = (constants[conv.input[2]].astype(np.float32) if len(conv.input) > 2
                     else np.zeros(weight.shape[0], np.float32))
        names = (conv.output[0] + "/folded_weight", conv.output[0] + "/folded_bias")
        new_constants += [numpy_helper.from_array(weight * scale, names[0]),
                          numpy_helper.from_array(conv_bias * scale + bias, names[1])]
        del conv.input[1:]
        conv.input.extend(names)
        conv.output[0] = add.output[0]
        dropped.update((id(mul), id(add)))
    nodes = [n for n in nodes if id(n) not in dropped]

    users, replacements = consumers(nodes), {}
    for add in nodes:
        if add.op_type != "Add" or scalar_operand(add)[0] != 3.0:
            continue
        x = scalar_operand(add)[1]
        clip = sole_consumer(users, add.output[0], "Clip")
        mul = clip and sole_consumer(users, clip.output[0], "Mul")
        div = mul and x in mul.input and sole_consumer(users, mul.output[0], "Div")
        if not div or scalar_operand(div)[0] != 6.0:
            continue
        replacements[id(add)] = helper.make_node("HardSwish", [x], [div.output[0]], name=div.output[0] + "/hardswish")
        dropped.update((id(clip), id(mul), id(div)))
    nodes = [replacements.get(id(n), n) for n in nodes if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_constants)
    onnx.checker.check_model(model)
    return model


def session(name: str, threads: int, fused: bool = True):
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = model_path(name)
    model = fuse_graph(onnx.load(path)).SerializeToString() if fused else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _clockwise(box: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left (as the stock detector orders them)."""
    by_x = box[np.argsort(box[:, 0])]
    left, right = by_x[:2][np.argsort(by_x[:2, 1])], by_x[2:][np.argsort(by_x[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def _reading_order(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom; boxes within 10 pixels of height left to right (the stock call's `sorted_boxes`)."""
    boxes = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(boxes) - 1):
        for j in range(i, -1, -1):
            if abs(boxes[j + 1][0][1] - boxes[j][0][1]) < 10 and boxes[j + 1][0][0] < boxes[j][0][0]:
                boxes[j], boxes[j + 1] = boxes[j + 1], boxes[j]
            else:
                break
    return boxes


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(box, target), (width, height),
                               borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(crop) if crop.shape[0] / crop.shape[1] >= 1.5 else crop


def _normalised(images: np.ndarray) -> np.ndarray:
    """[B, H, W, 3] uint8 BGR -> [B, 3, H, W] float32 in [-1, 1], as both models expect."""
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


class BatchedPPOCR:
    """`read_images(images) -> [[{"text", "box", "confidence"}, ...], ...]` for a list of BGR uint8 images."""

    def __init__(self, det_limit_side_len: int = 320, threads: int = 1, rec_batch_size: int = 32,
                 rec_min_width: int = 0, fused: bool = True, min_line_height: int = 0):
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        self.side, self.rec_batch_size, self.rec_min_width = det_limit_side_len, rec_batch_size, rec_min_width
        self.min_line_height = min_line_height
        self.detector, self.recogniser = session(DET_MODEL, threads, fused), session(REC_MODEL, threads, fused)
        characters = self.recogniser.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.decode = CTCLabelDecode(character=characters)
        self.postprocess = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                                         use_dilation=True, score_mode="fast")

    def detector_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) the detector sees: short side scaled up to `side`, each a multiple of 32."""
        ratio = self.side / min(height, width) if min(height, width) < self.side else 1.0
        return (max(32, round(int(width * ratio) / 32) * 32), max(32, round(int(height * ratio) / 32) * 32))

    def read_images(self, images: list[np.ndarray]) -> list[list[dict]]:
        scales = [min(1.0, MAX_SIDE / max(image.shape[:2])) for image in images]
        images = [image if scale == 1.0 else cv2.resize(image, (int(image.shape[1] * scale),
                                                                int(image.shape[0] * scale)))
                  for image, scale in zip(images, scales)]
        crops, owners, boxes = [], [], []
        for indices, size in self._same_size_groups(images):
            scores = self.detector.run(None, {"x": _normalised(np.stack([cv2.resize(images[i], size)
                                                                          for i in indices]))})[0]
            for row, i in enumerate(indices):
                for box in self._boxes(scores[row:row + 1], images[i].shape[:2]):
                    crop = _crop(images[i], box)
                    if min(crop.shape[:2]) < self.min_line_height:
                        continue  # too small to be a title: not recognised
                    crops.append(crop)
                    owners.append(i)
                    boxes.append(box)
        lines = [[] for _ in images]
        for k, (text, confidence) in enumerate(self._recognise(crops)):
            if confidence >= TEXT_SCORE:
                corners = boxes[k] / scales[owners[k]]  # in the poster's own pixels
                lines[owners[k]].append({"text": text, "box": [[round(float(x), 1), round(float(y), 1)]
                                                                for x, y in corners],
                                         "confidence": round(float(confidence), 4)})
        return lines

    def _same_size_groups(self, images):
        groups = {}
        for i, image in enumerate(images):
            groups.setdefault(self.detector_size(*image.shape[:2]), []).append(i)
        return [(indices, size) for size, indices in groups.items()]

    def _boxes(self, scores: np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
        height, width = shape
        found, _ = self.postprocess(scores, shape)
        kept = []
        for box in found:
            box = _clockwise(box.astype(np.float32))
            box[:, 0] = np.clip(np.round(box[:, 0]), 0, width - 1)
            box[:, 1] = np.clip(np.round(box[:, 1]), 0, height - 1)
            if int(np.linalg.norm(box[0] - box[1])) > 3 and int(np.linalg.norm(box[0] - box[3])) > 3:
                kept.append(box)
        return _reading_order(kept)

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence) of each crop; crops of similar aspect ratio share a batch."""
        ratios = np.array([c.shape[1] / c.shape[0] for c in crops])
        order, results = np.argsort(ratios, kind="stable"), [None] * len(crops)
        for start in range(0, len(crops), self.rec_batch_size):
            batch = order[start:start + self.rec_batch_size]
            width = max(self.rec_min_width, math.ceil(REC_HEIGHT * ratios[batch].max() / 8) * 8)
            inputs = np.zeros((len(batch), REC_HEIGHT, width, 3), np.uint8)
            widths = [min(width, math.ceil(REC_HEIGHT * ratios[k])) for k in batch]
            for row, (k, line_width) in enumerate(zip(batch, widths)):
                inputs[row, :, :line_width] = cv2.resize(crops[k], (line_width, REC_HEIGHT))
            x = _normalised(inputs)
            for row, line_width in enumerate(widths):
                x[row, :, :, line_width:] = 0.0  # padding is 0 after normalisation, as in the stock call
            for k, (text, confidence) in zip(batch, self.decode(self.recogniser.run(None, {"x": x})[0])):
                results[k] = (text, confidence)
        return results
