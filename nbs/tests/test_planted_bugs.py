"""Checks that must be able to fail: each is run on the real code (passes) and on a planted bug (fails).
Plus determinism: the smoke chain run twice with one seed gives identical metrics."""
import inspect, json, math, textwrap
import pytest, torch
import torch.nn.functional as F
import dbd_nb.stage1 as stage1
from dbd_nb.attacks import LabelConsistent
from dbd_nb.pipeline import setup_run, run_chain, step_done, step_tag, STEPS


def eq5_direct(z1, z2, tau):
    "Eq. 5 written out term by term: mean over the 2N anchors of -log(exp(s_ij/tau) / sum_{k != i} exp(s_ik/tau))."
    z = F.normalize(torch.cat((z1, z2)), dim=1).double(); n = len(z1); terms = []
    for i in range(2 * n):
        j = i + n if i < n else i - n
        s = [float(z[i] @ z[k]) / tau for k in range(2 * n)]
        terms.append(-(s[j] - math.log(sum(math.exp(s[k]) for k in range(2 * n) if k != i))))
    return sum(terms) / len(terms)


def matches_eq5(fn) -> bool:
    torch.manual_seed(0); za, zb = torch.randn(6, 5), torch.randn(6, 5)
    return all(abs(fn(za, zb, tau).item() - eq5_direct(za, zb, tau)) < 1e-4 for tau in (0.5, 0.1))


def planted(fn, old: str, new: str):
    "A copy of function `fn` with `old` replaced by `new` in its source, in its module's namespace."
    src = textwrap.dedent(inspect.getsource(fn)); assert old in src, old
    ns = dict(vars(inspect.getmodule(fn))); exec(src.replace(old, new), ns)
    return ns[fn.__name__]


def test_nt_xent_is_eq5_and_a_wrong_positive_index_is_caught():
    assert matches_eq5(stage1.nt_xent)
    assert not matches_eq5(planted(stage1.nt_xent, '.roll(n)', '.roll(n + 1)'))


def lc_poison_tag_tracks_the_surrogate_recipe(cfg) -> bool:
    "Label-Consistent's poisoned set depends on `epochs` (its surrogate's recipe); BadNets' does not."
    lc, bn = cfg.replace(attack='label_consistent'), cfg.replace(attack='badnets')
    return (step_tag(lc, 'poison') != step_tag(lc.replace(epochs=lc.epochs + 1), 'poison')
            and step_tag(bn, 'poison') == step_tag(bn.replace(epochs=bn.epochs + 1), 'poison'))


def test_poison_keys_and_epochs_dropped_from_them(monkeypatch):
    from dbd_nb.config import RunConfig
    assert lc_poison_tag_tracks_the_surrogate_recipe(RunConfig())
    monkeypatch.setattr(LabelConsistent, 'poison_groups', classmethod(lambda cls, cfg: ()))    # the planted bug
    assert not lc_poison_tag_tracks_the_surrogate_recipe(RunConfig())


SMOKE = dict(profile='smoke', dataset='synthetic', attack='badnets', device='cpu', s2_compare=False)


def test_stage2_checkpoint_is_finished_and_a_missing_done_flag_is_caught(tmp_path):
    run = setup_run(dict(SMOKE, out_dir=str(tmp_path)), progress=False)
    run_chain(run, 'stage2')
    assert step_done(run, 'stage2')
    p = run.ckpt('stage2.pt'); ck = torch.load(p, weights_only=False); ck.pop('done'); torch.save(ck, p)   # planted
    assert not step_done(run, 'stage2')


VOLATILE = ('_s', 'img_per_s', 's_per_epoch', 'provenance', 'hardware')


def stable(d):
    "metrics.json without wall times, throughputs, hardware and provenance (which differ between identical runs)."
    if isinstance(d, dict): return {k: stable(v) for k, v in d.items() if not k.endswith(VOLATILE)}
    return d


def test_smoke_chain_is_deterministic(tmp_path):
    ms = []
    for i in range(2):
        run = setup_run(dict(SMOKE, attack='blended', out_dir=str(tmp_path / str(i))), progress=False)
        run_chain(run, 'no_defense', 'stage3')
        ms.append(json.loads((run.rdir / 'metrics.json').read_text()))
    assert set(ms[0]) >= {'no_defense', 'stage1', 'stage2', 'dbd'}
    assert stable(ms[0]) == stable(ms[1])
    assert stable({'a': 1, 'train_s': 2}) == {'a': 1}          # the filter removes only volatile keys
