"""A lease in Redis that one process at a time holds: taken when free, renewed while it is ours.

The notifier's sweeper and the workers' reclaim of dead workers' jobs each run in every replica
and must act in one at a time.
"""

from __future__ import annotations

# KEYS[1]: the lease; ARGV: the holder's id, the lease in ms. Returns 1 when the caller holds it.
LEASE_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
