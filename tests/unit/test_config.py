"""The deployment config: a good file loads whole; each bad one is ONE InputError line that
names the key, before anything connects (no NB/SB/agent exists in these tests: a check
that tried to connect would fail differently)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cutover import cli, config, deployment
from cutover.errors import InputError
from cutover.ovsdb import tls
from cutover.site import ChassisEndpoint, Site, SslFiles, VmSpec

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Key/cert/CA files, a 0600 token, a guest dir: what a good config points at."""
    for name in ("key.pem", "cert.pem", "ca.pem", "agent-ca.pem", "client.pem",
                 "client-key.pem"):
        (tmp_path / name).write_text(PEM)
    token = tmp_path / "agent.token"
    token.write_text("0123456789abcdef0123\n")
    token.chmod(0o600)
    (tmp_path / "guests").mkdir()
    return tmp_path


def good(d: Path) -> str:
    return f"""
name = "az1"

[ovsdb]
nb = "ssl:10.0.0.1:6641,ssl:10.0.0.2:6641,ssl:10.0.0.3:6641"
sb = "ssl:10.0.0.1:6642,ssl:10.0.0.2:6642,ssl:10.0.0.3:6642"

[ovsdb.ssl]
private_key = "{d}/key.pem"
certificate = "{d}/cert.pem"
ca_cert = "{d}/ca.pem"

[timeouts]
ready_s = 20
activation_s = 15.5

[agents]
token_file = "{d}/agent.token"
ca = "{d}/agent-ca.pem"
client_cert = "{d}/client.pem"
client_key = "{d}/client-key.pem"

[compute]
driver = "emulated"
guest_dir = "{d}/guests"

[[chassis]]
name = "hv1"
agent = "https://10.0.1.11:8443"

[[chassis]]
name = "hv2"
agent = "https://10.0.1.12:8443"
encap_ip = "10.0.2.12"

[[vm]]
name = "web1"
lsp = "lsp-web1"
tap = "tapweb1"

[[vm]]
name = "db1"
lsp = "lsp-db1"
tap = "tapdb1"
mac = "FA:16:3E:00:00:01"
ip = "192.168.0.5"
chassis = "hv2"
"""


def load(text: str, d: Path) -> config.Deployment:
    path = d / "cutover.toml"
    path.write_text(text)
    return config.load(path)


def refused(text: str, d: Path) -> str:
    with pytest.raises(InputError) as e:
        load(text, d)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"config {d / 'cutover.toml'}: ")
    return msg


def test_good_config_loads_whole(files: Path) -> None:
    dep = load(good(files), files)
    site = dep.site
    assert site.name == "az1"
    assert tls.members(site.sb_remote)[2] == "ssl:10.0.0.3:6642"
    assert site.ssl == SslFiles(f"{files}/key.pem", f"{files}/cert.pem", f"{files}/ca.pem")
    assert dep.timeouts == config.Timeouts(ready_s=20.0, activation_s=15.5, ovsdb_s=30.0)
    hv1, hv2 = site.chassis
    assert hv1.agent == "https://10.0.1.11:8443"
    assert hv1.agent_ca == f"{files}/agent-ca.pem"  # from [agents]
    assert hv1.agent_client_key == f"{files}/client-key.pem"
    assert hv1.ovs_remote == config.DEFAULT_OVS_REMOTE
    assert hv2.encap_ip == "10.0.2.12"
    assert dep.undiscovered == ("web1",)
    assert site.vm_named("db1") == VmSpec("db1", "lsp-db1", "fa:16:3e:00:00:01",
                                         "192.168.0.5", "hv2", "tapdb1")
    assert dep.driver == "emulated"
    assert site.state_dir == ""  # no journal unless the file names a place for it


def test_state_dir_holds_the_journal(files: Path) -> None:
    text = good(files).replace('guest_dir = "', f'state_dir = "{files}"\nguest_dir = "')
    assert load(text, files).site.state_dir == str(files)


