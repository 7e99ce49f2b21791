"""The planner: a model of the fleet, its score, and plans of moves that
lower it — balance, evacuate, restore (FOOTBALL.md, "Planner").

Everything here but `read_fleet` is pure: planning is tested on fleets
built by hand. One concept a module:

- `fleet`: `Fleet`, `FleetHost`, `Resource`, what a move changes;
- `observe`: `read_fleet(ctx)`, the model from the hosts;
- `settings`: `Settings.from_config(config)`;
- `score`: the hbal score (`score`, `Evaluator`);
- `moves`: `Move` (handover, migrate), the hard limits, `Moved` (history);
- `balance`: `plan_balance`, the greedy loop;
- `evacuate`: `plan_evacuation`, `plan_restore`, `CapacityLacking`;
- `plan`: `Plan`, saved and loaded by id; the history of moves that ran."""

from football.planner.balance import BalanceRefused, plan_balance
from football.planner.evacuate import CapacityLacking, plan_evacuation, plan_restore
from football.planner.fleet import Fleet, FleetHost, Resource
from football.planner.moves import Move, Moved
from football.planner.plan import Plan, load_plan, read_history, record_moved, save_plan
from football.planner.score import Evaluator, score
from football.planner.settings import Settings

__all__ = ["BalanceRefused", "CapacityLacking", "Evaluator", "Fleet", "FleetHost", "Move",
           "Moved", "Plan", "Resource", "Settings", "load_plan", "plan_balance",
           "plan_evacuation", "plan_restore", "read_history", "record_moved", "save_plan",
           "score"]
