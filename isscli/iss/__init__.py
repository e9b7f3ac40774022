"""The ISS method itself, on tensors: group specs, group norms and surgery, the group-Lasso regularizer, the
equivalence check and the cost accounting. No training loop, no files: the other layers build on this one."""
