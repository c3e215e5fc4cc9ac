"""The one network code path at both sizes, and the translator's shapes and edge mask."""

from __future__ import annotations

import pytest
import torch
import torchvision

from diga.models.factory import build_segmenter
from diga.models.translator import Generator, MultiScaleDiscriminator
from diga.train.translator import label_edges

TOY = {"block": "basic", "layers": [2, 2, 2, 2], "width": 16, "head_channels": 32, "head_rates": [2, 4, 6],
       "gn_groups": 8, "se_reduction": 4, "dropout": 0.1, "freeze_backbone_bn": False, "init": "random"}
PAPER = {"block": "bottleneck", "layers": [3, 4, 23, 3], "width": 64, "head_channels": 256,
         "head_rates": [6, 12, 18, 24], "gn_groups": 32, "se_reduction": 16, "dropout": 0.1,
         "freeze_backbone_bn": True, "init": "random"}


def test_toy_network_has_output_stride_8_and_a_feature_per_pixel():
    model = build_segmenter(TOY, 19).eval()
    output = model(torch.rand(2, 3, 64, 128))
    # conv1 /2 -> 32x64, maxpool (ceil) /2 -> 16x32, layer2 /2 -> 8x16 (ceil mode adds one row/col: 9x17)
    assert output.logits.shape == (2, 19, 9, 17)
    assert output.feat.shape == (2, 32, 9, 17)


def test_output_stride_4_drops_the_stem_pool_and_keeps_the_parameters():
    at_8, at_4 = build_segmenter(TOY, 19), build_segmenter(dict(TOY, output_stride=4), 19)
    assert [p.shape for p in at_8.parameters()] == [p.shape for p in at_4.parameters()]
    # conv1 /2 -> 32x64, no pool, layer2 /2 -> 16x32
    assert at_4.eval()(torch.rand(2, 3, 64, 128)).logits.shape == (2, 19, 16, 32)
    with pytest.raises(ValueError, match="output_stride=16"):
        build_segmenter(dict(TOY, output_stride=16), 19)


