"""Parameter-group rules (``param_groups``) and Muon: which tensors each optimizer gets, Muon's update against
its definition, the AdamW side against torch's AdamW, lr multipliers under a schedule, decay exemptions,
the record's account of each parameter's rule, resume of a two-optimizer trial, load-time refusals, and a
Muon suite through the command line."""
import math

import pytest
import torch
from conftest import TINY, harness_cli, write_suite
from test_checkpoint import _comparable, _stop_after

from harness.components.combined import Combined
from harness.engine import run_trial
from harness.engine.build import build
from harness.engine.checkpoint import checkpoint_path, load_weights
from harness.engine.loop import Checkpointing, _accelerator, fit
from harness.errors import ConfigError
from harness.fused.plan import why_not
from harness.registries import OPTIMIZERS
from harness.spec import COMPLETED, INTERRUPTED, Record, TrialSpec
from harness.suite import load_suite, resolve_trial
from harness.technique import Callback

DIGITS = {"name": "digits", "val_size": 200, "train_subset": 400}
CPU = torch.device("cpu")


def _trial(**raw):
    return build(resolve_trial({"dataset": DIGITS, **raw}, "base"), 0, CPU)


def _names(model, tensors):
    ids = {id(p) for p in tensors}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def _muon_part(t):
    assert isinstance(t.optimizer, Combined) and t.optimizer.names == ["muon", "adamw"]
    muon, adamw = t.optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    return muon, adamw


