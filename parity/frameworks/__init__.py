"""Other frameworks' recurrent layers and ``jaxgru``: Keras 3 layers (:mod:`parity.frameworks.keras`), ONNX
``GRU``, ``LSTM`` and ``RNN`` operators (:mod:`parity.frameworks.onnx`), Flax's, Equinox's and Haiku's GRU, LSTM
and simple cells (:mod:`parity.frameworks.other_jax`, and in ``jax.numpy`` :mod:`parity.frameworks.cell_trees`) and
torchrl's recurrent modules (:mod:`parity.frameworks.torchrl`). Each is also an attribute of
:mod:`parity`, imported on first use: ``from parity import keras``, ``parity.onnx``, ``parity.other_jax``.
"""
