"""Fresh interpreters for tests that need one (import-time behaviour, crash isolation,
determinism across processes)."""
import os
import subprocess
import sys
import tempfile


def python(code, isa=None, timeout=120, env_extra=None):
    """Runs code in a fresh interpreter, from an empty folder so that the installed package
    is imported (not a source tree in the current directory). DSCONV_ISA is `isa` (unset
    when None)."""
    env = {k: v for k, v in os.environ.items() if k != "DSCONV_ISA"}
    if isa is not None:
        env["DSCONV_ISA"] = isa
    env.update(env_extra or {})
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)
