"""The official DiGA code's behaviours, one switch each, on tiny inputs with hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from conftest import REPO
from diga.config import load
from diga.data.transforms import blend_augment, photometric_augment, sharpness_factor
from diga.method.ema import update_teacher
from diga.method.losses import cross_entropy, cross_entropy_over_all_pixels, segmentation_loss
from diga.method.selection import agreeing_labels, nearest_centroid_labels, usable_centroids
from diga.models.deeplabv2 import Bottleneck, DeepLabV2, DilatedResNet, ProdaHead
from diga.models.factory import build_segmenter
from diga.models.input_space import InputSpace
from diga.models.translator import Generator, MultiScaleDiscriminator
from diga.train.loop import build_optimizer, run_training, set_poly_lr
from diga.train.sgd import ListedSGD, listing_counts

CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
NO_AUGMENT = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "jitter_p": 0.0, "grayscale_p": 0.0,
              "blur_p": 0.0, "blur_sigma": 1.0, "blur_kernel": None, "sharpness": 0.5, "sharpness_mode": "sharpen",
              "sharpness_p": 0.0, "space": "image"}


def test_caffe_bgr_normalisation_of_a_known_pixel():
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # RGB
    space = InputSpace("caffe_bgr")
    # BGR on 0..255 is (0, 127.5, 255); minus the caffe mean, over 128.
    expected = [(0 - CAFFE_MEAN_BGR[0]) / 128, (127.5 - CAFFE_MEAN_BGR[1]) / 128, (255 - CAFFE_MEAN_BGR[2]) / 128]
    assert space.to_network(pixel).flatten().tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(space.to_image(space.to_network(pixel)), pixel, atol=1e-6)
    # The official semi-supervised HRNet input: the same caffe tensor with its channels flipped back to RGB.
    caffe_rgb = InputSpace("caffe_rgb")
    assert caffe_rgb.to_network(pixel).flatten().tolist() == pytest.approx(expected[::-1], abs=1e-6)
    assert torch.allclose(caffe_rgb.to_image(caffe_rgb.to_network(pixel)), pixel, atol=1e-6)
    imagenet = InputSpace("imagenet_rgb").to_network(pixel).flatten().tolist()
    assert imagenet == pytest.approx([(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0 - 0.406) / 0.225], abs=1e-6)


def test_segmenter_applies_its_input_norm():
    model = build_segmenter({"block": "basic", "layers": [1, 1, 1, 1], "width": 4, "head_channels": 8,
                             "head_rates": [2], "gn_groups": 4, "se_reduction": 4, "dropout": 0.0,
                             "freeze_backbone_bn": False, "init": "random", "input_norm": "caffe_bgr"}, 19).eval()
    images = torch.rand(1, 3, 16, 16)
    direct = model.head(model.backbone(InputSpace("caffe_bgr").to_network(images))).logits
    assert torch.equal(model(images).logits, direct)


def test_cross_entropy_of_a_2x2_map_with_one_ignored_pixel():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, 0, 0] = math.log(3)                      # pixel (0, 0): p(class 0) = 3/4
    labels = torch.tensor([[[0, 1], [1, 255]]])
    total = math.log(4 / 3) + 2 * math.log(2)             # the other two valid pixels: p = 1/2
    assert cross_entropy(logits, labels).item() == pytest.approx(total / 3)
    assert cross_entropy_over_all_pixels(logits, labels).item() == pytest.approx(total / 4)
    settings = {"seg_loss": "ce", "ohem_thresh": 0.7, "ohem_min_kept": 1, "ce_normalise": "all_pixels"}
    assert segmentation_loss(settings) is cross_entropy_over_all_pixels


def tiny_bottleneck_net() -> DeepLabV2:
    backbone = DilatedResNet(Bottleneck, [2, 1, 1, 1], 4)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):  # frozen, as the paper's backbone BN
            module.requires_grad_(False)
    return DeepLabV2(backbone, ProdaHead(backbone.out_channels, 8, [2], 4, 4, 0.0, 3))


def test_official_listing_repeats_block_convs_three_times_and_shortcuts_four():
    net = tiny_bottleneck_net()
    unique, counts = listing_counts(net.parameter_groups("official_walk")[0])
    count_of = {id(p): c for p, c in zip(unique, counts, strict=True)}
    backbone = net.backbone
    assert count_of[id(backbone.conv1.weight)] == 1                   # conv1 walked on its own
    assert count_of[id(backbone.layer1[0].conv2.weight)] == 3         # layer1, block, conv
    assert count_of[id(backbone.layer1[1].conv3.weight)] == 3
    assert count_of[id(backbone.layer2[0].downsample[0].weight)] == 4  # layer2, block, downsample, conv
    assert len(unique) == len(net.parameter_groups("unique")[0])


def sgd_17_loop(listed: list[nn.Parameter], state: dict, lr: float, momentum: float, weight_decay: float) -> None:
    """PyTorch 1.7's SGD step, written out: one update per list entry, one momentum buffer per tensor."""
    with torch.no_grad():
        for p in listed:
            d_p = p.grad.add(p, alpha=weight_decay)
            if id(p) not in state:
                buf = state[id(p)] = torch.clone(d_p).detach()
            else:
                buf = state[id(p)]
                buf.mul_(momentum).add_(d_p, alpha=1)
            p.add_(buf, alpha=-lr)


