"""Shared state: the model repository, version pins, the generation readers check, and the node
directory. The data plane and the control plane both use it; neither reaches into the other."""
