"""Bad input: every case must fail with exit status 1 and exactly one
`cocoon: ...` line on stderr naming what was wrong, and leave nothing
behind: no state directory, no host mount, no process, no cgroup, and
nothing created outside the rootfs."""
import json
import os
import subprocess

import pytest

from cocoonlib import TIMEOUT, assert_one_error, mount_snapshot, needs_root, rmtree

pytestmark = needs_root

CASES = {}


def case(name, *expect, copy=False, raw=False, skip=None):
    """Register a bad bundle: fn(bundle, ctx) edits it (and may return extra
    create/run options); expect are strings the error line must contain."""
    def deco(fn):
        CASES[name] = dict(fn=fn, expect=expect, copy=copy, raw=raw, skip=skip)
        return fn
    return deco


def has_cap(bit):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_RESOURCE = 24


def write_raw(b, text):
    with open(os.path.join(b.path, "config.json"), "w") as f:
        f.write(text)


# ---------------------------------------------------------------- the document

@case("missing-config", "config.json", raw=True)
def _(b, ctx):
    os.remove(os.path.join(b.path, "config.json"))


@case("empty-config", "config.json", raw=True)
def _(b, ctx):
    write_raw(b, "")


@case("truncated-json", "config.json", "malformed JSON", raw=True)
def _(b, ctx):
    text = json.dumps(b.config, indent=2)
    write_raw(b, text[: len(text) // 2])


@case("trailing-garbage", "config.json", raw=True)
def _(b, ctx):
    write_raw(b, json.dumps(b.config) + "\n}garbage")


@case("second-document", "config.json", raw=True)
def _(b, ctx):
    write_raw(b, json.dumps(b.config) + json.dumps(b.config))


@case("not-an-object", "config.json", raw=True)
def _(b, ctx):
    write_raw(b, "[1, 2, 3]")


@case("config-is-a-directory", "config.json", raw=True)
def _(b, ctx):
    os.remove(os.path.join(b.path, "config.json"))
    os.mkdir(os.path.join(b.path, "config.json"))


# ---------------------------------------------------------------- field types

@case("args-string", "process.args")
def _(b, ctx):
    b.process["args"] = "sh -c true"


@case("args-empty", "process.args")
def _(b, ctx):
    b.process["args"] = []


@case("args-element-number", "process.args[1]")
def _(b, ctx):
    b.process["args"] = ["sh", 1]


@case("args0-empty-string", "process.args[0]")
def _(b, ctx):
    b.process["args"] = ["", "x"]


@case("env-string", "process.env")
def _(b, ctx):
    b.process["env"] = "PATH=/bin"


@case("terminal-string", "process.terminal")
def _(b, ctx):
    b.process["terminal"] = "false"


@case("cwd-relative", "process.cwd")
def _(b, ctx):
    b.process["cwd"] = "relative/dir"


@case("cwd-number", "process.cwd")
def _(b, ctx):
    b.process["cwd"] = 7


@case("uid-negative", "process.user.uid")
def _(b, ctx):
    b.process["user"]["uid"] = -1


@case("uid-string", "process.user.uid")
def _(b, ctx):
    b.process["user"]["uid"] = "0"


@case("uid-too-big", "process.user.uid")
def _(b, ctx):
    b.process["user"]["uid"] = 2 ** 32


@case("gid-fraction", "process.user.gid")
def _(b, ctx):
    b.process["user"]["gid"] = 1.5


@case("additional-gid-negative", "additionalGids")
def _(b, ctx):
    b.process["user"]["additionalGids"] = [10, -5]


@case("umask-too-big", "umask")
def _(b, ctx):
    b.process["user"]["umask"] = 0o1000


@case("no-process", "process")
def _(b, ctx):
    del b.config["process"]


@case("process-array", "process")
def _(b, ctx):
    b.config["process"] = ["sh"]


@case("root-path-number", "root.path")
def _(b, ctx):
    b.config["root"]["path"] = 42


@case("root-path-empty", "root.path")
def _(b, ctx):
    b.config["root"]["path"] = ""


@case("root-missing", "root")
def _(b, ctx):
    del b.config["root"]


@case("root-readonly-string", "root.readonly")
def _(b, ctx):
    b.config["root"]["readonly"] = "yes"


@case("mounts-object", "mounts")
def _(b, ctx):
    b.config["mounts"] = {"destination": "/x"}


@case("mount-not-object", "mounts[0]")
def _(b, ctx):
    b.config["mounts"] = ["/proc"]


@case("mount-no-destination", "mounts[1]", "destination")
def _(b, ctx):
    b.config["mounts"] = [b.config["mounts"][0], {"type": "tmpfs", "source": "tmpfs"}]


@case("mount-options-string", "options")
def _(b, ctx):
    b.config["mounts"][0]["options"] = "ro"


@case("mount-no-type", "mounts[7]")
def _(b, ctx):
    assert len(b.config["mounts"]) == 7
    b.config["mounts"].append({"destination": "/mnt", "source": "x"})


@case("bind-without-source", "mounts[7]", "source")
def _(b, ctx):
    b.config["mounts"].append({"destination": "/mnt", "type": "bind", "options": ["rbind"]})


@case("namespace-unknown", "linux.namespaces", "bogus")
def _(b, ctx):
    b.linux["namespaces"].append({"type": "bogus"})


@case("namespace-duplicate", "duplicate", "pid")
def _(b, ctx):
    b.linux["namespaces"].append({"type": "pid"})


@case("namespaces-not-array", "linux.namespaces")
def _(b, ctx):
    b.linux["namespaces"] = "pid"


@case("no-mount-namespace", "mount namespace")
def _(b, ctx):
    b.drop_namespace("mount")


@case("hostname-too-long", "hostname")
def _(b, ctx):
    b.config["hostname"] = "h" * 65


@case("hostname-without-uts", "hostname", "uts")
def _(b, ctx):
    b.drop_namespace("uts")


@case("annotation-not-string", "annotations")
def _(b, ctx):
    b.config["annotations"] = {"k": 1}


@case("oom-score-adj-out-of-range", "oomScoreAdj")
def _(b, ctx):
    b.process["oomScoreAdj"] = 1001


@case("rlimit-unknown", "RLIMIT_BOGUS")
def _(b, ctx):
    b.process["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]


@case("rlimit-soft-above-hard", "process.rlimits[0]")
def _(b, ctx):
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 10}]


@case("rlimit-duplicate", "duplicate", "RLIMIT_NOFILE")
def _(b, ctx):
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}] * 2


