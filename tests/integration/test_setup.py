"""Container setup, observed from inside the container (and from the host):
hostname, env, cwd, user, umask, read-only root, masked and read-only paths,
mounts, devices, sysctl, no_new_privs, oom_score_adj, capabilities, rlimits,
preserved fds."""
import os
import subprocess

import pytest

from cocoonlib import TIMEOUT, needs_root, read_file

pytestmark = needs_root


def inside(cocoon, bundle, script, name="in", rc=0):
    """Run script with sh in a fresh container; return its stdout."""
    bundle.sh(script)
    r = cocoon.run(cocoon.id(name), bundle)
    assert r.rc == rc, r
    assert cocoon.state_dirs() == []
    return r.out


def mountinfo_line(text, mountpoint):
    for line in text.splitlines():
        if line.split()[4] == mountpoint:
            return line
    raise AssertionError(f"{mountpoint} is not a mount point:\n{text}")


# ---------------------------------------------------------------- identity

def test_hostname_and_domainname(cocoon, bundle):
    bundle.config["hostname"] = "box-one"
    bundle.config["domainname"] = "example.test"
    out = inside(cocoon, bundle, "hostname; cat /proc/sys/kernel/domainname")
    assert out.split() == ["box-one", "example.test"]
    assert os.uname().nodename != "box-one"


def test_env_is_exactly_the_config(cocoon, bundle):
    bundle.process["env"] += ["FOO=bar baz", "EMPTY=", "EQ=a=b"]
    bundle.sh('echo "[$FOO][$EMPTY][$EQ][${HOST_ONLY_VAR-unset}]"; echo "$PATH"')
    r = cocoon.run(cocoon.id("env"), bundle, env={**cocoon.env, "HOST_ONLY_VAR": "leak"})
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "[bar baz][][a=b][unset]"
    assert lines[1] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_cwd(cocoon, bundle):
    bundle.process["cwd"] = "/etc"
    assert inside(cocoon, bundle, "pwd") == "/etc\n"


def test_cwd_created_if_missing_readonly_root(cocoon, make_bundle):
    """runc creates a missing cwd (before the root is made read-only);
    root.readonly is the spec default, so this must work with it."""
    b = make_bundle(copy_rootfs=True)
    assert b.config["root"]["readonly"] is True
    b.process["cwd"] = "/work/dir"
    assert inside(cocoon, b, "pwd") == "/work/dir\n"


def test_cwd_created_if_missing_writable_root(cocoon, make_bundle):
    b = make_bundle(copy_rootfs=True)
    b.config["root"]["readonly"] = False
    b.process["cwd"] = "/work/dir"
    assert inside(cocoon, b, "pwd; touch here") == "/work/dir\n"
    assert os.path.isfile(os.path.join(b.rootfs, "work", "dir", "here"))


def test_user_and_groups(cocoon, bundle, hostdir):
    bundle.process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20, 30]}
    bundle.bind(hostdir, "/host")
    out = inside(cocoon, bundle, "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status;"
                                 " touch /host/owned")
    lines = out.splitlines()
    assert lines[0] == "1000" and lines[1] == "1001"
    assert lines[2].split()[1:] == ["1000"] * 4
    assert lines[3].split()[1:] == ["1001"] * 4
    assert lines[4].split()[1:] == ["10", "20", "30"]
    st = os.stat(hostdir / "owned")
    assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_no_additional_groups_by_default(cocoon, bundle):
    out = inside(cocoon, bundle, "grep '^Groups:' /proc/self/status")
    assert out.split() == ["Groups:"]


def test_umask(cocoon, bundle, hostdir):
    bundle.process["user"]["umask"] = 0o027
    bundle.bind(hostdir, "/host")
    out = inside(cocoon, bundle, "umask; touch /host/f; mkdir /host/d")
    assert out == "0027\n"
    assert os.stat(hostdir / "f").st_mode & 0o777 == 0o640
    assert os.stat(hostdir / "d").st_mode & 0o777 == 0o750


