"""Model registry (timm-style): ``create_model(name, num_classes, in_chans=1, ...)``."""
