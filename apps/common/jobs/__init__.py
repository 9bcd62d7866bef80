"""A job from submit to its final view: record, store, view, queue place, what follows an event."""
