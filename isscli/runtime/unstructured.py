"""Non-structured sparsity through CSR matrix products: the baseline that ISS beats.

The paper's Fig. 1 compares, at equal sparsity, a dense-shaped weight matrix whose nonzeros
are scattered at random (stored as CSR, multiplied with a sparse kernel) with the smaller
dense matrix left after removing whole rows and columns. This module builds the former for
whole models:

* :func:`scatter_like` zeroes a dense-shaped model's weight matrices at random, keeping in
  each as many nonzeros as the matching matrix of a (compacted) model has;
* :func:`csr_model` turns *any* model whose weight matrices hold zeros (randomly scattered
  here, masked by pruning later) into one that multiplies through ``torch.sparse`` CSR kernels.

The CSR model computes the same outputs as the dense model it came from. Its recurrent layers
run step by step in Python (the fused LSTM/GRU kernels accept dense weights only), which adds
a per-step overhead that only matters for tiny models. The embedding stays dense: a lookup
does no multiply-adds, and the paper does not sparsify it either.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from isscli.io.errors import IsscliError
from isscli.models.recurrent import LayerState, RecurrentStack, direction_suffix, reverse_padded
from isscli.models.registry import OUTPUT_LAYER, family_config, is_tied

INT32_LIMIT = 2**31 - 1


def recurrent_part_name(model: nn.Module) -> str:
    """Attribute holding the model's recurrent layers: ``rnn`` (LSTM/GRU/RNN stacks) or ``rhn``."""
    return "rhn" if family_config(model).family == "rhn" else "rnn"


def weight_matrices(model: nn.Module) -> dict[str, Tensor]:
    """The matrices that sparsity applies to: the recurrent layers' and the output layer's (not the embedding)."""
    name = recurrent_part_name(model)
    recurrent = getattr(model, name)
    matrices = {
        f"{name}.{key}": tensor
        for key, tensor in [*recurrent.named_parameters(), *recurrent.named_buffers()]
        if tensor.dim() == 2
    }
    head = OUTPUT_LAYER[family_config(model).family]
    matrices[f"{head}.weight"] = getattr(model, head).weight
    return matrices


def nonzero_counts(model: nn.Module) -> dict[str, int]:
    """Nonzeros of each weight matrix, dense or CSR (whose stored values may include zeros)."""
    return {
        name: int(torch.count_nonzero(matrix.values() if matrix.layout == torch.sparse_csr else matrix))
        for name, matrix in weight_matrices(model).items()
    }


def check_csr_supported(model: nn.Module) -> RecurrentStack:
    """Refuse early (before any costly copy) models whose recurrent part has no CSR twin here; the part that has."""
    stack = getattr(model, "rnn", None)
    if not isinstance(stack, RecurrentStack):
        raise IsscliError(f"CSR inference supports LSTM/GRU/RNN stacks, not the {family_config(model).family!r} family",
                          "drop --unstructured for this model")
    return stack


@torch.no_grad()
def scatter_like(dense: nn.Module, reference: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``dense`` whose weight matrices keep, at random places, as many nonzeros as ``reference``'s.

    ``reference`` is typically the compacted model and ``dense`` the original shape: both
    then do the same number of multiply-adds, structured in one, scattered in the other.
    """
    counts = nonzero_counts(reference)
    result = copy.deepcopy(dense).eval()
    matrices = weight_matrices(result)
    if set(counts) != set(matrices):
        raise IsscliError(
            "--unstructured needs the model and the baseline to have the same layers and directions",
            "compare a compacted model with the dense model it came from",
        )
    generator = torch.Generator().manual_seed(seed)
    for name, matrix in matrices.items():
        if counts[name] > matrix.numel():
            raise IsscliError(
                f"--unstructured: {name} has more nonzeros ({counts[name]:,}) than the baseline's has weights",
                "give the larger (dense) model with --against",
            )
        keep = torch.randperm(matrix.numel(), generator=generator)[: counts[name]]
        mask = torch.zeros(matrix.numel(), dtype=torch.bool)
        mask[keep] = True
        matrix.mul_(mask.view_as(matrix).to(device=matrix.device, dtype=matrix.dtype))
    return result


def to_csr(matrix: Tensor) -> Tensor:
    """CSR copy of a dense matrix; 32-bit indices where they fit, which MKL multiplies faster."""
    with warnings.catch_warnings():  # torch calls CSR support "beta"; the kernels used here are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        csr = matrix.detach().to_sparse_csr()
    if csr.values().numel() >= INT32_LIMIT:
        return csr
    return torch.sparse_csr_tensor(
        csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32), csr.values(), csr.shape,
        check_invariants=False,  # the indices come from a valid CSR tensor
    )


def csr_matmul(matrix: Tensor, inputs: Tensor) -> Tensor:
    """``inputs @ matrix.T`` for a CSR ``matrix [out, in]`` and dense ``inputs [N, in]``."""
    return (matrix @ inputs.t().contiguous()).t()


class CsrLinear(nn.Module):
    """``nn.Linear`` with its weight in CSR."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", to_csr(linear.weight), persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone(), persistent=False)

    def forward(self, inputs: Tensor) -> Tensor:
        flat = csr_matmul(self.weight, inputs.reshape(-1, inputs.shape[-1]))
        if self.bias is not None:
            flat = flat + self.bias
        return flat.reshape(*inputs.shape[:-1], flat.shape[-1])


