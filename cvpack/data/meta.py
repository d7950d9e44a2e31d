"""Dataset metadata: keypoint names, flip pairs, skeleton and colours, OKS sigmas, body-part ids.

One :class:`DatasetMeta` per dataset. The values are the published ones (COCO keypoint task, MPII
Human Pose); the upper/lower ids keep the original Megvii split (COCO hips count as upper body,
because the original tests "upper" first; ``docs/reference/rsn_mspn.md`` §2.2).
"""
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np


def flip_permutation(num_joints, flip_pairs) -> List[int]:
    """Joint order after a horizontal flip: ``perm[a] = b`` and ``perm[b] = a`` for each (left, right) pair.

    ``joints[perm]`` (or ``heatmaps[:, perm]``) swaps every pair; raises on a pair outside ``num_joints`` and on a
    joint in two different pairs (``[[1, 2], [2, 3]]`` gave ``[0, 2, 3, 2]``: joint 1 lost, joint 2 copied).
    """
    perm, pair_of = list(range(num_joints)), {}
    for a, b in flip_pairs:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError('flip pair (%d, %d) out of range for %d joints' % (a, b, num_joints))
        for j in (a, b):
            other = pair_of.setdefault(j, (a, b))
            if set(other) != {a, b}:
                raise ValueError('flip pairs (%d, %d) and (%d, %d) share joint %d: a flip would lose a joint'
                                 % (other + (a, b, j)))
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
    sigmas: Tuple[float, ...]                        # OKS sigmas, real scale (COCO nose 0.026); MPII: OKS-NMS only
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
            raise ValueError('%s: person keypoints %s do not match %s metadata %s%s'
                             % (path, names, self.name, list(self.keypoint_names),
                                ' (%s)' % self.extra['meta_file'] if 'meta_file' in self.extra else ''))


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

_HEAD = ('head', 'neck')
# CrowdPose (Li et al. 2019), 14 joints; sigmas as in crowdposetools / mmpose's crowdpose.py
CROWDPOSE = DatasetMeta(
    name='CROWDPOSE',
    keypoint_names=('left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                    'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle') + _HEAD,
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=((0, 2), (2, 4), (1, 3), (3, 5), (0, 1), (0, 6), (1, 7), (6, 7), (6, 8), (8, 10), (7, 9), (9, 11),
              (12, 13), (13, 0), (13, 1)),
    skeleton_colors=(_LEFT, _LEFT, _RIGHT, _RIGHT, _MID, _LEFT, _RIGHT, _MID, _LEFT, _LEFT, _RIGHT, _RIGHT,
                     _MID, _LEFT, _RIGHT),
    keypoint_colors=(_LEFT, _RIGHT) * 6 + (_MID, _MID),
    sigmas=(.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    # AP on the easy / medium / hard images, split by the image's crowdIndex (crowdposetools' code: 0.2 / 0.8)
    extra={'crowd_index_split': (0.2, 0.8), 'fill_area': True},   # its files have no 'area'
)

# OCHuman (Zhang et al. 2019): COCO's 17 keypoints and sigmas; shipped as val/test only (no train split)
OCHUMAN = DatasetMeta(**dict(COCO.__dict__, name='OCHUMAN', extra={'splits': ('val', 'test')}))

# AI Challenger (Wu et al. 2017), 14 joints, names as in its COCO-style files; sigmas as in mmpose's aic.py
AIC = DatasetMeta(
    name='AIC',
    keypoint_names=('Right Shoulder', 'Right Elbow', 'Right Wrist', 'Left Shoulder', 'Left Elbow', 'Left Wrist',
                    'Right Hip', 'Right Knee', 'Right Ankle', 'Left Hip', 'Left Knee', 'Left Ankle', 'Head top',
                    'Neck'),
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),
    skeleton=((2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11),
              (12, 13), (0, 6), (3, 9)),
    skeleton_colors=(_RIGHT, _RIGHT, _RIGHT, _LEFT, _LEFT, _LEFT, _RIGHT, _RIGHT, _MID, _LEFT, _LEFT, _MID,
                     _RIGHT, _LEFT),
    keypoint_colors=(_RIGHT,) * 3 + (_LEFT,) * 3 + (_RIGHT,) * 3 + (_LEFT,) * 3 + (_MID, _MID),
    sigmas=(0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642, 0.03686941,
            0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    extra={'fill_area': True},     # its COCO-style files have no 'area' / 'iscrowd'
)

# PoseTrack18: COCO's layout with the eyes replaced by head_bottom / head_top; COCO's sigmas (mmpose)
POSETRACK18 = DatasetMeta(**dict(
    COCO.__dict__, name='POSETRACK18',
    keypoint_names=('nose', 'head_bottom', 'head_top') + COCO.keypoint_names[3:],
    flip_pairs=COCO.flip_pairs[1:],
    # predictions inside the images' ignore_regions_x/_y polygons are dropped before evaluation
    extra={'ignore_regions': True, 'fill_area': True}))   # no 'area' in its files either

_REGISTRY = {m.name: m for m in (COCO, MPII, CROWDPOSE, OCHUMAN, AIC, POSETRACK18)}


def get_dataset_meta(name: str) -> DatasetMeta:
    """Return the metadata of ``name`` (case-insensitive): a built-in one or one added by :func:`register_meta`."""
    try:
        return _REGISTRY[name.upper()]
    except KeyError:
        raise KeyError('unknown dataset %r; known: %s' % (name, sorted(_REGISTRY))) from None


def register_meta(meta: DatasetMeta) -> DatasetMeta:
    """Make ``meta`` known by its (upper-case) name; a built-in name cannot be replaced."""
    name = meta.name.upper()
    if name in _BUILTIN and _REGISTRY[name] is not meta:
        raise ValueError('dataset name %r is built in; give the user metadata another name' % meta.name)
    _REGISTRY[name] = meta
    return meta


_BUILTIN = frozenset(_REGISTRY)


def oks_sigmas(name: str) -> np.ndarray:
    return np.asarray(get_dataset_meta(name).sigmas, dtype=np.float64)
