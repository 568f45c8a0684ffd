"""mkdocs hook: the notebook kernels that run the tutorials talk over local IPC sockets, not TCP.

A kernel started over TCP warns at start-up that its traffic is unencrypted ("Kernel is running
over TCP without encryption"), once per tutorial. The build's kernels only ever talk to this
process on this machine, so Unix-domain (IPC) sockets are the right transport: nothing listens
on a network port and there is nothing to warn about. mkdocs-jupyter reads the user's nbconvert
configuration, so the hook adds one more configuration folder, private to this build, that sets
``KernelManager.transport = "ipc"`` with the socket files in a temporary folder.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

_state: dict = {}


def on_startup(command: str, dirty: bool, **kwargs) -> None:
    folder = tempfile.mkdtemp(prefix="minihyena-docs-kernels-")
    config = {"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}}
    with open(os.path.join(folder, "jupyter_nbconvert_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    _state["folder"], _state["path"] = folder, os.environ.get("JUPYTER_CONFIG_PATH")
    os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in (folder, _state["path"]) if p)


def on_shutdown(**kwargs) -> None:
    folder = _state.pop("folder", None)
    if folder is None:
        return
    previous = _state.pop("path", None)
    if previous is None:
        os.environ.pop("JUPYTER_CONFIG_PATH", None)
    else:
        os.environ["JUPYTER_CONFIG_PATH"] = previous
    shutil.rmtree(folder, ignore_errors=True)
