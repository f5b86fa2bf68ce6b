"""The Keras file family: ``.keras``, ``.weights.h5`` and legacy HDF5, read, written and run."""
