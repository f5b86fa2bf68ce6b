"""Running and judging: cases through runtimes and converters, the checking API, the
conformance grid, the benchmarks and the case files that cross environments."""
