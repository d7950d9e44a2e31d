"""What Detectron2 computes, computed here by hand / by a functional transcription of Detectron2's forward
passes, against our modules loaded through projects.GCPose.gcpose.detectron2_format.

Covered: the MSRA (stride-in-1x1) bottleneck and FrozenBN on tiny hand-checked tensors, the BGR / pixel-mean
preprocessing of the detection dataset, and the ResNet-FPN trunk, RPN head, box head, stock keypoint head and
the GCPose authors' GCM head (BoTNet pad-and-reshape relative logits) with Detectron2-named weights.
"""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from projects.GCPose.gcpose.preset import detection_config
from projects.GCPose.gcpose.data import DetectionDataset
from cvpack.modeling.backbones.resnet import Bottleneck, FrozenBatchNorm2d, build_resnet
from projects.GCPose.gcpose import add_gcpose_config, build_model
from projects.GCPose.gcpose.detectron2_format import apply_overrides, config_overrides, convert
from projects.GCPose.gcpose.fpn import ResNetFPN
from projects.GCPose.gcpose.keypoint_head import KeypointHead
from projects.GCPose.gcpose.roi_heads import BoxHead
from projects.GCPose.gcpose.rpn import RPNHead

MANIFEST = osp.join(osp.dirname(__file__), '..', '..', 'data', 'detectron2_keypoint_rcnn_manifest.json')
EPS = 1e-5   # detectron2.layers.FrozenBatchNorm2d and nn.BatchNorm2d


# ---------------------------------------------------------------- hand computations on tiny tensors

def _identity_bn(bn):
    """Scale exactly 1: running_var + eps == 1."""
    bn.running_var.fill_(1 - EPS)
    return bn


def _ones_bottleneck(stride_in_1x1):
    down = nn.Sequential(nn.Conv2d(1, 4, 1, 2, bias=False), _identity_bn(FrozenBatchNorm2d(4)))
    b = Bottleneck(1, 1, stride=2, downsample=down, norm='FrozenBN', stride_in_1x1=stride_in_1x1)
    for m in b.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.ones_(m.weight)
        elif isinstance(m, FrozenBatchNorm2d):
            _identity_bn(m)
    return b.eval()


def test_stride_in_1x1_bottleneck_by_hand():
    """x = arange(16) on 4 x 4, all-ones 1x1 / 3x3 (pad 1) / 1x1 convs, identity norms, stride 2.

    MSRA (stride in the 1x1): the 1x1 first keeps x[::2, ::2] = [[0, 2], [8, 10]]; each 3x3 window of that 2 x 2
    map covers all of it: 20; plus the shortcut x[::2, ::2]: [[20, 22], [28, 30]].
    torchvision (stride in the 3x3): 3x3 window sums of x at (0, 0), (0, 2), (2, 0), (2, 2): 10, 24, 51, 90;
    plus the shortcut: [[10, 26], [59, 100]]."""
    x = torch.arange(16.).reshape(1, 1, 4, 4)
    msra = _ones_bottleneck(True)(x)
    tv = _ones_bottleneck(False)(x)
    assert msra.shape == tv.shape == (1, 4, 2, 2)
    assert torch.allclose(msra, torch.tensor([[20., 22.], [28., 30.]]).expand(1, 4, 2, 2), atol=1e-4)
    assert torch.allclose(tv, torch.tensor([[10., 26.], [59., 100.]]).expand(1, 4, 2, 2), atol=1e-4)


def test_resnet_stride_placement_and_default():
    """The option moves the stride of every stage's first block to conv1; the default stays torchvision's."""
    for flag, (s1, s3) in ((True, (2, 1)), (False, (1, 2))):
        net = build_resnet('resnet50', stride_in_1x1=flag, norm='FrozenBN')
        for name in ('layer2', 'layer3', 'layer4'):
            block = getattr(net, name)[0]
            assert (block.conv1.stride, block.conv2.stride) == ((s1, s1), (s3, s3)), (flag, name)
            assert block.downsample[0].stride == (2, 2)
    default = build_resnet('resnet50')
    assert default.layer2[0].conv2.stride == (2, 2) and isinstance(default.bn1, nn.BatchNorm2d)