def test_listed_sgd_matches_the_17_loop_over_the_official_list():
    torch.manual_seed(0)
    ours, reference = tiny_bottleneck_net(), tiny_bottleneck_net()
    reference.load_state_dict(ours.state_dict())
    optim = {"lr": 0.1, "head_lr_mult": 10.0, "momentum": 0.9, "weight_decay": 5e-4}
    optimizer = build_optimizer(*ours.parameter_groups("official_walk"), optim)
    assert isinstance(optimizer, ListedSGD)
    ref_backbone, ref_head = reference.parameter_groups("official_walk")
    ref_state_backbone, ref_state_head = {}, {}
    names = [n for n, p in ours.named_parameters() if p.requires_grad]
    for step in range(4):
        grads = {n: torch.randn_like(p) for n, p in ours.named_parameters() if p.requires_grad}
        for net in (ours, reference):
            for n, p in net.named_parameters():
                if p.requires_grad:
                    p.grad = grads[n].clone()
        set_poly_lr(optimizer, step, 10, 0.9)
        factor = (1 - step / 10) ** 0.9
        optimizer.step()
        sgd_17_loop(ref_backbone, ref_state_backbone, 0.1 * factor, 0.9, 5e-4)
        sgd_17_loop(ref_head, ref_state_head, 1.0 * factor, 0.9, 5e-4)
    ours_params, ref_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    assert all(torch.equal(ours_params[n], ref_params[n]) for n in names)
    # A shortcut conv took 4 momentum steps per iteration: it moved further than with one update.
    once = tiny_bottleneck_net()
    assert not torch.equal(ours_params["backbone.layer2.0.downsample.0.weight"],
                           dict(once.named_parameters())["backbone.layer2.0.downsample.0.weight"])


def test_listed_sgd_resumes_from_its_state_dict():
    torch.manual_seed(1)
    net = tiny_bottleneck_net()
    optim = {"lr": 0.1, "head_lr_mult": 10.0, "momentum": 0.9, "weight_decay": 5e-4}
    optimizer = build_optimizer(*net.parameter_groups("official_walk"), optim)
    for p in net.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    optimizer.step()
    again = build_optimizer(*net.parameter_groups("official_walk"), optim)
    again.load_state_dict(optimizer.state_dict())
    assert again.param_groups[0]["repeats"] == optimizer.param_groups[0]["repeats"]
    first = again.param_groups[0]["params"][0]
    assert torch.equal(again.state[first]["momentum_buffer"], optimizer.state[first]["momentum_buffer"])


def test_source_centroid_mask_keeps_label_and_prediction_agreement():
    labels = torch.tensor([[[0, 0], [1, 1]]])
    predicted = torch.tensor([[[0, 1], [1, 0]]])
    assert agreeing_labels(labels, predicted).tolist() == [[[0, 255], [1, 255]]]


def test_zero_centroid_of_an_unseen_class_wins_where_nearest():
    centroids = torch.tensor([[1.0, 0.0], [5.0, 5.0], [-1.0, 0.0]])  # class 1 never seen: its value is unused
    seen = torch.tensor([True, False, True])
    feat = torch.tensor([[0.1, 0.0], [0.9, 0.0]]).T.reshape(1, 2, 1, 2)  # two pixels
    zero, zero_valid = usable_centroids(centroids, seen, "zero")
    assert zero[1].tolist() == [0.0, 0.0] and bool(zero_valid.all())
    assert nearest_centroid_labels(feat, zero, (1, 2), zero_valid).tolist() == [[[1, 0]]]
    kept, kept_valid = usable_centroids(centroids, seen, "exclude")
    assert nearest_centroid_labels(feat, kept, (1, 2), kept_valid).tolist() == [[[0, 0]]]


