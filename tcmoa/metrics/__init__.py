"""Measuring fusions, no torch: quality metrics, classical baselines, evaluation over data sets.

    vifb        EN, SD, SF, AG, MI, PSNR, RMSE, Qabf, SSIM, CE, EI, Qcb, Qcv (VIFB), VIF, MEF-SSIM, Nabf
    scores      the metrics by name (METRICS) and evaluate(): whole images, VIFB's grey/colour modes
    matlab      MATLAB idioms the metrics need bit-for-bit (imfilter, fspecial, filter2, ...)
    baselines   average, Laplacian pyramid, Mertens
    evaluation  run a method over eval sets and write tables
    artifacts   faults a person sees: token-grid steps, isolated blocks, structure kept inside a mask
"""
