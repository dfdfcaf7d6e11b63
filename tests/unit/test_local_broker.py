"""The local broker's pure parts."""

from __future__ import annotations

import base64

from pipelines.platform.local_broker import cluster_id


def test_a_cluster_id_is_16_random_bytes_that_never_look_like_an_option():
    """A fresh clone's `make test` once failed with `argument --cluster-id/-t: expected one argument`: one id in 64
    starts with '-'. Of 3,000 ids, ~47 would; none may."""
    ids = [cluster_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == 3000
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
