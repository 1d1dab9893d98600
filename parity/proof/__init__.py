"""The proof that nothing changed on the way: one forward and backward pass on each side
(:mod:`parity.proof.runs`), their comparison (:mod:`parity.proof.report`) and the sweep
``python -m parity`` runs (:mod:`parity.proof.cli`, with Keras and ONNX Runtime in
:mod:`parity.proof.frameworks`). The public names are re-exported from :mod:`parity`.
"""
