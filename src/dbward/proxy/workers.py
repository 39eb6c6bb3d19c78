"""Running dbward: one process, or ``workers`` processes sharing the listening ports.

With several workers the parent prepares what they share (audit leftovers
stored, TLS material generated), forks them, passes SIGTERM/SIGINT on so each
drains its own sessions, and exits when they all have. The kernel spreads
new connections across the workers (SO_REUSEPORT); a CancelRequest that lands
on a worker other than the one holding the session is passed on through that
worker's cancel socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from types import FrameType

import uvloop

from dbward.audit.writer import recover_journals
from dbward.config import Config
from dbward.errors import DbwardError
from dbward.identity.tokens import TokenStore
from dbward.keyring import load_keyring
from dbward.policy.loader import load_policy
from dbward.proxy.server import serve
from dbward.proxy.tls import server_context
from dbward.stores import open_access_store, open_audit_store

log = logging.getLogger(__name__)


def run(config: Config) -> int:
    """Serve until stopped; the exit status."""
    if config.workers == 1:
        uvloop.run(serve(config))
        return 0
    if config.policy.file is not None:
        load_policy(config.policy.file)  # refuse to start on a broken policy, before forking
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_audit_store(config)
    try:
        recover_journals(store, config.audit_journal_dir)
    finally:
        store.close()
    for listener in config.listeners:
        server_context(listener.tls, config.state_dir)  # generate shared TLS material once
    load_keyring(config.state_dir)  # created once, before the workers share it
    open_access_store(config).close()  # the approvals store's tables, made once
    if config.identity.tokens:
        TokenStore(config.tokens_path).close()
    children: dict[int, int] = {}
    for worker in range(config.workers):
        pid = os.fork()
        if pid == 0:
            os._exit(_child(config, worker))
        children[pid] = worker
    log.info("started %d workers: %s", len(children), sorted(children))

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        worker = children.pop(pid, -1)
        exit_code = os.waitstatus_to_exitcode(code)
        if exit_code != 0:
            log.error("worker %s exited with %d", worker, exit_code)
            status = 1
    return status


def _child(config: Config, worker: int) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it
    try:
        uvloop.run(serve(config, worker=worker))
    except DbwardError as exc:
        print(f"error: worker {worker}: {exc.message}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("worker %d failed", worker)
        return 1
    return 0
