"""Mutation testing with mutmut over the modules the report's conclusions rest on (not in CI: slow).

    make mutation                                   every module below, in this order
    .venv/bin/python tests/mutation/run.py metrics alarms      some of them

Each module is mutated in its own scratch copy of the repository (under $TMPDIR/ekg-mutation/),
with a narrow, fast selection of the tests that exercise it, so the working tree is never
touched. Prints killed / survived / timeout per module; the survivors of each run are listed
by `mutmut results` and shown with `mutmut show NAME`, run in that module's folder. The
summary with every survivor explained is tests/MUTATION.md.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

#: module: (file, pytest arguments selecting its tests, mutant names to run (None: all)).
MODULES = {
    "metrics": ("ekg/metrics.py", ["tests/test_metrics.py"], None),
    "alarms": ("ekg/monitor/alarms.py", ["tests/test_monitor_alarms.py", "-k", "not pause_alarm_fires"], None),
    "quality": ("ekg/monitor/quality.py", ["tests/test_monitor_quality.py", "-k", "not bad_signal and not nothing"], None),
    "classify": ("ekg/classify.py", ["tests/test_classify.py", "-k", "match or flutter"],
                 ["ekg.classify.x_match_beats*", "ekg.classify.x_vf_spans*", "ekg.classify.x_in_spans*"]),
    # (slow_rhythm: the search-back-in-a-pause test, seconds per mutant)
    "qrs": ("ekg/monitor/qrs.py",
            ["tests/test_monitor_qrs.py", "-k", "not chunk_size and not hard and not slow_rhythm"], None),
    "features": ("ekg/features.py", ["tests/test_features.py"], None),
    "data": ("ekg/data.py", ["tests/test_data.py", "-k", "not counts and not chazal and not seed_image and not table"],
             ["ekg.data.x_expected_checksums*", "ekg.data.x__sha256*", "ekg.data.x_file_sha256*",
              "ekg.data.x_verify_files*", "ekg.data.x_record_files*", "ekg.data.x__looks_like_mitdb*",
              "ekg.data.x_find_data_dir*", "ekg.data.x__load_record*", "ekg.data.x__cache_file*"]),
    # the download on its own: its tests run a local HTTP mirror, and a mutant that breaks the
    # transfer can hang until mutmut's timeout
    "download": ("ekg/data.py", ["tests/test_data.py", "-k", "download or unreachable or two_files"],
                 ["ekg.data.x_download_mitdb*"]),
}

PYTEST_INI = """[pytest]
testpaths = tests
addopts = -p no:cacheprovider -p no:nbval
filterwarnings =
    ignore::DeprecationWarning
"""


def prepare(module, work):
    """A scratch copy of the repository with a setup.cfg that points mutmut at one module."""
    file, selection, _ = MODULES[module]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "ekg", work / "ekg", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "mutation"))
    (work / "data").mkdir()
    shutil.copy(ROOT / "data" / "mitdb.sha256", work / "data")
    shutil.copytree(ROOT / "models", work / "models")
    shutil.copy(ROOT / "conftest.py", work)
    (work / "pytest.ini").write_text(PYTEST_INI)
    lines = ["[mutmut]", "source_paths = ekg", f"only_mutate = {file}", "use_git_change_detection = false",
             "timeout_multiplier = 40",
             "also_copy =", "    conftest.py", "    pytest.ini", "    data", "    models",
             "pytest_add_cli_args_test_selection ="] + [f"    {a}" for a in selection]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")


def run(module, work, env):
    names = MODULES[module][2] or []
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *names], cwd=work, env=env)
    subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], cwd=work, env=env,
                   stdout=subprocess.DEVNULL)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=work, env=env,
                               capture_output=True, text=True).stdout
    return stats, survivors


def main(modules):
    from ekg.config import CACHE_DIR
    from ekg.data import find_data_dir

    env = {**os.environ, "EKG_DATA_DIR": str(find_data_dir()), "EKG_CACHE_DIR": str(CACHE_DIR),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    base = Path(os.environ.get("EKG_MUTATION_DIR", Path(tempfile.gettempdir()) / "ekg-mutation"))
    rows = []
    for module in modules or list(MODULES):
        work = base / module
        prepare(module, work)
        stats, survivors = run(module, work, env)
        # mutants of the functions run (a module's selection may leave some out); those no test
        # reached count as survivors
        tested = sum(stats[k] for k in ("killed", "survived", "timeout", "suspicious", "no_tests"))
        score = 100 * (stats["killed"] + stats["timeout"]) / max(tested, 1)
        rows.append((module, stats, score))
        print(f"== {module}: {stats}  killed or timed out: {score:.1f}%  (folder {work})")
        print(survivors)
    print("module     killed  survived  timeout  suspicious  no tests   score")
    for module, s, score in rows:
        print(f"{module:<10} {s['killed']:>6} {s['survived']:>9} {s['timeout']:>8} {s['suspicious']:>11} "
              f"{s['no_tests']:>9}  {score:5.1f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