BAD = [
    # (what to change, what the message must name)
    (lambda t: "bogus = 1\n" + t, "unknown key 'bogus'"),
    (lambda t: t + "\nbogus = 1\n", "unknown key 'vm[1].bogus'"),
    (lambda t: "name = 3\n" + t.replace('name = "az1"', ""), "name must be a string"),
    (lambda t: t.replace('[timeouts]\n', '[timeouts]\nready = 3\n'), "'timeouts.ready'"),
    (lambda t: t.replace('nb = "ssl', 'nb = "ssh'), "ovsdb.nb member 'ssh:10.0.0.1:6641'"),
    (lambda t: t.replace(':6641,ssl:10.0.0.2:6641', ':6641,ssl:10.0.0.2'), "ssl:HOST:PORT"),
    (lambda t: t.replace(':6642,ssl:10.0.0.2:6642', ':99999,ssl:10.0.0.2:6642'), "ovsdb.sb"),
    (lambda t: t.replace('nb = "ssl:10.0.0.1:6641,ssl:10.0.0.2:6641,ssl:10.0.0.3:6641"',
                         'nb = 6641'), "ovsdb.nb must be a string, not an integer"),
    (lambda t: t.replace('sb = "ssl:10.0.0.1:6642,ssl:10.0.0.2:6642,ssl:10.0.0.3:6642"',
                         'sb = ""'), "ovsdb.sb is empty"),
    (lambda t: t.replace('sb = "ssl', 'xsb = "ssl'), "ovsdb.sb is missing"),
    (lambda t: t.replace('[ovsdb]', '[ovsdbx]'), "unknown key 'ovsdbx'"),
    (lambda t: t.replace('[ovsdb]\nnb', '[ovsdbx]\nnb').replace('[ovsdb.ssl]', '[ovsdbx.ssl]'),
     "unknown key 'ovsdbx'"),
    (lambda t: t.replace('private_key = "', 'private_key = "rel/'), "give an absolute path"),
    (lambda t: t.replace('/key.pem"', '/nokey.pem"'), "ovsdb.ssl.private_key"),
    (lambda t: t.replace('ca_cert = "', 'cacert = "'), "ovsdb.ssl.ca_cert is missing"),
    (lambda t: t.replace('ready_s = 20', 'ready_s = "20"'), "timeouts.ready_s must be a number"),
    (lambda t: t.replace('ready_s = 20', 'ready_s = 0'), "timeouts.ready_s"),
    (lambda t: t.replace('ready_s = 20', 'ready_s = true'), "timeouts.ready_s must be a number"),
    (lambda t: t.replace('activation_s = 15.5', 'activation_s = 99999'), "timeouts.activation_s"),
    (lambda t: t.replace('agent = "https://10.0.1.11:8443"', 'agent = "http://10.0.1.11:80"'),
     "chassis[0].agent = 'http://10.0.1.11:80'"),
    (lambda t: t.replace('agent = "https://10.0.1.11:8443"', 'agent = "https://10.0.1.11"'),
     "https://HOST:PORT"),
    (lambda t: t.replace('agent = "https://10.0.1.11:8443"', 'agent = "unix:rel.sock"'),
     "absolute"),
    (lambda t: t.replace('name = "hv2"', 'name = "hv1"'), "chassis 'hv1' appears twice"),
    (lambda t: t.replace('name = "hv2"', 'name = "hv 2"'), "chassis[1].name"),
    (lambda t: t.replace('token_file = "', 'token_file = "/nonexistent'), "token_file"),
    (lambda t: t.replace('client_key = ', '# '), "client_cert and client_key together"),
    (lambda t: t.replace('encap_ip = "10.0.2.12"', 'encap_ip = "10.0.2"'), "chassis[1].encap_ip"),
    (lambda t: t.replace('encap_ip = "10.0.2.12"', 'ovs_remote = "tcp:1.2.3.4:6640"'),
     "chassis[1].ovs_remote"),
    (lambda t: t.replace('encap_ip = "10.0.2.12"', 'ofctl = []'), "chassis[1].ofctl"),
    (lambda t: t.replace('encap_ip = "10.0.2.12"', 'colour = "red"'),
     "unknown key 'chassis[1].colour'"),
    (lambda t: t.replace('driver = "emulated"', 'driver = "xen"'), "compute.driver"),
    (lambda t: t.replace('/guests"', '/noguests"'), "compute.guest_dir"),
    (lambda t: t.replace('guest_dir = "', 'guest_ram_mb = 1\nguest_dir = "'),
     "compute.guest_ram_mb"),
    (lambda t: t.replace('guest_dir = "', 'state_dir = "rel"\nguest_dir = "'),
     "compute.state_dir = 'rel': give an absolute path"),
    (lambda t: t.replace('guest_dir = "', 'state_dir = "/nonexistent-state"\nguest_dir = "'),
     "compute.state_dir = '/nonexistent-state': no such directory"),
    (lambda t: t.replace('[compute]', '[computer]'), "unknown key 'computer'"),
    (lambda t: t[:t.index('[compute]')] + t[t.index('[[chassis]]'):], "[compute] is missing"),
    (lambda t: t.replace('tap = "tapweb1"', 'tap = "tap-much-too-long-name"'), "vm[0].tap"),
    (lambda t: t.replace('tap = "tapweb1"', ''), "vm[0].tap is missing"),
    (lambda t: t.replace('mac = "FA:16:3E:00:00:01"', 'mac = "fa16.3e00.0001"'), "vm[1].mac"),
    (lambda t: t.replace('ip = "192.168.0.5"', 'ip = "192.168.0.500"'), "vm[1].ip"),
    (lambda t: t.replace('chassis = "hv2"', 'chassis = "hv9"'), "vm[1].chassis = 'hv9'"),
    (lambda t: t.replace('lsp = "lsp-db1"', 'lsp = "lsp-web1"'), "vm lsp 'lsp-web1' appears"),
    (lambda t: t.replace('name = "db1"', 'name = "web1"'), "vm 'web1' appears twice"),
    (lambda t: t.replace('[[vm]]', '[[vmx]]'), "unknown key 'vmx'"),
    (lambda t: t.replace('[[chassis]]\nname = "hv2"', '[[xchassis]]\nname = "hv2"'),
     "unknown key 'xchassis'"),
    (lambda t: t + '\n[[chassis]]\nname = "hv3"\nagent = "https://10.0.1.13:8443"\nagent = 1\n',
     "not valid TOML"),
    (lambda t: t.replace('[ovsdb.ssl]', '[ovsdb.tls]'), "unknown key 'ovsdb.tls'"),
    (lambda t: "timeouts = 3\n" + t.replace("[timeouts]\nready_s = 20\nactivation_s = 15.5\n",
                                            ""), "timeouts must be a table"),
]


