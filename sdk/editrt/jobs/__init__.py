"""Long jobs spread over a Ray cluster: relevance-matrix shards, evaluation queries, bulk edits.

- :mod:`.cluster` — connect to a cluster (an address) or start a local one, and shut down only
  what was started here;
- :mod:`.pool` — a fixed set of actors, each holding its models for the whole job; the driver
  hands out tasks, receives results in completion order and is their single writer;
- :mod:`.relevance` — ``editrt relevance --ray``: channel rows in shards, each written atomically;
- :mod:`.evaluate` — ``editrt evaluate --ray``: the protocol's query batches on actors.

Ray is an optional extra (``pip install editrt[ray]``); the single-process path is the default
and needs none of this. Bulk edits (``editrt batch``) live in :mod:`editrt.batch` and use the pool.
"""

from .cluster import ray_session, require_ray
from .pool import ActorPool

__all__ = ["ray_session", "require_ray", "ActorPool"]
