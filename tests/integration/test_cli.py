"""The command line itself: version, help, features, spec, bad commands and
options, --log/--log-format."""
import json
import os

import pytest

from cocoonlib import Cocoon, assert_one_error, needs_root


@pytest.fixture
def cli(tmp_path, token, cocoon_bin):
    return Cocoon(tmp_path / "state", token)


def test_version(cli):
    r = cli.ok("--version", with_root=False)
    assert r.out.startswith("cocoon version "), r
    assert "spec: 1." in r.out
    assert r.err == ""


def test_help_lists_every_command(cli):
    for argv in (["--help"], ["-h"], ["help"]):
        r = cli.ok(*argv, with_root=False)
        assert r.out.startswith("usage: cocoon"), r
        for cmd in ("create", "start", "state", "kill", "delete", "run", "list", "spec",
                    "features"):
            assert f"\n  {cmd} " in r.out, (cmd, r.out)


@pytest.mark.parametrize("cmd", ["create", "start", "state", "kill", "delete", "run", "list",
                                 "spec"])
def test_command_help(cli, cmd):
    r = cli.ok(cmd, "--help")
    assert r.out.startswith(f"usage: cocoon {cmd}"), r


def test_features_is_json(cli):
    r = cli.ok("features", with_root=False)
    f = json.loads(r.out)
    assert f["ociVersionMax"].startswith("1.")
    assert f["ociVersionMin"].startswith("1.")
    assert "mount" in f["linux"]["namespaces"]
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert "rbind" in f["mountOptions"]