def test_default_umask(cocoon, bundle):
    assert inside(cocoon, bundle, "umask") == "0022\n"


# ---------------------------------------------------------------- filesystem

def test_readonly_root(cocoon, bundle):
    out = inside(cocoon, bundle,
                 "touch /newfile 2>&1; echo rc=$?; touch /dev/ok && echo dev-writable; "
                 "grep -E '^[^ ]+ / ' /proc/self/mounts")
    lines = out.splitlines()
    assert "Read-only file system" in lines[0]
    assert lines[1] != "rc=0"
    assert lines[2] == "dev-writable"
    assert "ro" in lines[3].split()[3].split(",")
    assert not os.path.exists(os.path.join(bundle.rootfs, "newfile"))


def test_writable_root(cocoon, make_bundle):
    b = make_bundle(copy_rootfs=True)
    b.config["root"]["readonly"] = False
    inside(cocoon, b, "echo data > /newfile")
    assert read_file(os.path.join(b.rootfs, "newfile")) == "data\n"


def test_masked_paths(cocoon, make_bundle):
    """Masked files read empty, masked directories list empty. (Which of the
    default masked paths exist depends on the kernel: /proc/kcore may not.)"""
    b = make_bundle()
    b.linux["maskedPaths"] = b.linux["maskedPaths"] + ["/etc/passwd", "/does/not/exist"]
    files = [p for p in b.linux["maskedPaths"] if p.startswith(("/proc", "/sys"))
             and os.path.isfile(p)] + ["/etc/passwd"]
    dirs = [p for p in b.linux["maskedPaths"] if p.startswith(("/proc", "/sys"))
            and os.path.isdir(p) and os.listdir(p)]
    assert "/sys/firmware" in dirs or not os.path.isdir("/sys/firmware")
    script = "; ".join([f"echo {f} $(wc -c < {f})" for f in files] +
                       [f"echo {d} $(ls -A {d} | wc -l)" for d in dirs])
    out = inside(cocoon, b, script)
    got = dict(line.split() for line in out.splitlines())
    assert got == {p: "0" for p in files + dirs}
    # the host's file is untouched
    assert read_file(os.path.join(b.rootfs, "etc", "passwd")).startswith("root:")


def test_readonly_paths(cocoon, bundle):
    out = inside(cocoon, bundle, "{ echo 1 > /proc/sys/net/ipv4/ip_forward; } 2>&1; echo rc=$?; "
                                 "cat /proc/sys/net/ipv4/ip_forward")
    lines = out.splitlines()
    assert "Read-only file system" in lines[0], out
    assert lines[1] != "rc=0"
    assert lines[2] == "0"


def test_readonly_path_in_writable_root(cocoon, make_bundle):
    b = make_bundle(copy_rootfs=True)
    b.config["root"]["readonly"] = False
    b.linux["readonlyPaths"] = ["/data"]
    out = inside(cocoon, b, "touch /data/x 2>&1; touch /y && echo root-ok")
    assert "Read-only file system" in out
    assert "root-ok" in out
    assert not os.path.exists(os.path.join(b.rootfs, "data", "x"))


def test_tmpfs_mount_with_options(cocoon, bundle):
    bundle.add_mount("/scratch", "tmpfs", "tmpfs",
                     ["nosuid", "nodev", "noexec", "size=1m", "mode=1770"])
    out = inside(cocoon, bundle, "stat -c %a /scratch; echo x > /scratch/f && cat /scratch/f; "
                                 "cat /proc/self/mountinfo")
    lines = out.splitlines()
    assert lines[0] == "1770"
    assert lines[1] == "x"
    line = mountinfo_line("\n".join(lines[2:]), "/scratch")
    opts = set(line.split()[5].split(","))
    assert {"nosuid", "nodev", "noexec"} <= opts
    fstype, _src, sopts = line.split(" - ")[1].split()
    assert fstype == "tmpfs"
    assert "size=1024k" in sopts.split(",") and "mode=1770" in sopts.split(",")


