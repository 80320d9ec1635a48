"""For each goal a run missed: how far it is (measured over target) and what
bounds it, read from the run's own figures: the CPU per update each process
and server spent over the window (the servers' counters) and, with
`--profile`, where the process's busy time went (py-spy)."""

from __future__ import annotations

from typing import Any


def at(node: Any, *path: str) -> Any:
    """`node[path[0]][path[1]]...`, None where any step is missing."""
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _us(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} µs"


class Figures:
    """The figures the bounds are read from."""

    def __init__(self, result: dict[str, Any]) -> None:
        modes = result["modes"]
        self.normal = modes.get("normal", {})
        self.modes = modes
        self.cpu = at(self.normal, "servers", "process_cpu_us_per_update")
        self.floor_cpu = at(modes, "floor", "servers", "process_cpu_us_per_update")
        rate = self.normal.get("throughput")
        self.busy = None if self.cpu is None or not rate else self.cpu * rate / 1e6
        self.profile = self.normal.get("profile")

    def loop(self) -> str:
        if self.busy is None:
            return "the loop's load not measured"
        return (
            f"the loop busy {self.busy:.0%} ({_us(self.cpu)} CPU/update, "
            f"the floor's {_us(self.floor_cpu)}): awaits queue behind other updates"
        )

    def product(self) -> str:
        p = self.profile
        if not p:
            if self.cpu is None or self.floor_cpu is None:
                return "no profile in this run (--profile)"
            beyond = _us(self.cpu - self.floor_cpu)
            return f"{beyond} CPU/update beyond the floor's (where: --profile)"
        mine = {
            k.split("/", 1)[1]: v
            for k, v in p["by_owner_and_package"].items()
            if k.startswith("product/")
        }
        top = ", ".join(f"{k} {v:,.0f}" for k, v in list(mine.items())[:4])
        owners = p["owner_us_per_update"]
        return (
            f"the product's work {_us(owners.get('product'))}/update ({top}) "
            f"beside the harness's {_us(owners.get('harness'))} and dispatch's "
            f"{_us(owners.get('dispatch'))}"
        )


# Each numeric goal's target (`goals.goals` checks against these too).
LIMITS = {"answer": 2, "read": 2, "write": 5, "wizard_msg": 3, "ratio": 1.5,
          "saturation": 2000, "saturation_2": 2000, "invalidation": 5, "webhook": 1.3}  # fmt: skip


def _far(measured: float | None, target: float, *, above: bool = True) -> str | None:
    if measured is None or not target:
        return None
    return f"{measured / target:.1f}×" if above else f"{target / measured:.1f}× short"


def bound(goal: dict[str, Any], f: Figures, key: str) -> None:
    """Fill `far` and `bound` of a missed goal (`key` names which)."""
    if goal["met"]:
        return
    if goal["measured"] == "not measured":
        goal["far"], goal["bound"] = None, "its mode was not run"
        return
    n, modes = f.normal, f.modes
    sat_cpu = at(modes, "saturation", "servers", "process_cpu_us_per_update")
    both = at(modes, "saturation_2", "servers")
    far: str | None = None
    why = f.loop()
    if key == "answer":
        far = _far(at(n, "classes", "presses", "tta_from_arrival_ms", "p99"), LIMITS[key])
    elif key in ("read", "write", "wizard_msg"):
        far = _far(at(n, "classes", key, "server_ms", "p95"), LIMITS[key])
        why = f"{why}; {f.product()}" if key == "read" else why
    elif key == "ratio":
        far = _far(at(n, "ratios_to_floor", "read_server_p50"), LIMITS[key])
        why = f.product()
    elif key == "saturation" and sat_cpu:
        far = _far(at(modes, "saturation", "throughput"), LIMITS[key], above=False)
        why = (
            f"one core over {_us(sat_cpu)} CPU/update is {1e6 / sat_cpu:,.0f}/s; "
            f"2,000/s needs ≤ 500 µs for all the process does, the floor's alone "
            f"{_us(f.floor_cpu)}"
        )
    elif key == "saturation_2" and both:
        far = _far(at(modes, "saturation_2", "throughput_both"), LIMITS[key], above=False)
        per = sum(both.get(k) or 0 for k in ("process_cpu_us_per_update",
                                            "redis_cpu_us_per_update",
                                            "postgres_cpu_us_per_update"))  # fmt: skip
        why = (
            f"two processes, Postgres and Redis share two cores: {_us(per)} "
            f"CPU/update among them, at most {2e6 / per:,.0f}/s"
            if per
            else why
        )
    elif key == "invalidation":
        far = _far(at(modes, "replicas", "replication", "delay_ms", "p99"), LIMITS[key])
        why = f"the listener's message waits for the loop: {why}"
    elif key == "webhook":
        cpu = at(modes, "webhook", "servers", "process_cpu_us_per_update")
        replica = at(modes, "webhook", "classes", "read", "server_ms", "p50")
        alone = at(n, "classes", "read", "server_ms", "p50")
        far = _far(replica / alone if replica and alone else None, LIMITS[key])
        why = f"two processes, Postgres and Redis on two cores: {_us(cpu)} CPU/update"
    elif key == "hot":
        why = "a job's query, not an update's: up to 500 deals with their views"
    goal["far"], goal["bound"] = far, why
