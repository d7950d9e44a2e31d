"""Whole Keypoint R-CNN / GCPose forward + backward at a small input, both images of a batch."""
import logging

import pytest
import torch
import torch.nn.functional as F

from projects.GCPose.gcpose.preset import detection_config
from projects.GCPose.gcpose import add_gcpose_config, build_model


def _cfg(tmp_path):
    cfg = add_gcpose_config(detection_config(str(tmp_path / 'exp')))
    r = cfg.MODEL.RPN
    r.PRE_NMS_TOPK_TRAIN = r.PRE_NMS_TOPK_TEST = 40
    r.POST_NMS_TOPK_TRAIN = r.POST_NMS_TOPK_TEST = 10
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 4     # 1 foreground RoI per image: keeps the 512-ch head cheap
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 2
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    # A narrow head (the full 512-ch head is pinned by the parameter-count test): 4 convs of 64 ch, GCMs at 0 and 2.
    kh = cfg.MODEL.ROI_KEYPOINT_HEAD
    kh.CONV_DIM, kh.NUM_CONVS, kh.GCM_POSITIONS = 64, 4, [0, 2]
    return cfg


def _targets():
    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0] = torch.linspace(30, 70, 17)
    kp[0, :, 1] = torch.linspace(20, 80, 17)
    kp[0, :, 2] = 2
    return {'image_size': [(96, 128), (90, 120)],
            'gt_boxes': [torch.tensor([[25., 15, 75, 90]]), torch.tensor([[5., 5, 110, 85], [60, 20, 90, 60]])],
            'gt_keypoints': [kp, torch.cat([kp * 0.9, kp * 0])]}


def test_forward_backward_and_inference(tmp_path):
    torch.manual_seed(0)
    model = build_model(_cfg(tmp_path))
    assert model.roi_heads.kp_features == ['p2'] and model.roi_heads.enlarge == 1.3
    images = torch.randn(2, 3, 96, 128) * 0.1
    model.train()
    losses = model(images, _targets())
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_loc', 'loss_cls', 'loss_box_reg', 'loss_keypoint'}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    assert losses['loss_keypoint'] > 0
    sum(losses.values()).backward()
    gcm = model.roi_heads.keypoint_head.gcms['0'].mhsa
    assert gcm.rel_w.grad is not None and gcm.rel_w.grad.abs().sum() > 0
    assert model.rpn.head.conv.weight.grad.abs().sum() > 0
    assert model.backbone.body.layer2[0].conv1.weight.grad is not None
    assert not model.backbone.body.conv1.weight.requires_grad          # FREEZE_AT 2: stem and res2 frozen
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad

    model.eval()
    out = model(images, {'image_size': [(96, 128), (90, 120)], 'scale': [(1.0, 1.0), (0.5, 0.25)]})
    assert len(out) == 2
    for r, (h, w), (sx, sy) in zip(out, [(96, 128), (90, 120)], [(1, 1), (0.5, 0.25)]):
        assert r['boxes'].shape == (2, 4) and r['scores'].shape == (2,) and r['keypoints'].shape == (2, 17, 3)
        b = r['boxes']
        assert (b[:, 2] <= w / sx + 1e-3).all() and (b[:, 3] <= h / sy + 1e-3).all()
        # keypoints are decoded inside the x1.3 box around each (rescaled) detection
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        hw_, hh_ = (b[:, 2] - b[:, 0]) * 0.65 + 1 / sx, (b[:, 3] - b[:, 1]) * 0.65 + 1 / sy
        kx, ky = r['keypoints'][..., 0], r['keypoints'][..., 1]
        assert ((kx - cx[:, None]).abs() <= hw_[:, None]).all() and ((ky - cy[:, None]).abs() <= hh_[:, None]).all()
        assert ((r['keypoints'][..., 2] > 0) & (r['keypoints'][..., 2] <= 1)).all()


