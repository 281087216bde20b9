"""modelhost: a node that fetches, verifies, loads and runs models, and says which node answered."""
