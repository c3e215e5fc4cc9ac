"""Confusion matrix, per-class IoU, mIoU and pixel accuracy on hand-built examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diga.runtime.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_confusion_matrix_rows_are_truth_columns_prediction_and_ignore_is_skipped():
    target = torch.tensor([[0, 0, 1], [2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1], [0, 2, 1]])
    # pairs (truth, prediction): (0,0) (0,1) (1,1) (2,0) [255 skipped] (1,1)
    confusion = confusion_matrix(prediction, target, num_classes=3)
    assert confusion.tolist() == [[1, 1, 0],
                                  [0, 2, 0],
                                  [1, 0, 0]]
    assert int(confusion.sum()) == 5


def test_confusion_matrix_accumulates_over_a_batch():
    target = torch.tensor([[[1, 1]], [[0, 255]]])
    prediction = torch.tensor([[[1, 0]], [[0, 0]]])
    # (1,1) (1,0) (0,0) [255 skipped]
    assert confusion_matrix(prediction, target, num_classes=2).tolist() == [[1, 0], [1, 1]]


def test_confusion_matrix_all_ignore_is_zero():
    target = torch.full((2, 2), 255)
    assert confusion_matrix(torch.zeros(2, 2, dtype=torch.long), target, 3).tolist() == [[0] * 3] * 3


# rows = truth, columns = prediction; class 2 appears in neither
CONFUSION = np.array([[3, 1, 0],
                      [2, 4, 0],
                      [0, 0, 0]])


def test_iou_per_class_with_an_absent_class():
    ious = iou_per_class(CONFUSION)
    # class 0: TP 3, FP (column) 2, FN (row) 1 -> 3 / 6 = 1/2
    # class 1: TP 4, FP 1, FN 2               -> 4 / 7
    # class 2: union 0                        -> NaN
    assert ious[0] == pytest.approx(1 / 2)
    assert ious[1] == pytest.approx(4 / 7)
    assert math.isnan(ious[2])


def test_mean_iou_excludes_absent_classes():
    # (1/2 + 4/7) / 2 = 15/28 = 0.535714
    assert mean_iou(CONFUSION) == pytest.approx(15 / 28)


def test_a_class_only_predicted_counts_as_zero_iou():
    confusion = np.array([[2, 0, 1],
                          [0, 1, 0],
                          [0, 0, 0]])
    ious = iou_per_class(confusion)
    # class 0: 2 / (2 + 1) ; class 1: 1 / 1 ; class 2: TP 0, predicted once -> 0 / 1 = 0 (not NaN)
    np.testing.assert_allclose(ious, [2 / 3, 1.0, 0.0])
    assert mean_iou(confusion) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_pixel_accuracy():
    # trace 7 of 10 labelled pixels
    assert pixel_accuracy(CONFUSION) == pytest.approx(0.7)


def test_empty_confusion_gives_nan():
    empty = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(mean_iou(empty))
    assert math.isnan(pixel_accuracy(empty))
    assert np.isnan(iou_per_class(empty)).all()


def test_metrics_accept_the_torch_confusion_matrix():
    target = torch.tensor([0, 0, 1, 1, 255])
    prediction = torch.tensor([0, 1, 1, 1, 0])
    confusion = confusion_matrix(prediction, target, num_classes=2).numpy()
    # [[1, 1], [0, 2]]: IoU 0 = 1/2, IoU 1 = 2/3, accuracy 3/4
    np.testing.assert_allclose(iou_per_class(confusion), [1 / 2, 2 / 3])
    assert mean_iou(confusion) == pytest.approx(7 / 12)
    assert pixel_accuracy(confusion) == pytest.approx(0.75)