def test_spec_writes_default_config(cli, tmp_path):
    cli.ok("spec", "--bundle", tmp_path, with_root=False)
    with open(tmp_path / "config.json") as fh:
        c = json.load(fh)
    assert c["ociVersion"].startswith("1.")
    assert c["process"]["terminal"] is True
    assert c["process"]["args"] == ["sh"]
    assert c["root"] == {"path": "rootfs", "readonly": True}
    dests = [m["destination"] for m in c["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"):
        assert d in dests
    ns = sorted(n["type"] for n in c["linux"]["namespaces"])
    assert ns == sorted(["pid", "network", "ipc", "uts", "mount", "cgroup"])
    assert sorted(c["process"]["capabilities"]["bounding"]) == [
        "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def test_spec_default_bundle_is_cwd(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli.ok("spec", with_root=False)
    assert (tmp_path / "config.json").is_file()


def test_spec_rootless(cli, tmp_path):
    cli.ok("spec", "--rootless", "--bundle", tmp_path, with_root=False)
    with open(tmp_path / "config.json") as fh:
        c = json.load(fh)
    types = [n["type"] for n in c["linux"]["namespaces"]]
    assert "user" in types and "network" not in types
    assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    assert c["linux"]["gidMappings"] == [{"containerID": 0, "hostID": os.getgid(), "size": 1}]


def test_spec_refuses_to_overwrite(cli, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("precious")
    r = cli.fail("spec", "--bundle", tmp_path, expect=["already exists"], with_root=False)
    assert str(cfg) in r.err
    assert cfg.read_text() == "precious"


def test_spec_into_missing_dir(cli, tmp_path):
    cli.fail("spec", "--bundle", tmp_path / "nope", expect=["config.json"], with_root=False)
    assert not (tmp_path / "nope").exists()


@needs_root
def test_spec_output_runs(cocoon, base, tmp_path):
    """`cocoon spec` + a rootfs + terminal false is a bundle `run` accepts."""
    b = tmp_path / "specbundle"
    b.mkdir()
    cocoon.ok("spec", "--bundle", b)
    os.symlink(base["rootfs"], b / "rootfs")
    with open(b / "config.json") as fh:
        c = json.load(fh)
    c["process"]["terminal"] = False
    c["process"]["args"] = ["sh", "-c", "echo spec-ok; hostname"]
    c["process"]["env"].append(f"COCOON_TEST_TOKEN={cocoon.token}")
    with open(b / "config.json", "w") as fh:
        json.dump(c, fh)
    r = cocoon("run", "--bundle", b, "specrun")
    assert r.rc == 0, r
    assert r.out.split() == ["spec-ok", "cocoon"]
    assert cocoon.state_dirs() == []


def test_unknown_command(cli):
    r = cli.fail("frobnicate", expect=["frobnicate"])
    assert r.out == ""


@pytest.mark.parametrize("argv", [
    ["list", "--bogus"],
    ["state", "--bogus", "x"],
    ["kill", "--bogus", "x"],
    ["delete", "--bogus", "x"],
    ["create", "--bogus", "x"],
    ["run", "--bogus", "x"],
    ["spec", "--bogus"],
], ids=lambda a: a[0])
def test_unknown_command_option(cli, argv):
    cli.fail(*argv, expect=["--bogus"])
    assert cli.state_dirs() == []


def test_unknown_global_option_is_one_line(cli):
    """Errors are one `cocoon: ...` line on stderr; an unknown global option
    must not be followed by the whole usage text."""
    r = cli(*["--bogus", "list"])
    assert_one_error(r, ["--bogus"])


def test_missing_global_option_argument_is_one_line(cli):
    r = cli("--root", with_root=False)
    assert_one_error(r, ["--root"])


def test_bad_log_format(cli):
    cli.fail("list", glob=["--log-format", "yaml"], expect=["yaml"])


@pytest.mark.parametrize("argv,what", [
    (["state"], "state"),
    (["state", "a", "b"], "state"),
    (["start"], "start"),
    (["delete"], "delete"),
    (["kill", "a", "TERM", "extra"], "kill"),
    (["create"], "create"),
    (["run", "a", "b"], "run"),
    (["list", "extra"], "list"),
    (["features", "extra"], "features"),
], ids=lambda x: "-".join(x) if isinstance(x, list) else None)
def test_wrong_number_of_arguments(cli, argv, what):
    cli.fail(*argv, expect=[what])


def test_create_has_no_detach(cli, tmp_path):
    cli.fail("create", "--detach", "x", expect=["--detach"])
    assert cli.state_dirs() == []


def test_preserve_fds_not_a_number(cli):
    cli.fail("run", "--preserve-fds", "many", "x", expect=["--preserve-fds", "many"])


def test_log_json_on_error(cli, tmp_path):
    log = tmp_path / "log.json"
    r = cli.fail("state", "ghost", glob=["--log", log, "--log-format", "json"],
                 expect=["ghost", "does not exist"])
    # stderr keeps the plain text line
    assert r.err_lines == ["cocoon: container `ghost` does not exist"]
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["level"] == "error"
    assert "ghost" in rec["msg"] and "does not exist" in rec["msg"]
    assert rec["time"].endswith("Z")
    # appended, not truncated
    cli.fail("kill", "ghost2", glob=["--log", log, "--log-format", "json"])
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert "ghost2" in json.loads(lines[1])["msg"]


def test_log_text_on_error(cli, tmp_path):
    log = tmp_path / "log.txt"
    cli.fail("state", "ghost", glob=["--log", log])
    assert log.read_text() == "cocoon: container `ghost` does not exist\n"


def test_log_json_escapes_message(cli, tmp_path):
    """A message with quotes and backslashes still makes a valid JSON line."""
    log = tmp_path / "log.json"
    bad = 'we"ird\\id'
    cli.fail("state", bad, glob=["--log", log, "--log-format", "json"])
    rec = json.loads(log.read_text().splitlines()[0])
    assert bad in rec["msg"]


def test_log_file_unwritable(cli, tmp_path):
    cli.fail("list", glob=["--log", tmp_path / "no" / "such" / "log"], expect=["log"])


def test_list_without_root_dir(cli, tmp_path):
    r = cli.ok("list")
    assert r.out.splitlines()[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED"]
    assert len(r.out.splitlines()) == 1
    assert json.loads(cli.ok("list", "--format", "json").out) == []
    assert cli.ok("list", "-q").out == ""
    assert not os.path.exists(cli.root), "list must not create the state root"


def test_list_bad_format(cli):
    cli.fail("list", "--format", "xml", expect=["xml"])
