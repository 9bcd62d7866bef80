"""Model pipelines the inference server can run."""
