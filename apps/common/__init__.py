"""Code shared by every Fluxgate service: contracts, settings, Redis keys, job store, signing."""
