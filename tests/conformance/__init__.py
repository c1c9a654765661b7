"""Conformance of imcc against ONNX's own backend node test cases (see `runner`)."""
