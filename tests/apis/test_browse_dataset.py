"""python -m cvpack.tools.browse_dataset: GT drawings, augmented crops with their targets, exact de-normalisation."""
import cv2
import numpy as np

from cvpack.data.topdown import normalize_lut
from cvpack.exp import load_exp
from cvpack.tools import browse_dataset as browse
from tests.apis.helpers import GCPOSE, RSN18, exp_path


def test_ground_truth_images(repo_root, coco_subset, tmp_path):
    exp = exp_path(repo_root, RSN18)
    written = browse.main([exp, '--n', '2', '--out', str(tmp_path), '--split', 'val', '--opts',
                           'DATASET.ROOT', coco_subset])
    assert len(written) == 2
    cfg, _ = load_exp(exp, ['DATASET.ROOT', coco_subset, 'TEST.USE_GT_BBOX', 'True'], build=False)
    from cvpack.data import build_dataset
    records = build_dataset(cfg, 'val').records
    first = records[0]
    drawn = cv2.imread(str(tmp_path / ('gt_%d.png' % first['image_id'])))
    raw = cv2.imread(first['image_path'])
    assert drawn.shape == raw.shape
    people = [r for r in records if r['image_id'] == first['image_id']]
    for r in people:   # every labelled joint is drawn
        for x, y, v in r['joints']:
            if v > 0:
                assert np.any(drawn[int(round(y)), int(round(x))] != raw[int(round(y)), int(round(x))])
    # far from every box (with the line width) nothing changes
    mask = np.ones(raw.shape[:2], bool)
    for r in people:
        x, y, w, h = r['bbox']
        mask[max(0, int(y) - 4):int(y + h) + 5, max(0, int(x) - 4):int(x + w) + 5] = False
    assert mask.any() and np.array_equal(drawn[mask], raw[mask])


def test_denormalize_inverts_the_pipelines(repo_root):
    crop = np.random.RandomState(0).randint(0, 256, (8, 6, 3)).astype(np.uint8)
    for parts in (RSN18, ('projects', 'HSRNet', 'exps', 'hsrnet59.256x192.coco')):   # BGR and RGB exps
        cfg, _ = load_exp(exp_path(repo_root, parts), build=False)
        ordered = crop[..., ::-1] if cfg.DATASET.COLOR_RGB else crop   # the dataset's channel order
        tensor = cv2.LUT(np.ascontiguousarray(ordered), normalize_lut(cfg.INPUT.MEANS, cfg.INPUT.STDS))
        np.testing.assert_array_equal(browse.denormalize(tensor.transpose(2, 0, 1), cfg), crop)


def test_overlay_heatmaps():
    image = np.full((32, 24, 3), 100, np.uint8)
    target = np.zeros((2, 3, 8, 6), np.float32)
    target[1, 2, 4, 3] = 255.0          # the last (sharpest) kernel's map is shown
    target[0, 0, 1, 1] = 255.0          # not shown
    out = browse.overlay_heatmaps(image, target)
    assert np.any(out[17, 13] != 100)                          # the peak, upsampled x4
    assert np.array_equal(out[:8, :8], image[:8, :8])          # no target there
    assert np.array_equal(browse.overlay_heatmaps(image, np.zeros((3, 8, 6))), image)


def test_augmented_crops_with_targets(repo_root, coco_subset, tmp_path):
    exp = exp_path(repo_root, RSN18)
    args = [exp, '--n', '2', '--augmented', '--opts', 'DATASET.ROOT', coco_subset]
    a = browse.main(args[:1] + ['--out', str(tmp_path / 'a')] + args[1:])
    b = browse.main(args[:1] + ['--out', str(tmp_path / 'b')] + args[1:])
    assert [p.split('/')[-1] for p in a] == ['aug_000.png', 'aug_001.png']
    for pa, pb in zip(a, b):   # seeded: the same augmentation twice
        ia, ib = cv2.imread(pa), cv2.imread(pb)
        assert ia.shape == (256, 192, 3) and np.array_equal(ia, ib)
    cfg, _ = load_exp(exp, ['DATASET.ROOT', coco_subset], build=False)
    from cvpack.data import build_dataset
    ds = build_dataset(cfg, 'train')
    ds.seed(0)
    sample = ds[0]
    expected = browse.overlay_heatmaps(browse.denormalize(sample['image'], cfg), sample['target'])
    np.testing.assert_array_equal(cv2.imread(a[0]), expected)


def test_whole_image_samples(repo_root, coco_subset, tmp_path):
    written = browse.main([exp_path(repo_root, GCPOSE), '--n', '1', '--augmented', '--out', str(tmp_path), '--opts',
                           'DATASET.ROOT', coco_subset, 'INPUT.MIN_SIZE_TRAIN', '[160]', 'INPUT.MAX_SIZE_TRAIN', '400'])
    image = cv2.imread(written[0])
    assert min(image.shape[:2]) == 160
