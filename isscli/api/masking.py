"""``sparsify``: one-shot magnitude pruning to a share of zeros, without training (an unstructured baseline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from isscli.api.common import (
    ConfigSource,
    OutputRequest,
    as_checkpoint,
    checked_output,
    input_paths,
    model_overrides,
    path_text,
    request_inputs,
    write_checkpoint,
)
from isscli.api.validation import checked_arguments
from isscli.io.jsonfile import JSONObject
from isscli.io.provenance import operation_record
from isscli.learn.masks import check_sparsity, mask_counts, one_shot
from isscli.models import load_model, model_tensors
from isscli.models.checkpoint import Checkpoint


@dataclass(kw_only=True)
class SparsifyRequest(OutputRequest):
    """Zero the ``sparsity`` share of smallest-|w| weights of the embedding and recurrent matrices."""

    output_tag: ClassVar[str] = "sparse"

    sparsity: float
    arch: str | None = None
    config: ConfigSource = None


@dataclass
class MaskedMatrix:
    """One masked matrix: how many of its weights the mask keeps."""

    tensor: str
    shape: list[int]
    kept: int
    total: int

    @property
    def density(self) -> float:
        return self.kept / self.total


@dataclass
class SparsifyResult:
    checkpoint: Checkpoint  # with one boolean mask per masked matrix
    input_file: Path | None  # the checkpoint file read (None: in memory)
    output: Path | None
    sparsity: float
    kept: int
    total: int
    density: float
    matrices: list[MaskedMatrix]

    def to_json(self) -> JSONObject:
        return {"checkpoint": path_text(self.input_file), "output": path_text(self.output), "sparsity": self.sparsity,
                "kept": self.kept, "total": self.total, "density": self.density,
                "matrices": [asdict(matrix) for matrix in self.matrices]}


@checked_arguments
def sparsify(request: SparsifyRequest) -> SparsifyResult:
    """Magnitude-prune a checkpoint at once; each matrix keeps the same share (a masked input loses in
    proportion to what it keeps). Fine-tune the result with :func:`isscli.finetune`: the masks are kept.

    Example::

        isscli.sparsify(SparsifyRequest(checkpoint="small.safetensors", sparsity=0.9)).density
    """
    check_sparsity(request.sparsity, "sparsity")
    output = checked_output(request.output, request_inputs(request), request.force)
    loaded = as_checkpoint(request.checkpoint)
    model = load_model(loaded, request.arch, model_overrides(request.config))
    masks = one_shot(model, request.sparsity, loaded.masks or None)
    info = {"method": "magnitude", "schedule": "one-shot", "sparsity": request.sparsity}
    counts = mask_counts(masks)
    provenance = operation_record("sparsify", {"sparsity": request.sparsity}, loaded, masks=info)
    checkpoint = Checkpoint(model_tensors(model), model.config, provenance, masks=masks,
                            mask_info={**info, **counts.to_json()}, vocabulary=loaded.vocabulary)
    if output is not None:
        write_checkpoint(checkpoint, output, input_paths(loaded), request.force)
    matrices = [MaskedMatrix(name, list(mask.shape), int(mask.sum()), mask.numel()) for name, mask in masks.items()]
    return SparsifyResult(checkpoint, loaded.path, output, request.sparsity, counts.kept, counts.total,
                          counts.density, matrices)
