"""Exact resume with the REAL top-down pipeline (megvii TopDownDataset on dataset/coco_subset, NUM_WORKERS 0):
each sample's augmentations come from its key (SEED, pass, position; cvpack.data.samplers.sample_rng), so
N straight == N/2 + resume + N/2 with no dataset RNG in the checkpoint (tests/engine/test_resume_workers.py:
the same with worker processes, 1 and 2 ranks). A dataset drawing from the workers' global RNGs (the toy) gets
them reseeded from (SEED, rank, start iteration): no replay after a resume."""
import os


from cvpack.engine import checkpoint as ck
from cvpack.engine import train_main
from cvpack.exp import load_exp
from projects.RSN.rsn import build_model


def _opts(coco_subset, out):
    return ['DATASET.ROOT', coco_subset, 'INPUT_SHAPE', '[64, 48]', 'OUTPUT_SHAPE', '[16, 12]',
            'MODEL.BLOCKS', '[1, 1, 1, 1]', 'MODEL.UPSAMPLE_CHANNEL_NUM', '32', 'MODEL.DEVICE', 'cpu',
            'SOLVER.IMS_PER_GPU', '2', 'SOLVER.MAX_ITER', '4', 'SOLVER.CHECKPOINT_PERIOD', '2',
            'SOLVER.WARMUP_ITERS', '1', 'SOLVER.REFERENCE_WORLD_SIZE', 'None', 'SOLVER.LOG_PERIOD', '1',
            'DATALOADER.NUM_WORKERS', '0', 'OUTPUT_DIR', str(out)]


def _resume_from(ckpt, out, cfg, coco_subset):
    os.makedirs(out)
    ck.save_checkpoint(ckpt, str(out / 'iter-2.pth'))
    ck.link_last(str(out / 'iter-2.pth'))
    train_main(cfg, build_model, argv=_opts(coco_subset, out))
    return ck.load_checkpoint(str(out / 'iter-4.pth'))['model']


def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_real_topdown_resume_is_exact(repo_root, coco_subset, tmp_path):
    cfg, _ = load_exp(os.path.join(repo_root, 'projects', 'RSN', 'exps', 'Res18.coco'), build=False)
    train_main(cfg, build_model, argv=_opts(coco_subset, tmp_path / 'A'))
    a4 = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-4.pth'))['model']
    a2 = ck.load_checkpoint(str(tmp_path / 'A' / 'iter-2.pth'))
    assert 'dataset' not in a2['rng'][0]                   # nothing of the dataset to restore
    assert _max_diff(a4, _resume_from(a2, tmp_path / 'B', cfg, coco_subset)) == 0


def _noise(batch, n):
    """ToyTrain's augmentation draw of each sample: image = base(index) + noise, base[0, 0] = -(i + 1) / n."""
    return [round(float(img[0, 0, 0]) + (int(i) + 1) / n, 6) for img, i in zip(batch['image'], batch['index'])]


def test_workers_reseeded_from_start_iteration(toy, toy_exp):
    """NUM_WORKERS > 0: the worker RNGs come from (SEED, rank, start iteration), so a resumed loader does not
    replay the first iterations' augmentations; the same start iteration gives the same draws."""
    from cvpack.engine.launch import DistContext
    from cvpack.engine.trainer import Trainer
    from cvpack.engine.utils import resolve_cfg
    _, cfg = toy_exp
    cfg = resolve_cfg(cfg, ['DATALOADER.NUM_WORKERS', '1', 'TENSORBOARD_DIR', 'None'])
    trainer = Trainer(cfg, toy.build_model, DistContext(), toy.dataset_builder, toy.collate)
    n = cfg.DATASET.TOY_TRAIN_LEN

    def first_batches(start, count):
        trainer.start_iter = start
        it = iter(trainer.build_loader())
        return [next(it) for _ in range(count)]

    straight = first_batches(0, 3)
    resumed = first_batches(2, 1)[0]
    assert resumed['index'].tolist() == straight[2]['index'].tolist()    # the sampler continues exactly
    assert _noise(resumed, n) != _noise(straight[0], n)                   # no replay of iteration 0's draws
    assert _noise(first_batches(2, 1)[0], n) == _noise(resumed, n)        # deterministic


def test_det_stats_are_logged(repo_root, coco_subset, tmp_path, caplog):
    """The val set built from TEST.DET_FILE: how many detections were dropped, and why, is in the test log."""
    import json
    import logging
    from cvpack.data import build_dataset
    from cvpack.engine.tester import _log_det_stats
    from cvpack.engine.utils import resolve_cfg
    cfg, _ = load_exp(os.path.join(repo_root, 'projects', 'RSN', 'exps', 'RSN18.coco'), build=False)
    dets = json.load(open(os.path.join(coco_subset, cfg.TEST.DET_FILE)))
    thresh = min(d['score'] for d in dets)          # keeps every shipped detection ...
    dets[0] = dict(dets[0], score=thresh / 2)      # ... but this one
    dets += [dict(dets[1], category_id=2), dict(dets[1], image_id=999999901)]
    det_file = tmp_path / 'dets.json'
    det_file.write_text(json.dumps(dets))
    cfg = resolve_cfg(cfg, ['DATASET.ROOT', coco_subset, 'TEST.DET_FILE', str(det_file), 'TEST.USE_GT_BBOX', 'False',
                            'TEST.DET_SCORE_THRESH', repr(thresh)])
    ds = build_dataset(cfg, 'val')
    log = logging.getLogger('test_det_stats')
    with caplog.at_level(logging.INFO, logger='test_det_stats'):
        _log_det_stats(ds, log)
    assert len(ds) == len(dets) - 3
    assert ('detections skipped: 1 below TEST.DET_SCORE_THRESH, 1 of another category, 1 on images not in the '
            'annotation file') in caplog.text
