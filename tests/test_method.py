"""DiGA method math on tiny hand-checked tensors: SKD, class mixing, consensus selection, centroids, EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from diga.data.labels import IGNORE_INDEX
from diga.method.distill import soft_cross_entropy, symmetric_distillation
from diga.method.ema import ema_decay, update_teacher
from diga.method.mixing import class_mix_mask, classmix, cross_domain_mixture
from diga.method.selection import (
    class_means,
    consensus_labels,
    nearest_centroid_labels,
    update_centroids_cumulative,
    update_centroids_ema,
)
from diga.models.deeplabv2 import SegOutput

LN3 = math.log(3.0)


def pixel_logits(*pixels: tuple[float, float]) -> torch.Tensor:
    """1 x 2 x 1 x W logits from a list of (class 0, class 1) pairs, one per pixel."""
    return torch.tensor(pixels, dtype=torch.float64).T.reshape(1, 2, 1, len(pixels))


def pixel_probs(*pixels: tuple[float, float]) -> torch.Tensor:
    """Same layout as pixel_logits, for teacher probabilities given directly."""
    return pixel_logits(*pixels)


# --------------------------------------------------------------------------- soft cross-entropy / SKD


def test_soft_cross_entropy_is_the_pixel_mean_of_minus_q_log_p():
    # pixel 1: logits [0, 0]    -> p = [1/2, 1/2], q = [1, 0] -> -log(1/2) = ln 2
    # pixel 2: logits [ln 3, 0] -> p = [3/4, 1/4], q = [0, 1] -> -log(1/4) = ln 4
    # mean = (ln 2 + ln 4) / 2 = 1.5 ln 2
    student = pixel_logits((0.0, 0.0), (LN3, 0.0))
    teacher = pixel_probs((1.0, 0.0), (0.0, 1.0))
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(1.5 * math.log(2))


def test_soft_cross_entropy_averages_over_the_batch_too():
    # image 1 (1 pixel): p = [3/4, 1/4], q = [1/2, 1/2] -> -(ln 3/4 + ln 1/4)/2 = 0.5 ln(16/3)
    # image 2 (1 pixel): p = [1/2, 1/2], any q          -> ln 2
    student = torch.cat([pixel_logits((LN3, 0.0)), pixel_logits((0.0, 0.0))])
    teacher = torch.cat([pixel_probs((0.5, 0.5)), pixel_probs((0.25, 0.75))])
    expected = (0.5 * math.log(16 / 3) + math.log(2)) / 2
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected)


# Views used below (one pixel, two classes):
#   student clean  [0, 0]    -> p = [1/2, 1/2]
#   student mixed  [ln 3, 0] -> p = [3/4, 1/4]
#   teacher clean  [0, 0]    -> q = [1/2, 1/2]
#   teacher mixed  [ln 3, 0] -> q = [3/4, 1/4]
# forward = CE(student mixed, teacher clean) = -(1/2 ln 3/4 + 1/2 ln 1/4) = 0.5 ln(16/3) = 0.836988
# reverse = CE(student clean, teacher mixed) = -(3/4 ln 1/2 + 1/4 ln 1/2) = ln 2           = 0.693147
# (a wrong pairing, CE(student mixed, teacher mixed), would be the entropy H(3/4, 1/4) = 0.562335)
FORWARD = 0.5 * math.log(16 / 3)
REVERSE = math.log(2)


def four_views():
    student_clean = pixel_logits((0.0, 0.0)).requires_grad_()
    student_mixed = pixel_logits((LN3, 0.0)).requires_grad_()
    teacher_clean = pixel_logits((0.0, 0.0)).requires_grad_()
    teacher_mixed = pixel_logits((LN3, 0.0)).requires_grad_()
    return student_clean, student_mixed, teacher_clean, teacher_mixed


def test_symmetric_distillation_weights_forward_by_one_and_reverse_by_scale():
    views = four_views()
    # s = 0.5: 0.836988 + 0.5 * 0.693147 = 1.183562
    assert symmetric_distillation(*views, reverse_scale=0.5).item() == pytest.approx(FORWARD + 0.5 * REVERSE)
    assert symmetric_distillation(*views, reverse_scale=0.0).item() == pytest.approx(FORWARD)
    quarter = symmetric_distillation(*views, reverse_scale=0.25).item()
    assert quarter == pytest.approx(FORWARD + 0.25 * REVERSE)


def test_symmetric_distillation_gradients_reach_students_only():
    student_clean, student_mixed, teacher_clean, teacher_mixed = four_views()
    loss = symmetric_distillation(student_clean, student_mixed, teacher_clean, teacher_mixed, 0.5)
    loss.backward()
    # d CE / d logits = (p - q) / pixels, one pixel here:
    # student mixed (weight 1):   [3/4, 1/4] - [1/2, 1/2] = [ 1/4, -1/4]
    # student clean (weight 1/2): ([1/2, 1/2] - [3/4, 1/4]) / 2 = [-1/8, 1/8]
    assert_close(student_mixed.grad, pixel_logits((0.25, -0.25)))
    assert_close(student_clean.grad, pixel_logits((-0.125, 0.125)))
    assert teacher_clean.grad is None
    assert teacher_mixed.grad is None


def test_symmetric_distillation_swapping_views_matters_unless_scale_is_one():
    student_clean, student_mixed, teacher_clean, teacher_mixed = four_views()
    swapped = (student_mixed, student_clean, teacher_mixed, teacher_clean)
    # swapped: forward = CE(p [1/2,1/2], q [3/4,1/4]) = ln 2,
    #          reverse = CE(p [3/4,1/4], q [1/2,1/2]) = 0.5 ln(16/3)
    # s = 0.5: 0.693147 + 0.418494 = 1.111641  (vs 1.183562 unswapped)
    value = symmetric_distillation(*swapped, reverse_scale=0.5).item()
    assert value == pytest.approx(REVERSE + 0.5 * FORWARD)
    assert value != pytest.approx(FORWARD + 0.5 * REVERSE)
    # s = 1: both orders give ln 2 + 0.5 ln(16/3) = 1.530135
    original = symmetric_distillation(student_clean, student_mixed, teacher_clean, teacher_mixed, 1.0).item()
    assert original == pytest.approx(FORWARD + REVERSE)
    assert symmetric_distillation(*swapped, reverse_scale=1.0).item() == pytest.approx(original)


# --------------------------------------------------------------------------- class mixing


def whole_classes(label: torch.Tensor, mask: torch.Tensor) -> set[int]:
    """The label values inside the mask, asserting that every class is either wholly in or wholly out."""
    chosen = set()
    for value in torch.unique(label).tolist():
        inside = mask[label == value]
        assert inside.all() or not inside.any(), f"class {value} is split by the mask"
        if inside.all():
            chosen.add(value)
    return chosen


def test_class_mix_mask_picks_half_the_classes_as_whole_classes():
    # image 1: 5 classes (no ignore) -> floor(5/2) = 2 classes; image 2: 4 classes -> 2 classes
    first = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 0, 1], [2, 3, 4, 0]])
    second = torch.tensor([[5, 5, 6, 6], [7, 7, 8, 8], [5, 6, 7, 8], [8, 8, 8, 8]])
    labels = torch.stack([first, second])
    for seed in range(20):
        mask = class_mix_mask(labels, torch.Generator().manual_seed(seed))
        assert mask.shape == labels.shape and mask.dtype == torch.bool
        assert len(whole_classes(first, mask[0])) == 2
        assert len(whole_classes(second, mask[1])) == 2


def test_class_mix_mask_always_includes_ignore_pixels():
    # values {0, 1, 2, 255}: n = 4, floor(4/2) = 2 values drawn (255 may be one of them), then 255 added.
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    seen_counts = set()
    for seed in range(30):
        mask = class_mix_mask(label[None], torch.Generator().manual_seed(seed))[0]
        assert mask[label == IGNORE_INDEX].all()
        chosen = whole_classes(label, mask) - {IGNORE_INDEX}
        seen_counts.add(len(chosen))
    # 2 real classes if 255 was not drawn, 1 if it was; both happen over 30 seeds (P(all same) ~ 2 * 0.5^30)
    assert seen_counts == {1, 2}


def test_class_mix_mask_is_reproducible_with_the_same_seed():
    labels = torch.arange(16).reshape(1, 4, 4)
    first = class_mix_mask(labels, torch.Generator().manual_seed(7))
    again = class_mix_mask(labels, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert int(first.sum()) == 8  # 16 single-pixel classes -> 8 chosen


def test_class_mix_mask_only_ignore():
    # n = 1 (only 255) -> floor(1/2) = 0 drawn, 255 added: everything in the mask
    label = torch.full((1, 2, 3), IGNORE_INDEX)
    assert class_mix_mask(label, torch.Generator().manual_seed(0)).all()


def test_cross_domain_mixture_takes_augmented_inside_and_translated_outside():
    augmented = torch.full((1, 3, 2, 2), 1.0)
    translated = torch.full((1, 3, 2, 2), -2.0)
    mask = torch.tensor([[[True, False], [False, True]]])
    mixed = cross_domain_mixture(augmented, translated, mask)
    expected_plane = torch.tensor([[1.0, -2.0], [-2.0, 1.0]])
    assert_close(mixed, expected_plane.expand(1, 3, 2, 2))


def test_cross_domain_mixture_with_mask_from_labels():
    labels = torch.tensor([[[0, 1], [255, 1]]])
    augmented = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)
    translated = 100 + augmented
    # mask: class 1 chosen by hand plus ignore -> pixels (0,1), (1,0), (1,1)
    mask = (labels == 1) | (labels == IGNORE_INDEX)
    mixed = cross_domain_mixture(augmented, translated, mask)
    expected = torch.tensor([[[[100.0, 1.0], [2.0, 3.0]], [[104.0, 5.0], [6.0, 7.0]]]])
    assert_close(mixed, expected)
    assert labels.tolist() == [[[0, 1], [255, 1]]]  # the label is never touched


def test_classmix_pastes_source_image_and_label_inside_the_mask():
    source_images = torch.full((1, 2, 2, 3), 5.0)
    target_images = torch.full((1, 2, 2, 3), -1.0)
    source_labels = torch.tensor([[[0, 0, 255], [1, 1, 1]]])
    target_labels = torch.tensor([[[3, 255, 4], [4, 3, 3]]])
    # source class 0 chosen plus ignore: mask = pixels (0,0), (0,1), (0,2)
    mask = (source_labels == 0) | (source_labels == IGNORE_INDEX)
    images, labels = classmix(source_images, source_labels, target_images, target_labels, mask)
    expected_plane = torch.tensor([[5.0, 5.0, 5.0], [-1.0, -1.0, -1.0]])
    assert_close(images, expected_plane.expand(1, 2, 2, 3))
    # pasted: 0, 0 and the source 255 (which stays 255); elsewhere the target pseudo-label 4, 3, 3
    assert labels.tolist() == [[[0, 0, 255], [4, 3, 3]]]


def test_classmix_keeps_target_ignore_outside_the_mask():
    source_labels = torch.tensor([[[1, 2]]])
    target_labels = torch.tensor([[[255, 255]]])
    mask = torch.tensor([[[True, False]]])
    images, labels = classmix(torch.ones(1, 1, 1, 2), source_labels, torch.zeros(1, 1, 1, 2),
                              target_labels, mask)
    assert labels.tolist() == [[[1, 255]]]
    assert images.flatten().tolist() == [1.0, 0.0]


# --------------------------------------------------------------------------- threshold-free selection


# feat 1 x 2 x 1 x 2: pixel 0 at (0, 0), pixel 1 at (3, 4); centroids c0 = (0, 0), c1 = (3, 3)
# pixel 0: d = (0, sqrt(18) = 4.243) -> class 0;  pixel 1: d = (5, 1) -> class 1
FEAT = torch.tensor([[[[0.0, 3.0]], [[0.0, 4.0]]]])
CENTROIDS = torch.tensor([[0.0, 0.0], [3.0, 3.0]])


def test_nearest_centroid_labels_at_feature_size():
    labels = nearest_centroid_labels(FEAT, CENTROIDS, (1, 2))
    assert labels.tolist() == [[[0, 1]]]


def test_nearest_centroid_labels_never_picks_an_invalid_class():
    def labels(valid):
        return nearest_centroid_labels(FEAT, CENTROIDS, (1, 2), torch.tensor(valid)).tolist()

    assert labels([False, True]) == [[[1, 1]]]
    assert labels([True, False]) == [[[0, 0]]]
    assert labels([True, True]) == [[[0, 1]]]


def test_nearest_centroid_labels_upsamples_the_softmax_weights():
    # softmax(-d): pixel 0 -> w0 = 1/(1+e^-4.243) = 0.9858; pixel 1 -> w0 = e^-5/(e^-5+e^-1) = 0.0180
    # align_corners bilinear to width 4 samples x = 0, 1/3, 2/3, 1:
    #   x = 1/3: w0 = 2/3*0.9858 + 1/3*0.0180 = 0.663 > 1/2 -> 0
    #   x = 2/3: w0 = 1/3*0.9858 + 2/3*0.0180 = 0.341 < 1/2 -> 1
    labels = nearest_centroid_labels(FEAT, CENTROIDS, (2, 4))
    assert labels.tolist() == [[[0, 0, 1, 1], [0, 0, 1, 1]]]


def test_consensus_labels_keeps_agreement_and_ignores_the_rest():
    offline = torch.tensor([[[0, 1], [2, 255]]])
    prototype = torch.tensor([[[0, 2], [2, 1]]])
    assert consensus_labels(offline, prototype).tolist() == [[[0, 255], [2, 255]]]


def test_class_means_masked_means_and_min_pixels():
    # D = 2 channels over 2 x 2 pixels; labels [[0, 0], [1, 255]], C = 3
    feat = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]], [[10.0, 20.0], [30.0, 50.0]]]])
    labels = torch.tensor([[[0, 0], [1, 255]]])
    means, present = class_means(feat, labels, num_classes=3, min_pixels=2)
    # class 0: pixels 1, 2 -> (1.5, 15); class 1: pixel 3 -> (3, 30); class 2: none -> (0, 0); 255 ignored
    assert_close(means, torch.tensor([[[1.5, 15.0], [3.0, 30.0], [0.0, 0.0]]]))
    # min_pixels 2: class 0 has 2 pixels (kept), class 1 has only 1, class 2 has 0
    assert present.tolist() == [[True, False, False]]
    _, present_one = class_means(feat, labels, num_classes=3, min_pixels=1)
    assert present_one.tolist() == [[True, True, False]]


def test_update_centroids_ema_applies_images_in_sequence():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    means = torch.tensor([[[1.0, 2.0], [99.0, 99.0]], [[2.0, 2.0], [20.0, 0.0]]])
    present = torch.tensor([[True, False], [True, True]])
    updated = update_centroids_ema(centroids, means, present, momentum=0.1)
    # image 1: c0 = 0.9*(0, 0) + 0.1*(1, 2) = (0.1, 0.2); c1 absent, unchanged
    # image 2: c0 = 0.9*(0.1, 0.2) + 0.1*(2, 2) = (0.29, 0.38); c1 = 0.9*(10, 10) + 0.1*(20, 0) = (11, 9)
    assert_close(updated, torch.tensor([[0.29, 0.38], [11.0, 9.0]]))
    assert centroids.tolist() == [[0.0, 0.0], [10.0, 10.0]]  # input not modified


def test_update_centroids_cumulative_running_mean_with_cap():
    centroids = torch.zeros(2, 1)
    counts = torch.zeros(2, dtype=torch.long)
    # class 0 sees 4, 8, 5, 2 in four images; class 1 only 7 in the second image
    means = torch.tensor([[[4.0], [0.0]], [[8.0], [7.0]], [[5.0], [0.0]], [[2.0], [0.0]]])
    present = torch.tensor([[True, False], [True, True], [True, False], [True, False]])
    updated, new_counts = update_centroids_cumulative(centroids, counts, means, present, cap=2)
    # class 0: n=0 -> 4 (n 1); n=1 -> (4 + 8)/2 = 6 (n 2); cap reached, weight 1/3 from now on:
    #          (2*6 + 5)/3 = 17/3; (2*17/3 + 2)/3 = 40/9 = 4.444
    # class 1: n=0 -> 7 (n 1)
    assert_close(updated, torch.tensor([[40 / 9], [7.0]]))
    assert new_counts.tolist() == [2, 1]
    assert counts.tolist() == [0, 0] and centroids.tolist() == [[0.0], [0.0]]


def test_update_centroids_cumulative_continues_from_existing_counts():
    # centroid 3 with count 1, cap 5: (3*1 + 9)/2 = 6, count 2
    updated, counts = update_centroids_cumulative(torch.tensor([[3.0]]), torch.tensor([1]),
                                                  torch.tensor([[[9.0]]]), torch.tensor([[True]]), cap=5)
    assert_close(updated, torch.tensor([[6.0]]))
    assert counts.tolist() == [2]


# --------------------------------------------------------------------------- EMA teacher


@pytest.mark.parametrize(("step", "max_decay", "expected"), [
    (0, 0.999, 0.0),      # 1 - 1/1
    (1, 0.999, 0.5),      # 1 - 1/2
    (3, 0.999, 0.75),     # 1 - 1/4
    (9, 0.99, 0.9),       # 1 - 1/10 below the cap
    (999, 0.99, 0.99),    # 1 - 1/1000 = 0.999, capped at 0.99
    (99, 0.99, 0.99),     # 1 - 1/100 = 0.99 exactly the cap
])
def test_ema_decay(step, max_decay, expected):
    assert ema_decay(step, max_decay) == pytest.approx(expected)


def test_update_teacher_averages_linear_parameters():
    teacher, student = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 1.0]]))
        teacher.bias.copy_(torch.tensor([0.0]))
        student.weight.copy_(torch.tensor([[3.0, -1.0]]))
        student.bias.copy_(torch.tensor([2.0]))
    update_teacher(teacher, student, decay=0.75)
    # 0.75*(1, 1) + 0.25*(3, -1) = (1.5, 0.5); 0.75*0 + 0.25*2 = 0.5
    assert_close(teacher.weight.detach(), torch.tensor([[1.5, 0.5]]))
    assert_close(teacher.bias.detach(), torch.tensor([0.5]))
    assert_close(student.weight.detach(), torch.tensor([[3.0, -1.0]]))  # student untouched


def test_update_teacher_averages_bn_statistics_and_copies_the_counter():
    teacher, student = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        student.running_mean.copy_(torch.tensor([4.0, 8.0]))
        student.running_var.copy_(torch.tensor([5.0, 1.0]))
        student.num_batches_tracked.fill_(7)
        student.weight.copy_(torch.tensor([3.0, 3.0]))
    update_teacher(teacher, student, decay=0.75)
    # running_mean 0.75*(0, 0) + 0.25*(4, 8) = (1, 2); running_var 0.75*(1, 1) + 0.25*(5, 1) = (2, 1)
    assert_close(teacher.running_mean, torch.tensor([1.0, 2.0]))
    assert_close(teacher.running_var, torch.tensor([2.0, 1.0]))
    assert teacher.num_batches_tracked.item() == 7
    # affine weight: 0.75*1 + 0.25*3 = 1.5
    assert_close(teacher.weight.detach(), torch.tensor([1.5, 1.5]))


def test_update_teacher_with_decay_zero_copies_the_student():
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    update_teacher(teacher, student, decay=0.0)
    assert_close(teacher.weight, student.weight)
    assert_close(teacher.bias, student.bias)


# The only photometric op that happens is grayscale (p = 1), so the second view is known exactly.
GREY_ONLY = {"jitter_p": 0.0, "grayscale_p": 1.0, "blur_p": 0.0, "sharpness_p": 0.0, "space": "image",
             "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "blur_sigma": 1.0,
             "blur_kernel": None, "sharpness": 0.5, "sharpness_mode": "sharpen"}


class _PixelSegmenter(nn.Module):
    """A 1x1-conv 'segmenter' with known weights: logits = W x + b per pixel, on [0, 1] RGB as given."""

    def __init__(self, weight: list[list[float]], bias: list[float]):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight).view(2, 3, 1, 1))
            self.conv.bias.copy_(torch.tensor(bias))
        self.input_space = None

    def forward(self, images):
        logits = self.conv(images)
        return SegOutput(logits, logits)


def test_dg_warmup_loss_is_ce_plus_distillation_between_the_image_and_its_photometric_view():
    import numpy as np

    from diga.runtime.precision import Precision
    from diga.train.warmup import warmup_step

    student = _PixelSegmenter([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]], [0.1, -0.2])
    teacher = _PixelSegmenter([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]], [0.3, 0.0])
    pixels = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]])  # two pixels, RGB
    labels = np.array([1, 0])
    image = torch.tensor(pixels.T, dtype=torch.float32).reshape(1, 3, 1, 2)
    batch = {"image": image, "label": torch.tensor(labels).reshape(1, 1, 2)}
    settings = {"stages": {"dg_warmup": {"distill_weight": 0.5, "reverse_scale": 0.5, "aug_beta": 0.4,
                                         "aux_weight": 0.0}},
                "optim": {"seg_loss": "ce", "ce_normalise": "valid_pixels"}, "augment": GREY_ONLY,
                "ema": {"max_decay": 0.99, "average_buffers": True}}
    step = warmup_step(settings, student, teacher, None, iter([batch]), None, torch.Generator().manual_seed(0),
                       Precision("fp32", False, False, "cpu"), stage="dg_warmup")
    losses, _ = step(1)  # iteration 1: the EMA first makes the teacher the mean of its weights and the student's

    # The same by hand: view = 0.4 * grey + 0.6 * x; teacher weights averaged with decay 1 - 1/2.
    grey = pixels @ np.array([0.2989, 0.587, 0.114])
    view = 0.4 * grey[:, None] + 0.6 * pixels
    w_s, b_s = np.array([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]]), np.array([0.1, -0.2])
    w_t = 0.5 * np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]]) + 0.5 * w_s
    b_t = 0.5 * np.array([0.3, 0.0]) + 0.5 * b_s

    def log_softmax(z):
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    s_clean, s_view = log_softmax(pixels @ w_s.T + b_s), log_softmax(view @ w_s.T + b_s)
    t_clean, t_view = np.exp(log_softmax(pixels @ w_t.T + b_t)), np.exp(log_softmax(view @ w_t.T + b_t))
    ce = -s_clean[[0, 1], labels].mean()
    forward = -(t_clean * s_view).sum(axis=1).mean()   # teacher on the image -> student on the view
    reverse = -(t_view * s_clean).sum(axis=1).mean()   # teacher on the view -> student on the image
    assert losses["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert losses["skd"].item() == pytest.approx(0.5 * (forward + 0.5 * reverse), rel=1e-5)
    assert forward != pytest.approx(reverse, rel=1e-2)  # the two directions differ, so a swap would be caught


def test_aux_weight_adds_the_auxiliary_logits_ce_and_distillation_at_that_weight():
    from diga.errors import ConfigError
    from diga.models.hrnet_ocr import TINY_SIZE, HRNetOCR
    from diga.runtime.precision import Precision
    from diga.train.warmup import warmup_step

    torch.manual_seed(0)
    student, teacher = HRNetOCR(TINY_SIZE, 19).eval(), HRNetOCR(TINY_SIZE, 19).eval()  # eval: no dropout, fixed BN
    image = torch.rand(1, 3, 32, 64)
    labels = torch.randint(0, 19, (1, 32, 64))
    settings = {"stages": {"dg_warmup": {"distill_weight": 0.5, "reverse_scale": 0.5, "aug_beta": 0.4,
                                         "aux_weight": 0.1}},
                "optim": {"seg_loss": "ce", "ce_normalise": "valid_pixels"}, "augment": GREY_ONLY,
                "ema": {"max_decay": 0.99, "average_buffers": True}}
    step = warmup_step(settings, student, teacher, None, iter([{"image": image, "label": labels}]), None,
                       torch.Generator().manual_seed(0), Precision("fp32", False, False, "cpu"), stage="dg_warmup")
    losses, _ = step(0)  # iteration 0: the teacher becomes a copy of the student
    assert set(losses) == {"ce", "skd", "ce_aux", "skd_aux"}
    # By hand: the second view is 0.4 * grey + 0.6 * x; at iteration 0 the teacher equals the student.
    grey = (0.2989 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]).unsqueeze(1).expand(-1, 3, -1, -1)
    view = 0.4 * grey + 0.6 * image
    with torch.no_grad():
        clean_out, view_out = student(image), student(view)
    for key, name in (("logits", ""), ("aux", "_aux")):
        weight = 1.0 if key == "logits" else 0.1
        clean = nn.functional.interpolate(getattr(clean_out, key), size=(32, 64), mode="bilinear",
                                          align_corners=True)
        seen = nn.functional.interpolate(getattr(view_out, key), size=(32, 64), mode="bilinear", align_corners=True)
        ce = nn.functional.cross_entropy(clean, labels)
        p_clean, p_view = clean.softmax(1), seen.softmax(1)
        forward = -(p_clean * seen.log_softmax(1)).sum(1).mean()
        reverse = -(p_view * clean.log_softmax(1)).sum(1).mean()
        assert losses[f"ce{name}"].item() == pytest.approx(weight * ce.item(), rel=1e-4)
        assert losses[f"skd{name}"].item() == pytest.approx(weight * 0.5 * (forward + 0.5 * reverse).item(), rel=1e-4)
    with pytest.raises(ConfigError, match="aux_weight is 0.1 but this network has no auxiliary logits"):
        warmup_step(settings, _PixelSegmenter([[0.0] * 3] * 2, [0.0, 0.0]), _PixelSegmenter([[0.0] * 3] * 2, [0.0] * 2),
                    None, iter([]), None, torch.Generator(), Precision("fp32", False, False, "cpu"), stage="dg_warmup")


def test_semisup_selftrain_loss_pastes_unaugmented_labelled_classes_and_weighs_the_aux_logits():
    """The official semi-supervised round: CE(main, y_l) + 0.1 CE(aux, y_l) + CE(main_mix, y_mix) + 0.1 CE(aux_mix,
    y_mix) + 0.5 [SKD(main) + 0.1 SKD(aux)], the second view the photometric one (no translator), and ClassMix
    pasting the unaugmented labelled image onto the augmented unlabelled one."""
    from diga.data.transforms import blend_augment
    from diga.method.mixing import class_mix_mask
    from diga.models.hrnet_ocr import TINY_SIZE, HRNetOCR
    from diga.runtime.precision import Precision
    from diga.train.selftrain import selftrain_step

    torch.manual_seed(0)
    student = HRNetOCR(TINY_SIZE, 19).eval()  # eval: no dropout, fixed BN
    teacher = HRNetOCR(TINY_SIZE, 19).eval()
    labelled, unlabelled = torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64)
    labels = torch.zeros(1, 32, 64, dtype=torch.long)
    labels[:, :, 20:], labels[:, 10:, :8] = 5, 11  # three classes: 0, 5 and 11
    pseudo = torch.full((1, 32, 64), 2, dtype=torch.long)
    pseudo[:, :16] = 8
    cfg = {"distill_weight": 0.5, "reverse_scale": 0.5, "aug_beta": 0.3, "aux_weight": 0.1, "selection": "none",
           "centroid_momentum": 1e-4, "source_centroid_mask": "label_and_prediction"}
    settings = {"stages": {"semisup_selftrain": cfg},
                "data": {"num_classes": 19, "target": {"train_has_labels": False}},
                "centroids": {"min_pixels": 1}, "optim": {"seg_loss": "ce", "ce_normalise": "valid_pixels"},
                "augment": GREY_ONLY, "ema": {"max_decay": 0.99, "average_buffers": True}}
    online = {"centroids": torch.randn(19, TINY_SIZE.ocr_mid)}
    step = selftrain_step(settings, student, teacher, None, iter([{"image": labelled, "label": labels}]),
                          iter([{"image": unlabelled, "pseudo": pseudo}]), online, torch.ones(19, dtype=torch.bool),
                          torch.Generator().manual_seed(0), Precision("fp32", False, False, "cpu"),
                          stage="semisup_selftrain")
    losses, _ = step(0)  # iteration 0: the teacher becomes a copy of the student
    assert list(losses) == ["ce", "ce_mix", "skd", "ce_aux", "ce_mix_aux", "skd_aux"]

    # By hand, drawing from a generator in the step's order: the labelled view, the unlabelled view, the mask.
    generator = torch.Generator().manual_seed(0)
    view = blend_augment(labelled, GREY_ONLY, 0.3, generator)
    grey = (0.2989 * labelled[:, 0] + 0.587 * labelled[:, 1] + 0.114 * labelled[:, 2]).unsqueeze(1)
    assert torch.allclose(view, 0.3 * grey + 0.7 * labelled, atol=1e-6)  # the photometric view, no translation
    unlabelled_view = blend_augment(unlabelled, GREY_ONLY, 0.3, generator)
    mask = class_mix_mask(labels, generator)
    assert 0 < mask.float().mean() < 1  # some labelled classes pasted, not all
    mixed = torch.where(mask[:, None], labelled, unlabelled_view)  # the labelled pixels unaugmented
    mixed_labels = torch.where(mask, labels, pseudo)

    def up(x):
        return nn.functional.interpolate(x, size=(32, 64), mode="bilinear", align_corners=True)

    with torch.no_grad():
        clean_out, view_out, mixed_out = student(labelled), student(view), student(mixed)
    for key, name, weight in (("logits", "", 1.0), ("aux", "_aux", 0.1)):
        clean, seen, pasted = up(getattr(clean_out, key)), up(getattr(view_out, key)), up(getattr(mixed_out, key))
        forward = -(clean.softmax(1) * seen.log_softmax(1)).sum(1).mean()
        reverse = -(seen.softmax(1) * clean.log_softmax(1)).sum(1).mean()
        assert losses[f"ce{name}"].item() == pytest.approx(weight * nn.functional.cross_entropy(clean, labels).item(),
                                                           rel=1e-4)
        assert losses[f"ce_mix{name}"].item() == pytest.approx(
            weight * nn.functional.cross_entropy(pasted, mixed_labels).item(), rel=1e-4)
        assert losses[f"skd{name}"].item() == pytest.approx(weight * 0.5 * (forward + 0.5 * reverse).item(), rel=1e-4)
