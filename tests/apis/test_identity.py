"""The API runs test.py's predictor: same boxes -> exactly the keypoints and scores of test.py's results.json."""
import json
import os.path as osp

from cvpack.apis import PoseEstimator
from cvpack.data import build_dataset
from cvpack.engine import test_main as run_test_main
from cvpack.exp import import_exp_module, load_exp
from tests.apis.helpers import RSN18, exp_path, random_weights, subset_gt


def test_api_equals_test_py_results(tmp_path, repo_root, coco_subset, one_thread):
    """RSN-18 (random weights), GT boxes of 2 subset images, flip test, megvii decoder and rescoring, OKS-NMS."""
    nms = 'oks'
    exp = exp_path(repo_root, RSN18)
    weights = random_weights(exp, tmp_path / 'rsn18.pth')
    gt, data = subset_gt(coco_subset, tmp_path / 'val2.json', 2)
    opts = ['MODEL.DEVICE', 'cpu', 'DATASET.ROOT', coco_subset, 'DATASET.VAL_ANN', gt, 'TEST.USE_GT_BBOX', 'True',
            'OUTPUT_DIR', str(tmp_path / 'out'), 'DATALOADER.NUM_WORKERS', '0', 'TEST.NMS', nms]
    cfg, _ = load_exp(exp, build=False)
    run_test_main(cfg, import_exp_module(exp, 'network').build_model, argv=['--checkpoint', weights] + opts)
    results = json.loads((tmp_path / 'out' / 'test_dir' / 'results.json').read_text())

    # the GT boxes test.py cropped (its val records), as the annotation file has them, one list per image
    test_cfg, _ = load_exp(exp, opts, build=False)
    records = build_dataset(test_cfg, 'val').records
    ann_box = {a['id']: a['bbox'] for a in data['annotations']}
    paths = sorted({r['image_path'] for r in records})
    boxes = [[ann_box[r['ann_id']] for r in records if r['image_path'] == p] for p in paths]
    est = PoseEstimator(exp, weights, device='cpu', opts=['TEST.NMS', nms])
    people = est(paths, boxes=boxes)
    assert len(paths) == 2 and sum(len(b) for b in boxes) >= 3
    compared = 0
    for path, found in zip(paths, people):
        image_id = int(osp.splitext(osp.basename(path))[0])
        expected = [r for r in results if r['image_id'] == image_id]   # sorted by score, as the API
        assert len(found) == len(expected) and found
        for person, res in zip(found, expected):
            assert person.to_coco(image_id)['keypoints'] == res['keypoints']   # exact, not approx
            assert person.score == res['score']
            assert person.keypoints.shape == (17, 3) and person.keypoint_names[0] == 'nose'
            compared += 1
    assert compared == len(results)
