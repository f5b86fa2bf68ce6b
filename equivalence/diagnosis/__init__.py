"""Diagnosis: what went wrong in a failed conversion, from the weights where both sides
are known and from the outputs where only one is."""
