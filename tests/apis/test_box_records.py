"""Boxes given to the API are cropped exactly as test.py crops the same boxes from a detection file, per pipeline."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from cvpack.data import build_dataset
from cvpack.data.io import read_image
from cvpack.config import clone
from cvpack.exp import load_exp
from tests.apis.helpers import RSN18, exp_path

EXPS = {'megvii': RSN18, 'simple_baselines': ('projects', 'HSRNet', 'exps', 'hsrnet59.256x192.coco'),
        'cpn': ('projects', 'MLPE', 'exps', 'mlpe_rs50_256x192_a')}


@pytest.mark.parametrize('pipeline', sorted(EXPS))
def test_box_record_is_the_detection_record(pipeline, repo_root, coco_subset):
    cfg = clone(load_exp(exp_path(repo_root, EXPS[pipeline]), build=False)[0])   # load_exp's cfg is frozen
    assert cfg.DATASET.PIPELINE == pipeline
    cfg.DATASET.ROOT = coco_subset
    cfg.TEST.USE_GT_BBOX = False
    cfg.TEST.DET_FILE = 'det_json/COCO_val2017_detections_AP_H_56_person.json'
    cfg.TEST.DET_SCORE_THRESH = 0.0
    val = build_dataset(cfg, 'val')
    with open(osp.join(coco_subset, cfg.TEST.DET_FILE)) as f:
        dets = [d for d in json.load(f) if d['category_id'] == 1]
    assert len(val.records) == len(dets)
    api = build_dataset(cfg, 'val', records=[])
    for i in (0, 1, len(dets) - 1):
        det, rec = dets[i], val.records[i]
        image = read_image(rec['image_path'], rgb=bool(cfg.DATASET.COLOR_RGB))
        mine = api.box_record(det['bbox'], det['score'], det['image_id'], image=image)
        for key in ('center', 'scale', 'bbox', 'score', 'image_id') + (('box_xyxy',) if pipeline == 'cpn' else ()):
            np.testing.assert_array_equal(mine[key], rec[key])
        api.records = [mine]
        assert torch.equal(api[0]['image'], val[i]['image'])                   # the same crop, bit for bit
        assert torch.equal(api[0]['center'], val[i]['center']) and torch.equal(api[0]['scale'], val[i]['scale'])
