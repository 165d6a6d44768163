"""Security controls, each observed from inside the container: capabilities,
seccomp, rlimits, user namespaces, no_new_privs, masked paths, and the
protection of the runtime binary (CVE-2019-5736 class)."""
import os
import resource
import shutil
import subprocess

import pytest

from cocoonlib import needs_root, wait_for, wait_line
from enginelib import (CocoonWith, cap_mask, caps_from_status, have_cap, public_bundle,
                       public_directory, run_in, sha256_file)

pytestmark = needs_root


@pytest.fixture
def public_dir():
    with public_directory() as d:
        yield d


def caps_inside(cocoon, bundle, name="caps"):
    return caps_from_status(run_in(cocoon, bundle, "grep ^Cap /proc/self/status", name).out)


# ---------------------------------------------------------------- capabilities

def test_dropped_capability_is_gone(cocoon, make_bundle):
    """The default set (AUDIT_WRITE, KILL, NET_BIND_SERVICE) has no
    CAP_CHOWN: root in the container cannot chown; with CAP_CHOWN it can."""
    b = make_bundle()
    b.add_mount("/scratch", "tmpfs", "tmpfs")
    caps = caps_inside(cocoon, b)
    three = cap_mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == three
    r = run_in(cocoon, b, "touch /scratch/f; chown 1 /scratch/f; echo rc=$?", "chown")
    assert "Operation not permitted" in r.err and r.out == "rc=1\n", r

    for k in ("bounding", "effective", "permitted"):
        b.process["capabilities"][k].append("CAP_CHOWN")
    r = run_in(cocoon, b, "touch /scratch/f; chown 1 /scratch/f && stat -c %u /scratch/f",
               "chown2")
    assert r.out == "1\n", r


def test_capability_sets_match_the_config(cocoon, make_bundle):
    """What a root program sees after execve: the configured bounding and
    inheritable sets; permitted = effective = the configured permitted set
    (root's execve would raise permitted to the bounding set, but
    noNewPrivileges forbids gaining capabilities); no ambient ones."""
    b = make_bundle()
    assert b.process["noNewPrivileges"] is True
    b.process["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_KILL"], "ambient": []}
    caps = caps_inside(cocoon, b)
    assert caps["CapBnd"] == cap_mask("CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_NET_RAW")
    assert caps["CapPrm"] == caps["CapEff"] == cap_mask("CAP_KILL", "CAP_CHOWN", "CAP_SETUID")
    assert caps["CapInh"] == cap_mask("CAP_KILL")
    assert caps["CapAmb"] == 0


@pytest.mark.parametrize("capset", ["bounding", "effective", "permitted", "inheritable",
                                    "ambient"])
def test_unknown_capability_is_a_clean_error(cocoon, bundle, nothing_left, capset):
    bundle.process["capabilities"].setdefault(capset, []).append("CAP_NO_SUCH_THING")
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("badcap"),
                expect=["CAP_NO_SUCH_THING", capset])
    nothing_left()


def test_no_capabilities_in_config_means_none(cocoon, bundle):
    """A process without `capabilities` gets none (runc: an empty set,
    every capability dropped), not every capability of the runtime."""
    del bundle.process["capabilities"]
    caps = caps_inside(cocoon, bundle, "nocaps")
    assert caps["CapBnd"] == 0, f"CapBnd {caps['CapBnd']:#x}"
    assert caps["CapEff"] == 0, f"CapEff {caps['CapEff']:#x}"


def test_ambient_capability_for_non_root_user(cocoon, make_bundle):
    """uid 1000 keeps CAP_NET_BIND_SERVICE across execve only through the
    ambient set."""
    b = make_bundle()
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.process["capabilities"] = {k: ["CAP_NET_BIND_SERVICE"] for k in
                                 ("bounding", "effective", "permitted", "inheritable",
                                  "ambient")}
    nbs = cap_mask("CAP_NET_BIND_SERVICE")
    # grep is a child of sh: both were exec'd as uid 1000
    r = run_in(cocoon, b, "id -u; grep ^Cap /proc/self/status", "amb")
    assert r.out.splitlines()[0] == "1000"
    caps = caps_from_status(r.out)
    assert caps["CapAmb"] == nbs
    assert caps["CapEff"] == caps["CapPrm"] == nbs

    # without the ambient set the capability is lost at execve
    b.process["capabilities"]["ambient"] = []
    caps = caps_from_status(run_in(cocoon, b, "grep ^Cap /proc/self/status", "noamb").out)
    assert caps["CapAmb"] == 0 and caps["CapEff"] == 0 and caps["CapPrm"] == 0