def test_imagenet_init_from_torchvision_file(tmp_path, caplog):
    from cvpack.modeling.backbones.resnet import build_resnet
    from cvpack.modeling.pretrained import LoadReport
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'       # same key names as torchvision's resnet18; small file
    src = build_resnet('resnet18')
    with torch.no_grad():
        for p in src.parameters():
            p.uniform_(-1, 1)
    state = dict(src.state_dict(), **{'fc.weight': torch.zeros(1000, 512), 'fc.bias': torch.zeros(1000)})
    path = tmp_path / 'r18.pth'
    torch.save(state, path)
    cfg.MODEL.PRETRAINED = str(tmp_path / 'not_there.pth')   # build_model never reads it (trainer protocol)
    model = build_model(cfg)
    assert model.init_source is None
    report = model.load_pretrained(str(path))
    assert isinstance(report, LoadReport) and not report.missing
    assert sorted(report.unused) == ['fc.bias', 'fc.weight'] and len(report.loaded) == len(src.state_dict())
    body = model.backbone.body.state_dict()
    assert torch.equal(body['layer3.1.conv2.weight'], state['layer3.1.conv2.weight'])
    assert torch.equal(body['bn1.running_var'], state['bn1.running_var'])   # BN -> FrozenBN buffers
    with caplog.at_level(logging.WARNING, logger='projects.GCPose.gcpose.model'):
        model.train()
    assert model.init_source == str(path) and 'FREEZE_AT' not in caplog.text
    torch.save({'other.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='bad.pth'):
        model.load_pretrained(str(tmp_path / 'bad.pth'))


def test_frozen_random_trunk_warns_once_at_train(tmp_path, caplog):
    """FREEZE_AT 2 + FrozenBN on a random trunk: one WARNING at the first train(); a checkpoint silences it."""
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'
    model = build_model(cfg)
    with caplog.at_level(logging.WARNING, logger='projects.GCPose.gcpose.model'):
        model.eval()
        assert 'FREEZE_AT' not in caplog.text                 # eval (test.py, tools) never warns
        model.train()
        model.train()
    warnings = [r for r in caplog.records if 'FREEZE_AT 2' in r.getMessage()]
    assert len(warnings) == 1 and 'FrozenBN' in warnings[0].getMessage()
    caplog.clear()
    loaded = build_model(cfg)
    loaded.load_state_dict(model.state_dict())               # test.py / MODEL.WEIGHT / resume path
    assert loaded.init_source == 'checkpoint'
    partial = build_model(cfg)
    partial.load_state_dict({k: v for k, v in model.state_dict().items() if 'roi_heads' in k}, strict=False)
    assert partial.init_source is None                      # no trunk tensors: still random
    cfg.MODEL.RESNET.FREEZE_AT, cfg.MODEL.RESNET.NORM = 0, 'BN'
    scratch = build_model(cfg)                              # nothing frozen: training from scratch is fine
    with caplog.at_level(logging.WARNING, logger='projects.GCPose.gcpose.model'):
        loaded.train()
        scratch.train()
    assert 'FREEZE_AT' not in caplog.text


def test_list_input_equals_padded_batch(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'
    model = build_model(cfg).eval()
    a, b = torch.randn(3, 90, 120) * 0.1, torch.randn(3, 70, 100) * 0.1
    batch = torch.zeros(2, 3, 96, 128)
    batch[0, :, :90, :120], batch[1, :, :70, :100] = a, b
    sizes = {'image_size': [(90, 120), (70, 100)]}
    out_list, out_batch = model([a, b], sizes), model(batch, sizes)
    for x, y in zip(out_list, out_batch):
        assert torch.equal(x['boxes'], y['boxes']) and torch.equal(x['keypoints'], y['keypoints'])


def test_outputs_rescale_to_original_image(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'
    model = build_model(cfg).eval()
    images = torch.randn(1, 3, 64, 96) * 0.1
    a = model(images, {'image_size': [(64, 96)]})[0]
    b = model(images, {'image_size': [(64, 96)], 'scale': [(0.5, 0.25)]})[0]
    assert torch.allclose(b['boxes'], a['boxes'] / torch.tensor([0.5, 0.25, 0.5, 0.25]))
    assert torch.allclose(b['keypoints'][..., :2], a['keypoints'][..., :2] / torch.tensor([0.5, 0.25]))
    assert torch.equal(b['scores'], a['scores'])


def test_detector_postprocess_is_detectron2s():
    """Detectron2 v0.5 ``detector_postprocess``: x *= W / w, y *= H / h in float32, boxes clipped to the original
    image, detections with an empty clipped box dropped (keypoints computed before are not clipped). Values by hand:
    input 100 x 150 (h, w) from an original 200 x 300: factor 2."""
    from projects.GCPose.gcpose.model import detector_postprocess
    r = {'boxes': torch.tensor([[10., 20., 40., 60.], [140., 5., 160., 30.], [150., 10., 155., 20.]]),
         'scores': torch.tensor([0.9, 0.8, 0.7]),
         'keypoints': torch.tensor([[[12., 22., 0.5]], [[151., 6., 0.4]], [[152., 12., 0.3]]])}
    out = detector_postprocess(r, (100, 150), (200, 300))
    assert out['boxes'].tolist() == [[20, 40, 80, 120], [280, 10, 300, 60]]      # third box: x 300 .. 300, empty
    assert out['scores'].tolist() == pytest.approx([0.9, 0.8])
    assert out['keypoints'].tolist() == [[[24, 44, 0.5]], [[302, 12, pytest.approx(0.4)]]]   # x 302 > W: kept
    # float32 multiplication by W / w, as Boxes.scale (not a division by w / W): 333 / 777 in float32
    one = {'boxes': torch.tensor([[1., 1., 700.123, 500.]]), 'scores': torch.ones(1), 'keypoints': torch.ones(1, 1, 3)}
    b = detector_postprocess(one, (600, 777), (600, 333))['boxes'][0, 2]
    assert b.item() == (torch.tensor(700.123) * (333 / 777)).item()


def test_model_postprocesses_with_the_original_size(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 5
    model = build_model(cfg).eval()
    images = torch.randn(1, 3, 64, 96) * 0.1
    a = model(images, {'image_size': [(64, 96)]})[0]
    b = model(images, {'image_size': [(64, 96)], 'scale': [(2.0, 2.0)], 'orig_size': [(32, 40)]})[0]
    sx, sy = 40 / 96, 32 / 64
    boxes = a['boxes'] * torch.tensor([sx, sy, sx, sy])
    boxes = torch.stack([boxes[:, 0].clamp(0, 40), boxes[:, 1].clamp(0, 32), boxes[:, 2].clamp(0, 40),
                         boxes[:, 3].clamp(0, 32)], 1)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    assert torch.allclose(b['boxes'], boxes[keep]) and torch.equal(b['scores'], a['scores'][keep])
    assert torch.allclose(b['keypoints'][..., :2], a['keypoints'][keep][..., :2] * torch.tensor([sx, sy]))


def test_keypoint_rois_enlarged_and_selected(tmp_path, monkeypatch):
    """docs/reference/mlpe_hsrnet_gcpose.md §3.4: proposals need >= 1 visible keypoint inside the original box; targets
    use the x1.3 box."""
    from projects.GCPose.gcpose import roi_heads as rh
    from projects.GCPose.gcpose.roi_heads import KeypointROIHeads
    cfg = _cfg(tmp_path)
    heads = KeypointROIHeads(cfg.MODEL, 17)
    seen = {}

    def spy(kps, rois, size):
        seen['rois'], seen['kps'] = rois, kps
        return rh.keypoint_targets.__wrapped__(kps, rois, size)
    spy.__wrapped__ = rh.keypoint_targets
    monkeypatch.setattr(rh, 'keypoint_targets', spy)
    kp = torch.zeros(2, 17, 3)
    kp[0, 0] = torch.tensor([50., 50., 2])      # inside GT 0's proposal
    kp[0, 1] = torch.tensor([82., 50., 2])      # outside [20, 80] but inside the x1.3 box [11, 89]
    kp[1, 0] = torch.tensor([5., 5., 2])        # GT 1's only keypoint lies outside its proposal
    boxes = torch.tensor([[20., 20., 80., 80.], [100., 100., 140., 140.], [0., 0., 10., 10.]])
    samples = [(boxes, torch.tensor([0, 1, 0]), torch.tensor([True, True, False]))]
    feats = {'p2': torch.randn(1, 256, 40, 40), 'p3': torch.randn(1, 256, 20, 20),
             'p4': torch.randn(1, 256, 10, 10), 'p5': torch.randn(1, 256, 5, 5)}
    loss = heads._keypoint_loss(feats, samples, [kp])
    assert torch.isfinite(loss)
    assert seen['rois'].shape == (1, 4) and seen['rois'][0].tolist() == pytest.approx([11.0, 11.0, 89.0, 89.0])
    labels, valid = rh.keypoint_targets.__wrapped__(seen['kps'], seen['rois'], 56)
    assert valid[0, :2].tolist() == [True, True]


def test_no_keypoint_targets_still_reach_every_keypoint_parameter(tmp_path):
    """Detectron2's rule: without keypoint targets the loss is logits.sum() * 0, so every keypoint-head / GCM
    parameter gets a zero gradient (not None); otherwise DDP fails on the next step (FIND_UNUSED_PARAMETERS False)."""
    torch.manual_seed(0)
    cfg = _cfg(tmp_path)
    cfg.MODEL.BACKBONE = 'resnet18'
    model = build_model(cfg).train()
    t = _targets()
    t['gt_keypoints'] = [k * 0 for k in t['gt_keypoints']]          # people without labelled keypoints
    losses = model(torch.randn(2, 3, 96, 128) * 0.1, t)
    assert losses['loss_keypoint'].item() == 0
    sum(losses.values()).backward()
    head = model.roi_heads.keypoint_head
    assert len(head.gcms) == 2
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() == 0, name


def _original_keypoints(heads, p2, boxes):
    """The GCPose fork's inference keypoint branch for one image, re-stated: resizeBoxesTrain (x1.3),
    getOutborderRange (per side, rounded up to 32 px), processBoxes / processFeatures (shift the boxes, zero-pad P2
    on those sides only), the compiled ROIAlignV2 on the padded map ('kernel'), the head, Detectron2's
    heatmaps_to_keypoints on the shifted boxes, then ``keypoints[:, :, :2] -= maxOut[:2]``."""
    from cvpack.ops import roi_align
    from cvpack.ops.roi_align import boxes_to_rois
    from projects.GCPose.gcpose.keypoint_head import heatmaps_to_keypoints
    box = boxes.clone()
    w_extend = (box[:, 2] - box[:, 0]) * (1.3 - 1) / 2
    h_extend = (box[:, 3] - box[:, 1]) * (1.3 - 1) / 2
    box += torch.stack([-w_extend, -h_extend, w_extend, h_extend], dim=1)
    H, W = p2.shape[2] * 4, p2.shape[3] * 4
    out = torch.zeros(4)
    for j, crossing in enumerate((-box[:, 0], -box[:, 1], box[:, 2] - W, box[:, 3] - H)):
        if (crossing > 0).any():
            out[j] = crossing[crossing > 0].max()
    max_out = (out / 32).ceil().int()
    box[:, 0:2] += max_out[:2] * 32
    box[:, 2:4] += max_out[:2] * 32
    pad = max_out * 8
    padded = F.pad(p2, (int(pad[0]), int(pad[2]), int(pad[1]), int(pad[3])))
    feats = roi_align(padded, boxes_to_rois([box]), 14, 0.25, 0, True, 'kernel')
    kp = heatmaps_to_keypoints(heads.keypoint_head(feats), box)
    kp[:, :, :2] -= max_out[:2] * 32
    return kp, feats, max_out


def test_gcpose_keypoint_branch_is_the_originals_pad_and_shift(tmp_path):
    """Only the sides an enlarged box crosses are zero-padded (top and left here: 32 px each); box 1 ends exactly at
    the right edge of the 128-px input, where the original keeps the compiled kernel's clamp. Pooled
    features match the original's to float rounding, keypoints to 1e-4 px; with zeros on every side (before
    defects.md F#12) box 1's last column differed."""
    from projects.GCPose.gcpose.roi_heads import KeypointROIHeads, outside_padding
    torch.manual_seed(0)
    heads = KeypointROIHeads(_cfg(tmp_path).MODEL, 17).eval()
    p2 = torch.randn(1, 256, 24, 32) + 1
    feats = {'p2': p2}
    boxes = torch.tensor([[10., 10., 60., 80.], [13., 20., 113., 60.], [1., 30., 31., 50.]])
    ref, ref_feats, max_out = _original_keypoints(heads, p2, boxes)
    assert max_out.tolist() == [1, 1, 0, 0]
    rois, border, shift = heads._keypoint_rois(feats, [boxes])
    assert border == ('zeros', 'zeros', 'kernel', 'kernel') and shift.tolist() == [32, 32]
    assert rois[0][1, 2].item() == 128.0                          # at the right edge, not across it
    ours = heads._pool(feats, ['p2'], rois, 14, border)
    assert torch.allclose(ours, ref_feats, atol=1e-5)
    assert (heads._pool(feats, ['p2'], rois, 14, 'zeros')[1, :, :, -1] - ref_feats[1, :, :, -1]).abs().max() > 0.05
    with torch.no_grad():
        kp = heads._keypoints(feats, [boxes])
    assert torch.allclose(kp[..., :2], ref[..., :2], atol=1e-4) and torch.allclose(kp[..., 2:], ref[..., 2:], atol=1e-4)
    # getOutborderRange's rounding: any crossing, however small, pads 32 px; none pads nothing
    pad, sides = outside_padding([torch.tensor([[-0.01, 5., 130., 40.]]), torch.tensor([[3., -33., 9., 9.]])],
                                 (96, 128))
    assert pad.tolist() == [32, 64, 32, 0] and sides == ('zeros', 'zeros', 'zeros', 'kernel')
