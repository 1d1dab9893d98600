"""The seed tutorial's sine task, the main job: data, model and training
(:mod:`parity.sine.task`) and the ``jaxgru-sine`` command (:mod:`parity.sine.cli`;
``examples/sine.py`` runs the same command).
"""
