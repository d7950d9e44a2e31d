"""TEST.MAX_IMAGES and the box-source coverage line through RSN's real Res18.coco test.py on the shipped COCO subset.

The AP of a MAX_IMAGES run is checked against pycocotools run by hand on an annotation file cut to those images."""
import contextlib
import io
import json
import os.path as osp

import pytest
import torch

from cvpack.engine import checkpoint as ck
from cvpack.engine.utils import resolve_cfg
from cvpack.exp import load_exp
from tests.engine.real_runs import launcher

from projects.RSN.rsn import build_model

SMALL = ['INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]', 'MODEL.BLOCKS', '[1, 1, 1, 1]',
         'MODEL.UPSAMPLE_CHANNEL_NUM', '32', 'MODEL.DEVICE', 'cpu', 'DATALOADER.NUM_WORKERS', '0', 'TEST.FLIP', 'False']


def _run_test(exp, env, opts):
    import subprocess
    proc = subprocess.run(launcher(1) + ['test.py'] + opts, cwd=exp, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def _coco_ap_by_hand(ann_file, results_file, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    data = json.load(open(ann_file))
    keep = set(image_ids)
    data['images'] = [i for i in data['images'] if i['id'] in keep]
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in keep]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(json.load(open(results_file))), 'keypoints')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.slow
def test_max_images_and_box_coverage(repo_root, coco_subset, sub_env, tmp_path):
    exp = osp.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco')
    cfg = resolve_cfg(load_exp(exp, build=False)[0], SMALL)
    torch.manual_seed(0)
    weights = str(tmp_path / 'w.pth')
    ck.save_checkpoint({'model': build_model(cfg).state_dict()}, weights)
    common = ['--checkpoint', weights, 'DATASET.ROOT', coco_subset, 'OUTPUT_DIR', str(tmp_path / 'out')] + SMALL

    # GT boxes on the first 3 images: their people only, scored on those images only
    out = _run_test(exp, sub_env, common + ['TEST.USE_GT_BBOX', 'True', 'TEST.MAX_IMAGES', '3'])
    test_dir = tmp_path / 'out' / 'test_dir'
    ann = osp.join(coco_subset, cfg.DATASET.VAL_ANN)
    from cvpack.data import build_dataset
    records = build_dataset(resolve_cfg(cfg, ['DATASET.ROOT', coco_subset, 'TEST.USE_GT_BBOX', 'True']), 'val').records
    first = list(dict.fromkeys(r['image_id'] for r in records))[:3]
    people = sum(r['image_id'] in first for r in records)
    assert 'TEST.MAX_IMAGES 3: %d samples of the first 3 images' % people in out
    results = json.load(open(test_dir / 'results.json'))
    assert len(results) == people and {r['image_id'] for r in results} == set(first)
    metrics = json.load(open(test_dir / 'metrics.json'))
    assert metrics['num_instances'] == people
    assert metrics['metrics']['AP'] == _coco_ap_by_hand(ann, str(test_dir / 'results.json'), first)

    # the default box source of the shipped subset: a detection file covering 4 of the 96 val images, said so
    out = _run_test(exp, sub_env, common)
    assert ('people on 4 images of the 96 annotated (the detections cover only these; TEST.USE_GT_BBOX True '
            'tests every annotated person)') in out


def test_coco_evaluator_restricted_to_images(coco_subset, tmp_path):
    """Perfect predictions (the GT keypoints) for the first 3 images only: AP 1 on those images (restrict_to),
    less over the whole file, where the other images' people count as missed."""
    import numpy as np
    from easydict import EasyDict as edict
    from cvpack.evaluation.build import CocoEvaluator
    cfg = edict(DATASET=edict(NAME='COCO', ROOT=coco_subset, VAL_ANN='annotations/person_keypoints_val2017.json',
                              META_FILE=''),
                TEST=edict(NMS='none', NMS_THRESH=0.9, USE_GT_BBOX=True))
    data = json.load(open(osp.join(coco_subset, cfg.DATASET.VAL_ANN)))
    first = [i['id'] for i in data['images'] if any(a['image_id'] == i['id'] and a['num_keypoints'] > 0
                                                    for a in data['annotations'])][:3]
    instances = [{'image_id': a['image_id'], 'keypoints': np.asarray(a['keypoints'], float).reshape(17, 3),
                  'score': 1.0, 'area': a['area']}
                 for a in data['annotations'] if a['image_id'] in first and a['num_keypoints'] > 0]
    whole = CocoEvaluator(cfg)(instances, str(tmp_path))
    restricted = CocoEvaluator(cfg)
    restricted.restrict_to(first, list(range(len(instances))))
    part = restricted(instances, str(tmp_path))
    assert part['AP'] == 1.0 and whole['AP'] < 0.5


def test_mpii_evaluator_restricted_to_records(mpii_subset, tmp_path):
    """MPII PCKh on the records of the first images (TEST.MAX_IMAGES): the GT joints of records 0..1 give 100 on
    those records; unrestricted, two predictions for all the records of the file are refused."""
    import numpy as np
    import pytest
    from easydict import EasyDict as edict
    from cvpack.evaluation.build import MpiiEvaluator
    from cvpack.evaluation.pckh import load_mpii_gt
    cfg = edict(DATASET=edict(NAME='MPII', ROOT=mpii_subset, VAL_ANN='annotations/valid.json', KEYPOINT=edict(NUM=16)),
                TEST=edict(PCKH_GT=''))
    gt = load_mpii_gt(osp.join(mpii_subset, cfg.DATASET.VAL_ANN))
    assert len(gt['joints']) > 2
    instances = [{'index': i, 'image_id': 'x', 'keypoints': np.concatenate([gt['joints'][i], np.ones((16, 1))], 1)}
                 for i in (0, 1)]
    evaluator = MpiiEvaluator(cfg)
    with pytest.raises(ValueError, match='PCKh: 2 predictions for 5 records'):
        evaluator(instances, str(tmp_path))
    evaluator.restrict_to(['x'], [1, 0])
    table = evaluator(instances, str(tmp_path))
    assert table['Mean'] == 100.0
    # its declared metric names (cvpack.protocols.MetricNames) are the table's numbers, for TEST.BEST_METRIC
    assert evaluator.metric_names() == [k for k, v in table.items() if isinstance(v, float)]