def lstm_cell(gates: Tensor, hidden_gates: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
    h, c = state
    i, f, g, o = (gates + hidden_gates).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def gru_cell(gates: Tensor, hidden_gates: Tensor, h: LayerState) -> tuple[Tensor, LayerState]:
    assert isinstance(h, Tensor)  # a GRU's state is its output alone, not an LSTM's pair
    x_r, x_z, x_n = gates.chunk(3, dim=1)
    h_r, h_z, h_n = hidden_gates.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    h = n + z * (h - n)
    return h, h


Cell = Callable[[Tensor, Tensor, LayerState], tuple[Tensor, LayerState]]


def simple_cell(activation: Callable[[Tensor], Tensor]) -> Cell:
    def cell(gates: Tensor, hidden_gates: Tensor, h: LayerState) -> tuple[Tensor, LayerState]:
        h = activation(gates + hidden_gates)
        return h, h

    return cell


#: One time step of each cell, with PyTorch's gate order, on states without the layer axis.
CELLS: dict[str, Cell] = {
    "lstm": lstm_cell, "gru": gru_cell, "rnn_tanh": simple_cell(torch.tanh), "rnn_relu": simple_cell(torch.relu),
}


class CsrRecurrentStack(nn.Module):
    """:class:`RecurrentStack`'s computation with CSR weights; same inputs, outputs and states."""

    def __init__(self, stack: RecurrentStack) -> None:
        super().__init__()
        self.cell = stack.cell
        self.hidden_sizes = [list(sizes) for sizes in stack.hidden_sizes]
        for layer, sizes in enumerate(self.hidden_sizes):
            for direction in range(len(sizes)):
                suffix = direction_suffix(layer, direction)
                w_ih, w_hh, b_ih, b_hh = stack.layer_weights(layer, direction)
                self.register_buffer(f"weight_ih{suffix}", to_csr(w_ih), persistent=False)
                self.register_buffer(f"weight_hh{suffix}", to_csr(w_hh), persistent=False)
                self.register_buffer(f"bias_ih{suffix}", b_ih.detach().clone(), persistent=False)
                self.register_buffer(f"bias_hh{suffix}", b_hh.detach().clone(), persistent=False)

    def _run(self, sequence: Tensor, state: LayerState, suffix: str) -> tuple[Tensor, LayerState]:
        """One layer-direction over ``sequence [T, B, in]``; the input product is done for all steps at once."""
        steps, batch, width = sequence.shape
        weight_hh, bias_hh = getattr(self, f"weight_hh{suffix}"), getattr(self, f"bias_hh{suffix}")
        gates = csr_matmul(getattr(self, f"weight_ih{suffix}"), sequence.reshape(steps * batch, width))
        gates = (gates + getattr(self, f"bias_ih{suffix}")).view(steps, batch, -1)
        step = CELLS[self.cell]
        carry: LayerState = (state[0][0], state[1][0]) if isinstance(state, tuple) else state[0]
        h = carry[0] if isinstance(carry, tuple) else carry
        outputs = []
        for t in range(steps):
            h, carry = step(gates[t], csr_matmul(weight_hh, h) + bias_hh, carry)
            outputs.append(h)
        final = (carry[0].unsqueeze(0), carry[1].unsqueeze(0)) if isinstance(carry, tuple) else carry.unsqueeze(0)
        return torch.stack(outputs), final

    def _zero_state(self, hidden: int, reference: Tensor) -> LayerState:
        zeros = reference.new_zeros(1, reference.shape[1], hidden)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def forward(
        self, inputs: Tensor, state: list[list[LayerState]] | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list[list[LayerState]]]:
        layer_input = inputs
        new_state: list[list[LayerState]] = []
        for layer, sizes in enumerate(self.hidden_sizes):
            outputs, layer_state = [], []
            for direction, hidden in enumerate(sizes):
                initial = state[layer][direction] if state is not None else self._zero_state(hidden, layer_input)
                sequence = reverse_padded(layer_input, lengths) if direction == 1 else layer_input
                output, final = self._run(sequence, initial, direction_suffix(layer, direction))
                outputs.append(reverse_padded(output, lengths) if direction == 1 else output)
                layer_state.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            new_state.append(layer_state)
        return layer_input, new_state


def csr_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose recurrent layers and output layer multiply through CSR.

    Works for any model of this package whose weights hold zeros: the copy computes the same
    outputs, and its cost follows the number of nonzeros rather than the shape.
    """
    stack = check_csr_supported(model)
    head = OUTPUT_LAYER[family_config(model).family]
    result = copy.copy(model)
    result._modules = dict(model._modules)
    result.rnn = CsrRecurrentStack(stack)
    setattr(result, head, CsrLinear(getattr(model, head)))
    return result.eval()


def stored_bytes(model: nn.Module) -> int:
    """Memory of the model's tensors as stored: for CSR, its values and both index arrays."""
    total, seen = 0, set()
    for tensor in [*model.parameters(), *model.buffers()]:
        sparse = tensor.layout == torch.sparse_csr
        parts = (tensor.values(), tensor.crow_indices(), tensor.col_indices()) if sparse else (tensor,)
        for part in parts:
            key = (part.data_ptr(), part.numel())
            if key not in seen:
                seen.add(key)
                total += part.numel() * part.element_size()
    return total


def nonzero_parameters(model: nn.Module) -> int:
    """Nonzero entries of all the model's tensors, CSR ones by their stored values; a tied decoder counts once."""
    config = family_config(model)
    head, tied = f"{OUTPUT_LAYER[config.family]}.weight", is_tied(config)
    total = 0
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tied and name == head:
            continue
        total += int(torch.count_nonzero(tensor.values() if tensor.layout == torch.sparse_csr else tensor))
    return total


def nonzero_multiply_adds_per_step(model: nn.Module) -> int:
    """Multiply-adds per step and sequence that a sparse kernel does: one per nonzero weight used every step."""
    family = family_config(model).family
    head, per_step = f"{OUTPUT_LAYER[family]}.weight", family != "classifier"
    return sum(count for name, count in nonzero_counts(model).items() if per_step or name != head)