def test_frozen_bn_by_hand():
    """y = (x - mean) / sqrt(var + 1e-5) * weight + bias; var = 0 makes the result depend on eps itself."""
    bn = FrozenBatchNorm2d(2)
    bn.weight.copy_(torch.tensor([2., 0.5]))
    bn.bias.copy_(torch.tensor([1., -1.]))
    bn.running_mean.copy_(torch.tensor([0.5, 3.]))
    bn.running_var.copy_(torch.tensor([3., 0.]))
    x = torch.tensor([[1., 2.], [3., 4.]]).expand(1, 2, 2, 2).clone()
    y = bn(x)
    assert torch.allclose(y[0, 0], (torch.tensor([[1., 2.], [3., 4.]]) - 0.5) / (3 + 1e-5) ** 0.5 * 2 + 1)
    assert torch.allclose(y[0, 1], (torch.tensor([[1., 2.], [3., 4.]]) - 3) / 1e-5 ** 0.5 * 0.5 - 1)
    assert y[0, 1, 0, 0].item() == pytest.approx(-2 / 1e-5 ** 0.5 * 0.5 - 1, rel=1e-6)   # -317.2...


def test_detectron2_preprocessing_by_hand(coco_subset, tmp_path):
    """With the converter's overrides the dataset feeds BGR pixels minus (103.53, 116.28, 123.675), std 1,
    exactly Detectron2's ``(x - pixel_mean) / pixel_std`` on its BGR input; the preset stays RGB / ImageNet."""
    cfg = add_gcpose_config(detection_config(str(tmp_path / 'exp')), 'resnet50', gcm=False)
    cfg.DATASET.ROOT = coco_subset
    with open(osp.join(coco_subset, cfg.DATASET.VAL_ANN)) as f:
        img = json.load(f)['images'][0]
    cfg.INPUT.MIN_SIZE_TEST = min(img['height'], img['width'])      # no resize: pixels compare one to one
    cfg.INPUT.MAX_SIZE_TEST = max(img['height'], img['width'])
    raw = cv2.imread(osp.join(coco_subset, cfg.DATASET.VAL_IMAGES, img['file_name'])).astype(np.float64)  # BGR
    d2 = apply_overrides(cfg, config_overrides({}))
    sample = DetectionDataset(d2, 'val')[0]
    assert sample['image_id'] == img['id'] and sample['image'].shape == (3, img['height'], img['width'])
    for y, x in ((0, 0), (img['height'] // 2, img['width'] // 3), (img['height'] - 1, img['width'] - 1)):
        b, g, r = raw[y, x]
        expected = [b - 103.53, g - 116.28, r - 123.675]
        assert sample['image'][:, y, x].tolist() == pytest.approx(expected, abs=1e-4)
    ours = DetectionDataset(cfg, 'val')[0]['image']           # the preset: RGB, ImageNet mean / std
    b, g, r = raw[0, 0]
    assert ours[:, 0, 0].tolist() == pytest.approx([(r - 123.675) / 58.395, (g - 116.28) / 57.12,
                                                    (b - 103.53) / 57.375], abs=1e-4)


# ---------------------------------------------------------------- Detectron2's forward passes, transcribed

def _weights(keys, seed):
    """Well-conditioned float64 arrays by Detectron2 name: He-scaled convs / linears, norms near identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in keys.items():
        n = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if k.endswith('num_batches_tracked'):
            out[k] = np.array(7, np.int64)
        elif k.endswith('running_var'):
            out[k] = rng.uniform(0.5, 2.0, shape)
        elif k.endswith('running_mean') or k.endswith('.bias'):
            out[k] = rng.uniform(-0.1, 0.1, shape)
        elif k.endswith('norm.weight') or '.norm1.' in k or '.norm2.' in k:
            out[k] = rng.uniform(0.2, 0.6, shape)
        elif 'rel_' in k:
            out[k] = rng.standard_normal(shape) * 128 ** -0.5
        else:
            out[k] = rng.standard_normal(shape) * (1.0 / n) ** 0.5
    return {k: torch.from_numpy(v) for k, v in out.items()}


def _converted(variant, exp_name, real_prefixes, repo_root, seed=0):
    """Convert a checkpoint whose ``real_prefixes`` entries hold values (the rest shape-only) -> (w, state)."""
    from cvpack.exp import load_exp
    with open(MANIFEST) as f:
        keys = json.load(f)['variants'][variant]
    real = _weights({k: s for k, s in keys.items() if k.startswith(real_prefixes)}, seed)
    model = {k: real[k].float() if k in real and real[k].is_floating_point() else real.get(k) for k in keys}
    model = {k: v if v is not None else torch.empty(keys[k], device='meta') for k, v in model.items()}
    cfg = load_exp(osp.join(repo_root, 'projects', 'GCPose', 'exps', exp_name), build=False)[0]
    return real, convert({'model': model}, cfg)['state_dict']


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def d2_norm(x, w, p):
    scale = w[p + '.weight'] * (w[p + '.running_var'] + EPS).rsqrt()
    return x * scale.view(1, -1, 1, 1) + (w[p + '.bias'] - w[p + '.running_mean'] * scale).view(1, -1, 1, 1)


def d2_conv(x, w, p, stride=1, padding=0, norm=True):
    """detectron2.layers.Conv2d: conv, then its ``.norm`` child when present."""
    x = F.conv2d(x, w[p + '.weight'], w.get(p + '.bias'), stride, padding)
    return d2_norm(x, w, p + '.norm') if norm else x


def d2_resnet_fpn(x, w, blocks=(3, 4, 6, 3)):
    """ResNet (BasicStem, BottleneckBlock with stride_in_1x1=True) + FPN + LastLevelMaxPool."""
    r = 'backbone.bottom_up.'
    x = F.max_pool2d(F.relu(d2_conv(x, w, r + 'stem.conv1', 2, 3)), 3, 2, 1)
    feats = []
    for s, n in zip(range(2, 6), blocks):
        for b in range(n):
            p = '%sres%d.%d.' % (r, s, b)
            stride = 2 if b == 0 and s > 2 else 1
            short = d2_conv(x, w, p + 'shortcut', stride) if b == 0 else x
            y = F.relu(d2_conv(x, w, p + 'conv1', stride))          # stride_1x1 = stride
            y = F.relu(d2_conv(y, w, p + 'conv2', 1, 1))
            x = F.relu(d2_conv(y, w, p + 'conv3') + short)
        feats.append(x)
    prev = d2_conv(feats[3], w, 'backbone.fpn_lateral5', norm=False)
    outs = [d2_conv(prev, w, 'backbone.fpn_output5', padding=1, norm=False)]
    for s in (4, 3, 2):
        prev = d2_conv(feats[s - 2], w, 'backbone.fpn_lateral%d' % s, norm=False) + \
            F.interpolate(prev, scale_factor=2.0, mode='nearest')
        outs.insert(0, d2_conv(prev, w, 'backbone.fpn_output%d' % s, padding=1, norm=False))
    outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
    return outs


def _close(ours, ref, tol=1e-4):
    ours, ref = ours.double(), ref.double()
    scale = ref.abs().max().item() or 1.0
    assert ours.shape == ref.shape and (ours - ref).abs().max().item() <= tol * scale


def test_trunk_and_fpn_match_detectron2(repo_root, one_thread):
    """ResNet-50-FPN with Detectron2-named weights: p2..p6 equal Detectron2's forward (float64 reference)."""
    w, state = _converted('zoo_R50', 'keypoint_rcnn.R50.coco', ('backbone.',), repo_root)
    net = ResNetFPN('resnet50', stride_in_1x1=True, norm='FrozenBN').eval()
    net.load_state_dict(_sub(state, 'backbone.'), strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        ours = net(x)
        ref = d2_resnet_fpn(x.double(), w)
    for i, level in enumerate(['p2', 'p3', 'p4', 'p5', 'p6']):
        _close(ours[level], ref[i])
    # the torchvision placement of the stride computes something else with the same weights
    tv = ResNetFPN('resnet50', stride_in_1x1=False, norm='FrozenBN').eval()
    tv.load_state_dict(_sub(state, 'backbone.'), strict=True)
    with torch.no_grad():
        assert (tv(x)['p2'].double() - ref[0]).abs().max() > 1e-2 * ref[0].abs().max()


def test_rpn_box_and_keypoint_heads_match_detectron2(repo_root, one_thread):
    """StandardRPNHead (outputs flattened as Detectron2's RPN: (N, Hi*Wi*A) and (N, Hi*Wi*A, 4)),
    FastRCNNConvFCHead + FastRCNNOutputLayers (background last) and KRCNNConvDeconvUpsampleHead."""
    w, state = _converted('zoo_R50', 'keypoint_rcnn.R50.coco', ('proposal_generator.', 'roi_heads.'), repo_root)
    g = torch.Generator().manual_seed(1)
    rpn = RPNHead(256, 3).eval()
    rpn.load_state_dict(_sub(state, 'rpn.head.'), strict=True)
    feat = torch.randn(2, 256, 5, 7, generator=g)
    logits, deltas = rpn([feat])
    t = F.relu(d2_conv(feat.double(), w, 'proposal_generator.rpn_head.conv', padding=1, norm=False))
    o = d2_conv(t, w, 'proposal_generator.rpn_head.objectness_logits', norm=False)
    d = d2_conv(t, w, 'proposal_generator.rpn_head.anchor_deltas', norm=False)
    _close(logits[0], o.permute(0, 2, 3, 1).flatten(1))                              # rpn.py RPN.forward
    _close(deltas[0], d.view(2, 3, 4, 5, 7).permute(0, 3, 4, 1, 2).flatten(1, -2))

    box = BoxHead(256, 7, 1024, 1).eval()
    box.load_state_dict(_sub(state, 'roi_heads.box_head.'), strict=True)
    pooled = torch.randn(3, 256, 7, 7, generator=g)
    cls, reg = box(pooled)
    h = pooled.double().flatten(1)
    for i in (1, 2):
        h = F.relu(F.linear(h, w['roi_heads.box_head.fc%d.weight' % i], w['roi_heads.box_head.fc%d.bias' % i]))
    _close(cls, F.linear(h, w['roi_heads.box_predictor.cls_score.weight'], w['roi_heads.box_predictor.cls_score.bias']))
    _close(reg, F.linear(h, w['roi_heads.box_predictor.bbox_pred.weight'], w['roi_heads.box_predictor.bbox_pred.bias']))

    kp = KeypointHead(256, 17).eval()
    kp.load_state_dict(_sub(state, 'roi_heads.keypoint_head.'), strict=True)
    rois = torch.randn(1, 256, 14, 14, generator=g)
    with torch.no_grad():
        ours = kp(rois)
    x = rois.double()
    for i in range(1, 9):
        x = F.relu(d2_conv(x, w, 'roi_heads.keypoint_head.conv_fcn%d' % i, padding=1, norm=False))
    x = F.conv_transpose2d(x, w['roi_heads.keypoint_head.score_lowres.weight'],
                           w['roi_heads.keypoint_head.score_lowres.bias'], stride=2, padding=1)
    _close(ours, F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False))


def rel_to_abs(x):
    """BoTNet's pad-and-reshape: (B, L, 2L - 1) logits by relative offset -> (B, L, L) by absolute key index."""
    B, L, _ = x.shape
    x = torch.cat([x, x.new_zeros(B, L, 1)], dim=2).reshape(B, 2 * L * L)
    x = torch.cat([x, x.new_zeros(B, L - 1)], dim=1).reshape(B, L + 1, 2 * L - 1)
    return x[:, :L, L - 1:]


def authors_mhsa(x, w, p, heads=4):
    """The GCPose fork's MHSA (to_qk / to_v, q scaled by d^-1/2, logits = q.k + pos_emb(q), softmax, attn.v)."""
    B, C, H, W = x.shape
    q, k = F.conv2d(x, w[p + 'to_qk.weight']).chunk(2, dim=1)
    v = F.conv2d(x, w[p + 'to_v.weight'])
    def split(t):     # (B, heads, HW, d), channel = h * d + i
        return t.reshape(B, heads, -1, H * W).transpose(2, 3)

    q, k, v = split(q), split(k), split(v)
    d = q.shape[-1]
    q = q * d ** -0.5
    qs = q.reshape(B * heads, H, W, d)
    rw = rel_to_abs((qs @ w[p + 'pos_emb.rel_width'].T).reshape(-1, W, 2 * W - 1)).reshape(B * heads, H, W, W)
    qt = qs.transpose(1, 2)                                              # (B heads, W, H, d)
    rh = rel_to_abs((qt @ w[p + 'pos_emb.rel_height'].T).reshape(-1, H, 2 * H - 1)).reshape(B * heads, W, H, H)
    # [b, y_i, x_i, y_j, x_j]: width logits do not depend on y_j, height logits not on x_j
    rel = rw[:, :, :, None, :].expand(-1, H, W, H, W) + rh.permute(0, 2, 1, 3)[:, :, :, :, None].expand(-1, H, W, H, W)
    logits = q @ k.transpose(2, 3) + rel.reshape(B, heads, H * W, H * W)
    out = logits.softmax(-1) @ v                                         # (B, heads, HW, d)
    return out.transpose(2, 3).reshape(B, heads * d, H, W)


def test_gcpose_authors_head_matches_their_formulation(repo_root, one_thread):
    """The authors' keypoint head (conv_channel, SABlock ``MHSA_1`` / ``MHSA_5`` before conv_fcn1 / conv_fcn5)
    with their weight names equals our GCPose head after conversion: checks the q/k/v channel split, the
    head layout and that rel_height / rel_width need no re-indexing."""
    w, state = _converted('gcpose_R50', 'gcpose.R50.coco', ('roi_heads.keypoint_head.',), repo_root, seed=3)
    head = KeypointHead(256, 17, gcm_positions=(0, 4)).eval()
    head.load_state_dict(_sub(state, 'roi_heads.keypoint_head.'), strict=True)
    rois = torch.randn(1, 256, 14, 14, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = head(rois)
    k = 'roi_heads.keypoint_head.'
    def bn(t, p):
        return F.batch_norm(t, w[p + '.running_mean'], w[p + '.running_var'], w[p + '.weight'], w[p + '.bias'],
                            False, 0.0, EPS)

    x = F.relu(d2_conv(rois.double(), w, k + 'conv_channel', norm=False))
    for i in range(1, 9):
        if i % 4 == 1:                                                   # SABlock
            m = '%sMHSA_%d.' % (k, i)
            x = x + authors_mhsa(F.relu(bn(x, m + 'norm1')), w, m + 'MHSA.')
            x = x + d2_conv(F.relu(bn(x, m + 'norm2')), w, m + 'conv_fc', padding=1, norm=False)
        x = F.relu(d2_conv(x, w, '%sconv_fcn%d' % (k, i), padding=1, norm=False))
    x = F.conv_transpose2d(x, w[k + 'score_lowres.weight'], w[k + 'score_lowres.bias'], stride=2, padding=1)
    _close(ours, F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False))


def test_converted_zoo_model_runs_on_a_coco_image(repo_root, coco_subset, tmp_path, one_thread):
    """The whole chain on a real image: zoo-named weights -> convert -> strict load into keypoint_rcnn.R50 built
    with the returned overrides -> the dataset's Detectron2 preprocessing -> the predictor's COCO instances."""
    from cvpack.data import collate
    from cvpack.exp import load_exp
    from projects.GCPose.gcpose.predictor import DetectionPredictor
    with open(MANIFEST) as f:
        keys = json.load(f)['variants']['zoo_R50']
    w = {k: v.float() if v.is_floating_point() else v for k, v in _weights(keys, seed=5).items()}
    cfg = load_exp(osp.join(repo_root, 'projects', 'GCPose', 'exps', 'keypoint_rcnn.R50.coco'), build=False)[0]
    out = convert({'model': w, '__author__': 'Detectron2 Model Zoo'}, cfg)
    cfg = apply_overrides(cfg, out['cfg'])
    cfg.DATASET.ROOT = coco_subset
    cfg.INPUT.MIN_SIZE_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 96, 30       # small and quick
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 0.0, 3
    model = build_model(cfg).eval()
    model.load_state_dict(out['state_dict'], strict=True)
    assert torch.equal(model.roi_heads.keypoint_head.convs[7].weight, w['roi_heads.keypoint_head.conv_fcn8.weight'])
    ds = DetectionDataset(cfg, 'val')
    sample, rec = ds[0], ds.records[0]
    h, w_ = sample['image_size']
    # Detectron2: read_image (PIL, RGB -> BGR), ResizeShortestEdge's ResizeTransform: PIL bilinear
    bgr = np.asarray(Image.open(rec['file']).convert('RGB'))[:, :, ::-1]
    raw = np.asarray(Image.fromarray(np.ascontiguousarray(bgr)).resize((w_, h), Image.BILINEAR)).astype(np.float32)
    hand = torch.from_numpy((raw - np.float32([103.53, 116.28, 123.675])).transpose(2, 0, 1).copy())
    assert torch.equal(sample['image'], hand)                                     # BGR, mean, std 1
    instances = DetectionPredictor(cfg)(model, collate([sample]))
    assert len(instances) == 3
    H, W = rec['height'], rec['width']
    for inst in instances:
        x, y, bw, bh = inst['bbox']
        assert inst['image_id'] == rec['image_id'] and 0 <= inst['score'] <= 1
        assert -1e-3 <= x and x + bw <= W + 1e-3 and -1e-3 <= y and y + bh <= H + 1e-3
        assert inst['keypoints'].shape == (17, 3) and np.isfinite(inst['keypoints']).all()


