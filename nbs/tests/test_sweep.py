"""Sweeps (issue: ablations, `--sweep` in the runner): one folder per value, and every stage the swept key does not
touch is reused, not retrained. The counts come from the pipeline's own progress lines ('running' vs 'reusing')."""
import contextlib, io, re, subprocess
import pandas as pd
from pathlib import Path
from dbd_nb.pipeline import setup_run, run_chain, step_tag
from dbd_nb.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(dataset='synthetic', profile='smoke', attack='badnets', subset_per_class=10, test_per_class=5, monitor_size=10)


def states(params) -> dict:
    "{step: 'running' | 'reusing its checkpoint' | 'loading'} of a run_chain up to stage 3, from its progress lines."
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run = setup_run(params, cwd=ROOT, progress='lines')
        run_chain(run, 'stage3')
    return dict(re.findall(r'^\[(\w+)\] badnets: (.+)$', out.getvalue(), re.M)), out.getvalue()


def test_tags_say_what_a_sweep_can_reuse():
    c = RunConfig()
    assert step_tag(c, 'stage2') == step_tag(c.replace(filter_rate=0.3), 'stage2')     # the head ignores alpha
    assert step_tag(c, 'stage3') != step_tag(c.replace(filter_rate=0.3), 'stage3')
    assert step_tag(c, 'stage1') == step_tag(c.replace(mocov2_queue=7), 'stage1')       # SimCLR ignores MoCo's group
    m = c.replace(ssl_method='mocov2')
    assert step_tag(m, 'stage1') != step_tag(m.replace(mocov2_queue=7), 'stage1')
    assert step_tag(c, 'stage2') == step_tag(c.replace(gce_q=0.5), 'stage2')
    g = c.replace(s2_loss='gce')
    assert step_tag(g, 'stage2') != step_tag(g.replace(gce_q=0.5), 'stage2') and step_tag(g, 'stage1') == step_tag(c, 'stage1')


def test_a_filter_rate_sweep_trains_stage3_only(tmp_path):
    base = dict(TINY, out_dir=str(tmp_path))
    first, _ = states(base)
    assert first['stage1'] == first['stage2'] == first['stage3'] == 'running', first
    swept, log = states(dict(base, filter_rate=0.3, run_name='filter_rate=0.3'))
    assert '[sweep] filter_rate=0.3: reusing poison, stage1, stage2' in log, log
    assert swept['poison'] == swept['stage1'] == swept['stage2'] == 'reusing its checkpoint', swept
    assert swept['stage3'] == 'running', swept
    rd = tmp_path / 'smoke' / 'synthetic' / 'badnets' / 'sweeps' / 'filter_rate=0.3'
    assert (rd / 'metrics.json').exists() and (rd / 'ckpt' / 'stage3.pt').exists()
    again, _ = states(base)          # the attack folder's own stage 3 is untouched by the sweep value
    assert again['stage3'] == 'reusing its checkpoint', again
    # a loss sweep shares stage 1 and retrains the head
    loss, _ = states(dict(base, s2_loss='gce', run_name='s2_loss=gce'))
    assert loss['stage1'] == 'reusing its checkpoint' and loss['stage2'] == loss['stage3'] == 'running', loss


def test_runner_sweep_writes_one_folder_per_value_and_the_table(tmp_path):
    r = subprocess.run(['dbd-run', '--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'badnets', '--chain', '04_stage3',
                        '--sweep', 'filter_rate=0.3,0.5', '-p', f'out_dir={tmp_path}'], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    ad = tmp_path / 'smoke' / 'synthetic' / 'badnets'
    assert {p.name for p in (ad / 'sweeps').iterdir()} == {'filter_rate=0.3', 'filter_rate=0.5'}
    assert r.stdout.count('[stage1] badnets: running') == 1 and r.stdout.count('[stage3] badnets: running') == 2, r.stdout[-4000:]
    assert 'Figure 6' in (ad / 'sweep_filter_rate.md').read_text() and (ad / 'sweep_filter_rate.png').exists()
    df = pd.read_csv(ad / 'sweep_filter_rate.csv')
    assert list(df.filter_rate) == [0.3, 0.5] and df['DBD BA'].notna().all() and list(df['n kept']) == [60, 100], df
    bad = subprocess.run(['dbd-run', '--profile', 'smoke', '--dataset', 'synthetic', '--sweep', 'filter_rat=0.3',
                          '-p', f'out_dir={tmp_path}'], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "'filter_rat' cannot be swept" in bad.stderr, bad.stderr


def test_runner_grid_sweep_fills_table2_and_a_point_equal_to_the_folder_reuses_it(tmp_path):
    "Tables 2/20: two --sweep flags run their grid; the point equal to the attack folder's setting (None = 2.5%) shares it."
    run = lambda *extra: subprocess.run(['dbd-run', '--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'label_consistent',
                                         '--chain', '01_attacks', '-p', f'out_dir={tmp_path}', *extra],
                                        capture_output=True, text=True, timeout=900, cwd=ROOT)
    r = run()
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('--sweep', 'lc_eps=16,32', '--sweep', 'poisoning_rate=0.025')
    assert r.returncode == 0, r.stderr[-3000:]
    ad = tmp_path / 'smoke' / 'synthetic' / 'label_consistent'
    assert {p.name for p in (ad / 'sweeps').iterdir()} == {'lc_eps=16,poisoning_rate=0.025', 'lc_eps=32,poisoning_rate=0.025'}
    line = re.search(r'^\[sweep\] lc_eps=16,poisoning_rate=0\.025: reusing (.+)$', r.stdout, re.M)
    assert line and {'poison', 'no_defense'} <= set(line.group(1).split(', ')), r.stdout[-4000:]
    assert r.stdout.count('[no_defense] label_consistent: running') == 1, r.stdout[-4000:]      # eps 32 only
    t2 = pd.read_csv(ad.parent / 'table2.csv')
    assert list(t2.defense) == ['No Defense'] and t2['eps 16, 2.5% BA'].notna().all() and t2['eps 32, 2.5% BA'].notna().all(), t2
    bad = run('--sweep', 'lc_eps=16', '--sweep', 'lc_eps=32')
    assert bad.returncode == 2 and 'given twice' in bad.stderr, bad.stderr
