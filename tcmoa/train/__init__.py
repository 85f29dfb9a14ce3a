"""Training: the data pack, synthesis, the official losses, and the two stages that use them.

    data            the training pack (one safetensors file) and batches drawn from it
    synthesis       exposure and focus pairs synthesised from single images
    losses          the official TC-MoA losses (SSIM, MEF-SSIM, gradient, intensity terms)
    loss_weights    the official loss weights (2024 and 2025 code)
    options         the typed options of a run, its errors, its precision
    loop            what both stages share: schedule, chunks, resume, checkpoints (a `Run`)
    run_log         log.jsonl and its loss plot
    pretrain_stage  stage 1: the backbone as an autoencoder (`tcmoa pretrain`)
    fusion_stage    stage 2: TC-MoA on the frozen backbone (`tcmoa train`)

Builds on tcmoa.model; never imports tcmoa.fuse. The command lines are tcmoa/train_cli.py.
"""
