"""accelerate's ``--fsdp_*`` options as pairkit's FSDP2 reads them (:data:`pairkit.train._fsdp.SETTINGS`), in one
process: the environment is the one accelerate's own launcher builds from the flags, so a launcher option pairkit
does not declare, or reads differently, fails here. The two-process runs are in test_accelerate.py."""

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import _fsdp  # noqa: E402
from pairkit.train._fsdp import FsdpSettings  # noqa: E402


def launcher_env(*flags):
    """The ``FSDP_*`` variables ``accelerate launch --use_fsdp FLAGS`` gives its processes."""
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    launch = ["--use_fsdp", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", *flags, "train.py"]  # fmt: skip
    args = launch_command_parser().parse_args(launch)
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith("FSDP_")}


def read(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an FSDP_* variable pairkit does not know warns: fail
        return _fsdp.settings(env)


def test_the_launchers_defaults_are_pairkits_with_weights_from_process_0():
    env = launcher_env()
    assert set(env) <= {s.env for s in _fsdp.SETTINGS}  # every variable the launcher sets is declared
    assert read(env) == FsdpSettings(sync_module_states=True)  # cpu_ram_efficient_loading defaults to true
    assert read({}) == FsdpSettings()  # TrainConfig(fsdp=True) under torchrun


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--fsdp_offload_params", "true"], {"offload_params": True}),
        (["--fsdp_reshard_after_forward", "false"], {"reshard_after_forward": False}),
        (["--fsdp_sharding_strategy", "SHARD_GRAD_OP"], {"reshard_after_forward": False}),
        (["--fsdp_version", "2", "--fsdp_reshard_after_forward", "true"], {}),
        (["--fsdp_activation_checkpointing", "true", "--fsdp_activation_checkpointing_offload", "true"],
         {"activation_checkpointing": True, "activation_checkpointing_offload": True}),
        (["--fsdp_auto_wrap_policy", "SIZE_BASED_WRAP", "--fsdp_min_num_params", "1000"],
         {"auto_wrap_policy": "size", "min_num_params": 1000}),
        (["--fsdp_auto_wrap_policy", "NO_WRAP"], {"auto_wrap_policy": "none"}),
        (["--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_transformer_layer_cls_to_wrap", "A, B"],
         {"transformer_layer_cls_to_wrap": ("A", "B")}),
        (["--fsdp_transformer_layer_cls_to_wrap", "A"], {"transformer_layer_cls_to_wrap": ("A",)}),
        (["--fsdp_forward_prefetch", "true", "--fsdp_backward_prefetch", "BACKWARD_PRE"], {"forward_prefetch": True}),
        (["--fsdp_state_dict_type", "FULL_STATE_DICT"], {}),
        (["--fsdp_cpu_ram_efficient_loading", "false", "--fsdp_sync_module_states", "false"],
         {"sync_module_states": False}),
    ],
)  # fmt: skip
def test_each_option_maps_to_its_fsdp2_meaning(flags, expected):
    assert read(launcher_env(*flags)) == FsdpSettings(**{"sync_module_states": True, **expected})


REFUSED = [(s, value) for s in _fsdp.SETTINGS for value in s.refused] + [
    (s, "bogus") for s in _fsdp.SETTINGS if s.values is not None
]


@pytest.mark.parametrize(("setting", "value"), REFUSED, ids=[f"{s.name}={v}" for s, v in REFUSED])
def test_an_unsupported_value_is_refused_naming_the_option_and_the_value(setting, value):
    with pytest.raises(InputError) as err:
        read({setting.env: value})
    assert setting.flag in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--fsdp_sharding_strategy", "HYBRID_SHARD"], ["--fsdp_sharding_strategy", "HYBRID_SHARD", "mesh"]),
        (["--fsdp_sharding_strategy", "NO_SHARD"], ["--multi_gpu"]),
        (["--fsdp_state_dict_type", "SHARDED_STATE_DICT"], ["SHARDED_STATE_DICT", "FULL_STATE_DICT"]),
        (["--fsdp_use_orig_params", "false"], ["--fsdp_use_orig_params", "'false'"]),
        (["--fsdp_backward_prefetch", "NO_PREFETCH"], ["--fsdp_backward_prefetch", "NO_PREFETCH"]),
        (["--fsdp_min_num_params", "-5"], ["--fsdp_min_num_params", "'-5'"]),
        (["--fsdp_auto_wrap_policy", "SIZE_BASED_WRAP", "--fsdp_transformer_layer_cls_to_wrap", "GPT2Block"],
         ["--fsdp_transformer_layer_cls_to_wrap", "SIZE_BASED_WRAP"]),
        (["--fsdp_activation_checkpointing_offload", "true"], ["--fsdp_activation_checkpointing true"]),
    ],
)  # fmt: skip
def test_launcher_flags_pairkit_cannot_honour_are_refused(flags, words):
    with pytest.raises(InputError) as err:
        read(launcher_env(*flags))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_an_unknown_fsdp_variable_warns():
    with pytest.warns(UserWarning, match="FSDP_SOMETHING_NEW"):
        _fsdp.settings({"FSDP_SOMETHING_NEW": "1"})


