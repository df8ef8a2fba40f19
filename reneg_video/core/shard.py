"""Work split over processes, finished items kept one by one, and resuming an interrupted run.

A run is a fixed list of items (e.g. prompt x seed x arm), each with a key. Under `accelerate launch`
process i takes every n-th of the items not yet done; each finished item is one JSON file written
atomically, so a run killed at any moment keeps what it finished, and `--resume` does the rest. Items
depend only on their key (their seeds come from it), so 1, 2 or n processes give the same results.
The folder's `run.json` records what the run is; a resume with other arguments is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_path
from .errors import UsageError

MANIFEST = "run.json"
ITEMS = "items"


def launched() -> bool:
    """True under a multi-process launcher (accelerate launch / torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Processes:
    """This process's place among those `accelerate launch` started; without a launcher, the only one
    (accelerate's process group is then never initialised).

    Use it as a context manager: on leaving, the processes meet and the process group is destroyed.
    A gloo group left to interpreter exit can abort a process that has finished its work
    ("terminate called without an active exception", seen about 1 run in 12 on CPU), failing the launch.
    """

    def __init__(self, cpu: bool = False) -> None:
        self._state = None
        self.index, self.count, self.is_main, self.device = 0, 1, True, None
        if launched():
            from accelerate import PartialState

            # cpu=True under `--multi_gpu` gives gloo processes on CPU (`launch --cpu` alone gives one).
            self._state = PartialState(cpu=cpu)
            self.index = self._state.process_index
            self.count = self._state.num_processes
            self.is_main = self._state.is_main_process
            self.device = self._state.device

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self._state is None:
            return
        if kind is None:
            self.barrier()  # no process tears the group down while another still talks to it
        self._state.destroy_process_group()
        self._state = None

    def mine(self, items: Sequence) -> list:
        """This process's share: every count-th item, starting at its index."""
        return list(items[self.index :: self.count])

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def gather(self, objects: list) -> list:
        """Every process's list, concatenated in process order (a plain copy for one process)."""
        if self.count == 1:
            return list(objects)
        from accelerate.utils import gather_object

        return gather_object(objects)


class ItemStore:
    """Finished items of a run folder, one atomically written JSON file each."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / ITEMS

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def done(self, key: str) -> bool:
        return self._path(key).is_file()

    def write(self, key: str, record: dict) -> None:
        with atomic_path(self._path(key)) as tmp:
            tmp.write_text(json.dumps(record, indent=1) + "\n")

    def read(self, key: str) -> dict:
        return json.loads(self._path(key).read_text())


def check_run_folder(out: Path, manifest: dict, resume: bool) -> None:
    """Refuse a new run into an existing folder, and a resume of a missing or different run."""
    if not resume:
        if out.exists():
            raise UsageError(
                f"--out {out}: already exists; choose a new folder, or pass --resume to complete it"
            )
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: folder {out.parent} does not exist; create it first")
        return
    path = out / MANIFEST
    if not path.is_file():
        raise UsageError(f"--resume: {path} not found; expected the folder of an interrupted run")
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"--resume: {path} is unreadable; start a new run with another --out") from None
    changed = sorted(k for k in manifest.keys() | before.keys() if manifest.get(k) != before.get(k))
    if changed:
        raise UsageError(
            f"--resume {out}: the run was started with other {', '.join(changed)}; "
            "pass the same arguments, or start a new run with another --out"
        )


def start_run_folder(out: Path, manifest: dict) -> None:
    """Create the folder of a new run (main process only), with its manifest."""
    (out / ITEMS).mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
