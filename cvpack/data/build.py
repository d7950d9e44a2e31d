"""``build_dataset(cfg, split)`` and the module-level ``collate``.

Pipelines are looked up lazily in :data:`DATASET_TABLE` ('module:Class' strings), so importing this module
imports no dataset code and another pipeline is added with one line (e.g. ``'cpn': 'cvpack.data.cpn:CPNDataset'``).
Every class is constructed as ``Class(cfg, split)``.
"""
import importlib

import torch

__all__ = ['DATASET_TABLE', 'build_dataset', 'collate']

DATASET_TABLE = {
    'megvii': 'cvpack.data.topdown:TopDownDataset',
    'simple_baselines': 'cvpack.data.topdown:TopDownDataset',
    'cpn': 'cvpack.data.cpn:CPNDataset',            # MLPE (pytorch-cpn's crop and 4-way augmentation)
    'detection': 'cvpack.data.detection:DetectionDataset',   # GCPose whole-image path
}


def _resolve(spec):
    module, _, name = spec.partition(':')
    return getattr(importlib.import_module(module), name)


def build_dataset(cfg, split, records=None):
    """Dataset of ``cfg.DATASET.PIPELINE`` for ``split`` ('train' or 'val').

    ``cfg.DATASET.COMBINE`` (a non-empty list) trains on several datasets (:mod:`cvpack.data.combined`).
    ``records``: use these records instead of reading the annotation files (inference on the caller's images,
    ``cvpack.apis``; the classes build them with ``box_record`` / ``image_record``)."""
    if split == 'train' and records is None and cfg.DATASET.COMBINE:
        from .combined import CombinedDataset     # several datasets mapped onto the exp's keypoints
        return CombinedDataset(cfg, split)
    pipeline = cfg.DATASET.PIPELINE
    if pipeline not in DATASET_TABLE:
        raise KeyError('unknown DATASET.PIPELINE %r; known: %s' % (pipeline, sorted(DATASET_TABLE)))
    cls = _resolve(DATASET_TABLE[pipeline])
    return cls(cfg, split) if records is None else cls(cfg, split, records=records)


def collate(batch):
    """List of sample dicts -> dict: tensors stacked along a new dim 0, any other value kept as a list.

    Tensors of different shapes (whole-image detection samples: images of different sizes, per-image box
    counts) are kept as a list too; the detection model pads the images itself.

    Module level (picklable under spawn/forkserver, unlike the original's nested class, docs/reference/defects.md R#24).
    """
    if not batch:
        raise ValueError('collate: empty batch')
    out = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        stack = all(torch.is_tensor(v) and v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values, 0) if stack else values
    return out