def test_tmpfs_mount_ro(cocoon, bundle):
    bundle.add_mount("/scratch", "tmpfs", "tmpfs", ["ro"])
    out = inside(cocoon, bundle, "touch /scratch/f 2>&1; echo rc=$?")
    assert "Read-only file system" in out


def test_bind_mount_rw(cocoon, bundle, hostdir):
    (hostdir / "from-host").write_text("hello\n")
    bundle.bind(hostdir, "/host", ["bind", "rw"])
    out = inside(cocoon, bundle, "cat /host/from-host; echo written > /host/from-container")
    assert out == "hello\n"
    assert (hostdir / "from-container").read_text() == "written\n"


def test_bind_mount_ro(cocoon, bundle, hostdir):
    (hostdir / "f").write_text("keep\n")
    bundle.bind(hostdir, "/host", ["bind", "ro"])
    out = inside(cocoon, bundle, "cat /host/f; { echo x > /host/f; } 2>&1; touch /host/new 2>&1; "
                                 "echo done")
    lines = out.splitlines()
    assert lines[0] == "keep"
    assert "Read-only file system" in lines[1] and "Read-only file system" in lines[2]
    assert (hostdir / "f").read_text() == "keep\n"
    assert not (hostdir / "new").exists()


def test_bind_mount_relative_source(cocoon, bundle):
    """A relative bind source is relative to the bundle."""
    d = os.path.join(bundle.path, "rel-src")
    os.mkdir(d)
    with open(os.path.join(d, "f"), "w") as f:
        f.write("relative\n")
    bundle.bind("rel-src", "/host", ["bind", "ro"])
    assert inside(cocoon, bundle, "cat /host/f") == "relative\n"


def test_bind_mount_file(cocoon, bundle, tmp_path):
    src = tmp_path / "passwd"
    src.write_text("custom:x:0:0::/:/bin/sh\n")
    bundle.bind(src, "/etc/passwd", ["bind", "ro"])
    assert inside(cocoon, bundle, "cat /etc/passwd") == "custom:x:0:0::/:/bin/sh\n"


@pytest.fixture
def host_submount(hostdir):
    """hostdir/sub is a tmpfs mount (on the host) holding a file."""
    sub = hostdir / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "subtmp", str(sub)], check=True,
                   timeout=TIMEOUT)
    try:
        (sub / "in-submount").write_text("deep\n")
        yield sub
    finally:
        subprocess.run(["umount", "-l", str(sub)], timeout=TIMEOUT)


def test_rbind_includes_submounts(cocoon, bundle, hostdir, host_submount):
    bundle.bind(hostdir, "/host", ["rbind", "ro"])
    out = inside(cocoon, bundle, "cat /host/sub/in-submount; touch /host/sub/x 2>&1; echo end")
    lines = out.splitlines()
    assert lines[0] == "deep"
    # rro: the submount is read-only too
    assert "Read-only file system" in lines[1]


def test_bind_excludes_submounts(cocoon, bundle, hostdir, host_submount):
    bundle.bind(hostdir, "/host", ["bind"])
    out = inside(cocoon, bundle, "ls -A /host/sub | wc -l")
    assert out.split() == ["0"]


def test_default_devices(cocoon, bundle):
    devs = {"null": "1 3", "zero": "1 5", "full": "1 7", "random": "1 8",
            "urandom": "1 9", "tty": "5 0"}
    script = "; ".join(
        f"[ -c /dev/{d} ] && echo {d} $(stat -c '%t %T %a' /dev/{d})" for d in devs)
    out = inside(cocoon, bundle, script)
    got = {l.split()[0]: l.split()[1:] for l in out.splitlines()}
    assert set(got) == set(devs), out
    for d, mm in devs.items():
        major, minor = (int(x) for x in mm.split())
        assert [int(got[d][0], 16), int(got[d][1], 16)] == [major, minor], d
        assert got[d][2] == "666", d


