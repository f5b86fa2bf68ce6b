"""``equivalence compare``: sides built from deployed artefacts, the probes, the verdict."""