@pytest.mark.parametrize(("edit", "says"), BAD)
def test_bad_config_is_one_clear_line(files: Path, edit: object, says: str) -> None:
    assert callable(edit)
    text = edit(good(files))
    assert text != good(files), "the edit did not apply"
    assert says in refused(text, files)


def test_ssl_remote_without_certificates(files: Path) -> None:
    text = good(files)
    start = text.index("[ovsdb.ssl]")
    text = text[:start] + text[text.index("[timeouts]"):]
    assert "[ovsdb.ssl] is missing" in refused(text, files)


def test_token_readable_by_others(files: Path) -> None:
    (files / "agent.token").chmod(0o644)
    assert "chmod 600" in refused(good(files), files)


def test_not_a_pem_file(files: Path) -> None:
    (files / "ca.pem").write_text("not a certificate\n")
    assert "ca_cert" in refused(good(files), files)
    assert "not a PEM file" in refused(good(files), files)


def test_one_chassis_is_not_enough(files: Path) -> None:
    text = good(files).replace('[[chassis]]\nname = "hv2"\nagent = "https://10.0.1.12:8443"\n'
                               'encap_ip = "10.0.2.12"\n', "")
    text = text.replace('chassis = "hv2"', 'chassis = "hv1"')
    assert "at least two [[chassis]]" in refused(text, files)


def test_no_vm(files: Path) -> None:
    text = good(files)
    text = text[:text.index("[[vm]]")]
    assert "at least one [[vm]]" in refused(text, files)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        config.load(tmp_path / "nope.toml")


# -- discovery ---------------------------------------------------------------------------


def test_discover_fills_mac_ip_and_chassis(files: Path) -> None:
    dep = load(good(files), files)
    site = deployment.discover(dep, lambda lsp: ["router", "fa:16:3e:aa:bb:cc 10.1.0.7 fd00::7"],
                           lambda lsp: "hv1")
    web = site.vm_named("web1")
    assert (web.mac, web.ip, web.chassis) == ("fa:16:3e:aa:bb:cc", "10.1.0.7", "hv1")
    assert site.vm_named("db1").chassis == "hv2"  # given in the file: not asked


@pytest.mark.parametrize(("addresses", "bound", "says"), [
    (["dynamic"], "hv1", "has no 'MAC IP' address"),
    (["fa:16:3e:aa:bb:cc 10.1.0.7"], None, "bound to no chassis"),
    (["fa:16:3e:aa:bb:cc 10.1.0.7"], "hv7", "add a [[chassis]] hv7"),
])
def test_discover_refuses(files: Path, addresses: list[str], bound: str | None,
                          says: str) -> None:  # fmt: skip
    dep = load(good(files), files)
    with pytest.raises(InputError, match=r".*" + says.replace("[", r"\[").replace("]", r"\]")):
        deployment.discover(dep, lambda lsp: addresses, lambda lsp: bound)