@case("capability-unknown", "CAP_BOGUS")
def _(b, ctx):
    b.process["capabilities"]["bounding"].append("CAP_BOGUS")


@case("device-bad-type", "linux.devices[0]")
def _(b, ctx):
    b.linux["devices"] = [{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]


@case("device-relative-path", "linux.devices[0]")
def _(b, ctx):
    b.linux["devices"] = [{"path": "dev/x", "type": "c", "major": 1, "minor": 3}]


@case("uid-mapping-missing-size", "uidMappings[0]")
def _(b, ctx):
    b.set_namespace("user")
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 1000}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]


@case("time-offset-nanosecs", "nanosecs")
def _(b, ctx):
    b.set_namespace("time")
    b.linux["timeOffsets"] = {"boottime": {"secs": 1, "nanosecs": 10 ** 9}}


@case("rootfs-propagation-unknown", "rootfsPropagation")
def _(b, ctx):
    b.linux["rootfsPropagation"] = "sideways"


# ---------------------------------------------------------------- the host

@case("rootfs-missing", "rootfs")
def _(b, ctx):
    b.config["root"]["path"] = "no-such-rootfs"


@case("rootfs-is-a-file", "rootfs")
def _(b, ctx):
    with open(os.path.join(b.path, "afile"), "w") as f:
        f.write("x")
    b.config["root"]["path"] = "afile"


@case("bind-source-missing", "/nonexistent/source/dir")
def _(b, ctx):
    b.add_mount("/mnt", "bind", "/nonexistent/source/dir", ["rbind"])


@case("mount-type-unknown", "nosuchfs", "/mnt")
def _(b, ctx):
    b.add_mount("/mnt", "nosuchfs", "none")


@case("mount-bad-data", "/scratch")
def _(b, ctx):
    b.add_mount("/scratch", "tmpfs", "tmpfs", ["size=notasize"])


