"""Runtimes: one module per framework, each building the real network from native weights and
running it; the contract every one of them is checked against is :mod:`equivalence.runtimes.base`."""
