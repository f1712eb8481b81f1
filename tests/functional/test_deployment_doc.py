"""doc/deployment.md, section 10, followed as written from an empty directory (issue 17, done-when 4).

The section's blocks carry HTML comments that say what each is: ``<!-- walk: file PATH -->`` an INI file to
write at PATH, ``<!-- walk: run -->`` a console session to type (``$ `` lines are commands, the lines under one
what it prints; ``...`` stands for what varies), ``<!-- walk: retry N -->`` the same, asked again for up to N
seconds until it prints what the doc says, ``<!-- walk: stop -->`` the ``kill %N`` of the background jobs,
``<!-- walk: install -->`` the install line, checked against the installed package rather than run (this
process's virtualenv, as ``make install`` makes it).  Only what the section says an operator chooses is
replaced: passwords, the administrator token, the directory, the port and the deployment's name on
PostgreSQL, RabbitMQ and Redis.  Every command run is one of the doc's, through bash, with the variables
and the directory the earlier commands left, as in an operator's shell.  PostgreSQL, RabbitMQ (and its
``rabbitmqctl``) or Redis unreachable: SKIP, or FAIL with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from packaging.requirements import Requirement

from tests.servers import free_port, require_port, unavailable

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "doc" / "deployment.md"
SECTION = "## 10. A first deployment on one host, step by step"

pytestmark = [pytest.mark.functional, pytest.mark.slow]

_BLOCK = re.compile(r"<!-- walk: (?P<kind>\w+)(?: (?P<arg>[^>]*?))? -->\n```(?P<lang>\w+)\n(?P<body>.*?)^```$",
                    re.DOTALL | re.MULTILINE)


@dataclasses.dataclass
class Block:
    kind: str
    arg: str
    lang: str
    body: str
    line: int


def section(text: str) -> str:
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end < 0 else text[start:end]


def blocks(text: str) -> list[Block]:
    """The walk's blocks of ``text`` (the whole doc), in order."""
    body = section(text)
    offset = text.index(SECTION)
    found = [Block(m["kind"], (m["arg"] or "").strip(), m["lang"], m["body"],
                   text.count("\n", 0, offset + m.start()) + 1) for m in _BLOCK.finditer(body)]
    markers = len(re.findall(r"^<!-- walk:", body, re.MULTILINE))
    assert len(found) == markers, f"{markers - len(found)} walk marker(s) not followed by a fenced block"
    return found