@case("args0-not-in-path", "no-such-program-xyz")
def _(b, ctx):
    b.args("no-such-program-xyz", "arg")


@case("args0-absolute-missing", "/bin/no-such-program")
def _(b, ctx):
    b.args("/bin/no-such-program")


@case("args0-not-executable", "/etc/passwd")
def _(b, ctx):
    b.args("/etc/passwd")


@case("args0-is-a-directory", "/etc")
def _(b, ctx):
    b.args("/etc")


@case("args0-empty-path", "sh")
def _(b, ctx):
    b.process["env"] = [e for e in b.process["env"] if not e.startswith("PATH=")] + [
        "PATH=/nonexistent"]
    b.args("sh")


@case("cwd-is-a-file", "process.cwd", "/bin/busybox")
def _(b, ctx):
    b.process["cwd"] = "/bin/busybox"


@case("sysctl-invalid-key", "sysctl", "../../../etc/x")
def _(b, ctx):
    b.linux["sysctl"] = {"../../../etc/x": "1"}


@case("sysctl-missing-key", "net.nope.nope")
def _(b, ctx):
    b.linux["sysctl"] = {"net.nope.nope": "1"}


@case("sysctl-bad-value", "net.ipv4.ip_forward")
def _(b, ctx):
    b.linux["sysctl"] = {"net.ipv4.ip_forward": "not-a-number"}


@case("namespace-path-missing", "/nonexistent/ns/net")
def _(b, ctx):
    b.set_namespace("network", "/nonexistent/ns/net")


@case("namespace-path-not-a-namespace", "/etc/hostname", "namespace")
def _(b, ctx):
    b.set_namespace("network", "/etc/hostname")


@case("namespace-path-wrong-type", "/proc/1/ns/uts", "network")
def _(b, ctx):
    b.set_namespace("network", "/proc/1/ns/uts")


@case("rlimit-raise-hard", "process.rlimits[0]",
      skip=lambda: has_cap(CAP_SYS_RESOURCE) and "has CAP_SYS_RESOURCE")
def _(b, ctx):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE is unlimited")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]


@case("oom-score-adj-lower", "oomScoreAdj",
      skip=lambda: has_cap(CAP_SYS_RESOURCE) and "has CAP_SYS_RESOURCE")
def _(b, ctx):
    with open("/proc/self/oom_score_adj") as f:
        cur = int(f.read())
    if cur <= -1000:
        pytest.skip("oom_score_adj already at minimum")
    b.process["oomScoreAdj"] = -1000


@case("pid-file-dir-missing", "pid file")
def _(b, ctx):
    b.args("sleep", "1000")
    return ["--pid-file", os.path.join(ctx.tmp_path, "no", "such", "dir", "pid")]


@case("console-socket-missing", "--console-socket")
def _(b, ctx):
    b.process["terminal"] = True
    return ["--console-socket", os.path.join(ctx.tmp_path, "no.sock")]


# ---------------------------------------------------------------- escapes

@case("escape-relative-symlink", "/evil/x", "escapes", copy=True)
def _(b, ctx):
    """(a) rootfs/evil -> ../../../../../../tmp/<outside>: tmpfs at /evil/x."""
    out = ctx.outside("/tmp")
    os.symlink("../../../../../../../../.." + out, os.path.join(b.rootfs, "evil"))
    b.add_mount("/evil/x", "tmpfs", "tmpfs")


@case("escape-absolute-symlink", "/evil2/x", "escapes", copy=True)
def _(b, ctx):
    """(b) rootfs/evil2 -> /<outside>, which exists on the host only."""
    out = ctx.outside("/")
    assert not os.path.exists(b.rootfs + out)
    os.symlink(out, os.path.join(b.rootfs, "evil2"))
    b.add_mount("/evil2/x", "tmpfs", "tmpfs")


@case("escape-absolute-symlink-leaf", "/evil3", "escapes", copy=True)
def _(b, ctx):
    """The symlink is the mount destination itself."""
    out = ctx.outside("/")
    os.symlink(out, os.path.join(b.rootfs, "evil3"))
    b.add_mount("/evil3", "tmpfs", "tmpfs")


