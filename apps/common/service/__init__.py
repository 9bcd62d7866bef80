"""What every service process needs: settings, logging, tracing, errors, HTTP app plumbing."""
