"""The balancer: spreads inference calls over a pool of inference servers."""
