"""SC agent: SAM automatic mask generation and the mask count."""

from __future__ import annotations

import math

import pytest
import torch

from hf_vlm_filter.scorers.base import map_with_scorer
from hf_vlm_filter.visa import SegmentationComplexity
from hf_vlm_filter.visa.segmentation import SegmentationConfig, count_masks, crop_to_image, point_grid

from ._visa_helpers import llava_rows, stream, tiny_sam_path  # noqa: F401 - fixture


def test_count_drops_small_duplicate_and_unstable_masks():
    logits = torch.full((5, 20, 20), -5.0)
    logits[0, :10, :10] = 5.0          # 25% of the image
    logits[1, :10, :11] = 5.0          # duplicate of mask 0 (IoU 0.91), lower predicted IoU
    logits[2, 15:, 15:] = 5.0          # 6.25%
    logits[3, 0, 19] = 5.0             # 1 pixel = 0.25% < 0.5%: not counted
    logits[4, 10:, :5] = 0.5           # unstable: above 0 but not above +1
    predicted = torch.tensor([0.99, 0.95, 0.97, 0.99, 0.99])
    config = SegmentationConfig(pred_iou_threshold=0.9, stability_threshold=0.95)
    assert count_masks(logits, predicted, config) == 2
    assert count_masks(logits, predicted, SegmentationConfig(pred_iou_threshold=0.9, stability_threshold=0.95,
                                                             nms_iou_threshold=0.95)) == 3
    assert count_masks(logits, predicted, SegmentationConfig(pred_iou_threshold=0.9, stability_threshold=0.95,
                                                             min_area_fraction=0.0)) == 3
    assert count_masks(logits, predicted, SegmentationConfig(pred_iou_threshold=0.999)) == 0


def test_grid_and_crop():
    grid = point_grid(2, (40, 100))
    assert grid.tolist() == [[25.0, 10.0], [75.0, 10.0], [25.0, 30.0], [75.0, 30.0]]
    assert crop_to_image(torch.zeros(3, 256, 256), (768, 1024), 1024).shape == (3, 192, 256)


def test_map_on_dataset_and_stream(tiny_sam_path):
    ds = llava_rows(5)
    sam = SegmentationComplexity(tiny_sam_path, device="cpu", points_per_side=4, points_per_batch=5,
                                 pred_iou_threshold=0.0, stability_threshold=0.0, nms_iou_threshold=0.8)
    out = map_with_scorer(ds, sam, batch_size=2)
    scores = out["sc_score"]
    assert all(s == int(s) and s >= 0 for s in scores[:-1]) and len(set(scores[:-1])) > 1
    assert math.isnan(scores[-1]) and out["sc_error"][-1] == "missing image" and out["sc_error"][:-1] == [""] * 4
    assert map_with_scorer(ds, sam, batch_size=5)["sc_score"][:-1] == scores[:-1]
    streamed = list(map_with_scorer(stream(ds), sam, batch_size=2))
    assert [r["sc_score"] for r in streamed][:-1] == scores[:-1]
    # the published thresholds keep none of a random tiny model's masks
    strict = SegmentationComplexity(tiny_sam_path, device="cpu", points_per_side=4)
    assert map_with_scorer(ds, strict)["sc_score"][:-1] == [0.0] * 4


def test_bad_options_and_columns(tiny_sam_path):
    with pytest.raises(ValueError, match="min_area_fraction"):
        SegmentationComplexity(tiny_sam_path, min_area_fraction=1.5)
    with pytest.raises(KeyError, match="image_column"):
        SegmentationComplexity(tiny_sam_path, device="cpu")({"picture": [None]})