@case("escape-dotdot-destination", "..", "escapes")
def _(b, ctx):
    out = ctx.outside("/tmp")
    b.add_mount("/../../../../.." + out + "/x", "tmpfs", "tmpfs")


@case("escape-bind-through-symlink", "/evil/x", "escapes", copy=True)
def _(b, ctx):
    out = ctx.outside("/tmp")
    os.symlink("../../../../../../../../.." + out, os.path.join(b.rootfs, "evil"))
    src = os.path.join(ctx.tmp_path, "bind-src")
    os.makedirs(src, exist_ok=True)
    b.add_mount("/evil/x", "bind", src, ["rbind"])


@case("escape-symlink-in-bound-host-dir", "/host/link/x", "escapes")
def _(b, ctx):
    """A symlink inside a bind-mounted host dir, pointing at a host path."""
    out = ctx.outside("/tmp")
    src = os.path.join(ctx.tmp_path, "hostsrc")
    os.makedirs(src, exist_ok=True)
    os.symlink(out, os.path.join(src, "link"))
    b.add_mount("/host", "bind", src, ["rbind"])
    b.add_mount("/host/link/x", "tmpfs", "tmpfs")


@case("escape-device-path", "/dev/../../", "escapes", copy=True)
def _(b, ctx):
    out = ctx.outside("/tmp")
    b.linux["devices"] = [{"path": "/dev/../../../../../.." + out + "/null", "type": "c",
                           "major": 1, "minor": 3}]


class Ctx:
    def __init__(self, tmp_path, token):
        self.tmp_path = str(tmp_path)
        self.token = token
        self.dirs = []

    def outside(self, parent):
        """A fresh empty directory outside the rootfs (under / or /tmp)."""
        d = os.path.join(parent, f"cocoon-outside-{self.token[:10]}-{len(self.dirs)}")
        os.mkdir(d)
        self.dirs.append(d)
        return d

    def cleanup(self):
        for d in self.dirs:
            subprocess.run(["umount", "-R", "-l", d], capture_output=True, timeout=TIMEOUT)
            rmtree(d)


@pytest.fixture
def ctx(tmp_path, token):
    c = Ctx(tmp_path, token)
    yield c
    c.cleanup()


@pytest.mark.parametrize("cmd", ["create", "run"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_bundle(cocoon, make_bundle, ctx, nothing_left, name, cmd):
    c = CASES[name]
    if c["skip"]:
        why = c["skip"]()
        if why:
            pytest.skip(why)
    b = make_bundle("sh", "-c", "echo should-not-run", copy_rootfs=c["copy"])
    extra = c["fn"](b, ctx) or []
    if not c["raw"]:
        b.save()
    mounts_before = mount_snapshot(*ctx.dirs, b.rootfs)
    r = cocoon(cmd, "--bundle", b.path, *extra, cocoon.id("bad"))
    assert_one_error(r, c["expect"])
    assert "should-not-run" not in r.out
    nothing_left(extra_prefixes=ctx.dirs)
    assert mount_snapshot(*ctx.dirs, b.rootfs) == mounts_before
    for d in ctx.dirs:
        assert os.listdir(d) == [], f"something was created outside the rootfs in {d}"


# ---------------------------------------------------------------- ids

BAD_IDS = ["../x", "a/b", "/abs", ".", "..", "with space", "semi;colon", "x" * 1025, "", "tab\t"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda s: repr(s[:12]))
def test_invalid_id_create(cocoon, make_bundle, nothing_left, tmp_path, bad):
    b = make_bundle("sleep", "1000")
    cocoon.fail("create", "-b", b.path, bad, expect=["container id"])
    cocoon.fail("run", "-b", b.path, bad, expect=["container id"])
    nothing_left()
    # nothing made next to the state root either (e.g. tmp_path/x for ../x)
    assert os.listdir(tmp_path) == [os.path.basename(b.path)]


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["kill", "KILL"], ["delete"],
                                 ["delete", "--force"]], ids=" ".join)
