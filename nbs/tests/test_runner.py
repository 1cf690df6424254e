"""The runner executes a chain, writes metrics.json per run, and reuses finished steps."""
import json, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return subprocess.run(['dbd-run', '--root', str(ROOT), *args], capture_output=True, text=True, timeout=600)


def test_chain_writes_outputs_and_reuses(tmp_path):
    args = ('--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'badnets', '--chain', 'no_defense', '-p', f'out_dir={tmp_path}')
    r = run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / 'smoke' / 'synthetic' / 'badnets'
    m = json.loads((rd / 'metrics.json').read_text())['no_defense']
    assert {'ba', 'asr', 'natural_target_rate'} <= set(m)
    for f in ('01_attacks.ipynb', 'config.yaml', 'gallery.png', 'poison_index.txt'): assert (rd / f).exists(), f
    assert (tmp_path / 'smoke' / 'synthetic' / 'no_defense.csv').exists()
    r2 = run(*args)
    assert r2.returncode == 0 and '[dbd-run] reuse' in r2.stdout, r2.stdout
    r3 = run(*args, '--force')
    assert r3.returncode == 0 and '[dbd-run] run' in r3.stdout


def test_dbd_chain_chains_stages_and_reuses_them(tmp_path):
    args = ('--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'blended', '--chain', 'dbd', '-p', f'out_dir={tmp_path}')
    r = run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / 'smoke' / 'synthetic' / 'blended'
    m = json.loads((rd / 'metrics.json').read_text())
    assert {'no_defense', 'stage1', 'stage2', 'dbd'} <= set(m)
    assert {'ba', 'asr', 'natural_target_rate', 'stage_s'} <= set(m['dbd'])
    for f in ('ckpt/stage1.pt', 'ckpt/stage2.pt', 'ckpt/stage3.pt', 'stage2_index.txt', 'figure3_losses.png', 'stage3_curves.png'):
        assert (rd / f).exists(), f
    kept = [int(v) for v in (rd / 'stage2_index.txt').read_text().split()]
    assert len(kept) == m['stage2']['n_kept'] and len(set(kept)) == len(kept)
    t1 = (tmp_path / 'smoke' / 'synthetic' / 'table1.csv').read_text()
    assert 'No Defense' in t1 and 'DBD' in t1
    caption = (tmp_path / 'smoke' / 'synthetic' / 'table1.md').read_text().splitlines()[0]
    commit = m['dbd']['provenance']['commit']
    assert f'rows measured at commit {commit}' in caption and 'Written by commit' in caption, caption
    r2 = run(*args)
    assert r2.returncode == 0 and r2.stdout.count('[dbd-run] reuse') == 4, r2.stdout


def test_runner_rejects_bad_parameter(tmp_path):
    r = run('--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'badnets', '-p', 'poisoning_rate=1.5', '-p', f'out_dir={tmp_path}')
    assert r.returncode == 2 and "'poisoning_rate'" in r.stderr
