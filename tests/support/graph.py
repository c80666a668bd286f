"""The rollout order a recorded program implies, computed from what the SDK sent the engine.

One graph for every tier: the stack tests ask it what completes before what and for the critical
path; the integration tier's engine (tests/support/engine.py) walks `topological_order()`.

Edges come from two places:

* `dependencies` (explicit `depends_on` plus property dependencies). The SDK already expands a
  `depends_on` on a local component into that component's custom descendants (pulumi
  `rpc._add_dependency`), so a recorded dependency is normally a custom resource; should one
  name a component anyway (a remote component), it is read as "all of its custom descendants".
* the parent: a child is registered only once its parent's URN is known, and a component is
  registered only once its own dependencies have completed. A component's `depends_on`
  (e.g. the load balancer's on host tuning) therefore orders every resource inside it.

Nothing here depends on the order the resources were registered in, which varies from run to run
(tests/support/program.py): ties are broken by the order the program declared them in.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from tests.support.program import ProgramRun, Recorded


class RolloutGraph:
    """Which resources must be done before which, over one recorded run."""

    def __init__(self, run: ProgramRun) -> None:
        self._run = run
        self._by_urn = run.by_urn()
        children: dict[str, list[str]] = defaultdict(list)
        for resource in run.resources:
            children[resource.parent].append(resource.urn)
        self._children = dict(children)
        self.edges: dict[str, set[str]] = {}
        for resource in run.resources:
            before = {custom for dep in resource.dependencies for custom in self._customs(dep)}
            if resource.parent in self._by_urn:
                before.add(resource.parent)
            self.edges[resource.urn] = before
        self._done_before = cache(self._compute_done_before)
        self._chain = cache(self._compute_chain)
        self._start = cache(self._compute_start)

    def _declared(self, urn: str) -> int:
        return self._by_urn[urn].declared

    def _customs(self, urn: str) -> set[str]:
        """A custom resource itself; a component as the custom resources below it."""
        resource = self._by_urn.get(urn)
        if resource is None:
            raise AssertionError(f"dependency on an unregistered resource: {urn}")
        if resource.custom:
            return {urn}
        return {found for child in self._children.get(urn, []) for found in self._customs(child)}

    def urn(self, name: str) -> str:
        """A resource's URN; where a component and its resource share a name (emqx-lb), the resource's."""
        if sum(r.name == name for r in self._run.resources) > 1:
            return self._run.named(name, custom=True).urn
        return self._run.named(name).urn

    def _compute_done_before(self, urn: str) -> frozenset[str]:
        found: set[str] = set()
        for dep in self.edges[urn]:
            found.add(dep)
            found |= self._done_before(dep)
        return frozenset(found)

    def done_before(self, name: str) -> set[str]:
        """Names of every resource that completes before `name` is created or updated."""
        return {self._by_urn[urn].name for urn in self._done_before(self.urn(name))}

    def ancestors(self, urn: str) -> frozenset[str]:
        """URNs of everything `urn` transitively waits for."""
        return self._done_before(urn)

    def is_after(self, name: str, other: str) -> bool:
        """`name` waits for `other`; for a component `other`, for every custom resource in it."""
        required = self._customs(self.urn(other))
        assert required, f"{other} holds no custom resource"
        return required <= self._done_before(self.urn(name))

    def _compute_chain(self, urn: str) -> tuple[str, ...]:
        longest: tuple[str, ...] = ()
        for dep in sorted(self.edges[urn], key=self._declared):  # of equally long chains, always the same one
            chain = self._chain(dep)
            if len(chain) > len(longest):
                longest = chain
        return (*longest, urn) if self._by_urn[urn].custom else longest

    def longest_chain(self) -> list[str]:
        """Names of the custom resources on the longest dependency chain (the rollout's critical path)."""
        longest: tuple[str, ...] = ()
        for urn in self.edges:
            chain = self._chain(urn)
            if len(chain) > len(longest):
                longest = chain
        return [self._by_urn[urn].name for urn in longest]

    def _compute_start(self, urn: str) -> int:
        """When `pulumi up` starts `urn`, counting each custom resource's step as one tick: the
        engine runs every step as soon as what it waits for is done (a component takes no time)."""
        return max((self._start(dep) + self._by_urn[dep].custom for dep in self.edges[urn]), default=0)

    def topological_order(self) -> list[Recorded]:
        """The engine's schedule, one step at a time: every resource after what it waits for.

        `pulumi up` runs steps in parallel, each as soon as what it waits for is done; run one at
        a time, they go in order of their start tick (`_compute_start`), then in the order the
        program declared them. Both are the same on every run of the same program, so is the
        schedule. (Declaration order alone would replay the program's source order and hide a
        missing dependency; start ticks let a resource that waits for little run early, as it
        would for real.)
        """
        waiting = {urn: set(before) for urn, before in self.edges.items()}
        done: list[Recorded] = []
        while waiting:
            ready = sorted(
                (urn for urn, before in waiting.items() if not before),
                key=lambda urn: (self._start(urn), self._declared(urn)),
            )
            if not ready:
                raise AssertionError(f"dependency cycle among {sorted(waiting)}")
            urn = ready[0]
            done.append(self._by_urn[urn])
            del waiting[urn]
            for before in waiting.values():
                before.discard(urn)
        return done


def custom_resources(run: ProgramRun) -> list[Recorded]:
    return [r for r in run.resources if r.custom]
