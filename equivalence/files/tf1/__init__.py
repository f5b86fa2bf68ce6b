"""The TF checkpoint family: the ``.index`` read by hand, then the variables."""
