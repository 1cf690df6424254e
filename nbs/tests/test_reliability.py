"""Runs that never mislead (issue: no silent data fallback, a failed step never replaces a good record, errors
caught up front and on one line, progress, no noise). Each case failed before its fix."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ('--profile', 'smoke', '--dataset', 'synthetic', '--attacks', 'badnets', '--chain', 'no_defense')


def dbd_run(*args, cwd=ROOT, timeout=600):
    return subprocess.run(['dbd-run', *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_empty_data_root_is_an_error_naming_it(tmp_path):
    "1. A given data_root with no data: no fall-back to ../shared/data, no download; one line naming the path."
    empty = tmp_path / 'empty'; empty.mkdir()
    r = dbd_run('--profile', 'smoke', '--dataset', 'cifar10', '--chain', 'no_defense', '-p', f'data_root={empty}',
                '-p', f'out_dir={tmp_path / "out"}', '-p', f'cache_dir={tmp_path / "cache"}')
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert str(empty) in line and 'holds none of' in line and '01_attacks.failed.ipynb' in line, line


def test_the_data_actually_read_is_recorded(tmp_path):
    r = dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}')
    assert r.returncode == 0, r.stderr[-3000:]
    rd = tmp_path / 'smoke' / 'synthetic' / 'badnets'
    m = json.loads((rd / 'metrics.json').read_text())
    assert m['data']['kind'] == 'synthetic' and m['data']['n_train_used'] == 200
    assert 'data:' in (rd / 'config.yaml').read_text() and 'commit:' in (rd / 'config.yaml').read_text()


def test_a_failed_step_keeps_the_good_record(tmp_path):
    "2. A failing rerun leaves the good notebook and config.yaml, writes <step>.failed.ipynb; 'reuse' stays true."
    rd = tmp_path / 'smoke' / 'synthetic' / 'badnets'
    assert dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}').returncode == 0
    good_nb, good_cfg = (rd / '01_attacks.ipynb').read_bytes(), (rd / 'config.yaml').read_bytes()
    r = dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}', '-p', 'poisoning_rate=0.99')   # 198 to poison, 180 eligible: fails in the kernel
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert line.startswith('dbd-run: 01_attacks [badnets] failed: ValueError: 198 samples to poison') and 'failed.ipynb' in line, line
    assert (rd / '01_attacks.ipynb').read_bytes() == good_nb and (rd / 'config.yaml').read_bytes() == good_cfg
    assert (rd / '01_attacks.failed.ipynb').exists() and not list(rd.glob('.*.running.ipynb'))
    r = dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}')
    assert r.returncode == 0 and '[dbd-run] reuse' in r.stdout, r.stdout


def test_a_killed_step_leaves_no_record(tmp_path):
    "2. kill -9 mid-step: the half-executed notebook is a hidden .running file, with no record and no done-marker."
    rd = tmp_path / 'smoke' / 'synthetic' / 'badnets'
    p = subprocess.Popen(['dbd-run', *SMOKE, '-p', f'out_dir={tmp_path}'], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.time()
    while not (rd / '.01_attacks.running.ipynb').exists():
        assert time.time() - t0 < 120 and p.poll() is None, 'the step never started'
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not (rd / '01_attacks.ipynb').exists() and not (rd / '.done' / '01_attacks').exists()


def test_nproc_that_does_not_divide_is_caught_before_any_work(tmp_path):
    "3. Caught up front, on one line, before a kernel starts or a folder is written."
    t0 = time.time()
    r = dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}', '-p', 'nproc=3')
    assert r.returncode == 2 and time.time() - t0 < 60
    assert "'batch_size': 32 does not divide over nproc=3" in one_line(r.stderr)
    assert not (tmp_path / 'smoke').exists()


def test_progress_is_streamed_and_logged_and_nothing_is_noise(tmp_path):
    "4-5. Epoch lines with the monitor's BA/ASR on the terminal and in run.log; stderr empty for valid input."
    r = dbd_run(*SMOKE, '-p', f'out_dir={tmp_path}', '-p', 'epochs=2')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'No Defense [badnets]: epoch 2/2' in r.stdout and 'ba=' in r.stdout and 'asr=' in r.stdout, r.stdout
    assert 'epoch 2/2' in (tmp_path / 'smoke' / 'synthetic' / 'badnets' / 'run.log').read_text()
    assert r.stderr.strip() == '', r.stderr


def test_yaml_error_names_file_and_line(tmp_path):
    "6. A YAML syntax error is one line naming the file and the line."
    f = tmp_path / 'p.yaml'; f.write_text('epochs: 2\nlr: [0.1\n')
    r = dbd_run(*SMOKE, '--params', str(f), '-p', f'out_dir={tmp_path}')
    line = one_line(r.stderr)
    assert r.returncode == 2 and str(f) in line and 'line' in line, line


def test_attack_parameter_is_honoured_or_refused(tmp_path):
    "6. -p attack=... runs that attack; contradicting --attacks is an error."
    r = dbd_run('--profile', 'smoke', '--dataset', 'synthetic', '--chain', 'no_defense', '-p', 'attack=blended', '-p', f'out_dir={tmp_path}')
    assert r.returncode == 0 and (tmp_path / 'smoke' / 'synthetic' / 'blended' / '01_attacks.ipynb').exists(), r.stderr[-2000:]
    r = dbd_run(*SMOKE, '-p', 'attack=blended', '-p', f'out_dir={tmp_path}')
    assert r.returncode == 2 and 'contradicts --attacks' in one_line(r.stderr)


def test_relative_paths_are_resolved_against_the_callers_directory(tmp_path):
    "6. A relative out_dir (and data_root, trigger, ...) means relative to where dbd-run was started, not nbs/."
    r = dbd_run(*SMOKE, '-p', 'out_dir=rel_out', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / 'rel_out' / 'smoke' / 'synthetic' / 'badnets' / '01_attacks.ipynb').exists()


def test_a_notebook_runs_from_outside_the_repository(tmp_path):
    "6. papermill from another directory finds the project (the installed one) instead of an empty profile list."
    r = subprocess.run([sys.executable, '-m', 'papermill', str(ROOT / 'nbs' / '01_attacks.ipynb'), str(tmp_path / 'o.ipynb'),
                        '--cwd', str(tmp_path), '-p', 'dataset', 'synthetic', '-p', 'out_dir', str(tmp_path), '--no-progress-bar'],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]


def test_every_section_notebook_declares_its_parameters():
    "papermill needs exactly one cell tagged 'parameters', declaring `params` for the runner's other keys."
    import papermill as pm, re
    for nb in ('00_revisit', '01_attacks', '02_stage1', '03_stage2', '04_stage3', '90_benchmarks'):
        cells = json.loads((ROOT / 'nbs' / f'{nb}.ipynb').read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c['metadata'].get('tags', [])]
        assert len(tagged) == 1, nb
        declared = set(pm.inspect_notebook(str(ROOT / 'nbs' / f'{nb}.ipynb')))
        assigned = set(re.findall(r'(?m)^(\w+)\s*=', ''.join(tagged[0]['source'])))
        assert assigned == declared, (nb, assigned - declared)        # papermill parses every line (no '=' in comments)
        if nb != '90_benchmarks': assert {'params', 'profile', 'dataset', 'attack'} <= declared, nb


def test_resume_across_device_types_does_not_crash(tmp_path, capsys):
    "GPU path: a checkpoint whose generator was written on another device type resumes with a fresh generator."
    from dbd_nb.store import save_progress, resume
    lin = torch.nn.Linear(2, 2); g = torch.Generator().manual_seed(0)
    save_progress(tmp_path / 'c.pt', 't', epoch=1, epochs=2, history=[{}], states=dict(m=lin), generator=g)
    ck = torch.load(tmp_path / 'c.pt', weights_only=False); ck['gen_device'] = 'cuda'; ck['gen'] = torch.zeros(16, dtype=torch.uint8)
    torch.save(ck, tmp_path / 'c.pt')
    assert resume(tmp_path / 'c.pt', 't', dict(m=torch.nn.Linear(2, 2)), torch.Generator())[0] == 1
    assert 'written on cuda' in capsys.readouterr().out


def test_gpu_check_reports_after_every_step_and_keeps_its_budget(tmp_path):
    "GPU path: the report is written as it goes, and the whole check fits its budget (here 40 s, CPU, tiny width)."
    t0 = time.time()
    r = subprocess.run([sys.executable, '-m', 'dbd_nb.gpu_check', '--dataset', 'synthetic', '--subset_per_class', '50', '--width', '4',
                        '--bench_steps', '1', '--budget_s', '40', '--out_dir', str(tmp_path)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert {'throughput', 'no_defense', 'stage1', 'stage2', 'dbd'} <= set(rep) and rep['total_wall_s'] <= 40 + 15, rep
    assert r.stdout.count('[gpu_check]') >= 8


def test_shard_bounds_are_the_slices_shard_takes():
    "GPU path: MixMatch takes its rows by host-side bounds instead of a boolean mask; they equal tensor_split's."
    from unittest import mock
    import dbd_nb.dist as d
    for n in range(1, 20):
        for w in range(1, 5):
            if n < w: continue
            parts = torch.tensor_split(torch.arange(n), w)
            for rk in range(w):
                with mock.patch.object(d, 'rank_world', return_value=(rk, w)):
                    s, e = d.shard_bounds(n)
                assert torch.equal(torch.arange(n)[s:e], parts[rk])
