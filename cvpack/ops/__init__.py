"""Detection ops in plain torch (no torchvision): boxes and box coder, NMS, RoIAlign, anchors."""
from .anchors import AnchorGenerator, cell_anchors, grid_anchors  # noqa: F401
from .boxes import (  # noqa: F401
    Box2BoxTransform, box_area, clip_boxes, nonempty, pairwise_iou, scale_boxes,
)
from .nms import batched_nms, nms  # noqa: F401
from .roi_align import assign_fpn_levels, boxes_to_rois, multilevel_roi_align, roi_align  # noqa: F401
