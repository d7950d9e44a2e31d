"""``python -m cvpack.evaluation GT.json RESULTS.json [--dataset NAME | --meta-file F] [--json]``: COCO-style keypoint
AP/AR of a results file, with the OKS sigmas of the dataset (default COCO's) and, for CrowdPose, AIC and
PoseTrack18, the OKS area of their files (0.53 * box) and CrowdPose's AP_easy / AP_medium / AP_hard, as test.py
scores them (the file is scored as given: PoseTrack18's ignore-region drop happens in test.py, before it writes
results.json). ``--pckh``: MPII PCKh of the ``results.json`` test.py writes for MPII (``index``, ``keypoints`` per
record) against valid.json or gt_valid.mat (a flag of its own: ``--dataset MPII`` keeps scoring COCO-format MPII
files by OKS with MPII's sigmas)."""
import argparse
import json
import sys

import numpy as np

from ..data.meta import get_dataset_meta
from ..data.meta_file import load_meta_file
from .build import load_coco_gt_for, score_keypoints
from .coco import STAT_NAMES, format_table
from .pckh import TABLE_NAMES, evaluate_pckh, format_pckh


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m cvpack.evaluation', description=__doc__)
    parser.add_argument('gt', help='COCO keypoint annotation file (e.g. person_keypoints_val2017.json)')
    parser.add_argument('results', help='COCO keypoint results file (list of image_id, category_id, keypoints, score)')
    parser.add_argument('--json', action='store_true', help='print one JSON object with AP..ARl instead of the table')
    parser.add_argument('--dataset', default=None, help='built-in dataset whose OKS sigmas to use (CROWDPOSE, AIC ...)')
    parser.add_argument('--meta-file', default=None, help="a user's dataset metadata file (cvpack.data.meta_file)")
    parser.add_argument('--pckh', action='store_true',
                        help="MPII PCKh of test.py's MPII results.json against valid.json or gt_valid.mat")
    args = parser.parse_args(argv)
    if args.pckh:
        if args.meta_file or (args.dataset is not None and args.dataset.upper() != 'MPII'):
            # PCKh here is MPII's 16 joints, head and parts (pckh.py): another dataset's joints would be mislabelled
            parser.error('--pckh scores MPII (16 joints) only; it takes no --meta-file and no --dataset other '
                         'than MPII (got %s)' % ('--meta-file %s' % args.meta_file if args.meta_file
                                                 else '--dataset %s' % args.dataset))
        return _pckh_main(args)
    try:
        meta = load_meta_file(args.meta_file) if args.meta_file else \
            get_dataset_meta(args.dataset) if args.dataset else None
        stats = score_keypoints(load_coco_gt_for(args.gt, meta), args.results, meta)
    except (ValueError, OSError, KeyError) as e:   # bad GT / results (file, record named); missing/unreadable file
        hint = " (MPII PCKh of test.py's results.json: --pckh)" if (args.dataset or '').upper() == 'MPII' else ''
        print('error: %s%s' % (e, hint), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_table(stats, 'COCO keypoints: %s' % args.results))
        extra = [k for k in stats if k not in STAT_NAMES]     # CrowdPose's AP_easy / AP_medium / AP_hard
        if extra:
            print(' | '.join('%s %.4f' % (k, stats[k]) for k in extra))
    return 0


def _pckh_main(args):
    """PCKh of test.py's MPII results.json (0-based keypoints, record ``index``); the records of the file that
    have no prediction are not scored (as test.py with TEST.MAX_IMAGES)."""
    from ..data.validate import read_json
    try:
        results = read_json(args.results, 'MPII results')
        if not isinstance(results, list) or not all(isinstance(r, dict) and 'index' in r and 'keypoints' in r
                                                    for r in results):
            raise ValueError('%s: expected a list of {index, keypoints} (the results.json test.py writes for MPII)'
                             % args.results)
        results = sorted(results, key=lambda r: int(r['index']))
        preds = np.asarray([r['keypoints'] for r in results], np.float64)
        table = evaluate_pckh(preds, args.gt, records=[int(r['index']) for r in results])
    except (ValueError, OSError, KeyError, TypeError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: table[k] for k in TABLE_NAMES + ('head_source', 'records', 'records_skipped',
                                                               'skipped_records')}))
    else:
        print(format_pckh(table, 'MPII PCKh@0.5 (head size: %s): %s' % (table['head_source'], args.results)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
