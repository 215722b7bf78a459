"""Kept so that ``from mmgan.shards import PackStream, ShardCodec`` keeps working (plugins imported them from
here before :mod:`mmgan.api`): the codec lives in :mod:`mmgan.contract.codec`, the shard machinery in
:mod:`mmgan.data.shards`."""

from __future__ import annotations

from mmgan.contract.codec import PackStream, ShardCodec

__all__ = ["PackStream", "ShardCodec"]
