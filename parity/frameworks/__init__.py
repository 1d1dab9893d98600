"""Other frameworks' GRUs and ``jaxgru``: Keras 3 layers (:mod:`parity.frameworks.keras`), ONNX
``GRU`` operators (:mod:`parity.frameworks.onnx`), and Flax's, Equinox's and Haiku's GRU cells
(:mod:`parity.frameworks.other_jax`). Each is also an attribute of
:mod:`parity`, imported on first use: ``from parity import keras``, ``parity.onnx``, ``parity.other_jax``.
"""