def session(body: str) -> list[tuple[str, list[str]]]:
    """A console block's commands, each with the lines the doc says it prints."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    return steps


def _normal(line: str) -> str:
    """Table rules and column padding vary with the values: compare without them."""
    return re.sub(r" {2,}", " ", re.sub(r"-{2,}", "-", line)).rstrip()


def matches(expected: list[str], output: str) -> bool:
    """``output`` is what ``expected`` shows: line for line, ``...`` anything within a line, a line ``...``
    any number of lines (none included)."""
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*?".join(re.escape(part) for part in _normal(line).split("...")) + r"\n"
    text = "".join(_normal(line) + "\n" for line in terminal(output))
    return re.fullmatch(pattern, text, re.DOTALL) is not None


def terminal(output: str) -> list[str]:
    """The lines a terminal shows of ``output``: a carriage return (``--wait``'s progress line) goes back to
    the line's start, overwriting."""
    shown = []
    for line in output.removesuffix("\n").split("\n") if output else []:
        screen = ""
        for part in line.split("\r"):
            screen = part + screen[len(part):]
        shown.append(screen)
    return shown


def shows(expected: list[str], output: str) -> bool:
    """:func:`matches`, the rows of each table in the doc taken in any order (listings sort by ids)."""
    if matches(expected, output):
        return True
    tables = _rows(expected)
    if not tables or sum(len(rows) for rows in tables) > 8:
        return False
    for orders in itertools.product(*(itertools.permutations(rows) for rows in tables)):
        shuffled = list(expected)
        for rows, order in zip(tables, orders, strict=True):
            for at, line in zip(rows, order, strict=True):
                shuffled[at] = expected[line]
        if matches(shuffled, output):
            return True
    return False


def _rows(expected: list[str]) -> list[list[int]]:
    """The indexes of each table's body rows: the ``|`` lines between its second and third rule."""
    tables, rules, rows = [], 0, []
    for at, line in enumerate(expected):
        if line.startswith("+-"):
            rules += 1
            if rules == 3:
                tables.append(rows)
                rules, rows = 0, []
        elif line.startswith("|") and rules == 2:
            rows.append(at)
    return [rows for rows in tables if len(rows) > 1]


class Substitutions:
    """What the section says an operator chooses, replaced by this run's values; each must be used."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.used: set[str] = set()

    def __call__(self, text: str) -> str:
        for old, new in self.pairs:
            if old in text:
                self.used.add(old)
                text = text.replace(old, new)
        return text

    def unused(self) -> list[str]:
        return [old for old, _ in self.pairs if old not in self.used]


@dataclasses.dataclass
class Shell:
    """An operator's shell: the variables and the directory the commands leave, background jobs by number."""

    env: dict[str, str]
    cwd: Path
    state: Path
    jobs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    transcript: list[str] = dataclasses.field(default_factory=list)

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        if command.rstrip().endswith("&"):
            job = subprocess.Popen(["bash", "-c", command.rstrip()[:-1]], cwd=self.cwd, env=self.env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
            self.jobs.append(job)
            self.transcript.append(f"$ {command}\n[{len(self.jobs)}] {job.pid}")
            return 0, ""
        # `set -a`: every variable a command sets is exported, then saved for the next command.
        script = f"set -a\n{command}\n__rc=$?\nenv -0 > {shlex.quote(str(self.state))}\nexit $__rc\n"
        began = time.monotonic()
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        output = done.stdout.decode("utf-8", "replace")
        self.transcript.append(f"$ {command}\n{output}(exit {done.returncode}, {time.monotonic() - began:.1f} s)")
        if self.state.exists():
            saved = dict(item.split("=", 1) for item in self.state.read_text().split("\0") if "=" in item)
            self.state.unlink()
            self.env = {k: v for k, v in saved.items() if not k.startswith("__") and k not in ("_", "SHLVL")}
            self.cwd = Path(self.env.get("PWD", str(self.cwd)))
        return done.returncode, output

    def stop(self, numbers: list[int], timeout: float = 40) -> list[int]:
        """``kill %1 %2 ...``, as bash's job control does it: SIGTERM to each job's process group (the
        program, gunicorn's workers too, and the bash that started it); the jobs some process of which is
        still there after ``timeout`` (then killed)."""
        began = time.monotonic()
        for number in numbers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.jobs[number - 1].pid, signal.SIGTERM)
        left = list(numbers)
        while left and time.monotonic() - began < timeout:
            for number in list(left):
                if not _group(self.jobs[number - 1].pid):
                    left.remove(number)
                    self.transcript.append(f"(job {number} stopped in {time.monotonic() - began:.1f} s)")
            time.sleep(0.1)
        self.kill_all()
        return left

    def kill_all(self) -> None:
        for job in self.jobs:
            if _group(job.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.pid, signal.SIGKILL)
            if job.poll() is None:
                job.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.cwd.glob("*.log")))


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    alive = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
    return alive


def _check_install(block: Block) -> None:
    """The install line names extras the package has, and what they and the other packages bring is here."""
    [pip] = [command for command, _ in session(block.body) if command.startswith("pip install")]
    words = shlex.split(pip)[2:]
    requires = [Requirement(r) for r in importlib.metadata.requires("strongroom") or []]
    for word in words:
        found = re.fullmatch(r"\.\[(.*)\]", word)
        if not found:
            importlib.metadata.version(word)  # e.g. gunicorn: installed
            continue
        for extra in found.group(1).split(","):
            wanted = [r for r in requires if r.marker and r.marker.evaluate({"extra": extra})]
            assert wanted, f"the package has no extra {extra!r} (doc/deployment.md line {block.line})"
            for requirement in wanted:
                version = importlib.metadata.version(requirement.name)
                assert requirement.specifier.contains(version, prereleases=True), (requirement, version)


