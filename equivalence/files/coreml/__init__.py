"""The CoreML file family: ``.mlmodel`` neural networks' LSTM and GRU layers, read without macOS."""
