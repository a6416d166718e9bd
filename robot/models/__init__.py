"""Model files: fetch, quantize, calibrate, evaluate, test-model generation."""
