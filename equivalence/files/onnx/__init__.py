"""The ONNX file family: LSTM nodes in models from strangers, read, written and run."""
