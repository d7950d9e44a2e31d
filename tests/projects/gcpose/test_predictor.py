"""Detection predictor + evaluator: an oracle model returning the GT gives keypoint AP 1 and box AP 1.

Checks the coordinate conventions end to end: the model works in continuous pixels (GT + 0.5,
docs/reference/mlpe_hsrnet_gcpose.md §4.1), the predictor exports pixel indices (-0.5) and xywh boxes, the shared COCO
evaluator scores them.
"""
import json

import numpy as np
import pytest
import torch
from torch import nn

from projects.GCPose.gcpose.preset import detection_config
from projects.GCPose.gcpose.evaluator import DetectionEvaluator
from projects.GCPose.gcpose.predictor import DetectionPredictor


class _Oracle(nn.Module):
    def __init__(self, per_image):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.per_image = list(per_image)

    def forward(self, images, targets):
        n = len(images)
        out, self.per_image = self.per_image[:n], self.per_image[n:]
        return out


def _gt_outputs(data, ids):
    """Model outputs (per image: xyxy boxes, scores, keypoints) that are the ground truth of ``data`` for ``ids``."""
    per_image = []
    for i in ids:
        anns = [a for a in data['annotations'] if a['image_id'] == i]
        boxes = torch.tensor([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]]
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        kps = torch.tensor([a['keypoints'] for a in anns], dtype=torch.float32).reshape(-1, 17, 3)
        kps[..., :2] += 0.5                       # continuous coordinates, as the model outputs
        kps[..., 2] = 0.9
        per_image.append({'boxes': boxes, 'scores': torch.linspace(1, 0.5, len(anns)), 'keypoints': kps})
    return per_image


def test_oracle_scores_one(tmp_path, coco_subset):
    with open('%s/annotations/person_keypoints_val2017.json' % coco_subset) as f:
        data = json.load(f)
    data['images'] = data['images'][:4]
    ids = [i['id'] for i in data['images']]
    # people with keypoints only: pycocotools ignores keypoint-less GT, so it would count them as false positives
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in ids and not a['iscrowd']
                           and a['num_keypoints'] > 0]
    gt = tmp_path / 'gt.json'
    gt.write_text(json.dumps(data))
    per_image = _gt_outputs(data, ids)
    model = _Oracle(per_image)
    batch = {'image': torch.zeros(4, 3, 32, 32), 'image_size': [(32, 32)] * 4, 'scale': [(1.0, 1.0)] * 4,
             'image_id': ids}
    instances = DetectionPredictor()(model, batch)
    assert len(instances) == len(data['annotations'])
    first = [a for a in data['annotations'] if a['image_id'] == ids[0]][0]
    assert np.allclose(instances[0]['keypoints'][:, :2], np.reshape(first['keypoints'], (17, 3))[:, :2], atol=1e-4)
    assert instances[0]['bbox'] == pytest.approx(first['bbox'], abs=1e-3)
    cfg = detection_config(str(tmp_path / 'exp'))
    cfg.DATASET.ROOT = coco_subset
    cfg.DATASET.VAL_ANN = str(gt)
    metrics = DetectionEvaluator(cfg)(instances, str(tmp_path))
    assert metrics['AP'] == pytest.approx(1.0) and metrics['box_AP'] == pytest.approx(1.0)


def test_exps_name_predictor_and_evaluator_core_imports_no_project(tmp_path, repo_root):
    """Layering: cvpack builds the GCPose predictor/evaluator from cfg.TEST.PREDICTOR / EVALUATOR strings set by
    the exps; no module of cvpack/ names the projects package."""
    import os
    import os.path as osp

    from cvpack.evaluation import build_evaluator
    from cvpack.exp import load_exp
    from cvpack.inference import build_predictor
    cfg, _ = load_exp(osp.join(repo_root, 'projects', 'GCPose', 'exps', 'gcpose.R50.coco'), build=False)
    assert type(build_predictor(cfg)) is DetectionPredictor
    assert type(build_evaluator(cfg)) is DetectionEvaluator
    bare = detection_config(str(tmp_path / 'exp'))          # the preset names them (no core default for 'detection')
    assert (type(build_predictor(bare)), type(build_evaluator(bare))) == (DetectionPredictor, DetectionEvaluator)
    bare.TEST.PREDICTOR = ''
    with pytest.raises(KeyError, match='TEST.PREDICTOR'):
        build_predictor(bare)
    bare.TEST.PREDICTOR = 'projects.GCPose.gcpose.predictor.DetectionPredictor'
    with pytest.raises(ValueError, match="TEST.PREDICTOR must be a 'module:Class'"):
        build_predictor(bare)
    bare.TEST.EVALUATOR = 'projects.GCPose.gcpose.evaluator:Nope'
    with pytest.raises(ImportError, match='TEST.EVALUATOR'):
        build_evaluator(bare)
    offenders = []
    for root, _, files in os.walk(osp.join(repo_root, 'cvpack')):
        for name in files:
            if name.endswith('.py'):
                with open(osp.join(root, name)) as f:
                    if 'projects.' in f.read():
                        offenders.append(osp.join(root, name))
    assert offenders == []


def test_str_image_ids_are_kept_from_records_to_results(tmp_path, coco_subset):
    """String image ids (allowed by the shared validation, as COCO conversions use them): the GCPose records cast
    them with int() ("invalid literal for int() with base 10: '...'", no file named) and the predictor again;
    '000000397133' would have become 397133, an image the GT does not have. They are kept as given, end to end."""
    from cvpack.data.io import ImageReadError
    from projects.GCPose.gcpose.data import DetectionDataset, load_person_records
    with open('%s/annotations/person_keypoints_val2017.json' % coco_subset) as f:
        data = json.load(f)
    data['images'] = data['images'][:2]
    for img in data['images']:
        img['id'] = '%012d' % img['id']
    ids = [i['id'] for i in data['images']]
    data['annotations'] = [dict(a, image_id='%012d' % a['image_id']) for a in data['annotations']
                           if '%012d' % a['image_id'] in ids and not a['iscrowd'] and a['num_keypoints'] > 0]
    gt = tmp_path / 'gt.json'
    gt.write_text(json.dumps(data))
    recs = load_person_records(str(gt), '%s/images/val2017' % coco_subset, True)
    assert [r['image_id'] for r in recs] == ids and all(isinstance(r['image_id'], str) for r in recs)
    cfg = detection_config(str(tmp_path / 'exp'))
    cfg.DATASET.ROOT = coco_subset
    cfg.DATASET.VAL_ANN = str(gt)
    ds = DetectionDataset(cfg, 'val')
    ds.records[1]['file'] = str(tmp_path / 'gone.jpg')      # a read error names the str id and the file
    with pytest.raises(ImageReadError, match=r"gone\.jpg.*image_id %s of .*gt\.json" % ids[1]):
        ds[1]
    per_image = _gt_outputs(data, ids)
    batch = {'image': torch.zeros(2, 3, 32, 32), 'image_size': [(32, 32)] * 2, 'scale': [(1.0, 1.0)] * 2,
             'image_id': ids}
    instances = DetectionPredictor()(_Oracle(per_image), batch)
    assert [i['image_id'] for i in instances] == [a['image_id'] for a in data['annotations']]
    metrics = DetectionEvaluator(cfg)(instances, str(tmp_path))
    assert metrics['AP'] == pytest.approx(1.0) and metrics['box_AP'] == pytest.approx(1.0)
