"""Time mmpose 1.3.2's top-down training pipeline, one sample at a time; run by a side environment's python.

    /path/to/mmpose-venv/bin/python tools/bench_mmpose_data_side.py RECORDS.json --kernels 15 11 9 7 5

Started by tools/bench_data.py ``--mmpose-python`` as a long-lived child, so that its chunks interleave with
the other pipelines' chunks in the same run. ``RECORDS.json`` holds the training records that bench_data uses for
its own pipelines: ``{"records": [{"img_path", "bbox" (xyxy), "keypoints" (K, 2), "visible" (K,)}, ...]}``;
each sample is a deep copy of its record plus deep copies of mmpose's own COCO meta-information (flip indices,
upper/lower body ids, ...), as mmpose's ``CocoDataset.get_data_info`` gives it. The pipeline is mmpose's RSN/MSPN
COCO train pipeline:
``LoadImage``, ``GetBBoxCenterScale``, ``RandomFlip``, ``RandomHalfBody``, ``RandomBBoxTransform``,
``TopdownAffine`` (192x256) and ``GenerateTarget(multilevel=True)`` with one ``MegviiHeatmap`` per kernel size
(``PackPoseInputs`` is added with ``--pack``). Protocol: after the line ``ready``, each stdin line ``START STOP``
runs samples START..STOP-1 (records taken modulo their number) and answers one JSON line
``{"wall": s, "cpu": s}`` (perf_counter and process_time of that chunk); ``quit`` or end of input stops it.
One thread (``cv2.setNumThreads(1)``). Needs only mmpose, mmengine and mmcv's pure-python parts: the modules
mmpose imports at module level but this pipeline never runs are replaced by empty modules (as in
tools/bench_mmpose_side.py).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_mmpose_side import _EmptyModules  # noqa: E402


def build_pipeline(kernels, pack):
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    import mmpose.codecs  # noqa: F401  (registers MegviiHeatmap)
    import mmpose.datasets.transforms  # noqa: F401  (registers the transforms)
    init_default_scope('mmpose')
    codec = [dict(type='MegviiHeatmap', input_size=(192, 256), heatmap_size=(48, 64), kernel_size=k)
             for k in kernels]
    steps = [dict(type='LoadImage'), dict(type='GetBBoxCenterScale'),
             dict(type='RandomFlip', direction='horizontal'), dict(type='RandomHalfBody'),
             dict(type='RandomBBoxTransform'), dict(type='TopdownAffine', input_size=(192, 256)),
             dict(type='GenerateTarget', multilevel=True, encoder=codec)]
    if pack:
        steps.append(dict(type='PackPoseInputs'))
    return Compose(steps)


def data_infos(spec):
    """mmpose's per-instance ``data_info`` dicts (what its CocoDataset parses from the annotations) from the
    records, and the meta-information its ``get_data_info`` adds to each sample (mmpose's COCO meta file)."""
    import warnings

    import numpy as np
    from mmpose.datasets import CocoDataset
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    with warnings.catch_warnings():   # the meta file is found in mmpose's package, with a warning
        warnings.simplefilter('ignore')
        meta = parse_pose_metainfo(CocoDataset.METAINFO)
    meta = {k: meta[k] for k in ('upper_body_ids', 'lower_body_ids', 'flip_pairs', 'dataset_keypoint_weights',
                                 'flip_indices', 'skeleton_links')}
    out = []
    for i, r in enumerate(spec['records']):
        out.append(dict(img_path=r['img_path'], id=i, img_id=i, bbox=np.array([r['bbox']], np.float32),
                        bbox_score=np.ones(1, np.float32), keypoints=np.array([r['keypoints']], np.float32),
                        keypoints_visible=np.array([r['visible']], np.float32)))
    return out, meta


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('records')
    parser.add_argument('--kernels', type=int, nargs='+', default=[15, 11, 9, 7, 5])
    parser.add_argument('--pack', action='store_true', help='also time PackPoseInputs')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    sys.meta_path.insert(0, _EmptyModules())
    import copy
    import random

    import cv2
    import numpy as np
    import mmpose
    cv2.setNumThreads(1)
    np.random.seed(args.seed)
    random.seed(args.seed)
    with open(args.records) as f:
        infos, meta = data_infos(json.load(f))
    pipeline = build_pipeline(args.kernels, args.pack)
    print('ready mmpose %s' % mmpose.__version__, flush=True)
    for line in sys.stdin:
        if line.strip() in ('', 'quit'):
            break
        start, stop = (int(v) for v in line.split())
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(start, stop):
            info = copy.deepcopy(infos[i % len(infos)])   # as mmengine's BaseDataset.get_data_info
            info.update(copy.deepcopy(meta))                # as mmpose's BaseCocoStyleDataset.get_data_info
            out = pipeline(info)
            if out is None:
                raise RuntimeError('mmpose pipeline dropped sample %d' % i)
        print(json.dumps(dict(wall=time.perf_counter() - t0, cpu=time.process_time() - c0)), flush=True)


if __name__ == '__main__':
    main()