# -- a lab's site as a config --------------------------------------------------------------


def test_site_round_trips_through_toml(files: Path) -> None:
    ssl = SslFiles(f"{files}/key.pem", f"{files}/cert.pem", f"{files}/ca.pem")
    token = f"{files}/agent.token"
    site = Site(
        name="lab", nb_remote="ssl:172.31.250.2:6641", sb_remote="ssl:172.31.250.2:6642",
        chassis=tuple(ChassisEndpoint(
            f"hv{i}", f"unix:/tmp/x/hv{i}/db.sock", netns=f"lab-hv{i}",
            encap_ip=f"172.31.250.1{i}", controller_ctl=f"/tmp/x/hv{i}/ctl",
            ofctl=("/usr/bin/ovs-ofctl",), agent=f"https://172.31.250.1{i}:8443",
            agent_token_file=token, agent_ca=f"{files}/ca.pem",
            agent_client_cert=f"{files}/cert.pem", agent_client_key=f"{files}/key.pem")
            for i in (1, 2)),
        vms=(VmSpec("vm1", "lab-vm1", "02:00:00:00:00:01", "10.99.0.1", "hv1", "lat-vm1"),),
        guest_dir=str(files / "guests"), extra={"guest": "emulated"}, ssl=ssl)
    back = load(deployment.to_toml(site, discover_vms=False), files).site
    assert back.chassis == site.chassis
    assert back.vms == site.vms
    assert back.ssl == ssl
    assert (back.nb_remote, back.sb_remote) == (site.nb_remote, site.sb_remote)
    assert load(deployment.to_toml(site), files).undiscovered == ("vm1",)


# -- remotes and the CLI ----------------------------------------------------------------------


@pytest.mark.parametrize("remote", ["unix:/run/ovn/ovnsb_db.sock", "tcp:[::1]:6642",
                                    "ssl:a:1, ssl:b:2 ,ssl:c:3"])
def test_good_remotes(remote: str) -> None:
    tls.check_remote(remote, "sb")


def test_ssl_needs_files_before_connecting() -> None:
    tls.reset()
    with pytest.raises(InputError, match="no client certificate"):
        tls.require_configured("unix:/x,ssl:1.2.3.4:6642", "OVN_Southbound")
    tls.require_configured("unix:/x", "OVN_Southbound")


def test_cli_config_check_refuses_before_connecting(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def no_connect(*args: object) -> None:
        raise AssertionError("a bad config must not connect")

    monkeypatch.setattr(deployment, "NbClient", no_connect)
    path = files / "cutover.toml"
    path.write_text(good(files).replace('driver = "emulated"', 'driver = "xen"'))
    assert cli.main(["config", "check", "--connect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("InputError: config ") and "compute.driver" in err
    assert cli.main(["migrate", "--config", str(path), "web1", "--to", "hv2"]) == 2
    assert "compute.driver" in capsys.readouterr().err
    path.write_text(good(files))
    assert cli.main(["migrate", "--config", str(path), "web9", "--to", "hv2"]) == 2
    assert "VM 'web9' is not in this site" in capsys.readouterr().err
    assert cli.main(["config", "check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_agent_needs_all_three_ssl_files(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["agent", "--chassis", "hv1", "--ovs-remote", "unix:/x", "--sb-remote",
                     "ssl:1.2.3.4:6642", "--listen", "unix:/tmp/a.sock", "--token-file",
                     "/nonexistent", "--ovsdb-ssl-key", "/k"]) == 2
    assert "give all of --ovsdb-ssl-key" in capsys.readouterr().err


def test_documented_example_loads(files: Path) -> None:
    """docs/examples/cutover.toml stays a valid config (its paths pointed at test files)."""
    example = Path(__file__).parents[2] / "docs" / "examples" / "cutover.toml"
    text = example.read_text()
    for path in sorted(set(re.findall(r'"(/etc/cutover/[^"]+|/var/lib/cutover/guests)"', text))):
        name = Path(path).name
        target = files / "guests" if name == "guests" else files / f"doc-{name}"
        if name == "agent.token":
            target = files / "agent.token"
        elif name != "guests":
            target.write_text(PEM)
        text = text.replace(f'"{path}"', f'"{target}"')
    dep = load(text, files)
    assert [c.name for c in dep.site.chassis] == ["compute-1", "compute-2"]
    assert dep.undiscovered == ("web1",)
    assert len(tls.members(dep.site.nb_remote)) == 3
