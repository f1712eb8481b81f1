"""The devstack plugin WITHOUT devstack: ``bash -n`` on the scripts, then every phase run against STUB devstack
functions that record their calls (and write the ini file), and the ``strongroom.conf`` it writes loaded by
Strongroom's own option parser.  This shows the phases exist, call the expected devstack functions and write a
configuration Strongroom accepts; it cannot show that a real ``stack.sh`` run succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from strongroom import config, rpc

ROOT = Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "devstack"
PHASES = [("stack", "install"), ("stack", "post-config"), ("stack", "extra"), ("unstack", ""), ("clean", "")]

# iniset records "section|option|value" lines; this writes them as the ini file devstack's iniset would.
INI_FROM_RECORDS = """
import configparser, sys
parser = configparser.RawConfigParser()
parser.optionxform = str
for line in open(sys.argv[1]).read().splitlines():
    section, option, value = line.split("|", 2)
    if section != "DEFAULT" and not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, value)
with open(sys.argv[2], "w") as fh:
    parser.write(fh)
"""

# Stand-ins for the devstack functions plugin.sh calls (devstack's functions, functions-common, lib/*).
STUBS = r"""
set -e
function record { echo "$*" >> "$WORK/calls.log"; }
function is_service_enabled {
    local s; for s in "$@"; do [[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0; done; return 1
}
function enable_service {  # as devstack's: a service the user disabled stays disabled
    local s
    for s in "$@"; do
        [[ ",$DISABLED_SERVICES," == *",$s,"* ]] && continue
        is_service_enabled $s || ENABLED_SERVICES="$ENABLED_SERVICES,$s"
    done
}
function get_python_exec_prefix { echo "$WORK/bin"; }
function echo_summary { record "echo_summary $*"; }
function setup_develop { record "setup_develop $*"; }
function pip_install { record "pip_install $*"; }
function iniset { record "iniset $*"; echo "$2|$3|$4" >> "$1.records"; }
function iniset_rpc_backend {
    record "iniset_rpc_backend $*"; iniset $2 ${3:-DEFAULT} transport_url "rabbit://stackrabbit:secret@127.0.0.1:5672/"
}
function database_connection_url {
    if [[ "$DATABASE_TYPE" == "mysql" ]]; then echo "mysql+pymysql://root:secret@127.0.0.1/$1?charset=utf8"
    else echo "postgresql://root:secret@127.0.0.1/$1?client_encoding=utf8"; fi
}
function configure_keystone_authtoken_middleware {
    record "configure_keystone_authtoken_middleware $*"
    iniset $1 keystone_authtoken auth_type password
    iniset $1 keystone_authtoken username $2
    iniset $1 keystone_authtoken www_authenticate_uri http://127.0.0.1/identity
}
function create_service_user { record "create_service_user $*"; }
function get_or_create_service { record "get_or_create_service $*"; }
function get_or_create_endpoint { record "get_or_create_endpoint $*"; }
function recreate_database { record "recreate_database $*"; }
function mysql { record "mysql $*"; }
function run_process { is_service_enabled $1 || return 0; record "run_process $1|$2|$5"; }
function stop_process { record "stop_process $*"; }
function wait_for_service { record "wait_for_service $*"; }
function die { record "die $*"; exit 1; }
function sudo { "$@"; }
source "$DEVSTACK/settings"
"""


def test_scripts_parse_with_bash_n() -> None:
    for script in ("plugin.sh", "settings"):
        out = subprocess.run(["bash", "-n", str(DEVSTACK / script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script}: {out.stderr}"
    sample = (DEVSTACK / "local.conf.sample").read_text().splitlines()
    assert len([line for line in sample if line.startswith("enable_plugin strongroom ")]) == 1


def _run_phases(tmp_path: Path, *, operationengine: bool = False,
                **env: str) -> tuple[dict[str, list[str]], Path]:
    work = tmp_path / "devstack"
    (work / "bin").mkdir(parents=True)
    if operationengine:  # a version that ships it (issue 5)
        (work / "bin" / "strongroom-operationengine").write_text("#!/bin/sh\n")
        (work / "bin" / "strongroom-operationengine").chmod(0o755)
    (work / "ini.py").write_text(INI_FROM_RECORDS)
    manage = work / "bin" / "strongroom-manage"
    manage.write_text('#!/bin/sh\necho "strongroom-manage $*" >> "$WORK/calls.log"\n')
    manage.chmod(0o755)
    variables = {
        "WORK": str(work), "DEVSTACK": str(DEVSTACK), "PYTHON": shutil.which("python3") or "python3",
        "PATH": os.environ["PATH"], "HOME": str(work),
        "DEST": str(work / "opt"), "DATA_DIR": str(work / "data"), "STACK_USER": os.environ.get("USER", "root"),
        "SERVICE_HOST": "192.0.2.10", "SERVICE_PROTOCOL": "http", "REGION_NAME": "RegionOne",
        "KEYSTONE_SERVICE_URI": "http://192.0.2.10/identity", "SERVICE_PASSWORD": "service-secret",
        "SERVICE_TIMEOUT": "60", "ENABLE_DEBUG_LOG_LEVEL": "True", "DATABASE_BACKENDS": "mysql postgresql",
        "DATABASE_TYPE": "mysql", "DATABASE_USER": "root", "DATABASE_PASSWORD": "secret", "MYSQL_HOST": "127.0.0.1",
        "ENABLED_SERVICES": "key,mysql,rabbit,keystone", "DISABLED_SERVICES": "",
        "STRONGROOM_DIR": str(ROOT), "STRONGROOM_CONF_DIR": str(work / "etc"),
        "STRONGROOM_AUTH_CACHE_DIR": str(work / "cache"), **env,
    }
    script = STUBS
    for mode, phase in PHASES:
        script += f'record "PHASE {mode} {phase}"\nsource "$DEVSTACK/plugin.sh" {mode} {phase}\n'
        if phase == "post-config":
            script += ('"$PYTHON" "$WORK/ini.py" "$STRONGROOM_CONF.records" "$WORK/strongroom.conf"\n'
                       'cp -r "$STRONGROOM_PROVIDERS_DIR" "$WORK/p"\n')
    out = subprocess.run(["bash", "-c", script], env=variables, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    calls: dict[str, list[str]] = {}
    current = ""
    for line in (work / "calls.log").read_text().splitlines():
        if line.startswith("PHASE "):
            current = line[len("PHASE "):].strip()
            calls[current] = []
        else:
            calls[current].append(line)
    return calls, work


def _names(lines: list[str]) -> list[str]:
    return [line.split()[0] for line in lines]


def test_phases_against_stubbed_devstack_with_keystone_mysql_and_gunicorn(tmp_path: Path) -> None:
    calls, work = _run_phases(tmp_path)
    assert list(calls) == ["stack install", "stack post-config", "stack extra", "unstack", "clean"]

    assert f"setup_develop {ROOT}" in calls["stack install"]
    assert any(c.startswith("pip_install gunicorn") for c in calls["stack install"])
    assert any(c.startswith("pip_install PyMySQL") for c in calls["stack install"])

    post = calls["stack post-config"]
    assert "iniset_rpc_backend strongroom " + str(work / "etc" / "strongroom.conf") + " DEFAULT" in post
    assert any(c.startswith("configure_keystone_authtoken_middleware") and c.endswith(" strongroom") for c in post)
    assert "create_service_user strongroom admin" in post
    assert "get_or_create_service strongroom data-protect Data Protection Service" in post
    assert "get_or_create_endpoint data-protect RegionOne http://192.0.2.10:8799/v1/$(project_id)s" in post
    assert "recreate_database strongroom" in post
    assert f"strongroom-manage --config-file {work}/etc/strongroom.conf db sync" in post
    assert any(c.startswith("mysql ") and "utf8mb4" in c for c in post)
    names = _names(post)
    assert names.index("get_or_create_endpoint") < names.index("recreate_database") < names.index("strongroom-manage")

    extra = calls["stack extra"]
    runs = {c.split("|")[0].split()[1]: c.split("|", 2)[1:] for c in extra if c.startswith("run_process")}
    # the workers first, then the API; no operation engine in a version that does not ship it
    assert list(runs) == ["strongroom-protection", "strongroom-api"]
    conf_file = f"{work}/etc/strongroom.conf"
    assert runs["strongroom-protection"][0] == f"{work}/bin/strongroom-protection --config-file {conf_file}"
    command, env = runs["strongroom-api"]
    assert command.startswith(f"{work}/bin/gunicorn --workers 2 --threads 8 --bind 0.0.0.0:8799")
    assert command.endswith("strongroom.api.wsgi:application")
    assert env == f"STRONGROOM_CONFIG_FILE={work}/etc/strongroom.conf"
    assert "wait_for_service 60 http://192.0.2.10:8799" in extra
    assert sorted(c for c in calls["unstack"] if c.startswith("stop_process")) == [
        "stop_process strongroom-api", "stop_process strongroom-operationengine", "stop_process strongroom-protection"]
    assert not (work / "etc").exists() and not (work / "data" / "strongroom").exists()  # clean

    # The configuration it wrote is one Strongroom reads as meant.
    conf = config.new_conf(default_config_files=[str(work / "strongroom.conf")])
    rpc._register_messaging_opts(conf)
    assert conf.transport_url == "rabbit://stackrabbit:secret@127.0.0.1:5672/"
    assert conf.database.connection == "mysql+pymysql://root:secret@127.0.0.1/strongroom?charset=utf8mb4"
    assert conf.auth_strategy == "keystone"
    assert (conf.trustee.auth_url, conf.trustee.username, conf.trustee.password) == (
        "http://192.0.2.10/identity/v3", "strongroom", "service-secret")  # scheduled runs' trusts
    assert (conf.api.bind_host, conf.api.bind_port) == ("0.0.0.0", 8799)
    assert (conf.heartbeat_interval, conf.missed_heartbeats) == (10.0, 6)
    assert conf.state_dir == str(work / "data" / "strongroom")
    shipped = sorted(p.name for p in (ROOT / "providers.d").glob("*.conf"))
    assert sorted(p.name for p in (work / "p").iterdir()) == shipped


def test_phases_without_keystone_on_postgresql_with_the_threaded_runner(tmp_path: Path) -> None:
    calls, work = _run_phases(tmp_path, ENABLED_SERVICES="postgresql,rabbit", DATABASE_TYPE="postgresql",
                              STRONGROOM_API_SERVER="threaded")
    assert any(c.startswith("pip_install psycopg2-binary") for c in calls["stack install"])
    assert not any(c.startswith("pip_install gunicorn") for c in calls["stack install"])
    post = calls["stack post-config"]
    assert not any(c.startswith(("get_or_create", "create_service_user", "configure_keystone", "mysql"))
                   for c in post)
    runs = [c for c in calls["stack extra"] if c.startswith("run_process strongroom-api")]
    assert runs == [f"run_process strongroom-api|{work}/bin/strongroom-api --config-file "
                    f"{work}/etc/strongroom.conf|"]
    conf = config.new_conf(default_config_files=[str(work / "strongroom.conf")])
    assert conf.auth_strategy == "noauth"
    assert conf.database.connection == "postgresql://root:secret@127.0.0.1/strongroom?client_encoding=utf8"


@pytest.mark.parametrize("service", ["strongroom-operationengine", "strongroom-protection"])
def test_a_service_disabled_in_localrc_is_not_started(tmp_path: Path, service: str) -> None:
    calls, _ = _run_phases(tmp_path, operationengine=True, DISABLED_SERVICES=service)
    started = {c.split("|")[0].split()[1] for c in calls["stack extra"] if c.startswith("run_process")}
    assert started == {"strongroom-api", "strongroom-protection", "strongroom-operationengine"} - {service}
