"""Nothing runs at import time: importing every module of the package starts no thread, registers none of
Strongroom's options on oslo.config's global CONF (options live on private ConfigOpts) and adds no logging
handler.  (Libraries we import may register their own options or probe the network when imported: not ours.)

Programs select oslo.service's threading backend first (``strongroom.backend.init``), and so does this test;
``strongroom.api.wsgi`` does it on import for WSGI servers (a no-op once done).  That keeps eventlet out:
no module of the package may need it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib, logging, pkgutil, sys, threading, warnings
    warnings.simplefilter("ignore")
    handlers = len(logging.getLogger().handlers)
    from strongroom import backend
    backend.init()
    import strongroom
    names = [m.name for m in pkgutil.walk_packages(strongroom.__path__, "strongroom.")
             if ".migrations." not in m.name and not m.name.startswith("strongroom.testing")]
    for name in names:
        importlib.import_module(name)
    from oslo_config import cfg
    from strongroom import config
    ours = [(group or "DEFAULT", opt.dest) for group, opts in config.list_opts() for opt in opts]
    on_global = [(g, d) for g, d in ours if (d in cfg.CONF if g == "DEFAULT" else g in cfg.CONF and d in cfg.CONF[g])]
    green = [m for m, module in sys.modules.items() if module is not None and m.split(".")[0] == "eventlet"]
    print(len(names), threading.active_count(), len(ours), len(on_global), len(logging.getLogger().handlers) - handlers,
          len(green))
""")


def test_importing_every_module_does_nothing() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    modules, threads, declared, on_global, handlers, green = (int(v) for v in out.stdout.split())
    assert modules > 100 and declared > 20, "the walk found the package's modules and options"
    assert (threads, on_global, handlers) == (1, 0, 0), (
        f"at import: {threads} threads, {on_global} of our options on the global CONF, {handlers} log handlers")
    assert green == 0, f"{green} eventlet modules imported: 19 MiB of memory no threading-backend program uses"
