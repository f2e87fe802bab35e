"""Analyses of trained models (``dare-rec analyze``, ``dare-rec plot``): attention quality, gradient conflict
and domination, representation discriminability, training curves.

The math (``ranking``, ``information``, ``conflict``, ``runs``, ``planted_terms``) is numpy only and
unit-tested on hand-built inputs; ``role_gradients`` and ``collect`` run models; ``clustering`` imports
scikit-learn lazily (the ``analysis`` extra) and ``plots`` imports matplotlib lazily.
"""
