"""How long `pulumi up` takes with the real engine: 3 and 6 nodes, and a no-op `pulumi up`.

Deploy time should follow the rollout waves, not the node count: nodes of one wave start in
parallel, and each wave waits only for its own health checks and its gate. This deploys the
dev-like e2e stack (tests/e2e) on a fresh e2e host for each size, times a first `pulumi up`, a
no-op `pulumi up` and `pulumi destroy`, and prints the figures. A benchmark, not a test: it
asserts nothing, and the figures depend on the machine.

    sudo .venv/bin/python -m bench.pulumi_up --nodes 3 6 --waves 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.lb_throughput import e2e_toolchain
from tests.support.e2e.host import e2e_host
from tests.support.e2e.images import ensure_images
from tests.support.e2e.pulumi_cli import PulumiProject
from tests.support.e2e.stacks import dev_like


def measure(nodes: int, waves: int, bin_dir: Path) -> dict[str, float]:
    with e2e_host() as host, tempfile.TemporaryDirectory(prefix="bench-pulumi-up-") as tmp:
        ensure_images(host)
        root = Path(tmp)
        project = PulumiProject.create(root / "project", bin_dir, stack="bench", netns=host.netns_path)
        project.init_stack(dev_like(host, root, nodes=nodes, waves=waves))
        try:
            first = project.up()
            noop = project.up("--expect-no-changes")
        finally:
            destroy = project.destroy()
        return {"up": first.seconds, "no-op up": noop.seconds, "destroy": destroy.seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--waves", type=int, default=2)
    args = parser.parse_args()
    bin_dir = e2e_toolchain()
    if bin_dir is None:
        return 1
    print(f"{'nodes':>5} {'waves':>5} {'pulumi up':>10} {'no-op up':>9} {'destroy':>8}   (seconds)")
    for nodes in args.nodes:
        figures = measure(nodes, args.waves, bin_dir)
        print(
            f"{nodes:>5} {args.waves:>5} {figures['up']:>10.1f} {figures['no-op up']:>9.1f} {figures['destroy']:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
