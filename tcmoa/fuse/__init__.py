"""Inference on real images: the pipeline around the model, and what it shows.

    pipeline      Fuser: read, prepare, order sources, fuse pairwise, restore colour
    prepare       before fusion: align the sources (tcmoa.align), de-ghost exposure stacks, trust maps
    runner        one pair through the model: the token path within its budget, the head at full resolution
    runtime       how the token path runs: eager or int8
    tiling        overlapping tiles on the token grid, blended without seams (models without a head)
    folder_queue  folder fusion shared by the ranks of a torchrun job
    figures       prompt, routing, source-weight and difference figures (RGB arrays)
    sweeps        alpha/beta sweeps of a fusion, measured
    evaluate      `tcmoa evaluate`: a model and the baselines scored on eval sets

Builds on tcmoa.model and tcmoa.align; never imports tcmoa.train.
"""
