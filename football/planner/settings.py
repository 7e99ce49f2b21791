"""The planner's settings: the score's weights and penalties, the stop rules
and the safeguards, read once from the tunables (football/config.py)."""

import fnmatch
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    """Every number the planner uses; the defaults are the tunables'."""

    weight_free_vg: float = 0.5
    weight_free_memory: float = 0.5
    weight_containers: float = 1.0
    weight_cpu_load: float = 1.0
    penalty_draining_primary: float = 16.0
    penalty_draining_replica: float = 4.0
    penalty_same_failure_domain: float = 1.0
    penalty_no_secondary: float = 1.0
    min_gain: float = 0.01
    min_gain_limit: float = 0.1
    gain_per_tib: float = 0.01
    max_moves: int = 10
    cooldown: float = 86400.0
    plan_expiry: float = 86400.0
    balance_threshold: float = 0.1
    balance_hold: int = 3
    balance_margin: float = 0.1
    placement_min_free: int = 0
    balance_pinned: tuple = ()

    @classmethod
    def from_config(cls, config):
        """The settings of a resolved `Config` (every field is a tunable of
        the same name)."""
        return cls(**{field.name: getattr(config, field.name) for field in fields(cls)})

    def pinned_by(self, res):
        """The `balance_pinned` pattern that pins `res`, or None."""
        return next((pattern for pattern in self.balance_pinned
                     if fnmatch.fnmatchcase(res, pattern)), None)

    def weights(self):
        """{metric: weight} of the score's spread terms."""
        return {"free_vg": self.weight_free_vg, "free_memory": self.weight_free_memory,
                "containers": self.weight_containers, "cpu_load": self.weight_cpu_load}
