"""``build_dataset(cfg, split)`` and the module-level ``collate``.

The dataset class is ``cfg.DATASET.CLASS`` ('module:Class', the one extension path: a project names its own
class there and the core never imports it); '' picks the core default of the top-down pipeline
``cfg.DATASET.PIPELINE`` (:data:`TOP_DOWN_PIPELINES`). Classes are imported lazily, so importing this module
imports no dataset code. Every class is constructed as ``Class(cfg, split)`` (``records=`` added by
``cvpack.apis``).
"""
import torch

from ..utils import configured_class

__all__ = ['TOP_DOWN_PIPELINES', 'build_dataset', 'collate', 'dataset_class']

# The core's own pipelines and their default dataset classes (not an extension point: use DATASET.CLASS)
_CORE_DATASETS = {
    'megvii': 'cvpack.data.topdown:TopDownDataset',
    'simple_baselines': 'cvpack.data.topdown:TopDownDataset',
    'cpn': 'cvpack.data.cpn:CPNDataset',            # pytorch-cpn's crop and 4-way augmentation (MLPE)
}
TOP_DOWN_PIPELINES = tuple(_CORE_DATASETS)   # person crops in, heatmaps out: the core predictor's pipelines


def dataset_class(cfg):
    """The class ``cfg.DATASET.CLASS`` names, or the core default of ``cfg.DATASET.PIPELINE`` when it is ''."""
    return configured_class(cfg.DATASET.CLASS, 'DATASET.CLASS', cfg.DATASET.PIPELINE, _CORE_DATASETS, 'dataset')


def build_dataset(cfg, split, records=None):
    """Dataset of :func:`dataset_class` for ``split`` ('train' or 'val').

    ``cfg.DATASET.COMBINE`` (a non-empty list) trains on several datasets (:mod:`cvpack.data.combined`).
    ``records``: use these records instead of reading the annotation files (inference on the caller's images,
    ``cvpack.apis``; the classes build them with ``box_record`` / ``image_record``)."""
    if split == 'train' and records is None and cfg.DATASET.COMBINE:
        from .combined import CombinedDataset     # several datasets mapped onto the exp's keypoints
        return CombinedDataset(cfg, split)
    cls = dataset_class(cfg)
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
