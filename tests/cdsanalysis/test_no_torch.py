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