def test_devices_work(cocoon, bundle):
    out = inside(cocoon, bundle,
                 "echo gone > /dev/null; head -c 4 /dev/zero | wc -c; "
                 "head -c 8 /dev/urandom | wc -c; { echo x > /dev/full; } 2>&1; echo end")
    lines = out.splitlines()
    assert lines[0:2] == ["4", "8"]
    assert "No space left on device" in lines[2]


def test_dev_symlinks(cocoon, bundle):
    links = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
             "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
             "/dev/ptmx": "pts/ptmx"}
    out = inside(cocoon, bundle, "; ".join(f"echo {l} $(readlink {l})" for l in links))
    got = dict(line.split() for line in out.splitlines())
    assert got == links


def test_default_mounts(cocoon, bundle):
    out = inside(cocoon, bundle, "cat /proc/self/mountinfo")
    want = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
            "/dev/mqueue": "mqueue", "/sys": "sysfs"}
    for mp, fstype in want.items():
        line = mountinfo_line(out, mp)
        assert line.split(" - ")[1].split()[0] == fstype, line
    assert "ro" in mountinfo_line(out, "/sys").split()[5].split(",")


def test_dev_is_not_the_hosts(cocoon, bundle):
    """/dev is a fresh tmpfs: no host block devices inside."""
    out = inside(cocoon, bundle, "ls /dev")
    names = set(out.split())
    assert {"null", "zero", "pts", "shm"} <= names
    assert not any(n.startswith(("sd", "vd", "nvme", "loop")) for n in names), names


# ---------------------------------------------------------------- process

def host_sysctl(name):
    return read_file("/proc/sys/" + name.replace(".", "/")).strip()


def test_sysctl_net(cocoon, bundle):
    before = host_sysctl("net.ipv4.ip_forward")
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    assert inside(cocoon, bundle, "cat /proc/sys/net/ipv4/ip_forward") == "1\n"
    assert host_sysctl("net.ipv4.ip_forward") == before


def test_sysctl_ipc(cocoon, bundle):
    before = host_sysctl("kernel.shm_rmid_forced")
    want = "0" if before == "1" else "1"
    bundle.linux["sysctl"] = {"kernel.shm_rmid_forced": want, "kernel.msgmax": "4096"}
    out = inside(cocoon, bundle, "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/kernel/msgmax")
    assert out.split() == [want, "4096"]
    assert host_sysctl("kernel.shm_rmid_forced") == before


def test_no_new_privileges(cocoon, bundle):
    assert bundle.process["noNewPrivileges"] is True
    assert inside(cocoon, bundle, "grep NoNewPrivs /proc/self/status").split() == [
        "NoNewPrivs:", "1"]


def test_no_new_privileges_off(cocoon, bundle):
    bundle.process["noNewPrivileges"] = False
    assert inside(cocoon, bundle, "grep NoNewPrivs /proc/self/status").split() == [
        "NoNewPrivs:", "0"]


def test_oom_score_adj(cocoon, bundle):
    bundle.process["oomScoreAdj"] = 500
    assert inside(cocoon, bundle, "cat /proc/self/oom_score_adj") == "500\n"


CAP_BITS = {"CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_AUDIT_WRITE": 29,
            "CAP_CHOWN": 0, "CAP_SYS_ADMIN": 21}


def cap_mask(*names):
    m = 0
    for n in names:
        m |= 1 << CAP_BITS[n]
    return m


def caps_inside(cocoon, bundle, name="caps"):
    out = inside(cocoon, bundle, "grep ^Cap /proc/self/status", name=name)
    return {l.split()[0].rstrip(":"): int(l.split()[1], 16) for l in out.splitlines()}


def test_default_capabilities(cocoon, bundle):
    caps = caps_inside(cocoon, bundle)
    three = cap_mask("CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE")
    assert caps["CapBnd"] == three
    assert caps["CapEff"] == three
    assert caps["CapPrm"] == three
    assert caps["CapInh"] == 0


