"""Dataset recipes and synthetic footage for CompoundEye (training-side code, not imported by the runtime)."""
