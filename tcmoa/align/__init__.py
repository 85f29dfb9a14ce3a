"""Registration of fusion sources: every source into one reference frame, or left as given with a reason.

A layer below tcmoa.fuse: it reads images as tcmoa.imaging returns them (float32 in [0, 1],
(H, W) grey or (H, W, 3) RGB, sources of any sizes) and knows the presets of tcmoa.tasks.

```python
from tcmoa.align import align_sources, misalignment_hint

result = align_sources([visible, thermal], mode="auto", task="vif")   # reference: default_reference
result.images           # every source in the reference's frame and size (the reference untouched)
result.coverage         # per source (H, W) float32, 1 where it has real pixels, or None (covers all)
result.sources[1].note  # "source 2: moved 14.2 px right and 3.1 px down, rotated 1.0° clockwise, ..."
result.to_json()        # the reference, each source's status, model, matrix, confidence and note
misalignment_hint([a, b], "vif")   # for align=off: "the sources look misaligned by about 12 px; ..." or None
```

Modes (ALIGN_MODES): ``off`` returns the images as given (no work); ``auto`` detects sources that
are already registered and leaves them exactly as given (the same objects), aligns the others
with a similarity, or a homography where it fits clearly better (similarity only for focal
stacks and medical slices), and never warps MRI + PET/SPECT on its own (the measure is not
reliable there: see tcmoa.align.register.POLICIES); ``translation``, ``similarity``, ``affine``,
``homography`` fit that model to every source and apply it unless it fails.

Each source gets a SourceAlignment: status ``reference``, ``unchanged`` (detected as aligned),
``aligned`` or ``failed`` (left as given, the note says why and what to try); the model; a 3×3
matrix from its pixel coordinates to the reference's; a confidence in [0, 1] (the edge agreement
of the two sources where they overlap, tcmoa.align.result); and a note in words.

How it works: tcmoa.align.structure (gradient-orientation fields, which agree across modalities),
search (a global search over scale, rotation and translation), refine (Gauss-Newton, coarse to
fine), features (SIFT + RANSAC for exposures and focal planes), polish (ECC's
sub-pixel polish of an aligned exposure), transforms (models, checks and
words), warp (the full-resolution warp, coverage and the common area), consensus (the confidence),
register (the decisions), hint (the look for alignment off), deghost (moving content in exposure
stacks: the motion masks and the reference's content mapped into each exposure).
Estimation runs on copies at most 384 px long (the same-modality polish at most 1024); only the final
warp touches full resolution.
"""
from .deghost import deghost, exposure_map, motion_masks
from .hint import misalignment_hint
from .reference import default_reference
from .register import POLICIES, Policy, align_sources
from .result import ALIGN_MODES, Alignment, SourceAlignment

__all__ = ["ALIGN_MODES", "Alignment", "POLICIES", "Policy", "SourceAlignment", "align_sources",
           "default_reference", "deghost", "exposure_map", "misalignment_hint", "motion_masks"]