def test_capabilities_are_enforced(cocoon, bundle):
    """Without CAP_CHOWN root cannot chown a file it does not own...
    and with only the bounding set emptied nothing can be regained."""
    bundle.process["capabilities"] = {k: [] for k in
                                      ("bounding", "effective", "permitted", "ambient")}
    caps = caps_inside(cocoon, bundle)
    assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == 0
    bundle.add_mount("/scratch", "tmpfs", "tmpfs")
    out = inside(cocoon, bundle, "touch /scratch/f; chown 1234 /scratch/f 2>&1; echo rc=$?",
                 name="caps2")
    assert "Operation not permitted" in out


def test_capability_granted(cocoon, bundle):
    c = bundle.process["capabilities"]
    for k in ("bounding", "effective", "permitted"):
        c[k] = c[k] + ["CAP_CHOWN"]
    bundle.add_mount("/scratch", "tmpfs", "tmpfs")
    out = inside(cocoon, bundle, "touch /scratch/f; chown 1234 /scratch/f && stat -c %u /scratch/f")
    assert out == "1234\n"


def test_rlimits(cocoon, bundle):
    bundle.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    out = inside(cocoon, bundle, "ulimit -n; ulimit -Hn; ulimit -c; grep 'open files' "
                                 "/proc/self/limits")
    lines = out.splitlines()
    assert lines[:3] == ["512", "1000", "0"]
    assert lines[3].split()[3:5] == ["512", "1000"]


def test_only_stdio_reaches_the_program(cocoon, bundle):
    """No fd of the runtime (state dir lock, sync socket, fifo) leaks in."""
    # `; true`: otherwise sh execs ls in its place and we see ls's own fd
    out = inside(cocoon, bundle, "ls /proc/$$/fd; true")
    assert sorted(out.split()) == ["0", "1", "2"]


def run_with_fd3(cocoon, bundle, cid, *extra, fd3_path):
    """cocoon run with fd 3 open on fd3_path (appending)."""
    bundle.save()
    argv = cocoon.argv(["run", "-b", bundle.path, *extra, cid])
    return subprocess.run(["/bin/sh", "-c", 'exec "$@" 3>>"$F3"', "sh", *argv],
                          env={**cocoon.env, "F3": str(fd3_path)}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_preserve_fds(cocoon, bundle, tmp_path):
    log = tmp_path / "fd3.log"
    bundle.sh("echo via-fd3 >&3")
    r = run_with_fd3(cocoon, bundle, cocoon.id("pfd"), "--preserve-fds", "1", fd3_path=log)
    assert r.returncode == 0, r
    assert log.read_text() == "via-fd3\n"


def test_fds_not_preserved_by_default(cocoon, bundle, tmp_path):
    log = tmp_path / "fd3.log"
    bundle.sh("echo via-fd3 >&3 || echo closed")
    r = run_with_fd3(cocoon, bundle, cocoon.id("npfd"), fd3_path=log)
    assert r.returncode == 0, r
    assert r.stdout == "closed\n"
    assert log.read_text() == ""


def test_mount_below_absolute_symlink(cocoon, make_bundle):
    """Images commonly have /var/run -> /run (an absolute symlink) and
    engines mount at e.g. /var/run/secrets/...: the mount must land at
    /run/secrets/... inside the rootfs, creating the missing directories
    there (as runc and crun do), not be refused as an escape."""
    b = make_bundle(copy_rootfs=True)
    os.makedirs(os.path.join(b.rootfs, "run"))
    os.makedirs(os.path.join(b.rootfs, "var"))
    os.symlink("/run", os.path.join(b.rootfs, "var", "run"))
    b.add_mount("/var/run/secrets/token", "tmpfs", "tmpfs", ["size=1m"])
    out = inside(cocoon, b, "grep -c ' /run/secrets/token ' /proc/self/mountinfo")
    assert out == "1\n"
    assert os.path.isdir(os.path.join(b.rootfs, "run", "secrets", "token"))