def _wrapped(model, **plan):
    return [name for name, _ in _fsdp.wrapped_modules(model, FsdpSettings(**plan))]


def test_the_wrap_policy_picks_the_modules_that_get_a_group():
    """Transformer layers (``_no_split_modules``, or the named classes), every module above a size (compared with
    a count by hand), or none; the embeddings tied to the output head stay with the root."""
    from pairkit.testing import tiny_causal_lm

    model = tiny_causal_lm()[0]  # one GPT2Block: attention 1,088 parameters, MLP 2,128, block 3,280
    assert _wrapped(model) == ["transformer.h.0"]
    assert _wrapped(model, transformer_layer_cls_to_wrap=("GPT2MLP", "GPT2Attention")) == [
        "transformer.h.0.attn", "transformer.h.0.mlp"]  # fmt: skip
    assert _wrapped(model, auto_wrap_policy="none") == []
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_modules()}
    assert (counts["transformer.h.0.attn"], counts["transformer.h.0.mlp"]) == (1088, 2128)
    # above 1,500: the position embeddings (32,768), the block and its MLP; not the token embeddings (1,600), which
    # are the tied output head, nor the decoder that holds them
    expected = ["transformer.wpe", "transformer.h.0", "transformer.h.0.mlp"]
    assert _wrapped(model, auto_wrap_policy="size", min_num_params=1500) == expected
    assert not {"transformer", "transformer.wte", "lm_head"} & set(_wrapped(model, auto_wrap_policy="size",
                                                                            min_num_params=0))  # fmt: skip
    with pytest.raises(InputError, match="GPT2Nope.*GPT2MLP"):  # names the missing class and lists the model's
        _wrapped(model, transformer_layer_cls_to_wrap=("GPT2Nope",))
    with pytest.raises(InputError, match="GPT2Model holds the output head"):
        _wrapped(model, transformer_layer_cls_to_wrap=("GPT2Model",))


def test_every_option_is_in_the_training_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs/train.rst").read_text(encoding="utf-8")
    assert [s.flag for s in _fsdp.SETTINGS if s.flag.removeprefix("--") not in text] == []


@pytest.mark.parametrize("offload", [False, True])
def test_a_checkpointed_module_recomputes_in_backward_with_the_same_gradients_and_names(offload):
    """``--fsdp_activation_checkpointing`` (and its offload) on a block: its MLP runs twice (forward, then again in
    backward), the gradients equal the plain run's to 1e-6, and no parameter name changes (peft saves by name)."""
    from pairkit.testing import tiny_causal_lm

    ids = torch.tensor([[1, 5, 7, 9, 2, 4]])

    def grads(model):
        calls, mlp = [], model.transformer.h[0].mlp
        inner = mlp.forward  # counted on the instance: module hooks do not run in the recomputation
        mlp.forward = lambda *a, **k: calls.append(1) or inner(*a, **k)
        model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state.square().sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    plain, plain_calls = grads(tiny_causal_lm(seed=2)[0])
    model = tiny_causal_lm(seed=2)[0]
    _fsdp.checkpoint_forward(model.transformer.h[0], offload=offload)
    assert _fsdp.is_checkpointed(model.transformer.h[0]) == ("offload" if offload else "recompute")
    got, calls = grads(model)
    assert (plain_calls, calls) == (1, 2)
    assert sorted(got) == sorted(plain)
    for name, g in plain.items():
        torch.testing.assert_close(got[name], g, atol=1e-6, rtol=1e-6)
