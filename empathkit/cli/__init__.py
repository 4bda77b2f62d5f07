"""Thin command-line layer: parse, load config, call the Python API. One module per command group."""