@pytest.fixture
def engines() -> Iterator[None]:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    require_port("127.0.0.1", 5672, "RabbitMQ")
    require_port("127.0.0.1", 6379, "Redis")
    for program in ("psql", "rabbitmqctl", "curl"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed")
    # The section's step 2 runs as each engine's administrator.
    for command in (["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", "SELECT 1"], ["rabbitmqctl", "list_vhosts"]):
        answer = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if answer.returncode:
            unavailable(f"`{' '.join(command)}` failed: {answer.stderr.strip()[-500:]}")
    yield


def test_section_10_followed_from_an_empty_directory(engines: None, tmp_path: Path) -> None:
    walk = blocks(DOC.read_text())
    root = tmp_path / "srv"  # made by the section's own mkdir
    run = uuid.uuid4().hex[:8]
    name = f"strongroom_walk_{run}"
    port = free_port()
    admin = f"walk-admin-{uuid.uuid4().hex}"
    substitute = Substitutions([
        # The deployment's name on each engine (only where the doc uses it as that name).
        ("ROLE strongroom", f"ROLE {name}"), ("DATABASE strongroom", f"DATABASE {name}"),
        ("OWNER strongroom", f"OWNER {name}"),
        ("strongroom:DB_PASSWORD@127.0.0.1/strongroom", f"{name}:DB_PASSWORD@127.0.0.1/{name}"),
        ("strongroom:***@127.0.0.1/strongroom", f"{name}:***@127.0.0.1/{name}"),
        ("strongroom:RABBIT_PASSWORD@127.0.0.1:5672/strongroom", f"{name}:RABBIT_PASSWORD@127.0.0.1:5672/{name}"),
        ("_vhost strongroom", f"_vhost {name}"), ("_user strongroom", f"_user {name}"),
        ('vhost "strongroom"', f'vhost "{name}"'), ('user "strongroom"', f'user "{name}"'),
        ("-p strongroom strongroom", f"-p {name} {name}"),
        ("jobboard_namespace = strongroom", f"jobboard_namespace = {name}"),
        ("DB_PASSWORD", uuid.uuid4().hex), ("RABBIT_PASSWORD", uuid.uuid4().hex),
        ("ADMIN_TOKEN_CHANGE_ME", admin), ("/srv/strongroom", str(root)), (":8799", f":{port}"),
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "OS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    shell = Shell(env=env, cwd=tmp_path, state=tmp_path / ".shell-state")
    started = time.monotonic()
    try:
        for block in walk:
            where = f"doc/deployment.md line {block.line}"
            if block.kind == "install":
                _check_install(block)
            elif block.kind == "file":
                path = Path(substitute(block.arg))
                assert path.is_relative_to(root), f"{where}: {block.arg} outside the directory"
                assert path.parent.is_dir(), f"{where}: {path.parent} not made by an earlier step"
                path.write_text(substitute(block.body))
            elif block.kind in ("run", "retry"):
                patience = float(block.arg or 0)
                for command, expected in session(block.body):
                    command, expected = substitute(command), [substitute(line) for line in expected]
                    deadline = time.monotonic() + patience
                    while True:
                        status, output = shell.run(command)
                        if status == 0 and shows(expected, output):
                            break
                        assert time.monotonic() < deadline, (
                            f"{where}: `{command}` exited {status} and printed\n{output}\nwhere the doc shows\n"
                            + "\n".join(expected) + f"\n\n{shell.logs()}")
                        time.sleep(0.5)
            elif block.kind == "stop":
                _section_3_claims_on_the_running_deployment(shell, root)
                [(command, _)] = session(block.body)
                numbers = [int(n) for n in re.findall(r"%(\d+)", command)]
                assert command.startswith("kill ") and numbers, f"{where}: {command}"
                assert sorted(numbers) == list(range(1, len(shell.jobs) + 1)), f"{where}: not every job"
                for number in numbers:
                    assert shell.jobs[number - 1].poll() is None, f"job {number} died early:\n{shell.logs()}"
                left = shell.stop(numbers)
                assert not left, f"{where}: job(s) {left} did not stop on SIGTERM:\n{shell.logs()}"
            else:
                raise AssertionError(f"{where}: unknown walk block {block.kind!r}")
        assert not substitute.unused(), f"the section no longer shows {substitute.unused()}"
    finally:
        shell.kill_all()
        (tmp_path / "transcript.txt").write_text("\n".join(shell.transcript))
        print("\n".join(shell.transcript))
        print(f"walk: {time.monotonic() - started:.1f} s")
        _clean(name)


def _section_3_claims_on_the_running_deployment(shell: Shell, root: Path) -> None:
    """Section 3's "what is per node", as the walk's deployment shows it before it is stopped."""
    # Two workers shared the state directory: one key-encryption-key file, and no sqlite database in it.
    state = root / "state"
    assert (state / "key-encryption-keys.json").is_file(), sorted(p.name for p in state.iterdir())
    assert not [p.name for p in state.rglob("*.sqlite*")], "a deployed node used a sqlite database"
    # A POST whose answer the network lost may still have made its checkpoint: send one, hang up unanswered.
    api = f"{shell.env['STRONGROOM_URL']}/v1/{shell.env['OS_PROJECT_ID']}"
    headers = {"X-Auth-Token": shell.env["OS_AUTH_TOKEN"]}
    checkpoints = f"{api}/providers/{shell.env['PROVIDER']}/checkpoints"

    def listed() -> list[dict[str, str]]:
        response = requests.get(checkpoints, params={"plan_id": shell.env["PLAN"]}, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return list(response.json()["checkpoints"])

    before = {c["id"] for c in listed()}
    _post_and_hang_up(checkpoints, {"checkpoint": {"plan_id": shell.env["PLAN"]}}, headers)
    deadline = time.monotonic() + 30
    while True:
        new = [c for c in listed() if c["id"] not in before]
        if new and new[0]["status"] == "available":  # finished: the workers stop at once
            break
        assert time.monotonic() < deadline, f"no checkpoint from the unanswered POST: {new}\n{shell.logs()}"
        time.sleep(0.2)
    assert len(new) == 1, new


def _post_and_hang_up(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    """POST ``body`` and close the connection without reading a byte of the answer."""
    parsed = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Host": parsed.netloc, "Content-Type": "application/json",
                                                 "Content-Length": str(len(data))}.items())
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as conn:
        conn.sendall(f"POST {parsed.path} HTTP/1.1\r\n{head}\r\n".encode() + data)


def _clean(name: str) -> None:
    """What the section's last step drops, dropped again in case the walk stopped before it."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "-c", f'DROP ROLE IF EXISTS "{name}"'],
                   capture_output=True, timeout=60)
    for what in ("delete_vhost", "delete_user"):
        subprocess.run(["rabbitmqctl", what, name], capture_output=True, timeout=60)
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)
    client.close()


def _sample_options() -> dict[str, set[str]]:
    """Every option of etc/strongroom/strongroom.conf.sample (generated from the code), by group."""
    options: dict[str, set[str]] = {}
    group = "DEFAULT"
    for line in (ROOT / "etc" / "strongroom" / "strongroom.conf.sample").read_text().splitlines():
        if found := re.fullmatch(r"\[(\w+)\]", line):
            group = found.group(1)
        elif found := re.match(r"#?(\w+) =( |$)", line):
            options.setdefault(group, set()).add(found.group(1))
    return options


def test_the_node_files_name_only_options_that_exist() -> None:
    """Every option the node's file of section 2 sets (or shows commented out), and every one section 10's
    files set, is one a program reads (oslo.config ignores the others without a word): in the generated
    sample, or registered by castellan or by the keystoneauth plugin its ``auth_type`` names."""
    from castellan import options as castellan_options
    from keystoneauth1 import loading

    text = DOC.read_text()
    start = text.index("## 2. A deployed node's `strongroom.conf`")
    block = re.search(r"```ini\n(.*?)^```$", text[start:], re.DOTALL | re.MULTILINE)
    assert block, "section 2 shows no strongroom.conf"
    known = _sample_options()
    for group, opts in castellan_options.list_opts():
        known.setdefault(group, set()).update(o.dest for o in opts)
    files = [block.group(1)] + [b.body for b in blocks(text) if b.kind == "file" and "/providers.d/" not in b.arg]
    assert len(files) == 6, len(files)
    group, named = "DEFAULT", []
    for line in "\n".join(files).splitlines():
        if found := re.fullmatch(r"\[(\w+)\]", line):
            group = found.group(1)
        elif found := re.match(r"(?:# )?(\w+) = (.*)", line):
            named.append((group, found.group(1), found.group(2)))
    for group, key, value in named:
        if key == "auth_type" and group == "keystone_authtoken":
            known[group].update(o.dest for o in loading.get_plugin_loader(value).get_options())
    unknown = [f"[{group}] {key}" for group, key, _ in named if key not in known.get(group, set())]
    assert len(named) > 50 and not unknown, f"the doc names options no program reads: {unknown}"


def test_section_3_says_what_is_per_node() -> None:
    """Issue 17, item 5: what an operator was left guessing is said (the walk and the test below show it)."""
    text = DOC.read_text()
    start = text.index("### Paths, state directories and retries: what is per node")
    part = " ".join(text[start:text.index("\n## ", start)].split())
    for claim in (
        "**`{state_dir}` is per node.** In a provider file, `{state_dir}` expands to the state directory of the "
        "node that reads it. A bank or loopback volumes that several nodes share need absolute paths",
        "**Two workers may share a state directory** (a shared mount): each runs as its own owner (the default "
        "`owner_id`), the local key-encryption-key file is then shared too",
        "**A fixed `owner_id`** makes a restarted worker wait out its predecessor's lease (`lease_expire_window`) "
        "before it writes",
        "**A POST that failed on the network may still have created its checkpoint** (or restore)",
    ):
        assert claim in part, f"no longer said: {claim}"


def test_a_restarted_worker_with_a_fixed_owner_id_waits_out_its_predecessors_lease(tmp_path: Path) -> None:
    """Section 3 (and doc/lease-and-gc.md, "What a fixed owner id costs"), with a real strongroom-protection
    killed and started again under the same ``[protection] owner_id``; its provider's ``{state_dir}`` is the
    state directory of the node's own file."""
    require_port("127.0.0.1", 5672, "RabbitMQ")
    run = uuid.uuid4().hex[:8]
    owner = f"fixed-{run}"
    state, providers = tmp_path / "state", tmp_path / "providers.d"
    (state / "volumes").mkdir(parents=True)
    providers.mkdir()
    (providers / "local.conf").write_text(
        "[provider]\nname = Local\nid = 6e1f0b2c-93a4-4d5e-8f67-1a2b3c4d5e6f\nplugin = volume\nbank = fs\n"
        "[fs]\npath = {state_dir}/bank\nlease_expire_window = 8\nlease_renew_window = 2\nlease_validity_window = 2\n"
        "[volume]\nblock_backend = loopback\n[loopback]\npath = {state_dir}/volumes\n")
    conf = tmp_path / "strongroom.conf"
    conf.write_text(
        f"[DEFAULT]\nhost = fixed-node\nstate_dir = {state}\nproviders_dir = {providers}\n"
        f"transport_url = rabbit://guest:guest@127.0.0.1:5672/\nprotection_topic = strongroom-protection-{run}\n"
        f"[database]\nconnection = sqlite:///{tmp_path / 'strongroom.sqlite'}\n[protection]\nowner_id = {owner}\n")
    sync = subprocess.run([str(BIN / "strongroom-manage"), "--config-file", str(conf), "db", "sync"],
                          capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    workers: list[subprocess.Popen[bytes]] = []

    def start(log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            worker = subprocess.Popen([str(BIN / "strongroom-protection"), "--config-file", str(conf)], stdout=out,
                                      stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                      start_new_session=True)
        workers.append(worker)
        return worker

    def until(log: Path, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while text not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"{log.name} never said {text!r}:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        return time.monotonic()

    acquired = f"lease of {owner} acquired in bank 'fs' of provider 'Local'"
    try:
        first, second = tmp_path / "first.log", tmp_path / "second.log"
        predecessor = start(first)
        until(first, acquired, 60)
        # {state_dir} in the provider file is this node's state directory: the bank and its lease are there.
        assert [p for p in (state / "bank").rglob(f"*{owner}*")], sorted((state / "bank").rglob("*"))
        os.killpg(predecessor.pid, signal.SIGKILL)
        predecessor.wait(10)
        killed = time.monotonic()
        start(second)
        refused = until(second, f"cannot acquire the lease of {owner}", 60)
        assert f"(pid {predecessor.pid})" in second.read_text(), second.read_text()[-3000:]
        waited = until(second, acquired, 30) - killed
        # The predecessor renewed at most 2 s (lease_renew_window) before it died; its lease lasts 8 s
        # (lease_expire_window) from that renewal, and the successor retries every second.
        assert refused - killed < waited and 8 - 2 - 1 <= waited <= 8 + 1 + 10, f"acquired {waited:.1f} s after"
        print(f"fixed owner id: the restarted worker acquired its lease {waited:.1f} s after the kill")
    finally:
        for worker in workers:
            if worker.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