@pytest.mark.parametrize("bad", ["../x", "a/b", ".."])
def test_invalid_id_other_commands(cocoon, make_bundle, cmd, bad):
    # a real container next door, to be sure it is not touched
    b = make_bundle("sleep", "1000")
    good = cocoon.id("good")
    assert cocoon.create(good, b).rc == 0
    args = [cmd[0], *[a for a in cmd[1:] if a.startswith("-")], bad,
            *[a for a in cmd[1:] if not a.startswith("-")]]
    cocoon.fail(*args, expect=["container id"])
    assert cocoon.status(good) == "created"


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["kill", "KILL"], ["delete"],
                                 ["delete", "--force"]], ids=" ".join)
def test_unknown_id(cocoon, make_bundle, cmd):
    b = make_bundle("sleep", "1000")
    good = cocoon.id("good")
    assert cocoon.create(good, b).rc == 0
    ghost = cocoon.id("ghost")
    args = [cmd[0], *[a for a in cmd[1:] if a.startswith("-")], ghost,
            *[a for a in cmd[1:] if not a.startswith("-")]]
    cocoon.fail(*args, expect=[ghost, "does not exist"])
    assert cocoon.state_dirs() == [good]
    assert cocoon.status(good) == "created"


def test_unknown_signal_has_no_effect(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("sig")
    assert cocoon.create(cid, b).rc == 0
    cocoon.fail("kill", cid, "NOTASIGNAL", expect=["NOTASIGNAL"])
    assert cocoon.status(cid) == "created"


def test_state_root_is_a_file(cocoon, make_bundle, tmp_path):
    f = tmp_path / "rootfile"
    f.write_text("")
    b = make_bundle("true")
    r = cocoon("create", "-b", b.path, cocoon.id("rf"), glob=["--root", f], with_root=False)
    assert_one_error(r, [str(f)])
    r = cocoon("list", glob=["--root", f], with_root=False)
    assert_one_error(r, [str(f)])


def test_bundle_missing(cocoon, tmp_path, nothing_left):
    cocoon.fail("create", "-b", tmp_path / "nope", cocoon.id("nb"), expect=["nope"])
    cocoon.fail("run", "-b", tmp_path / "nope", cocoon.id("nb"), expect=["nope"])
    nothing_left()


def test_absolute_symlink_resolves_inside_rootfs(cocoon, make_bundle, ctx, nothing_left):
    """An absolute symlink means the container's view: rootfs/link ->
    /tmp/<name> with <name> present both inside the rootfs and on the host
    puts the mount inside the rootfs, never on the host."""
    out = ctx.outside("/tmp")
    b = make_bundle(copy_rootfs=True)
    os.mkdir(b.rootfs + out)
    os.symlink(out, os.path.join(b.rootfs, "link"))
    b.add_mount("/link/x", "tmpfs", "tmpfs", ["size=1m"])
    b.sh(f"grep -c ' {out}/x ' /proc/self/mountinfo; touch /link/x/f; ls {out}/x")
    r = cocoon.run(cocoon.id("inside"), b)
    assert r.rc == 0, r
    assert r.out.split() == ["1", "f"]
    assert os.listdir(out) == []
    assert os.path.isdir(os.path.join(b.rootfs + out, "x"))  # created inside
    nothing_left(extra_prefixes=[out])


def test_proc_magic_links_stay_inside(cocoon, make_bundle, ctx, nothing_left):
    """Destinations through /proc magic links (/proc/1/root, /proc/self/cwd),
    which the kernel would resolve to host paths before pivot_root: cocoon
    may refuse them or resolve them inside the rootfs, but nothing may be
    created or mounted on the host."""
    out = ctx.outside("/tmp")
    b = make_bundle(copy_rootfs=True)
    b.add_mount(f"/proc/1/root{out}/x", "tmpfs", "tmpfs", ["size=1m"])
    b.add_mount(f"/proc/self/cwd{out}/y", "tmpfs", "tmpfs", ["size=1m"])
    b.add_mount(f"/proc/self/root{out}/z", "tmpfs", "tmpfs", ["size=1m"])
    b.sh("echo ran")
    before = mount_snapshot(out)
    r = cocoon.run(cocoon.id("magic"), b)
    if r.rc != 0:
        assert_one_error(r)
    else:
        assert r.out == "ran\n"
    assert os.listdir(out) == []
    assert mount_snapshot(out) == before == []
    nothing_left(extra_prefixes=[out])
