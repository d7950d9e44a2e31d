"""Dataset metadata: keypoint names, flip pairs, skeleton and colours, OKS sigmas, body-part ids.

One :class:`DatasetMeta` per dataset. The values are the published ones (COCO keypoint task, MPII
Human Pose); the upper/lower ids keep the original Megvii split (COCO hips count as upper body,
because the original tests "upper" first; ``reference_rsn_mspn.md`` §2.2).
"""
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np


def flip_permutation(num_joints, flip_pairs) -> List[int]:
    """Joint order after a horizontal flip: ``perm[a] = b`` and ``perm[b] = a`` for each (left, right) pair.

    ``joints[perm]`` (or ``heatmaps[:, perm]``) swaps every pair; raises on a pair outside ``num_joints``.
    """
    perm = list(range(num_joints))
    for a, b in flip_pairs:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError('flip pair (%d, %d) out of range for %d joints' % (a, b, num_joints))
        perm[a], perm[b] = b, a
    return perm


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    keypoint_names: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    skeleton: Tuple[Tuple[int, int], ...]          # 0-based joint index pairs
    skeleton_colors: Tuple[Tuple[int, int, int], ...]  # BGR, one per skeleton link
    keypoint_colors: Tuple[Tuple[int, int, int], ...]  # BGR, one per joint
    sigmas: Tuple[float, ...]                        # OKS per-keypoint sigmas, real scale (COCO nose 0.026); MPII: OKS-NMS only
    upper_body_ids: Tuple[int, ...]
    lower_body_ids: Tuple[int, ...]
    extra: dict = field(default_factory=dict)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    def flip_permutation(self) -> List[int]:
        """Index list ``perm`` such that ``flipped[:, perm]`` swaps every left/right pair."""
        return flip_permutation(self.num_keypoints, self.flip_pairs)

    def validate_coco_categories(self, categories, path):
        """Check a COCO ``categories`` block against this metadata; raise naming ``path`` on mismatch."""
        persons = [c for c in categories if c.get('id') == 1]
        if not persons:
            raise ValueError('%s: no category with id 1 (person)' % path)
        names = persons[0].get('keypoints')
        if names is not None and tuple(names) != self.keypoint_names:
            raise ValueError('%s: person keypoints %s do not match %s metadata %s'
                             % (path, names, self.name, list(self.keypoint_names)))


_LEFT, _RIGHT, _MID = (0, 255, 0), (255, 128, 0), (51, 153, 255)  # BGR: green left, blue right, orange middle

COCO = DatasetMeta(
    name='COCO',
    keypoint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # the official COCO skeleton (1-based in the annotation file), here 0-based
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
              (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    skeleton_colors=(_LEFT, _LEFT, _RIGHT, _RIGHT, _MID, _LEFT, _RIGHT, _MID, _LEFT, _RIGHT, _LEFT,
                     _RIGHT, _MID, _LEFT, _RIGHT, _LEFT, _RIGHT, _LEFT, _RIGHT),
    keypoint_colors=(_MID, _LEFT, _RIGHT, _LEFT, _RIGHT, _LEFT, _RIGHT, _LEFT, _RIGHT, _LEFT, _RIGHT,
                     _LEFT, _RIGHT, _LEFT, _RIGHT, _LEFT, _RIGHT),
    # pycocotools writes them as [.26, .25, ...] / 10.0; stored here on the real scale, like MPII's
    sigmas=tuple(s / 10.0 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                                     .89, .89)),
    upper_body_ids=tuple(range(0, 13)),
    lower_body_ids=tuple(range(11, 17)),
)

MPII = DatasetMeta(
    name='MPII',
    keypoint_names=('right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
                    'pelvis', 'thorax', 'upper_neck', 'head_top', 'right_wrist', 'right_elbow',
                    'right_shoulder', 'left_shoulder', 'left_elbow', 'left_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (7, 12),
              (12, 11), (11, 10), (7, 13), (13, 14), (14, 15)),
    skeleton_colors=(_RIGHT, _RIGHT, _RIGHT, _LEFT, _LEFT, _LEFT, _MID, _MID, _MID, _RIGHT, _RIGHT,
                     _RIGHT, _LEFT, _LEFT, _LEFT),
    keypoint_colors=(_RIGHT, _RIGHT, _RIGHT, _LEFT, _LEFT, _LEFT, _MID, _MID, _MID, _MID, _RIGHT,
                     _RIGHT, _RIGHT, _LEFT, _LEFT, _LEFT),
    # mmpose's MPII sigmas (used only for OKS-NMS; PCKh is the MPII metric)
    sigmas=(.089, .083, .107, .107, .083, .089, .026, .026, .026, .026, .062, .072, .179, .179, .072, .062),
    upper_body_ids=tuple(range(7, 16)),
    lower_body_ids=tuple(range(0, 7)),
)

_REGISTRY = {'COCO': COCO, 'MPII': MPII}


def get_dataset_meta(name: str) -> DatasetMeta:
    """Return the metadata of ``name`` ('COCO' or 'MPII', case-insensitive)."""
    try:
        return _REGISTRY[name.upper()]
    except KeyError:
        raise KeyError('unknown dataset %r; known: %s' % (name, sorted(_REGISTRY))) from None


def oks_sigmas(name: str) -> np.ndarray:
    return np.asarray(get_dataset_meta(name).sigmas, dtype=np.float64)
