"""The optional hooks the engine and tools look for on models and datasets (duck typing, made explicit).

Each is a ``typing.Protocol``: a class satisfies it by defining the member, no inheritance needed, and
``isinstance(obj, Proto)`` tells whether the member is there (``runtime_checkable`` checks presence only;
tests/test_protocols.py checks the shipped implementations' signatures). Where each hook is used:

- :class:`PretrainedInit`: ``Trainer.load_pretrained`` (cvpack/engine/trainer.py) calls it once, when a run
  starts from scratch with ``MODEL.PRETRAINED`` set; docs/ENGINE.md "Initial weights".
- :class:`AspectRatioGrouped`: the trainer groups batches by aspect ratio (``GroupedIterationSampler``) when
  ``DATALOADER.ASPECT_RATIO_GROUPING`` is on and the dataset has it.
- :class:`DetectionStats`: the tester logs the detections dropped while reading ``TEST.DET_FILE``.
- :class:`ComplexityParts`: ``cvpack.tools.complexity`` counts whole-image models part by part. An attribute
  ``original_eval`` (a bool, no class here) marks a model whose eval forward takes shortcuts; the tool sets it to
  count the network as published (MultiStageNet.forward).
- :class:`MetricNames`: the trainer checks ``TEST.BEST_METRIC`` against an evaluator's names at start-up
  (``TEST.EVAL_PERIOD``, cvpack/engine/periodic_eval.py), not at the first evaluation hours later.
- :class:`GroundTruthCheck`: at the same start-up, rank 0 has the evaluator read and validate its ground truth
  (the evaluator's checks are stricter than the val set's: pycocotools needs ``area`` and ``num_keypoints``).
"""
from typing import Any, Dict, List, Protocol, Sequence, Tuple, runtime_checkable

from torch import nn

__all__ = ['PretrainedInit', 'AspectRatioGrouped', 'DetectionStats', 'ComplexityParts', 'MetricNames',
           'GroundTruthCheck']


@runtime_checkable
class PretrainedInit(Protocol):
    """A model with an ImageNet (or other partial) initialisation; ``build_model`` never reads the file."""

    def load_pretrained(self, source: str) -> Any:
        """Load the weights at ``source`` (path or URL, read through ``cvpack.safe_load``) into the model.

        Returns a :class:`cvpack.modeling.pretrained.LoadReport` (its ``summary()`` is logged); raises
        ``FileNotFoundError`` / ``CheckpointError`` naming ``source`` when it cannot be read.
        """


@runtime_checkable
class AspectRatioGrouped(Protocol):
    """A dataset whose batches should hold images of one aspect-ratio group (Detectron2's grouping)."""

    def aspect_ratio_flags(self) -> Sequence[int]:
        """One group id per sample, in dataset order (0 portrait/square, 1 landscape)."""


@runtime_checkable
class DetectionStats(Protocol):
    """A val dataset built from a detection file: counts of the detections it skipped, by reason
    ('low_score', 'other_category', 'unknown_image', 'degenerate_box'); empty for ground-truth boxes."""

    det_stats: Dict[str, int]


@runtime_checkable
class ComplexityParts(Protocol):
    """A model whose cost depends on the image and its RoIs (no single ``INPUT_SHAPE``)."""

    def complexity_parts(self, cfg) -> List[Tuple[str, nn.Module, Any, int]]:
        """(name, sub-module, its input, calls per image) for each part whose MACs are counted."""


@runtime_checkable
class MetricNames(Protocol):
    """An evaluator that says, before it runs, which scalar metrics its result will hold."""

    def metric_names(self) -> List[str]:
        """The names of the numeric metrics ``__call__`` returns (e.g. 'AP', 'AP50' ...; 'box_AP' ...)."""


@runtime_checkable
class GroundTruthCheck(Protocol):
    """An evaluator that can read and validate its ground truth file before any prediction exists."""

    def check_ground_truth(self) -> None:
        """Read the ground truth as ``__call__`` will; raise naming the file (and the record, the field) if bad."""