# ---------------------------------------------------------------- seccomp

# Enough for busybox sh, ls, cat, grep... and for the runtime between
# loading the filter (with noNewPrivileges: just before execve) and execve.
SH_ALLOW = """read write readv writev pread64 pwrite64 open openat openat2 close close_range
stat fstat lstat newfstatat statx lseek mmap mprotect munmap brk rt_sigaction rt_sigprocmask
rt_sigreturn ioctl access faccessat faccessat2 pipe pipe2 dup dup2 dup3 getpid getppid getuid
geteuid getgid getegid gettid getpgrp getpgid setpgid getsid setsid clone clone3 fork vfork
execve execveat exit exit_group wait4 waitid kill tgkill uname fcntl getcwd chdir fchdir
getdents getdents64 readlink readlinkat arch_prctl set_tid_address set_robust_list rseq
prlimit64 getrlimit sysinfo futex nanosleep clock_nanosleep clock_gettime gettimeofday time
sendmsg sendto recvmsg recvfrom poll ppoll select pselect6 getrandom madvise mremap umask
getgroups sched_yield sigaltstack restart_syscall""".split()


def seccomp(bundle, default, rules, **extra):
    bundle.linux["seccomp"] = {"defaultAction": default, "syscalls": rules, **extra}


def test_seccomp_errno_rule(cocoon, make_bundle):
    b = make_bundle()
    b.add_mount("/scratch", "tmpfs", "tmpfs")
    seccomp(b, "SCMP_ACT_ALLOW", [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 38}])
    r = run_in(cocoon, b, "mkdir /scratch/d; echo rc=$?; touch /scratch/f && echo touched")
    assert "Function not implemented" in r.err, r
    assert r.out == "rc=1\ntouched\n", r


def test_seccomp_argument_condition(cocoon, make_bundle):
    """personality(PER_LINUX32) is refused, personality(PER_LINUX) is not."""
    b = make_bundle()
    seccomp(b, "SCMP_ACT_ALLOW", [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 1,
                                   "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}])
    r = run_in(cocoon, b, "linux32 true; echo a=$?; linux64 true; echo b=$?")
    assert r.out == "a=1\nb=0\n", r
    assert "personality" in r.err and "Operation not permitted" in r.err, r


def test_seccomp_kill_action(cocoon, make_bundle):
    """SCMP_ACT_KILL_PROCESS: the offending process dies of SIGSYS."""
    b = make_bundle()
    seccomp(b, "SCMP_ACT_ALLOW", [{"names": ["mkdir", "mkdirat"],
                                   "action": "SCMP_ACT_KILL_PROCESS"}])
    r = run_in(cocoon, b, "mkdir /tmp/d; echo rc=$?")
    assert r.out == "rc=159\n", r  # 128 + SIGSYS


def test_seccomp_default_errno_with_allow_list(cocoon, make_bundle):
    b = make_bundle()
    b.add_mount("/scratch", "tmpfs", "tmpfs")
    seccomp(b, "SCMP_ACT_ERRNO", [{"names": SH_ALLOW, "action": "SCMP_ACT_ALLOW"}],
            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
            if os.uname().machine == "x86_64" else [])
    r = run_in(cocoon, b, "echo hello; ls / > /dev/null && echo ls-ok; "
                          "mkdir /scratch/d; echo mk=$?; chmod 777 /scratch; echo ch=$?")
    assert r.out == "hello\nls-ok\nmk=1\nch=1\n", r
    assert r.err.count("Operation not permitted") == 2, r

    # defaultErrnoRet picks the errno
    b.linux["seccomp"]["defaultErrnoRet"] = 38
    r = run_in(cocoon, b, "mkdir /scratch/d; echo mk=$?", "errnoret")
    assert r.out == "mk=1\n" and "Function not implemented" in r.err, r


@pytest.mark.parametrize("where", ["default", "rule"])
def test_seccomp_unknown_action(cocoon, bundle, nothing_left, where):
    if where == "default":
        seccomp(bundle, "SCMP_ACT_EXPLODE", [])
    else:
        seccomp(bundle, "SCMP_ACT_ALLOW", [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}])
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("badact"),
                expect=["SCMP_ACT_EXPLODE", "defaultAction" if where == "default"
                        else "syscalls[0]"])
    nothing_left()


