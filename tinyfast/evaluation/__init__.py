"""TinyPerson evaluation: AP/AR as the TinyPerson reference computes them, and the log-average miss rate.

Vectorised with numpy (no compiled code); equal to the reference evaluator (a pycocotools ``COCOeval``
subclass) to floating-point noise, and to stock ``COCOeval`` with ``EvalParams.coco()``.

>>> metrics = evaluate("tiny_set_test_all.json", "results.json")   # doctest: +SKIP
>>> metrics["AP50_tiny"]                                           # doctest: +SKIP

Returned keys (values are fractions in [0, 1]; -1 when the setting has no regular GT, as pycocotools):

- ``AP{25,50,75}_{all,tiny,tiny1,tiny2,tiny3,small,reasonable}``: average precision at that IoU and
  area range (area on the GT ``area`` field and on detection ``w*h``, both ends inclusive): all [1, 1e10],
  tiny [1, 400], tiny1 [1, 64], tiny2 [64, 144], tiny3 [144, 400], small [400, 1024], reasonable [1024, 1e10].
- ``AR{25,50,75}_{...}``: the recall reached with ``max_dets`` detections per image.
- ``MR_{tiny1,tiny2,tiny3,tiny,small,all}`` (with ``miss_rate=True``): log-average miss rate over
  9 FPPI points in [1e-2, 1] at IoU 0.5, size setups on ``sqrt(area)``: tiny1 [2, 8], tiny2 [8, 12],
  tiny3 [12, 20], tiny [2, 20], small [20, 32], all.

Rules (docs/protocol.md §4): a GT is ignored when ``iscrowd``, ``ignore`` or ``uncertain`` is truthy, or
when its area is out of the range. Detections are matched greedily by score (COCO); one still unmatched
is ignored when some ignored GT covers it (``iou / (1 + iou) * (1 + area_g / area_d) >= t``; one region
may absorb many), or when its own area is out of the range; otherwise it is a false positive.

Deliberate choices on edge cases:

- A zero-area detection (``w == 0`` or ``h == 0``) overlaps nothing and is never absorbed; it is ignored
  in every TinyPerson range (they start at area 1) and a false positive in a range that includes 0.
- Detections on an image that has no GT of their category are false positives (unless out of range).
- Bad input raises ``ValueError`` naming the entry and field: a result whose ``image_id`` is not an image of
  the ground truth or whose ``category_id`` is not one of its categories, a NaN score, a non-finite box or a
  negative width/height, a missing field, duplicate ids, a negative or non-finite GT ``area``.
- As in pycocotools, a match to a GT whose annotation ``id`` is 0 counts as no match.
- Miss rate: at an FPPI point below the first false positive rate reached, recall is 0 (Caltech's
  convention; the CityPersons Python port reads its last recall there, which only differs with fewer than
  100 images).

Point localisation (CPR's location evaluation): ``evaluate_points(gt, results)`` gives
``AP{tau}_{range}``/``AR{tau}_{range}`` for a point matching a GT within normalised distance tau (0.5,
1.0, 2.0); the rule is in ``tinyfast.evaluation.points``.
"""

from tinyfast.evaluation.api import evaluate, precision_recall, summarize
from tinyfast.evaluation.params import EvalParams, MissRateParams
from tinyfast.evaluation.points import evaluate_points, format_point_report, point_precision_recall
from tinyfast.evaluation.report import format_report

__all__ = [
    "EvalParams",
    "MissRateParams",
    "evaluate",
    "evaluate_points",
    "format_point_report",
    "format_report",
    "point_precision_recall",
    "precision_recall",
    "summarize",
]
