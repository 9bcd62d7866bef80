"""The inference server: one model server per GPU running diffusers pipelines."""