def test_paper_backbone_is_resnet101_with_the_proda_head():
    model = build_segmenter(PAPER, 19)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    reference = torchvision.models.resnet101()
    expected = sum(p.numel() for name, p in reference.named_parameters() if not name.startswith("fc."))
    assert backbone == expected  # same layers and widths as ResNet-101, only strides and dilations differ
    assert len(model.head.branches) == 5  # 1x1 plus four dilated 3x3 branches
    assert model.head.classifier.weight.shape == (19, 256, 1, 1)
    frozen = [p for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    backbone_params, head_params = model.parameter_groups()
    assert not any(p is q for p in backbone_params for q in frozen)
    assert len(head_params) == len(list(model.head.parameters()))


def test_generator_keeps_the_image_size_and_range():
    generator = Generator(width=4, res_blocks=1)
    images = torch.rand(1, 3, 30, 66)  # not multiples of 4
    out = generator(images)
    assert out.shape == images.shape and 0.0 <= out.min() and out.max() <= 1.0
    scores = MultiScaleDiscriminator(width=4, scales=2)(torch.rand(1, 3, 64, 128))
    assert [tuple(s.shape) for s in scores] == [(1, 1, 4, 8), (1, 1, 2, 4)]


def test_generator_downsample_sets_the_content_resolution():
    images = torch.rand(1, 3, 30, 66)
    for downsample, content_size, channels in [(2, (8, 17), 16), (1, (15, 33), 8), (0, (30, 66), 4)]:
        generator = Generator(width=4, res_blocks=1, downsample=downsample)
        padded = torch.rand(1, 3, content_size[0] * 2 ** downsample, content_size[1] * 2 ** downsample)
        assert generator.encoder(padded).shape == (1, channels, *content_size)
        assert generator(images).shape == images.shape
    # the paper's layout keeps its parameter names, so translator checkpoints written before the option still load
    names = list(Generator(width=4, res_blocks=1).state_dict())
    assert names[:3] == ["encoder.net.0.1.weight", "encoder.net.0.1.bias", "encoder.net.0.2.weight"]
    assert "encoder.net.2.1.weight" in names and "encoder.net.3.body.1.weight" in names
    assert "decoder.net.2.1.weight" in names and "decoder.net.6.weight" in names


def test_label_edges_mark_pixels_within_two_of_a_boundary():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1  # a vertical boundary between columns 3 and 4
    edges = label_edges(labels)[0, 0]
    # the 5x5 Laplacian reaches two pixels each side: columns 2..5 are edges, 0, 1, 6, 7 are not
    assert edges[:, 2:6].eq(1).all() and edges[:, [0, 1, 6, 7]].eq(0).all()


def test_hrnet_w48_ocr_at_the_paper_size_returns_stride_4_logits_aux_logits_and_a_512_d_feature():
    from diga.models.hrnet_ocr import PAPER_SIZE, HRNetOCR

    net = HRNetOCR(PAPER_SIZE, 19).eval()
    assert net.backbone.out_channels == 48 + 96 + 192 + 384 == 720
    with torch.no_grad():
        output = net(torch.rand(1, 3, 64, 96))
    assert output.logits.shape == output.aux.shape == (1, 19, 16, 24)
    assert output.feat.shape == (1, 512, 16, 24)
    # The published sizes: HRNetV2-W48 has 65.9M parameters with its 720 -> 720 -> 19 segmentation head
    # (0.53M), HRNet-W48 + OCR 70.3M.
    backbone = sum(p.numel() for p in net.backbone.parameters())
    total = sum(p.numel() for p in net.parameters())
    assert abs(backbone + 720 * 720 + 720 + 2 * 720 + 720 * 19 + 19 - 65.9e6) < 0.05e6
    assert abs(total - 70.3e6) < 0.1e6
    # Stage depths: 1, 4 and 3 modules of four basic blocks per branch.
    assert [len(net.backbone.stage2), len(net.backbone.stage3), len(net.backbone.stage4)] == [1, 4, 3]
    assert len(net.backbone.stage4[0].branches) == 4 and len(net.backbone.stage4[0].branches[3]) == 4


def test_hrnet_weights_load_by_name_and_a_missing_or_extra_tensor_stops_with_both_named(tmp_path):
    from diga.errors import WeightsError
    from diga.models.hrnet_ocr import TINY_SIZE, HRNetOCR, load_hrnet_weights

    source, target = HRNetOCR(TINY_SIZE, 19), HRNetOCR(TINY_SIZE, 19)
    for parameter in source.parameters():
        torch.nn.init.normal_(parameter)
    state = {f"module.{k}": v for k, v in source.backbone.state_dict().items()}
    state["classifier.weight"] = torch.zeros(1000, 2048)  # the ImageNet classifier: not part of the backbone
    torch.save(state, tmp_path / "good.pth")
    load_hrnet_weights(target, str(tmp_path / "good.pth"))
    for name, tensor in target.backbone.state_dict().items():
        assert torch.equal(tensor, source.backbone.state_dict()[name]), name
    broken = dict(state)
    del broken["module.stage3.0.fuse_layers.2.0.1.0.weight"]
    broken["module.stage5.0.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "broken.pth")
    fresh = HRNetOCR(TINY_SIZE, 19)
    before = {k: v.clone() for k, v in fresh.backbone.state_dict().items()}
    with pytest.raises(WeightsError, match=r"1 backbone tensor\(s\) not in the file \(stage3\.0\.fuse_layers\.2\.0\."
                                           r"1\.0\.weight\); 1 tensor\(s\) of the file with no place \(stage5\.0\."):
        load_hrnet_weights(fresh, str(tmp_path / "broken.pth"))
    assert all(torch.equal(v, before[k]) for k, v in fresh.backbone.state_dict().items())  # nothing loaded


def test_the_config_selects_hrnet_ocr_and_its_checkpoint_rebuilds_the_same_network(tmp_path):
    from diga import config as config_module
    from diga.errors import MissingWeightsError
    from diga.runtime.checkpoints import load_segmenter, new_segmenter, save_segmenter

    settings = config_module.load("config/config.yaml", '{"model": {"arch": "hrnet_ocr", "hrnet_size": "tiny"}}')
    student = new_segmenter(settings, torch.device("cpu")).eval()
    images = torch.rand(1, 3, 32, 64)
    output = student(images)
    assert output.logits.shape == output.aux.shape == (1, 19, 8, 16) and output.feat.shape == (1, 32, 8, 16)
    backbone, head = student.parameter_groups()
    assert len(backbone) + len(head) == len(list(student.parameters()))
    with pytest.raises(ValueError, match="official DeepLabV2 code; HRNet lists each tensor once"):
        student.parameter_groups("official_walk")
    save_segmenter(tmp_path / "model.pt", "warmup", settings, student, None)
    rebuilt = load_segmenter(tmp_path / "model.pt", torch.device("cpu")).eval()
    assert torch.equal(rebuilt(images).logits, output.logits)
    missing = dict(settings["model"], init=str(tmp_path / "hrnetv2_w48_imagenet_pretrained.pth"))
    with pytest.raises(MissingWeightsError, match="hrnetv2_w48_imagenet_pretrained.pth do not exist"):
        build_segmenter(missing, 19)  # never a silent random initialisation
