"""Print the SET/magnitude density that gives a dense-shaped model as many nonzero parameters as a compact one.

    python benchmarks/matched_density.py DENSE.safetensors COMPACT.safetensors

The masks cover the embedding and the recurrent matrices (isscli.learn.masks.maskable_names); the
rest (biases, decoder or classifier head) stays dense. The density printed makes the masked
model's nonzeros equal the compact model's parameter count (the issue's "matched parameters").
"""

from __future__ import annotations

import sys

from isscli.learn.masks import maskable_names
from isscli.models import load_model
from isscli.models.checkpoint import load_checkpoint


def main(dense_path: str, compact_path: str) -> None:
    dense = load_model(load_checkpoint(dense_path))
    compact = load_model(load_checkpoint(compact_path))
    target = sum(p.numel() for p in compact.parameters())
    maskable = set(maskable_names(dense))
    parameters = dict(dense.named_parameters())
    masked_total = sum(parameters[name].numel() for name in maskable)
    fixed = sum(p.numel() for name, p in parameters.items() if name not in maskable)
    density = (target - fixed) / masked_total
    if not 0 < density <= 1:
        raise SystemExit(f"no density matches: the dense model's unmasked tensors alone hold {fixed:,} parameters")
    print(f"{density:.6f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
