"""Pixel world models (video prediction): ``rnn_deconv``, ``svg_lp`` / ``svg_fp``, ``savp``, ``epva``,
``frame_transformer`` and ``asset_spatial_rnn``; each module registers its model."""
