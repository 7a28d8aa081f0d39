"""pytest configuration for the whole repository.

Sets fast mode before anything imports utils or starts a notebook kernel (the
kernels nbval starts inherit this environment): few records, tiny epochs, and
every plot, split and model written to a temporary folder, so the committed
outputs stay as the full run left them.
"""
import os
import tempfile

os.environ["EKG_FAST"] = "1"
os.environ.setdefault("EKG_OUTPUT_DIR", tempfile.mkdtemp(prefix="ekg_test_"))
os.environ.setdefault("MPLBACKEND", "Agg")
