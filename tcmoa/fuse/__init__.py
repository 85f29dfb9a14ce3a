"""Inference on real images: the pipeline around the model, and what it shows.

    pipeline      Fuser: read, match sizes, order sources, pad or tile, fuse, restore colour
    tiling        overlapping tiles on the token grid, blended without seams
    folder_queue  folder fusion shared by the ranks of a torchrun job
    figures       prompt, routing, source-weight and difference figures (RGB arrays)
    sweeps        alpha/beta sweeps of a fusion, measured
    evaluate      `tcmoa evaluate`: a model and the baselines scored on eval sets

Builds on tcmoa.model; never imports tcmoa.train.
"""
