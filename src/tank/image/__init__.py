"""The image model: descriptors, manifests, indexes and configs, parsed from untrusted bytes."""
