"""Issue "day-2 operations": what an upgrade, a scale change or a replaced node does to the stack.

Each test compares recorded runs: a resource whose recorded inputs are unchanged gets no diff
from the engine, so it is neither updated nor replaced. The harness derives image digests and
resource IDs from the inputs, so a rebuild or replacement shows up downstream as it would for real.
"""

from __future__ import annotations

from components.plan import plan_cluster
from tests.support.graph import RolloutGraph
from tests.support.program import Deployments, ProgramRun
from tests.support.stackfiles import StackCase
from tests.support.views import brokers, changed_inputs, command_type

# --------------------------------------------------------------------------- upgrade


def test_version_change_rebuilds_the_image_and_rolls_only_the_brokers(
    case: StackCase, deployments: Deployments
) -> None:
    old = deployments.run(case.with_config(emqxVersion="5.8.6"))
    new = deployments.run(case.with_config(emqxVersion="5.8.7"))
    assert sorted(r.urn for r in new.resources) == sorted(r.urn for r in old.resources)
    nodes = range(1, case.nodes + 1)
    waves = len(case.plan().waves)
    expected = {
        "emqx-broker-image-build": {"name", "build"},
        **{f"emqx{i}": {"image"} for i in nodes},
        # New container IDs change the scripts' text: in-place updates, never replacements.
        **{f"emqx{i}-membership": {"stdin"} for i in nodes if i > 1},
        **{f"wave{k}-verify": {"stdin"} for k in range(1, waves + 1)},
    }
    assert changed_inputs(old, new) == expected
    image = new.named("emqx-broker-image-build")
    assert image.inputs["build"]["buildArgs"] == {"EMQX_BASE_IMAGE": f"{case.setting('emqxRepository')}:5.8.7"}
    assert len({c.inputs["image"] for c in brokers(new)}) == 1
    assert {c.inputs["image"] for c in brokers(new)}.isdisjoint({c.inputs["image"] for c in brokers(old)})


# --------------------------------------------------------------------------- waves


def _wave_gate_dependencies(run: ProgramRun, container: str) -> set[str]:
    """The verify gates a container lists as direct dependencies."""
    by_urn = run.by_urn()
    return {by_urn[urn].name for urn in run.named(container).dependencies if by_urn[urn].name.endswith("-verify")}


def test_second_wave_depends_on_the_first_wave_gate(any_run: ProgramRun, case: StackCase) -> None:
    graph = RolloutGraph(any_run)
    first, second = case.plan().waves
    for node in second:
        assert _wave_gate_dependencies(any_run, node.container_name) == {"wave1-verify"}
        assert "wave2-verify" not in graph.done_before(node.container_name)
    for node in first:
        assert _wave_gate_dependencies(any_run, node.container_name) == set()
        assert not {name for name in graph.done_before(node.container_name) if name.endswith("-verify")}


def test_each_of_three_waves_waits_for_the_previous_gate(
    stacks: dict[str, StackCase], deployments: Deployments
) -> None:
    case = stacks["prod"].with_config(waves=3)
    run = deployments.run(case)
    graph = RolloutGraph(run)
    waves = case.plan().waves
    assert [[n.index for n in wave] for wave in waves] == [[1, 4], [2, 5], [3]]
    # tuning, preflight, dirs, access files, joins, gates, topic rules
    assert len(run.of_type(command_type("prod"))) == 2 + 5 + 5 + 4 + 3 + 1
    for number, wave in enumerate(waves, start=1):
        for node in wave:
            gates = _wave_gate_dependencies(run, node.container_name)
            assert gates == ({f"wave{number - 1}-verify"} if number > 1 else set())
            assert graph.is_after(f"wave{number}-verify", node.container_name)
            later = {f"wave{k}-verify" for k in range(number, len(waves) + 1)}
            assert later.isdisjoint(graph.done_before(node.container_name))


# --------------------------------------------------------------------------- scaling


