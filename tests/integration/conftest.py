import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from cocoonlib import (COCOON, Cocoon, cgroup_dirs, mount_snapshot, new_bundle,
                       token_pids, wait_for)

REPO = Path(__file__).resolve().parents[2]
MAKE_BUNDLE = REPO / "examples" / "busybox" / "make-bundle.sh"
# Mount points made once in the shared rootfs, so that tests binding onto
# them never write to it.
MOUNTPOINTS = ["host", "host2", "scratch", "mnt", "data"]


def pytest_report_header(config):
    return f"cocoon binary: {COCOON}"


@pytest.fixture(scope="session")
def cocoon_bin():
    if not os.access(COCOON, os.X_OK):
        pytest.fail(f"cocoon binary {COCOON} not found (build it: ninja -C build)")
    return COCOON


@pytest.fixture(scope="session")
def base(tmp_path_factory, cocoon_bin):
    """One busybox rootfs and template config.json for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts)")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("/bin/busybox missing (apt-get install busybox-static)")
    d = tmp_path_factory.mktemp("base")
    env = dict(os.environ, PATH="/usr/bin:/bin:/usr/sbin:/sbin")
    r = subprocess.run([str(MAKE_BUNDLE), str(d), cocoon_bin], env=env, timeout=120,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"make-bundle.sh failed: {r.stderr.strip()}")
    for m in MOUNTPOINTS:
        os.makedirs(d / "rootfs" / m, exist_ok=True)
    with open(d / "config.json") as f:
        cfg = json.load(f)
    return {"dir": str(d), "rootfs": str(d / "rootfs"), "config": cfg}


@pytest.fixture
def token():
    return uuid.uuid4().hex[:20]


@pytest.fixture
def cocoon(tmp_path, token, cocoon_bin):
    c = Cocoon(tmp_path / "state", token)
    yield c
    c.cleanup()


@pytest.fixture
def make_bundle(tmp_path, base, token):
    """make_bundle(*args, name=..., copy_rootfs=False) -> Bundle. The rootfs
    is a symlink to the shared one unless copy_rootfs (tests that write)."""
    n = [0]

    def make(*args, name=None, copy_rootfs=False):
        n[0] += 1
        b = new_bundle(tmp_path / (name or f"bundle{n[0]}"), base["config"], base["rootfs"],
                       token, copy_rootfs=copy_rootfs)
        if args:
            b.args(*args)
        b.save()
        return b

    return make


@pytest.fixture
def bundle(make_bundle):
    return make_bundle()


@pytest.fixture
def hostdir(tmp_path):
    """A host directory to bind into containers (world-writable)."""
    d = tmp_path / "hostdir"
    d.mkdir()
    os.chmod(d, 0o777)
    return d


@pytest.fixture
def watched(tmp_path, base):
    """Prefixes under which no mount may appear on the host."""
    return [str(tmp_path), base["dir"]]


@pytest.fixture
def nothing_left(cocoon, watched):
    """Call the returned function after a failing command: asserts no state
    dir, no new host mount and no live process of this test remain."""
    before = mount_snapshot(*watched)

    def check(extra_prefixes=(), mounts_before=None):
        assert cocoon.state_dirs() == [], f"state left behind: {cocoon.state_dirs()}"
        prefixes = [*watched, *map(str, extra_prefixes)]
        want = mounts_before if mounts_before is not None else before
        assert mount_snapshot(*prefixes) == want, "mounts left behind on the host"
        # A killed init may take a moment to die: wait, then fail if it does not.
        wait_for(lambda: token_pids(cocoon.token) == [],
                 f"no process left (still: {token_pids(cocoon.token)})", timeout=10)
        left = [d for cid in cocoon.ids for d in cgroup_dirs(cid, cocoon.roots)]
        assert left == [], f"cgroups left behind: {left}"

    return check
