"""Runtimes: one module per framework, each building the real network from native weights
and running it; every one is checked against the contract in :mod:`equivalence.runtimes.base`.
"""
