"""Small exps and random weights for the API / demo tests (saved by the tests, nothing downloaded)."""
import json
import os.path as osp

import torch

from cvpack.exp import load_exp

RSN18 = ('projects', 'RSN', 'exps', 'RSN18.coco')
KPRCNN = ('projects', 'GCPose', 'exps', 'keypoint_rcnn.R50.coco')
GCPOSE = ('projects', 'GCPose', 'exps', 'gcpose.R50.coco')

# A narrow whole-image model (as tests/projects/gcpose/test_e2e.py): ResNet-18 trunk, 64-channel keypoint head,
# short side 160, at most 3 people per image; a few seconds per image on one core.
TINY_DETECTION = ['MODEL.PRETRAINED', '', 'INPUT.MIN_SIZE_TEST', '160', 'INPUT.MAX_SIZE_TEST', '256',
                  'MODEL.BACKBONE', 'resnet18', 'MODEL.ROI_KEYPOINT_HEAD.CONV_DIM', '64',
                  'MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE', '3', 'MODEL.RPN.POST_NMS_TOPK_TEST', '50']


def exp_path(repo_root, parts):
    return osp.join(repo_root, *parts)


def random_weights(exp_dir, path, opts=None, seed=0):
    """Save the seeded random init of the exp's model as a checkpoint ``{'model': state_dict}``; returns path."""
    torch.manual_seed(seed)
    _, model = load_exp(exp_dir, opts)
    torch.save({'model': model.state_dict()}, str(path))
    return str(path)


def subset_gt(coco_subset, path, num_images):
    """The subset's val annotations restricted to its first ``num_images`` images; returns (path, data)."""
    with open(osp.join(coco_subset, 'annotations', 'person_keypoints_val2017.json')) as f:
        data = json.load(f)
    data['images'] = data['images'][:num_images]
    ids = {i['id'] for i in data['images']}
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in ids]
    with open(str(path), 'w') as f:
        json.dump(data, f)
    return str(path), data
