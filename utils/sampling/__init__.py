"""Sampling runs of the scripts (resumable shards, outputs, provenance) and the sampler comparison."""
