"""Sweeps: the size/speed/quality trade-off of several λ values or size targets.

Each *point* fine-tunes the dense model (or trains from scratch) through the library API
(:func:`isscli.finetune` / :func:`isscli.train`) with its λ or target, then :func:`isscli.shrink`
prunes, compacts and evaluates it and, after every training, benches it against the dense
model. Every sweep also has a **dense point**: the same request with λ = 0 and no target, for
as many epochs as the longest point, so that the dense model gets the same extra training as
the ISS models (a fair comparison, not one against an under-trained parent).

Everything goes to ``SWEEPDIR/points/LABEL/``; a point whose ``point.json`` exists is finished,
a training whose ``train.json`` exists is not run again, an interrupted one continues with
``resume``, and :func:`isscli.shrink` keeps the steps it already did: rerunning the same sweep
(or a longer list of points) only runs what is missing. Each point folder records what it was
made from (``inputs.json``: the parent's sha256, the corpus's content, the settings, its λ or
target) and which files isscli wrote there (:mod:`isscli.io.manifest`): a folder made from other
inputs is run again, never reused. Trainings may run as parallel worker
processes (``jobs``), each calling the same API; benchmarks always run one at a time, after
the trainings, so that no timing shares the CPU with a training.

The summary (``SWEEPDIR/points.jsonl`` and the report) holds, per point, λ or the target,
the hidden sizes, the parameters, the test perplexity (accuracy for classifiers) and the
measured speed-up; :func:`pareto_front` picks the points no other point beats on both axes.
"""

from isscli.sweeping.plan import Plan, SweepRequest, SweepSettings, load_plan
from isscli.sweeping.points import Point, make_points, pareto_front
from isscli.sweeping.records import Baseline, Measured, PointRecord
from isscli.sweeping.run import PointOutcome, SweepResult, sweep

__all__ = ["Baseline", "Measured", "Plan", "Point", "PointOutcome", "PointRecord", "SweepRequest", "SweepResult",
           "SweepSettings", "load_plan", "make_points", "pareto_front", "sweep"]
