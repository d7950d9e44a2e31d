"""Detection preset: the Detectron2 3x schedule at 8 processes is the GCPose README schedule at 1
(docs/reference/mlpe_hsrnet_gcpose.md §3.4, §4.1)."""
import pytest

from projects.GCPose.gcpose.preset import detection_config
from cvpack.exp import load_exp
from cvpack.solver.lr_scheduler import resolve_solver


def test_schedule_scaling(tmp_path):
    cfg = detection_config(str(tmp_path / 'exp'))
    one = resolve_solver(cfg.SOLVER, 1)
    eight = resolve_solver(cfg.SOLVER, 8)
    assert one['LR'] == pytest.approx(0.0025) and eight['LR'] == pytest.approx(0.02)
    assert (one['MAX_ITER'], list(one['STEPS']), one['WARMUP_ITERS']) == (2160000, [1680000, 2000000], 1000)
    assert (eight['MAX_ITER'], list(eight['STEPS']), eight['WARMUP_ITERS']) == (270000, [210000, 250000], 1000)
    assert cfg.INPUT.MIN_SIZE_TRAIN == [640, 672, 704, 736, 768, 800] and cfg.INPUT.MIN_SIZE_TEST == 800
    assert cfg.DATASET.PIPELINE == 'detection' and cfg.SOLVER.IMS_PER_GPU == 2


def test_exps(repo_root):
    import os.path as osp
    exps = osp.join(repo_root, 'projects', 'GCPose', 'exps')
    cfg, model = load_exp(osp.join(exps, 'keypoint_rcnn.R50.coco'))
    assert sum(p.numel() for p in model.roi_heads.keypoint_head.parameters()) == 17838097
    assert model.roi_heads.kp_features == ['p2', 'p3', 'p4', 'p5'] and model.roi_heads.enlarge == 1.0
    # ImageNet init for the frozen stem/res2 + FrozenBN (torchvision files: stride in 3x3, RGB, ImageNet std)
    assert cfg.MODEL.PRETRAINED == 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
    cfg, _ = load_exp(osp.join(exps, 'gcpose.R101.coco'), build=False)
    assert cfg.MODEL.BACKBONE == 'resnet101' and cfg.MODEL.ROI_KEYPOINT_HEAD.GCM_POSITIONS == [0, 4]
    assert cfg.MODEL.PRETRAINED == 'https://download.pytorch.org/models/resnet101-5d3b4d8f.pth'
    cfg, _ = load_exp(osp.join(exps, 'gcpose.R50.coco'), build=False)
    assert cfg.MODEL.PRETRAINED == 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
    assert (cfg.MODEL.RESNET.STRIDE_IN_1X1, cfg.DATASET.COLOR_RGB) == (False, True)


def test_preset_keys_are_all_read(tmp_path):
    """No key the detection path ignores: flip/decoder/rescore belong to the top-down predictor, the padding
    multiple is INPUT.SIZE_DIVISIBILITY (read by the model), the keypoint count is DATASET.KEYPOINT.NUM."""
    from projects.GCPose.gcpose import add_gcpose_config, build_model
    cfg = add_gcpose_config(detection_config(str(tmp_path / 'exp')))
    assert not {'FLIP', 'RESCORE', 'DECODER'} & set(cfg.TEST)
    assert 'NUM_KEYPOINTS' not in cfg.MODEL.ROI_KEYPOINT_HEAD and 'SIZE_DIVISIBILITY' not in cfg.DATALOADER
    cfg.MODEL.BACKBONE = 'resnet18'
    cfg.MODEL.ROI_KEYPOINT_HEAD.CONV_DIM, cfg.MODEL.ROI_KEYPOINT_HEAD.GCM_POSITIONS = 8, []
    cfg.DATASET.KEYPOINT.NUM = 5
    cfg.INPUT.SIZE_DIVISIBILITY = 64
    model = build_model(cfg)
    assert model.roi_heads.keypoint_head.score_lowres.out_channels == 5 and model.size_divisibility == 64
    cfg.INPUT.SIZE_DIVISIBILITY = 48
    with pytest.raises(ValueError, match='SIZE_DIVISIBILITY'):
        build_model(cfg)
