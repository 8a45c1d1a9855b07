"""Secret masking: the detectors and the streaming masker."""
