"""Weights between torch and ``jaxgru``: conversion (:mod:`parity.weights.convert`) and files
(:mod:`parity.weights.files`: safetensors with torch's names, torch ``.pt`` files, whole models'
state dicts). The public names are re-exported from :mod:`parity`.
"""
