"""What leaves cl: feature files (cl embed) and ONNX models (cl export)."""
