"""The robot's model, with an eye on its files.

The kernel reads the weights straight from the mapped model file. A file replaced the
right way (a new file renamed over the old one: `storybot fetch`, `storybot quantize`,
`cp new tmp && mv tmp model`) leaves the running story on the old, intact mapping;
the next story opens the new file. A file rewritten or truncated in place changes
the mapping under the story: before each kernel step the story checks the mapped
file's size and mtime and ends with one clear error when they moved (the kernel's
SIGBUS guard catches a truncation during a step), and the next story opens the file
again. A file that cannot be opened ends that story with the reason; each later story
tries again, so a model copied back into place is picked up without a restart."""
from __future__ import annotations

import logging
import os
from typing import Any, List, Optional, Tuple

from robot.errors import StorybotError
from robot.story import ModelFiles

Identity = Tuple[int, int, int, int, int]   # device, inode, size, mtime, ctime


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def content(st: os.stat_result) -> Tuple[int, int]:
    # not ctime: renaming a new file over this one changes the old inode's ctime (its
    # link count), and that is the right way to replace a model, not a change under us
    return (st.st_size, st.st_mtime_ns)


class WatchedModel:
    def __init__(self, files: ModelFiles, log: logging.Logger) -> None:
        self.files = files
        self.log = log
        self.model: Any = None            # robot.kernel.engine.Model, None after a failed load
        self.loads = 0
        self._watch: List[Tuple[str, int, Identity]] = []  # (path, our descriptor, identity)

    def load(self) -> Any:
        """Opens the model (again). Our own descriptor of each file, taken before the
        kernel opens it and compared after, tells later whether what the kernel mapped
        was rewritten (fstat) or replaced at its path (stat)."""
        self.close()
        paths = (self.files.model, self.files.tokenizer)
        for _ in range(3):
            watch = []
            try:
                for p in paths:
                    fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                    watch.append((p, fd, identity(os.fstat(fd))))
                model = self.files.open()
                same = all(identity(os.stat(p)) == ident for p, _, ident in watch)
            except OSError as e:
                self._close(watch)
                raise StorybotError(f"cannot open {e.filename or paths[0]}: {e.strerror}") from None
            except BaseException:
                self._close(watch)
                raise
            if same:
                self.model, self._watch = model, watch
                self.loads += 1
                return model
            self._close(watch)  # replaced while we opened it: once more
        raise StorybotError(f"the model file {paths[0]} keeps changing while it is opened; replace it in one rename")

    def changed(self) -> Optional[str]:
        """Why the model must be opened again before the next story (None: it need not)."""
        if self.model is None:
            return "the last load failed"
        for path, fd, ident in self._watch:
            try:
                now = identity(os.stat(path))
            except OSError as e:
                return f"{path} is gone ({e.strerror})"
            if now[:2] != ident[:2]:
                return f"{path} was replaced"
            if now != ident or content(os.fstat(fd)) != content_of(ident):
                return f"{path} was changed in place"
        return None

    def rewritten(self) -> bool:
        """True when the mapped model file's size or mtime moved (the story thread, before
        each kernel step: one fstat)."""
        if not self._watch:
            return False
        _, fd, ident = self._watch[0]
        return content(os.fstat(fd)) != content_of(ident)

    def current(self) -> Any:
        """The model for the next story, opened again first if its files changed."""
        why = self.changed()
        if why is None:
            return self.model
        self.log.info("model: %s; opening it again", why)
        self.model = None
        try:
            model = self.load()
        except StorybotError as e:
            raise StorybotError(f"the model could not be opened again ({why}): {e}") from None
        c = model.config
        self.log.info("model: %s loaded again (%s, dim %d, %d layers, context %d)",
                      os.path.basename(model.path), c.format, c.dim, c.n_layers, c.seq_len)
        return model

    def close(self) -> None:
        self._close(self._watch)
        self._watch = []

    @staticmethod
    def _close(watch: List[Tuple[str, int, Identity]]) -> None:
        for _, fd, _ in watch:
            try:
                os.close(fd)
            except OSError:
                pass


def content_of(ident: Identity) -> Tuple[int, int]:
    return (ident[2], ident[3])
