"""Small helpers with no SimpleFold knowledge in them (files, hashing, JSON)."""
