"""Multi-process training (nbs/19_dist, nbs/1b_launch): 2 gloo processes on CPU match one process, and nproc > 1 launches torchrun."""
import json, subprocess, sys
from pathlib import Path
import torch

HERE = Path(__file__).resolve().parent
# Tolerance: the two runs see the same images, augmentations and global batches; they differ only in the order of
# float sums (per-rank partial sums, all-reduces), ~1e-7 per step. The runs are kept to a few steps because a tiny
# BatchNorm network on 4-image slices is chaotic: measured here, perturbing the weights by 1e-6 moved them by 0.02
# after 4 supervised steps and 0.1 after 8, so longer runs would compare chaos, not the DDP arithmetic.
ATOL = 1e-4


def _torchrun(n, out):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}', str(HERE / '_ddp_stages.py'), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-4000:]
    return torch.load(out, weights_only=False)


def test_two_gloo_processes_match_one(tmp_path):
    one, two = _torchrun(1, tmp_path / 'one.pt'), _torchrun(2, tmp_path / 'two.pt')
    for stage in ('supervised', 'simclr', 'stage2_head', 'mixmatch'):
        moved = 0
        for k, a in one[stage].items():
            b = two[stage][k]
            if a.is_floating_point():
                assert torch.allclose(a, b, atol=ATOL, rtol=0), (stage, k, (a - b).abs().max().item())
            else:
                assert torch.equal(a, b), (stage, k)
        init = _fresh_state()
        moved = sum(not torch.allclose(one[stage][k], v) for k, v in init.items() if v.is_floating_point())
        assert moved > 0, f'{stage}: training changed nothing, so the comparison would be vacuous'
    assert torch.allclose(one['stage2_loss'], two['stage2_loss'], atol=ATOL)
    assert (one['stage2_loss'] > 0).all()       # every sample's loss was recorded (slices of all ranks summed)


def _fresh_state():
    from dbd_nb.models import build_model
    torch.manual_seed(0)
    return build_model('resnet18_cifar', 4, 4).state_dict()


def _chain(tmp, nproc):
    from dbd_nb.pipeline import setup_run, step_done, STEPS
    from dbd_nb.launch import run_chain
    run = setup_run(dict(profile='smoke', dataset='synthetic', attack='badnets', out_dir=str(tmp), nproc=nproc, device='cpu'),
                    cwd=HERE, progress=False)
    run_chain(run, 'no_defense', 'stage3')
    return run


def test_nproc_parameter_launches_torchrun_for_every_stage(tmp_path):
    from dbd_nb.pipeline import step_done
    two = _chain(tmp_path / 'two', 2)
    rdir = two.rdir
    _, res, hist = two.products['no_defense']
    assert len(hist) == two.cfg.epochs and 0 <= res['ba'] <= 100
    for stage in ('no_defense', 'stage1', 'stage2', 'stage3'):
        assert (rdir / 'ckpt' / f'launch_{stage}.yaml').exists(), stage      # trained under torchrun ...
        assert step_done(two, stage), stage                                  # ... to the end, for this config
    m = json.loads((rdir / 'metrics.json').read_text())
    assert {'no_defense', 'stage1', 'stage2', 'dbd'} <= set(m) and m['stage2']['n_kept'] == int(two.products['stage2'][1].sum())
    # the same files as a single-process run, and the same poisoned set and (up to float rounding) the same selection
    one = _chain(tmp_path / 'one', 1)
    files = lambda r: sorted(str(p.relative_to(r.rdir)) for p in r.rdir.rglob('*') if p.is_file() and 'launch_' not in p.name)
    assert files(one) == files(two), (files(one), files(two))
    assert (one.rdir / 'poison_index.txt').read_text() == (rdir / 'poison_index.txt').read_text()
    k1, k2 = (set((r.rdir / 'stage2_index.txt').read_text().split()) for r in (one, two))
    assert len(k1 & k2) >= 0.9 * len(k1), (len(k1), len(k1 & k2))
    assert set(json.loads((one.rdir / 'metrics.json').read_text())) == set(m)
