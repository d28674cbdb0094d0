"""corosync.conf options a topology may set beyond what it models (``cluster.corosync``).

Its own module, as the SSH inventory is: a validated block of the topology with rules of its own.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


GENERATED_TOTEM = frozenset({"version", "cluster_name", "transport", "interface"})
"""totem keys fallover derives from the topology's name, nodes and networks (the knet links, one per heartbeat
network): an override would leave the testbed and the cluster disagreeing on what the cluster is."""


class Corosync(BaseModel):
    """corosync.conf options the topology does not model, written over the generated ones, as an operator's
    hand edit of corosync.conf is (e.g. ``quorum: {wait_for_all: 1}``, ``totem: {consensus: 3000}``).

    The one exception is ``totem.token``: it is refused unless ``hand_tuned_token`` says so, because the
    plan and every timing judgement read ``cluster.token_ms``. A broken cluster for fallover's own tests
    (tests/data/broken/shorttoken.yaml) runs a token other than the declared one on purpose.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    totem: dict[str, int | str] = {}
    quorum: dict[str, int | str] = {}
    hand_tuned_token: int | None = Field(default=None, ge=200, le=60000)
    """The token corosync really runs, against the declared ``cluster.token_ms``: a cluster whose operator
    edited corosync.conf after the topology was written (only for clusters broken on purpose)."""

    @field_validator("totem", "quorum", mode="before")
    @classmethod
    def _options(cls, v: object, info: ValidationInfo) -> object:
        if not isinstance(v, dict):
            return v  # pydantic says "should be a valid dictionary"
        for key, value in v.items():
            if not isinstance(key, str) or not re.match(r"^[a-z][a-z0-9_]{0,40}$", key):
                raise ValueError(f"{key!r}: a corosync option is lower case letters, digits and '_'")
            if isinstance(value, bool) or not isinstance(value, int | str) \
                    or not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", str(value)):
                raise ValueError(f"{key}: {value!r} is not one corosync value (a number, or letters, digits, _.:-)")
            if info.field_name == "totem" and key in ("token", "token_coefficient"):
                raise ValueError(f"{key!r}: declare it as cluster.{key}_ms, which the plan reads "
                                 "(cluster.corosync.hand_tuned_token runs another token on purpose)")
            if info.field_name == "totem" and key in GENERATED_TOTEM:
                raise ValueError(f"{key!r} is generated from the topology's name, nodes and networks")
            if info.field_name == "quorum" and key == "provider":
                raise ValueError("'provider' is corosync_votequorum, which the quorum faults' outcomes assume")
        return v
