"""Code shared by every Fluxgate service: contracts, settings, Redis keys, the job store, signing."""
