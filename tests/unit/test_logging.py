"""oslo.log as every program sets it up (``strongroom.cmd.common``), and the current request context that its
lines carry (``strongroom.context``).  The set-ups run in a child process: they replace the root logger's
handlers, which pytest's own capture uses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from concurrent import futures
from pathlib import Path

from strongroom import context as sr_context

SCRIPT = textwrap.dedent("""
    import logging, sys
    from oslo_config import cfg
    from strongroom import config, context
    from strongroom.cmd import common

    conf = config.register_opts(cfg.ConfigOpts())
    common.register_logging_opts(conf)
    conf(sys.argv[1:], project="strongroom", default_config_files=[])
    common.setup_logging(conf)
    log = logging.getLogger("strongroom.test")
    log.info("before any request")
    with context.scope():  # oslo.context makes a new context current in a thread that has none
        context.get_context("proj-1", user_id="user-1", request_id="req-11111111-2222-3333-4444-555555555555",
                            global_request_id="req-66666666-7777-8888-9999-000000000000")
        log.info("in the request")
        log.debug("a detail")
    log.info("after it")
    logging.getLogger("taskflow.engines").info("a noisy library")
    logging.getLogger("oslo_messaging.server").warning("a library's warning")
""")


def _run(tmp_path: Path, conf_text: str, *argv: str) -> str:
    conf = tmp_path / "strongroom.conf"
    conf.write_text(conf_text)
    done = subprocess.run([sys.executable, "-c", SCRIPT, "--config-file", str(conf), *argv], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_lines_carry_the_current_context_and_go_to_stdout_by_default(tmp_path: Path) -> None:
    lines = _run(tmp_path, "[DEFAULT]\n").splitlines()
    assert len(lines) == 4, lines
    assert lines[0].endswith(" INFO strongroom.test [-] before any request")
    assert lines[1].endswith(" INFO strongroom.test [req-66666666-7777-8888-9999-000000000000 "
                             "req-11111111-2222-3333-4444-555555555555 user-1 proj-1] in the request")
    assert lines[2].endswith(" INFO strongroom.test [-] after it")  # the block put back "no context"
    assert lines[3].endswith(" WARNING oslo_messaging.server [-] a library's warning")  # its INFO is quiet


def test_debug_on_the_command_line_or_in_the_file_and_a_log_file(tmp_path: Path) -> None:
    for conf_text, argv in (("[DEFAULT]\n", ["--debug"]), ("[DEFAULT]\ndebug = true\n", [])):
        out = _run(tmp_path, conf_text, *argv)
        assert " DEBUG strongroom.test [req-6666" in out and "a detail" in out, out
    log_file = tmp_path / "service.log"
    assert _run(tmp_path, f"[DEFAULT]\nlog_file = {log_file}\n") == ""
    assert "user-1 proj-1] in the request" in log_file.read_text()


def test_use_json_gives_one_json_record_a_line_with_the_request_context(tmp_path: Path) -> None:
    records = [json.loads(line) for line in _run(tmp_path, "[DEFAULT]\nuse_json = true\n").splitlines()]
    [inside] = [r for r in records if r["message"] == "in the request"]
    assert inside["levelname"] == "INFO"
    assert {k: inside["context"][k] for k in ("request_id", "global_request_id", "user", "project")} == {
        "request_id": "req-11111111-2222-3333-4444-555555555555",
        "global_request_id": "req-66666666-7777-8888-9999-000000000000", "user": "user-1", "project": "proj-1"}
    assert inside["context"]["auth_token"] is None
    [before] = [r for r in records if r["message"] == "before any request"]
    assert before["context"] == {}


def test_a_pool_thread_runs_a_task_under_the_context_of_its_submitter_then_none() -> None:
    before = sr_context.get_current()
    seen: list[object] = []
    with sr_context.scope():
        ctx = sr_context.RequestContext(project_id="p", request_id="req-11111111-2222-3333-4444-555555555555",
                                        overwrite=True)
        task = sr_context.carrying(lambda: seen.append(sr_context.get_current()))
    assert sr_context.get_current() is before
    with futures.ThreadPoolExecutor(1) as pool:
        pool.submit(task).result()
        pool.submit(lambda: seen.append(sr_context.get_current())).result()  # the next task: none left behind
        with sr_context.current(ctx):
            pool.submit(lambda: seen.append(sr_context.get_current())).result()  # not carried: not there
    assert seen == [ctx, None, None]
    other = threading.Thread(target=lambda: seen.append(sr_context.get_current()))
    other.start()
    other.join()
    assert seen[-1] is None
