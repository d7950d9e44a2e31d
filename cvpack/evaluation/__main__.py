"""``python -m cvpack.evaluation GT.json RESULTS.json [--json]``: COCO keypoint AP/AR of a results file."""
import argparse
import json
import sys

from .coco import evaluate_keypoints, format_table


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m cvpack.evaluation', description=__doc__)
    parser.add_argument('gt', help='COCO keypoint annotation file (e.g. person_keypoints_val2017.json)')
    parser.add_argument('results', help='COCO keypoint results file (list of image_id, category_id, keypoints, score)')
    parser.add_argument('--json', action='store_true', help='print one JSON object with AP..ARl instead of the table')
    args = parser.parse_args(argv)
    try:
        stats = evaluate_keypoints(args.gt, args.results)
    except (ValueError, OSError) as e:   # bad GT / results (file and record named), missing or unreadable file
        print('error: %s' % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(stats))
    else:
        print(format_table(stats, 'COCO keypoints: %s' % args.results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
