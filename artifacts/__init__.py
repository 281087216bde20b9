"""Model artifacts: the formats a model is stored in, how to load them safely, and their input schema."""
