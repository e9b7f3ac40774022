"""Running a model once it is trained: timing and benchmarks, unstructured (CSR) inference, quantization, ONNX
export and the pictures of a run."""