def test_seccomp_applies_to_exec(cocoon, make_bundle):
    """Processes started with `cocoon exec` get the container's filter."""
    b = make_bundle("sleep", "1000")
    seccomp(b, "SCMP_ACT_ALLOW", [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 38}])
    cid = cocoon.id("scexec")
    assert cocoon.run(cid, b, "--detach").rc == 0
    r = cocoon("exec", cid, "sh", "-c", "mkdir /tmp/x; echo rc=$?; "
                                        "grep ^Seccomp: /proc/self/status")
    assert r.rc == 0, r
    assert "Function not implemented" in r.err
    assert r.out.split() == ["rc=1", "Seccomp:", "2"], r


# ---------------------------------------------------------------- rlimits

def test_rlimit_nofile(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    r = run_in(cocoon, b, "ulimit -n; ulimit -Hn")
    assert r.out == "100\n200\n"
    # raising the soft limit up to the hard one works, beyond does not
    r = run_in(cocoon, b, "ulimit -n 200 && ulimit -n; ulimit -n 201; echo rc=$?", "raise")
    assert r.out.splitlines() == ["200", "rc=1"], r
    # exec'd processes get the same limits
    b.args("sleep", "1000")
    cid = cocoon.id("rlexec")
    assert cocoon.run(cid, b, "--detach").rc == 0
    assert cocoon.ok("exec", cid, "sh", "-c", "ulimit -n; ulimit -Hn").out == "100\n200\n"


def test_rlimit_above_host_hard_limit(cocoon, bundle, nothing_left):
    if have_cap("CAP_SYS_RESOURCE"):
        pytest.skip("with CAP_SYS_RESOURCE the hard limit can be raised")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("unlimited hard RLIMIT_NOFILE")
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": hard + 1}]
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("rlhigh"),
                expect=["rlimits[0]", "CAP_SYS_RESOURCE", str(hard + 1)])
    nothing_left()


# ---------------------------------------------------------------- user namespace

def userns(bundle, host=100000, size=65536):
    bundle.set_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]


