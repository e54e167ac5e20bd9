import subprocess
import sys


def test_importing_cdsanalysis_does_not_import_torch():
    code = (
        "import sys, cdsanalysis, cdsanalysis.cli, cdsanalysis.aggregate, cdsanalysis.events, "
        "cdsanalysis.cds, cdsanalysis.regimes, cdsanalysis.report, cdsanalysis.smoothing, "
        "cdsanalysis.stepwise, cdsanalysis.decay, cdsanalysis.cds_curve, cdsanalysis.modelwise, "
        "cdsanalysis.estimators, cdsanalysis.tables, cdsanalysis.plots.kinds, "
        "cdsanalysis.plots.common, cdsanalysis.plots.stepwise, cdsanalysis.plots.curves, "
        "cdsanalysis.plots.landscape, cdsanalysis.plots.trend, cdsanalysis.plots.histogram, "
        "cdsanalysis.plots.cds_curve; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


#: Run before the code under test: makes the training packages unimportable, as in an
#: analysis-only install (pip install cds), whether or not they are installed here.
BLOCK_TRAINING = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "datasets", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Absent())
"""


def test_every_cdsanalysis_module_imports_without_the_training_packages():
    code = BLOCK_TRAINING + (
        "import importlib, pkgutil, cdsanalysis\n"
        "names = [m.name for m in pkgutil.walk_packages(cdsanalysis.__path__, 'cdsanalysis.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 30


def test_cds_run_without_the_training_extra_names_the_install_command():
    code = BLOCK_TRAINING + "from runner.console import main\nmain()\n"
    out = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert out.returncode == 2
    assert 'pip install "cds[train]"' in out.stderr
    assert "torch" in out.stderr and "Traceback" not in out.stderr
