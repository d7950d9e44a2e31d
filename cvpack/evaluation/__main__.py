"""``python -m cvpack.evaluation GT.json RESULTS.json [--dataset NAME | --meta-file F] [--json]``: COCO-style keypoint
AP/AR of a results file, with the OKS sigmas of the dataset (default COCO's)."""
import argparse
import json
import sys

from ..data.meta import get_dataset_meta
from ..data.meta_file import load_meta_file
from .build import load_coco_gt_for
from .coco import evaluate_keypoints, format_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m cvpack.evaluation', description=__doc__)
    parser.add_argument('gt', help='COCO keypoint annotation file (e.g. person_keypoints_val2017.json)')
    parser.add_argument('results', help='COCO keypoint results file (list of image_id, category_id, keypoints, score)')
    parser.add_argument('--json', action='store_true', help='print one JSON object with AP..ARl instead of the table')
    parser.add_argument('--dataset', default=None, help='built-in dataset whose OKS sigmas to use (CROWDPOSE, AIC ...)')
    parser.add_argument('--meta-file', default=None, help="a user's dataset metadata file (cvpack.data.meta_file)")
    args = parser.parse_args(argv)
    try:
        meta = load_meta_file(args.meta_file) if args.meta_file else \
            get_dataset_meta(args.dataset) if args.dataset else None
        stats = evaluate_keypoints(load_coco_gt_for(args.gt, meta), args.results,
                                   sigmas=meta.sigmas if meta is not None else None)
    except (ValueError, OSError, KeyError) as e:   # bad GT / results (file, record named); missing/unreadable file
        print('error: %s' % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_table(stats, 'COCO keypoints: %s' % args.results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