def test_scale_down_removes_only_the_dropped_nodes(stacks: dict[str, StackCase], deployments: Deployments) -> None:
    five = stacks["prod"]
    assert five.nodes == 5
    three = five.with_config(nodes=3)
    before, after = deployments.run(five), deployments.run(three)

    removed = {r.name for r in before.resources} - {r.name for r in after.resources}
    assert removed == {
        *("emqx4", "emqx5", "emqx4-dirs", "emqx5-dirs", "emqx4-membership", "emqx5-membership"),
        *("emqx4-access-files", "emqx5-access-files"),
    }
    assert {r.name for r in after.resources} <= {r.name for r in before.resources}

    for name in ("emqx1", "emqx2", "emqx3", "emqx1-dirs", "emqx2-dirs", "emqx3-dirs"):
        assert after.named(name).inputs == before.named(name).inputs, name
    for name in ("emqx2-membership", "emqx3-membership"):
        assert after.named(name).inputs == before.named(name).inputs, name

    assert changed_inputs(before, after) == {
        "emqx-lb": {"uploads"},  # nginx.conf loses two upstreams
        "wave1-verify": {"stdin"},  # expects emqx1, emqx3 only
        "wave2-verify": {"stdin"},
        "emqx-host-sysctls": {"stdin"},  # fewer reserved ports
        "emqx-preflight-check": {"stdin"},  # fewer ports to check
    }
    old_files = {u["file"]: u for u in before.named("emqx-lb", custom=True).inputs["uploads"]}
    new_files = {u["file"]: u for u in after.named("emqx-lb", custom=True).inputs["uploads"]}
    assert {f for f in new_files if new_files[f] != old_files[f]} == {"/etc/nginx/nginx.conf"}
    assert "127.0.0.1:61004" in old_files["/etc/nginx/nginx.conf"]["content"]
    assert "127.0.0.1:61004" not in new_files["/etc/nginx/nginx.conf"]["content"]


def test_critical_path_does_not_grow_with_the_node_count(
    stacks: dict[str, StackCase], deployments: Deployments
) -> None:
    chains = {
        nodes: RolloutGraph(deployments.run(stacks["dev"].with_config(nodes=nodes, waves=2))).longest_chain()
        for nodes in (3, 5, 20)
    }
    assert len(plan_cluster(stacks["dev"].with_config(nodes=20).parsed()).nodes) == 20
    lengths = {nodes: len(chain) for nodes, chain in chains.items()}
    assert len(set(lengths.values())) == 1, {n: (lengths[n], chains[n]) for n in chains}
    # image build -> dirs (beside them: access files) -> wave-1 node -> join -> gate 1 -> dirs
    # -> wave-2 node -> join -> gate 2 -> a client's registration
    assert lengths[3] <= 10, chains[3]


# --------------------------------------------------------------------------- replaced nodes


def test_membership_rejoins_on_replacement_and_never_leaves(any_run: ProgramRun, case: StackCase) -> None:
    for index in range(2, case.nodes + 1):
        membership = any_run.named(f"emqx{index}-membership")
        container = any_run.named(f"emqx{index}")
        inputs = membership.inputs
        # pulumi-command replaces a command whose `triggers` change (its SDK sets
        # replace_on_changes=["triggers[*]"]), and a replacement would run `cluster leave`.
        # So no triggers: the container ID is part of the script, and a new ID is an update.
        assert "triggers[*]" in membership.replace_on_changes
        assert not inputs.get("triggers")
        assert container.urn in membership.property_dependencies["stdin"]
        join = membership.operation_script("create")
        if join is not None:  # known after update (unknown in preview)
            assert membership.operation_script("update") == join
            assert join.startswith(f"# emqx{index} container {container.id}\n")
            assert "cluster join" in join and "emqx1@" in join
            assert "cluster leave" not in join
            assert "cluster leave" in str(membership.operation_script("delete"))
        # A new SSH key or user is an in-place update in pulumi-command (only `triggers` is
        # replace-on-change), so nothing pins the old connection in state.
        assert "connection" not in membership.ignore_changes
        assert "connection" not in membership.replace_on_changes


def test_gates_are_updated_in_place_so_later_waves_keep_their_image(any_run: ProgramRun, case: StackCase) -> None:
    for wave in range(1, len(case.plan().waves) + 1):
        gate = any_run.named(f"wave{wave}-verify")
        assert not gate.inputs.get("triggers")
        check = gate.operation_script("create")
        if check is not None:  # known after update (unknown in preview)
            assert gate.operation_script("update") == check
        assert not gate.inputs.get("delete")
        assert "connection" not in gate.ignore_changes


# --------------------------------------------------------------------------- the first layout's URNs


def test_moved_and_renamed_components_carry_aliases_to_their_first_urns(any_run: ProgramRun) -> None:
    """Stacks deployed with the first layout (BrokerNodes and ClusterFormation side by side, the
    load balancer named like its container) keep every URN: the engine follows these aliases,
    and children inherit their parent's (proven with the real engine in tests/e2e)."""
    top = any_run.named("emqx")
    brokers = any_run.named("emqx-brokers")
    formation = any_run.named("emqx-cluster")
    load_balancer = next(r for r in any_run.resources if r.type == "emqx-cluster:index:LoadBalancer")
    assert brokers.aliases == [{"spec": {"type": "emqx-cluster:index:BrokerNodes", "parentUrn": top.urn}}]
    assert formation.parent == brokers.urn
    assert formation.aliases == [{"spec": {"parentUrn": top.urn}}]
    assert load_balancer.name == "emqx-load-balancer"
    assert load_balancer.aliases == [{"spec": {"name": "emqx-lb", "parentUrn": top.urn}}]