def test_soften_sharpness_blends_toward_the_3x3_smoothed_image():
    image = torch.zeros(3, 3, 3)
    image[:, 1, 1] = 1.0
    # Smoothed centre: (8 neighbours * 0 + 5 * 1) / 13; out = smoothed + f (image - smoothed), borders unchanged.
    out = TF.adjust_sharpness(image, 0.25)
    assert out[0, 1, 1].item() == pytest.approx(5 / 13 + 0.25 * (1 - 5 / 13))
    assert out[0, 0, 0].item() == 0.0
    settings = dict(NO_AUGMENT, sharpness_mode="soften")
    draws = [sharpness_factor(settings, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(0 <= f <= 0.5 for f in draws) and len(set(draws)) == 20
    assert sharpness_factor(dict(NO_AUGMENT), torch.Generator()) == 1.5


def test_official_blur_is_3x3_with_sigma_2():
    image = torch.zeros(1, 3, 5, 5)
    image[0, :, 2, 2] = 1.0
    settings = dict(NO_AUGMENT, blur_p=1.0, blur_sigma=2.0, blur_kernel=3)
    out = photometric_augment(image, settings, torch.Generator().manual_seed(0))[0, 0]
    side = math.exp(-1 / 8)                      # Gaussian weight at distance 1 for sigma 2
    centre = 1 / (1 + 2 * side)
    assert out[2, 2].item() == pytest.approx(centre**2, abs=1e-6)
    assert out[2, 3].item() == pytest.approx(centre * side * centre, abs=1e-6)
    assert out[2, 4].item() == 0.0 and out[0, 2].item() == 0.0   # 3x3: nothing two pixels away
    clean = photometric_augment(image, dict(settings, blur_sigma=1.0, blur_kernel=None), torch.Generator())[0, 0]
    assert clean[2, 4].item() > 0.0                                 # the clean 5x5 kernel reaches it


def test_augmentation_on_the_network_tensor_maps_its_clamped_output_by_2u_minus_1():
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    space = InputSpace("caffe_bgr")
    out = blend_augment(pixel, dict(NO_AUGMENT, space="network"), 0.4, torch.Generator(), space)
    t = [(0 - CAFFE_MEAN_BGR[0]) / 128, (127.5 - CAFFE_MEAN_BGR[1]) / 128, (255 - CAFFE_MEAN_BGR[2]) / 128]  # BGR
    blended = [0.4 * (2 * min(max(v, 0.0), 1.0) - 1) + 0.6 * v for v in t]  # no op drawn: only the clamp
    bgr_255 = [b * 128 + m for b, m in zip(blended, CAFFE_MEAN_BGR, strict=True)]
    expected_rgb = [bgr_255[2] / 255, bgr_255[1] / 255, bgr_255[0] / 255]
    assert out.flatten().tolist() == pytest.approx(expected_rgb, abs=1e-6)


def test_official_translator_layers_and_value_range():
    generator = Generator(4, 1, affine=False, space="caffe_bgr")
    norms = [m for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(m.affine for m in norms)
    assert all(m.affine for m in Generator(4, 1).modules() if isinstance(m, nn.InstanceNorm2d))
    discriminator = MultiScaleDiscriminator(4, 2, bias=False, space="caffe_bgr")
    assert all(m.bias is None for m in discriminator.modules() if isinstance(m, nn.Conv2d))
    # The decoder's tanh range [-1, 1] is the segmenter's input tensor: back in image space, -1 is the caffe mean
    # minus 128 (over 255), per channel in RGB order.
    low = generator.decoder.space.to_image(-torch.ones(1, 3, 1, 1)).flatten().tolist()
    assert low == pytest.approx([(CAFFE_MEAN_BGR[2] - 128) / 255, (CAFFE_MEAN_BGR[1] - 128) / 255,
                                 (CAFFE_MEAN_BGR[0] - 128) / 255], abs=1e-6)
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    view = generator.encoder.space.to_network  # the official L1 terms compare these: 255/128 the [0, 1] L1
    ratio = (view(a) - view(b)).abs().mean() / (a - b).abs().mean()
    assert ratio.item() == pytest.approx(255 / 128, rel=1e-5)
    unit = Generator(4, 1).encoder.space.to_network(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
    assert unit.flatten().tolist() == [-1.0, 1.0]


def test_official_head_init_is_normal_001_with_zero_bottleneck_bias():
    torch.manual_seed(0)
    model = build_segmenter({"block": "basic", "layers": [1, 1, 1, 1], "width": 4, "head_channels": 32,
                             "head_rates": [2, 4], "gn_groups": 4, "se_reduction": 4, "dropout": 0.0,
                             "freeze_backbone_bn": False, "init": "random", "head_init": "normal"}, 19)
    assert model.head.bottleneck[0].bias.abs().sum().item() == 0.0
    weights = torch.cat([m.weight.flatten() for m in model.head.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.01, rel=0.05)
    assert model.head.classifier.weight.std().item() == pytest.approx(0.01, rel=0.2)  # not the clean 0.001


def test_ema_without_buffers_leaves_running_statistics_alone():
    student, teacher = nn.BatchNorm2d(2), nn.BatchNorm2d(2)
    student.running_mean.fill_(1.0)
    student.weight.data.fill_(3.0)
    update_teacher(teacher, student, 0.5, buffers=False)
    assert teacher.running_mean.tolist() == [0.0, 0.0] and teacher.weight.tolist() == [2.0, 2.0]
    update_teacher(teacher, student, 0.5)
    assert teacher.running_mean.tolist() == [0.5, 0.5]


def test_linear_ramp_and_keeping_an_earlier_iteration(tmp_path):
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [weight], "initial_lr": 0.2}], lr=0.2)
    assert set_poly_lr(optimizer, 30, 120, 0.9, "linear_ramp") == pytest.approx(0.05)
    assert set_poly_lr(optimizer, 0, 120, 0.9, "linear_ramp") == 0.0

    def step(iteration):
        return {"loss": (weight - 1).pow(2).sum()}, {}

    rows = run_training("toy", step, optimizer, iterations=10, power=1.0, log_every=1, log_csv=tmp_path / "log.csv",
                        stop_at=8)
    assert [row["iteration"] for row in rows] == list(range(1, 9))
    assert rows[-1]["lr"] == pytest.approx(0.2 * (1 - 7 / 10))  # the schedule still runs over 10 iterations


# Every official-behaviour switch (docs/method.md), and whether the official_code ablation variant sets it.
SWITCHES = {"model.input_norm": True, "model.head_init": True, "optim.ce_normalise": True,
            "optim.backbone_params": True, "ema.teacher_train_mode": True, "ema.average_buffers": True,
            "stages.warmup.target_bn_leak": True, "stages.selftrain.source_centroid_mask": True,
            "centroids.size": False, "centroids.unseen": True, "augment.blur_kernel": True,
            "augment.blur_sigma": True, "augment.sharpness_mode": True, "augment.space": True,
            "stages.translator.space": True, "stages.translator.norm_affine": True, "stages.translator.disc_bias": True,
            "stages.translator.keep_iteration": False, "stages.warmup.lr_schedule": False,
            "evaluate.continue_from": False, "train.inference_precision": False}


def lookup(settings: dict, key: str):
    for part in key.split("."):
        settings = settings[part]
    return settings


@pytest.mark.parametrize("paper", ["gta5_to_cityscapes", "synthia_to_cityscapes"])
def test_paper_configs_set_official_values_and_the_clean_overlay_undoes_them(paper):
    official = load(str(REPO / "config" / f"{paper}.yaml"))
    clean = load(str(REPO / "config" / f"{paper}.yaml"), str(REPO / "config" / "clean.yaml"))
    toycity = load(str(REPO / "config" / "config.yaml"))
    variant = official["ablations"]["variants"]["official_code"]
    for key, in_variant in SWITCHES.items():
        assert lookup(clean, key) == lookup(toycity, key), key    # ToyCity runs the clean behaviour
        if key == "stages.warmup.lr_schedule" and paper.startswith("gta5"):
            assert lookup(official, key) == "poly"                 # the ramp is SYNTHIA's warm-up only
            continue
        assert lookup(official, key) != lookup(clean, key), key
        if in_variant:
            assert lookup(variant, key) == lookup(official, key), key



def test_dg_paper_config_sets_the_official_dg_switches_and_the_clean_overlay_undoes_them():
    official = load(str(REPO / "config" / "dg_gta5.yaml"))
    clean = load(str(REPO / "config" / "dg_gta5.yaml"), str(REPO / "config" / "clean.yaml"))
    adaptation = load(str(REPO / "config" / "gta5_to_cityscapes.yaml"))
    assert official["stages"]["dg_warmup"]["target_bn_leak"] is True
    assert clean["stages"]["dg_warmup"]["target_bn_leak"] is False
    # The network, optimiser, teacher and augmentation switches are those of the GTA5 adaptation paper config.
    for key in SWITCHES:
        if key.split(".")[0] in ("model", "optim", "ema", "augment") or key == "train.inference_precision":
            assert lookup(official, key) == lookup(adaptation, key), key
            assert lookup(clean, key) != lookup(official, key), key
    assert official["augment"]["sharpness_p"] == 0.0  # the DG augmentation has no sharpness op
    assert official["evaluate"]["val_every"] == 1000 and official["evaluate"]["scales"] == [1.0, 0.5]
    clean_variant = official["ablations"]["variants"]["dg_clean"]
    assert clean_variant == {"stages": {"dg_warmup": {"target_bn_leak": False}}}
    assert official["dg"]["table_variants"] == ["dg_clean"]
    sizes = {entry["name"]: entry["size"] for entry in official["dg"]["targets"]}
    assert sizes == {"cityscapes": [1024, 2048], "bdd100k": [720, 1280], "mapillary": [1080, 1920]}
