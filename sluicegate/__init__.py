"""sluicegate: an inference gateway for AI agents.

Installed, the repository's folders live under this one namespace (`sluicegate.engine`,
`sluicegate.gateway`, `sluicegate.grammars`, `sluicegate.integrations`, `sluicegate.proto`), so no
import of the project shadows another distribution's top-level name (`proto` is proto-plus's).

In a source checkout the folders sit beside this package rather than inside it; the checkout's root
is then added to this package's search path, so `sluicegate.engine` is the checkout's `engine/`
(also in a second worktree, whatever an editable install points at).
"""

from pathlib import Path

__version__ = "0.2.0"

_here = Path(__file__).resolve().parent
if not (_here / "engine").is_dir() and (_here.parent / "engine" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 (a package's __path__ is defined by the import system)
