"""Registration of the sources before fusion: alignment, and moving content in exposure stacks (deghost)."""
