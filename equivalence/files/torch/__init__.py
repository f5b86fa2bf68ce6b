"""The PyTorch file family: state_dicts, safetensors, TorchScript and pickles read as data."""