def test_muon_gets_every_hidden_matrix_of_an_mlp_the_first_layer_included_and_not_the_head():
    t = _trial(model={"name": "mlp", "depth": 2, "width": 32}, norm="batchnorm", optimizer="muon")
    muon, adamw = _muon_part(t)
    linears = [n for n, m in t.model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3
    # the first layer maps pixels to features: a hidden matrix by the rule (Jordan et al. exclude only
    # embeddings and the output layer); the last Linear is the head
    assert _names(t.model, [p for g in muon.param_groups for p in g["params"]]) == sorted(
        f"{n}.weight" for n in linears[:2])
    everything = sorted(n for n, _ in t.model.named_parameters())
    rest = _names(t.model, [p for g in adamw.param_groups for p in g["params"]])
    assert rest == sorted(set(everything) - {f"{n}.weight" for n in linears[:2]})
    assert f"{linears[-1]}.weight" in rest and any(".bias" in n for n in rest)


def test_muon_on_a_cnn_gets_its_hidden_linear_matrix_only_conv_kernels_go_to_adamw():
    t = _trial(model={"name": "cnn_2c2d"}, optimizer="muon")
    muon, adamw = _muon_part(t)
    got = [p for g in muon.param_groups for p in g["params"]]
    linears = [m for m in t.model.modules() if isinstance(m, torch.nn.Linear)]
    assert [id(p) for p in got] == [id(linears[0].weight)] and len(linears) == 2
    convs = [m.weight for m in t.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(any(p is w for g in adamw.param_groups for p in g["params"]) for w in convs)


def _newton_schulz(g, steps=5, eps=1e-7):
    """Keller Jordan's quintic iteration (KellerJordan/Muon, zeropower_via_newtonschulz5), in bf16 as there."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return (x.T if tall else x).float()


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_steps_as_its_definition_momentum_orthogonalization_scaled_update(nesterov):
    torch.manual_seed(0)
    w0 = torch.randn(12, 8)
    grads = [torch.randn(12, 8) for _ in range(3)]
    w = torch.nn.Parameter(w0.clone())
    spec = OPTIMIZERS.resolve({"name": "muon", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.1,
                               "nesterov": nesterov}, "optimizer")
    optimizer = OPTIMIZERS.build(spec, [w])
    ref, buf = w0.clone(), torch.zeros_like(w0)
    for g in grads:
        w.grad = g.clone()
        optimizer.step()
        buf = 0.9 * buf + 0.1 * g  # the reference's momentum.lerp_(grad, 1 - beta)
        update = 0.1 * g + 0.9 * buf if nesterov else buf  # grad.lerp_(momentum, beta)
        ref = ref * (1 - 0.05 * 0.1) - 0.05 * math.sqrt(max(1, 12 / 8)) * _newton_schulz(update)
    # bf16 iterations rounded in another order (torch fuses b*S + c*S@S into one addmm): about 1e-3 apart
    assert torch.allclose(w.detach(), ref, atol=5e-3), (w.detach() - ref).abs().max()
    other = ref + 0.05 * _newton_schulz(grads[-1])  # the last step taken on the raw gradient instead
    assert not torch.allclose(w.detach(), other, atol=5e-3)


def test_the_adamw_side_of_muon_steps_as_torch_adamw_on_the_same_parameters():
    t = _trial(model={"name": "mlp", "depth": 1, "width": 16}, norm="layernorm",
               optimizer={"name": "muon", "adam_lr": 0.01, "adam_beta1": 0.8, "adam_beta2": 0.9,
                          "adam_weight_decay": 0.2})
    _, adamw = _muon_part(t)
    side = [p for g in adamw.param_groups for p in g["params"]]
    copies = [torch.nn.Parameter(p.detach().clone()) for p in side]
    reference = torch.optim.AdamW(copies, lr=0.01, betas=(0.8, 0.9), weight_decay=0.2)
    torch.manual_seed(1)
    for _ in range(4):
        for p in t.model.parameters():
            p.grad = torch.randn_like(p)
        for p, c in zip(side, copies):
            c.grad = p.grad.clone()
        t.optimizer.step()
        reference.step()
    for p, c in zip(side, copies):
        assert torch.allclose(p, c, rtol=1e-6, atol=1e-7)


class _Lrs(Callback):
    def __init__(self):
        self.seen = []

    def before_step(self, run):
        self.seen.append([g["lr"] for g in run.optimizer.param_groups])


def test_an_lr_scale_holds_under_a_cosine_schedule_at_every_step():
    config = resolve_trial({"dataset": DIGITS, "model": {"name": "mlp", "depth": 1, "width": 16},
                            "optimizer": {"name": "momentum", "lr": 0.1}, "schedule": "cosine", "batch_size": 50,
                            "budget": {"epochs": 2}, "param_groups": [{"kind": "head", "lr_scale": 0.25}]}, "base")
    lrs = _Lrs()
    record = Record("x", "s", 0, COMPLETED, config, {})
    fit(config, 0, record, _accelerator("no"), [lrs])
    steps = len(lrs.seen)
    assert steps == 16 and len(lrs.seen[0]) == 2  # 400 samples in batches of 50, two epochs
    for step, (plain, head) in enumerate(lrs.seen):
        factor = 0.5 * (1 + math.cos(math.pi * step / steps))
        assert plain == pytest.approx(0.1 * factor) and head == pytest.approx(0.25 * 0.1 * factor)
    assert lrs.seen[-1][0] < 0.01 < lrs.seen[0][0]  # the schedule did move


def test_a_rule_exempts_biases_and_norms_from_weight_decay():
    t = _trial(model={"name": "mlp", "depth": 2, "width": 16}, norm="batchnorm",
               optimizer={"name": "adamw", "weight_decay": 0.05},
               param_groups=[{"kind": ["bias", "norm"], "weight_decay": 0}])
    assert isinstance(t.optimizer, torch.optim.AdamW)
    head = [m for m in t.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    norms = [p for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm1d) for p in m.parameters()]
    biases = [m.bias for m in t.model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    decay = {id(p): g["weight_decay"] for g in t.optimizer.param_groups for p in g["params"]}
    assert len(decay) == len(list(t.model.parameters())) and len(norms) == 4
    for p in t.model.parameters():
        # the head's bias is kind head, not bias: a rule on biases leaves it decayed
        exempt = any(p is q for q in norms + biases)
        assert decay[id(p)] == (0.0 if exempt else 0.05)


def test_a_suite_without_rules_keeps_its_resolved_config_and_trial_id():
    raw = {"dataset": DIGITS, "optimizer": "adamw", "decay": {"biases": False}}
    plain = resolve_trial(raw, "base")
    assert "param_groups" not in plain
    assert resolve_trial({**raw, "param_groups": []}, "base") == plain
    t = build(plain, 0, CPU)  # the decay setting's two groups, as before the rules existed
    assert isinstance(t.optimizer, torch.optim.AdamW) and [g["weight_decay"] for g in t.optimizer.param_groups] == [
        0.01, 0.0] and t.groups == []


def test_the_record_lists_each_parameters_rule():
    spec = TrialSpec.make("t", resolve_trial({
        "dataset": DIGITS, "model": {"name": "mlp", "depth": 1, "width": 16}, "norm": "batchnorm",
        "optimizer": "muon", "param_groups": [{"name": "*.bias", "weight_decay": 0, "lr_scale": 0.5}]}, "base"), 0)
    record = run_trial(spec)
    assert record.status == COMPLETED, record.reason
    groups = record.diagnostics["param_groups"]
    names = [n for g in groups for n in g["parameters"]]
    model = build(spec.config, 0, CPU).model
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each once
    by_name = {n: g for g in groups for n in g["parameters"]}
    # flatten, linear 1, batchnorm 2, activation, linear 4 (the head)
    assert by_name["1.weight"]["optimizer"] == "muon" and "muon's rule 0" in by_name["1.weight"]["rule"]
    for bias in ("1.bias", "2.bias", "4.bias"):  # the glob, whatever the kind: Muon's rule 1 sends them to AdamW
        assert by_name[bias]["rule"].startswith("param_groups[0] name=*.bias") and by_name[bias]["optimizer"] == \
            "adamw" and by_name[bias]["weight_decay"] == 0.0 and by_name[bias]["lr"] == pytest.approx(0.5 * 3e-4)
    for adam in ("2.weight", "4.weight"):
        assert by_name[adam]["optimizer"] == "adamw" and by_name[adam]["weight_decay"] == 0.01
    assert all(g["count"] == len(g["parameters"]) for g in groups)


def test_a_two_optimizer_trial_resumed_mid_training_ends_as_the_uninterrupted_one(tmp_path):
    spec = TrialSpec.make("t", resolve_trial({
        "dataset": {"name": "digits", "val_size": 200, "train_subset": 500}, "norm": "batchnorm",
        "model": {"name": "mlp", "depth": 2, "width": 32}, "optimizer": {"name": "muon", "adam_lr": 0.003},
        "schedule": "cosine", "budget": {"epochs": 3}, "batch_size": 32,
        "param_groups": [{"kind": "head", "optimizer": {"name": "momentum", "lr": 0.05}}]}, "base"), 3)
    whole = run_trial(spec, checkpointing=Checkpointing(tmp_path / "a.pt", weights=tmp_path / "a.w"))
    assert whole.status == COMPLETED, whole.reason
    path = checkpoint_path(tmp_path, spec.trial_id)
    for calls in (11, 30):  # mid-epoch 1, then mid-epoch 2
        part = run_trial(spec, checkpointing=Checkpointing(path, _stop_after(calls)))
        assert part.status == INTERRUPTED, part.reason
    resumed = run_trial(spec, checkpointing=Checkpointing(path, weights=tmp_path / "b.w"))
    assert resumed.status == COMPLETED, resumed.reason
    assert len(resumed.diagnostics["resumed_at_step"]) == 2 and "checkpoint" not in resumed.diagnostics
    assert _comparable(resumed) == _comparable(whole)
    a, b = load_weights(tmp_path / "a.w", spec.trial_id), load_weights(tmp_path / "b.w", spec.trial_id)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [g["optimizer"] for g in whole.diagnostics["param_groups"]] == ["muon", "adamw", "momentum"]


def test_combined_state_of_other_parts_does_not_load():
    t = _trial(optimizer="muon")
    state = t.optimizer.state_dict()
    assert list(state["optimizers"]) == ["0:muon", "1:adamw"]
    with pytest.raises(ValueError, match="expected"):
        t.optimizer.load_state_dict({"optimizers": {"0:adamw": state["optimizers"]["1:adamw"]}})


@pytest.mark.parametrize("rules, path, says", [
    ([{"kind": "hiden"}], "base.param_groups[0].kind", "did you mean 'hidden'"),
    ([{"kind": ["bias", "nrom"]}], "base.param_groups[0].kind[1]", "did you mean 'norm'"),
    ([{"kind": "bias", "weight_decy": 0}], "base.param_groups[0].weight_decy", "did you mean 'weight_decay'"),
    ([{"kind": "bias"}, {"lr_scale": 0}], "base.param_groups[1].lr_scale", "must be > 0"),
    ([{"kind": "head", "optimizer": "adamm"}], "base.param_groups[0].optimizer.name", "unknown optimizer"),
    ([{"kind": "head", "optimizer": "lbfgs"}], "base.param_groups[0].optimizer", "one parameter group"),
    ({"kind": "bias"}, "base.param_groups", "expected a list of rules"),
])
def test_a_bad_rule_is_refused_at_load_time_with_its_key_path(tmp_path, rules, path, says):
    import yaml

    suite = write_suite(tmp_path, yaml.safe_dump({"name": "bad", "base": {"dataset": DIGITS, "param_groups": rules}}))
    with pytest.raises(ConfigError) as e:
        load_suite(suite)
    assert e.value.path == path and says in str(e.value)


def test_a_rule_that_matches_nothing_is_fine():
    t = _trial(model={"name": "mlp", "depth": 1, "width": 8}, param_groups=[{"kind": "embedding", "lr_scale": 2}])
    assert [g["rule"] for g in t.groups] == ["no rule"]


def test_rules_and_muon_keep_a_trial_out_of_packs_with_a_reason():
    rules = resolve_trial({"param_groups": [{"kind": "bias", "weight_decay": 0}]}, "base")
    assert "param_groups" in why_not(rules)
    assert "splits the parameters" in why_not(resolve_trial({"optimizer": "muon"}, "base"))
    assert why_not(resolve_trial({}, "base")) is None


# TINY's workload, with Muon and a rule crossed
MUON = ["seeds=1", "grid.optimizer=[muon, {name: adam, lr: 0.003}]", "grid.param_groups=[[], [{kind: head, lr_scale: 0.5}]]"]


@pytest.mark.slow
def test_a_muon_suite_runs_from_the_command_line_and_plan_says_why_it_is_not_fused(tmp_path):
    listed = harness_cli("list", "optimizers")
    assert listed.returncode == 0 and "  muon " in listed.stdout and "adam_lr" in listed.stdout
    suite = write_suite(tmp_path, TINY)
    plan = harness_cli("plan", suite, *MUON, "--fuse", "auto")
    assert plan.returncode == 0, plan.stderr
    assert "splits the parameters between optimizers" in plan.stdout and "param_groups" in plan.stdout
    r = harness_cli("run", suite, *MUON, "--results", tmp_path, "--no-report")
    assert r.returncode == 0, r.stderr
    from harness.store import scan

    records = list(scan(tmp_path / "tiny").records.values())
    assert len(records) == 4 and all(rec.status == COMPLETED for rec in records)
    muon = [rec for rec in records if rec.config["optimizer"]["name"] == "muon"]
    assert all(rec.final["test_acc"] > 0.2 for rec in muon), [rec.final for rec in muon]  # chance: 0.1 (14 steps)
    assert all("param_groups" in rec.diagnostics for rec in muon)