def test_user_namespace_mapping_and_host_ownership(cocoon, base, token, public_dir):
    """Inside: uid_map as configured, root is uid 0. Files the container
    makes in a bind-mounted host directory belong to the mapped host ids."""
    b = public_bundle(public_dir, base, token)
    shared = os.path.join(public_dir, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    userns(b)
    b.bind(shared, "/host")
    r = run_in(cocoon, b, "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                          "touch /host/by-root; mkdir /host/dir")
    lines = r.out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2:] == ["0", "0"]
    for name in ("by-root", "dir"):
        st = os.stat(os.path.join(shared, name))
        assert (st.st_uid, st.st_gid) == (100000, 100000), name

    b.process["user"] = {"uid": 1000, "gid": 1001}
    run_in(cocoon, b, "touch /host/by-user", "userns1000")
    st = os.stat(os.path.join(shared, "by-user"))
    assert (st.st_uid, st.st_gid) == (101000, 101001)


def test_user_namespace_root_is_not_host_root(cocoon, base, token, public_dir):
    """Container root (host uid 100000) cannot read a host file that only
    host root may read, even with CAP_DAC_OVERRIDE in its namespace."""
    b = public_bundle(public_dir, base, token)
    d = os.path.join(public_dir, "secrets")
    os.mkdir(d)
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("top secret\n")
    os.chmod(os.path.join(d, "secret"), 0o600)
    userns(b)
    for k in ("bounding", "effective", "permitted"):
        b.process["capabilities"][k] += ["CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"]
    b.bind(d, "/host", options=("rbind",))
    r = run_in(cocoon, b, "cat /host/secret; echo rc=$?; stat -c '%u %g' /host/secret")
    assert r.out.splitlines() == ["rc=1", "65534 65534"], r  # unmapped owner: overflow id
    assert "Permission denied" in r.err


# ---------------------------------------------------------------- no_new_privs

@pytest.fixture
def suid_bundle(make_bundle):
    """uid 1000 runs a setuid-root copy of busybox (/suid/busybox)."""
    b = make_bundle(copy_rootfs=True)
    os.makedirs(os.path.join(b.rootfs, "suid"))
    dst = os.path.join(b.rootfs, "suid", "busybox")
    shutil.copy2("/bin/busybox", dst)
    os.chown(dst, 0, 0)
    os.chmod(dst, 0o4755)
    b.process["user"] = {"uid": 1000, "gid": 1000}
    return b


def test_no_new_privileges_ignores_setuid(cocoon, suid_bundle):
    """With noNewPrivileges a setuid-root binary does not gain uid 0 (busybox
    drops its euid itself, but the saved set-user-ID shows what execve
    gave)."""
    b = suid_bundle
    b.process["noNewPrivileges"] = True
    r = run_in(cocoon, b, "/suid/busybox grep -E '^(Uid|NoNewPrivs)' /proc/self/status")
    assert r.out.split() == ["Uid:", "1000", "1000", "1000", "1000", "NoNewPrivs:", "1"], r

    b.process["noNewPrivileges"] = False
    r = run_in(cocoon, b, "/suid/busybox grep -E '^(Uid|NoNewPrivs)' /proc/self/status", "nnp0")
    assert r.out.split() == ["Uid:", "1000", "1000", "0", "1000", "NoNewPrivs:", "0"], r


def test_no_new_privileges_applies_to_exec(cocoon, suid_bundle):
    b = suid_bundle
    b.process["noNewPrivileges"] = True
    b.args("sleep", "1000")
    cid = cocoon.id("nnpexec")
    assert cocoon.run(cid, b, "--detach").rc == 0
    r = cocoon.ok("exec", cid, "/suid/busybox", "grep", "-E", "^(Uid|NoNewPrivs)",
                  "/proc/self/status")
    assert r.out.split() == ["Uid:", "1000", "1000", "1000", "1000", "NoNewPrivs:", "1"], r


# ---------------------------------------------------------------- masked paths

def test_masked_paths_cannot_be_unmasked(cocoon, make_bundle):
    b = make_bundle()
    b.linux["maskedPaths"] = ["/proc/keys", "/sys/firmware", "/etc/group", "/no/such/path"]
    r = run_in(cocoon, b,
               "wc -c < /proc/keys; wc -c < /etc/group; ls -A /sys/firmware | wc -l; "
               "touch /sys/firmware/x; echo touch=$?; "
               "umount /proc/keys; echo u1=$?; umount -l /sys/firmware; echo u2=$?; "
               "wc -c < /proc/keys")
    assert r.out.split() == ["0", "0", "0", "touch=1", "u1=1", "u2=1", "0"], r
    assert "Read-only file system" in r.err
    assert r.err.count("Operation not permitted") == 2, r


# ---------------------------------------------------------------- runtime binary

def test_runtime_binary_unreadable_from_created_container(cocoon, make_bundle):
    """Until it execs the program, a created container's init runs the
    runtime's binary: a process exec'd into the container must not be able
    to open it through /proc/1/exe (CVE-2019-5736)."""
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("exe")
    assert cocoon.create(cid, b).rc == 0
    r = cocoon("exec", cid, "sh", "-c",
               "cat /proc/1/comm; cat /proc/1/exe > /dev/null; echo cat=$?; "
               "readlink /proc/1/exe; echo readlink=$?")
    assert r.rc == 0, r
    assert r.out.split() == ["cocoon", "cat=1", "readlink=1"], r
    assert "can't open '/proc/1/exe': Permission denied" in r.err, r


def test_runtime_binary_not_writable_with_cap_sys_ptrace(cocoon, make_bundle, hostdir,
                                                         tmp_path, token):
    """The same attack by a container that has CAP_SYS_PTRACE (a common
    `--cap-add` for debuggers): a non-dumpable init no longer protects the
    binary, the container can open /proc/1/exe and, once the init has exec'd
    the program, write the runtime binary on the host. runc re-executes
    itself from a sealed memfd (or a read-only bind mount) so that
    /proc/PID/exe never leads to the host's file. Run on a copy of cocoon."""
    binary = tmp_path / "cocoon-copy"
    shutil.copy2(cocoon.argv([])[0], binary)
    before = sha256_file(binary)
    c = CocoonWith(binary, tmp_path / "state-copy", token)
    try:
        b = make_bundle("sleep", "1000")
        for k in ("bounding", "effective", "permitted"):
            b.process["capabilities"][k].append("CAP_SYS_PTRACE")
        b.bind(hostdir, "/host")
        cid = c.id("ptrace")
        assert c.create(cid, b).rc == 0
        # Hold /proc/1/exe open, wait until the init has become the program,
        # then try to write through the open file (ETXTBSY while any process
        # still runs the binary: retry, bounded).
        attack = ("exec 3</proc/1/exe || { echo no-open > /host/result; exit 0; }; "
                  "echo opened > /host/opened; "
                  "while [ \"$(cat /proc/1/comm)\" != sleep ]; do sleep 0.02; done; "
                  "i=0; while [ $i -lt 250 ]; do "
                  "  e=$( { echo '#pwned' >> /proc/self/fd/3; } 2>&1 ) && "
                  "    { echo wrote > /host/result; exit 0; }; "
                  "  case \"$e\" in *busy*) ;; *) echo \"refused: $e\" > /host/result; exit 0;; esac; "
                  "  i=$((i+1)); sleep 0.02; "
                  "done; echo busy > /host/result")
        r = c("exec", "--detach", cid, "sh", "-c", attack)
        assert r.rc == 0, r
        wait_for(lambda: (hostdir / "opened").exists() or (hostdir / "result").exists(),
                 "the attacker to open /proc/1/exe")
        c.ok("start", cid)
        result = wait_line(hostdir / "result").strip()
        assert sha256_file(binary) == before, "the container overwrote the runtime binary"
        assert result != "wrote", result
    finally:
        c.cleanup()


# ---------------------------------------------------------------- AppArmor

def apparmor_enabled():
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def test_apparmor_profile_without_apparmor(cocoon, make_bundle):
    """On a kernel without AppArmor (this build machine) a profile in
    config.json or `exec --apparmor` is not applied, as crun does; the
    container and the exec run."""
    if apparmor_enabled():
        pytest.skip("AppArmor is enabled here: test_apparmor_profile_applied covers it")
    b = make_bundle("sleep", "1000")
    b.process["apparmorProfile"] = "cocoon-test-not-loaded"
    b.save()
    cid = cocoon.id("aa")
    assert cocoon.run(cid, b, "--detach").rc == 0
    r = cocoon("exec", "--apparmor", "another-one", cid, "echo", "ran")
    assert r.rc == 0 and r.out == "ran\n", r
    cocoon.ok("delete", "--force", cid)


def test_apparmor_profile_applied(cocoon, make_bundle, token, nothing_left):
    """With AppArmor, the init and exec'd processes run confined by the
    profile; a profile that is not loaded is an error naming it."""
    if not apparmor_enabled():
        pytest.skip("this kernel has no AppArmor enabled (/sys/module/apparmor)")
    if shutil.which("apparmor_parser") is None:
        pytest.skip("apparmor_parser is not installed")
    name = f"cocoon-test-{token[:10]}"
    prof = f"profile {name} flags=(complain) {{\n}}\n"
    r = subprocess.run(["apparmor_parser", "-r"], input=prof, text=True, capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"apparmor_parser cannot load a profile here: {r.stderr.strip()}")
    try:
        b = make_bundle()
        b.process["apparmorProfile"] = name
        out = run_in(cocoon, b, "cat /proc/self/attr/current", "aa").out
        assert out.startswith(name), out
        b.process["apparmorProfile"] = name + "-missing"
        b.save()
        cocoon.fail("create", "-b", b.path, cocoon.id("aa"), expect=[name + "-missing"])
        nothing_left()
    finally:
        subprocess.run(["apparmor_parser", "-R"], input=prof, text=True, capture_output=True)
