"""Every executed notebook committed under outputs/ that no longer matches its source in nbs/ is flagged stale in
its run folder (report.mark_stale), so no one reads an old record as the current code's."""
from pathlib import Path
from dbd_nb.report import stale_notebooks

ROOT = Path(__file__).resolve().parents[2]


def test_every_stale_executed_notebook_is_flagged():
    missing = [str(p.relative_to(ROOT)) for p in stale_notebooks(ROOT)
               if not (p.parent / 'STALE.md').exists() or p.name not in (p.parent / 'STALE.md').read_text()]
    assert not missing, f'stale and not flagged (run: python -c "from dbd_nb.report import mark_stale; mark_stale(\'.\')"): {missing}'


def test_no_marker_without_a_stale_notebook():
    stale_dirs = {p.parent for p in stale_notebooks(ROOT)}
    orphans = [str(m.relative_to(ROOT)) for m in (ROOT / 'outputs').rglob('STALE.md') if m.parent not in stale_dirs]
    assert not orphans, orphans
